package builder

import (
	"fmt"
	"sync"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// TestExpandConcurrentStages: stages run concurrently and expand their
// instructions at the same time; each must see its own words. (A shared
// shell.Lex mixed them up: COPY sources came out as garbage, "stat r: file
// does not exist".) Run with -race to see the race itself.
func TestExpandConcurrentStages(t *testing.T) {
	var src string
	const stages = 4
	for i := range stages {
		src += fmt.Sprintf("FROM scratch AS s%d\nENV DIR=/stage%d/some/longer/path/to/grow/the/buffer\nCOPY ${DIR}/src-%d/ ${DIR}/dest/\n", i, i, i)
	}
	df, err := parseDockerfile("Dockerfile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	bd := &build{df: df, escape: df.escape, opts: Options{NoCache: true}, buildArgs: map[string]string{}, usedArgs: map[string]bool{},
		printer: newPrinter(nil), host: platform{OS: "linux", Arch: "amd64"}, target: platform{OS: "linux", Arch: "amd64"}}
	var wg sync.WaitGroup
	errs := make(chan error, stages)
	for i := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				// Fresh instructions each round: Expand rewrites them.
				df, _ := parseDockerfile("Dockerfile", []byte(src))
				cmds := df.stages[i].Commands
				s := &state{img: emptyImage(bd.target)}
				s.env = envList(s.img.Config.Env)
				if err := bd.metadata(t.Context(), s, cmds[0]); err != nil {
					errs <- err
					return
				}
				if err := bd.expand(s, cmds[1]); err != nil {
					errs <- err
					return
				}
				c := cmds[1].(*instructions.CopyCommand)
				dir := fmt.Sprintf("/stage%d/some/longer/path/to/grow/the/buffer", i)
				if c.SourcePaths[0] != dir+fmt.Sprintf("/src-%d/", i) || c.DestPath != dir+"/dest/" {
					errs <- fmt.Errorf("stage %d expanded COPY %q %q", i, c.SourcePaths, c.DestPath)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
