package imagestore

import (
	"testing"
)

// BenchmarkPull pulls a ~30 MB, 5-layer image from an in-process registry
// into a fresh root: download, verify, store and unpack.
func BenchmarkPull(b *testing.B) {
	reg := newRegistry(b)
	ref := reg.push(b, "bench/img:v1", randomImage(b, 6<<20, 5))
	b.SetBytes(30 << 20)
	for b.Loop() {
		b.StopTimer()
		s := openStore(b, Config{Root: b.TempDir()})
		b.StartTimer()
		if _, err := s.Pull(b.Context(), ref, PullOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
