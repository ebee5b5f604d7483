package logs

import (
	"net"
	"testing"
	"time"
)

// The endpoints the drivers send to are internal/logtest's.

// freeAddr is a 127.0.0.1 port nobody listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func receive[T any](t *testing.T, ch <-chan T, n int, within time.Duration) []T {
	t.Helper()
	var out []T
	deadline := time.After(within)
	for len(out) < n {
		select {
		case v := <-ch:
			out = append(out, v)
		case <-deadline:
			t.Fatalf("received %d of %d within %v", len(out), n, within)
		}
	}
	return out
}

// nothingMore checks that no more arrives for a while.
func nothingMore[T any](t *testing.T, ch <-chan T, d time.Duration) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected extra message %+v", v)
	case <-time.After(d):
	}
}
