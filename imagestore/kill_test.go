package imagestore

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHelperPull is the child of TestKill9MidPull: it pulls and is killed.
func TestHelperPull(t *testing.T) {
	root, ref := os.Getenv("BERTH_TEST_KILL_ROOT"), os.Getenv("BERTH_TEST_KILL_REF")
	if root == "" {
		t.Skip("helper of TestKill9MidPull")
	}
	s, err := Open(context.Background(), Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	s.Pull(context.Background(), ref, PullOptions{})
	t.Fatal("the pull was meant to stall until the process is killed")
}

// A process killed with SIGKILL in the middle of a pull (one layer
// committed, one streaming) leaves a store that opens cleanly, lists
// nothing, holds no partial blob, and pulls the image again.
func TestKill9MidPull(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 256<<10, 3)
	ref := reg.push(t, "test/img:v1", img)
	stalled := layerDigests(t, img)[2]
	size := layerSize(t, img, stalled)
	streaming := make(chan struct{}, 1)
	release := make(chan struct{})
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, stalled.String()) {
			return false
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		streaming <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	defer close(release)
	root := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPull$")
	cmd.Env = append(os.Environ(), "BERTH_TEST_KILL_ROOT="+root, "BERTH_TEST_KILL_REF="+ref)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-streaming:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the child never reached the stalled layer")
	}
	// Let the other two layers finish committing.
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if st := cmd.ProcessState; st == nil || st.Exited() {
		t.Fatalf("the child ended by itself (%v) instead of being killed mid-pull", st)
	}
	if ingests, _ := os.ReadDir(filepath.Join(root, "ingest")); len(ingests) != 1 {
		t.Fatalf("want the stalled layer's ingest in progress at the kill, got %v", ingests)
	}
	// The two other layers were committed: the restart must collect them.
	if committed, _ := os.ReadDir(filepath.Join(root, "blobs", "sha256")); len(committed) != 2 {
		t.Fatalf("want 2 committed layer blobs at the kill, got %d", len(committed))
	}

	reg.setIntercept(nil)
	s := openStore(t, Config{Root: root})
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("half-pulled image listed: %v", ids)
	}
	if b := blobs(t, s); len(b) != 0 || layerCount(t, s) != 0 {
		t.Fatalf("after restart: blobs %v, %d layers", b, layerCount(t, s))
	}
	if ingests, _ := os.ReadDir(filepath.Join(root, "ingest")); len(ingests) != 0 {
		t.Fatalf("partial ingests left: %v", ingests)
	}
	got, err := s.Pull(t.Context(), ref, PullOptions{})
	if err != nil || got.ID != configDigest(t, img) {
		t.Fatalf("pull after restart: %v %v", got, err)
	}
}
