package network

import (
	"sort"
	"testing"
	"time"
)

// TestRootAttachTime logs how long Attach and Detach of a container on a
// user network take (the network's share of `docker run`), over 10 runs.
func TestRootAttachTime(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	n, err := e.m.Create(ctx, CreateOptions{Name: "time-" + e.tag})
	if err != nil {
		t.Fatal(err)
	}
	id := ctrID()
	if err := e.m.Register(ctx, Container{ID: id, Name: "timed", Mode: n.Name}); err != nil {
		t.Fatal(err)
	}
	ns := e.netns("timed")
	var att, det []time.Duration
	for range 10 {
		t0 := time.Now()
		if _, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: ns}); err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if err := e.m.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
		att, det = append(att, t1.Sub(t0)), append(det, time.Since(t1))
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	t.Logf("user network: Attach median %v, Detach median %v (10 runs)", med(att), med(det))
}
