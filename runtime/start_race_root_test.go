package runtime_test

import (
	"context"
	"fmt"
	"os/exec"
	goruntime "runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// TestStartInstantExitUnderLoad: a container whose process exits at once
// (a build's RUN true) starts fine on a starved CPU. The shim used to
// report "init exited before it was started" when the init's exit was
// seen before its own opener of the exec fifo was scheduled again, though
// the process had run. Several creations and starts at once, with busy
// loops taking the CPUs, for a few seconds.
func TestStartInstantExitUnderLoad(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	events := m.Subscribe(t.Context())
	var burners []*exec.Cmd
	for range 2 * goruntime.NumCPU() {
		b := exec.Command("sh", "-c", "while :; do :; done")
		// Gone with the test, even one that dies.
		b.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		burners = append(burners, b)
	}
	defer func() {
		for _, b := range burners {
			b.Process.Kill()
			b.Wait()
		}
	}()
	exits := map[string]chan int32{}
	var mu sync.Mutex
	go func() {
		for e := range events {
			if e.Type != berthruntime.EventStopped {
				continue
			}
			mu.Lock()
			ch := exits[e.ContainerID]
			mu.Unlock()
			if ch != nil {
				if c, err := m.Container(e.ContainerID); err == nil {
					ch <- c.ExitCode
				}
			}
		}
	}()
	const workers, rounds = 4, 25
	errs := make(chan error, workers*rounds)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				c, err := m.CreateContainer(ctx, berthruntime.ContainerConfig{
					Name: fmt.Sprintf("instant-%d-%d", w, i), Rootfs: overlay(t),
					Spec: spec.Container{Args: []string{"true"}},
				})
				if err != nil {
					cancel()
					errs <- fmt.Errorf("create: %w", err)
					return
				}
				ch := make(chan int32, 1)
				mu.Lock()
				exits[c.ID] = ch
				mu.Unlock()
				if err := m.StartContainer(ctx, c.ID); err != nil {
					errs <- fmt.Errorf("round %d.%d: start: %w", w, i, err)
				} else {
					select {
					case code := <-ch:
						if code != 0 {
							errs <- fmt.Errorf("round %d.%d: exit code %d", w, i, code)
						}
					case <-ctx.Done():
						errs <- fmt.Errorf("round %d.%d: no exit", w, i)
					}
				}
				if err := m.RemoveContainer(ctx, c.ID); err != nil {
					errs <- fmt.Errorf("remove: %w", err)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		n++
		t.Error(err)
	}
	if n > 0 {
		t.Errorf("%d of %d starts failed", n, workers*rounds)
	}
}
