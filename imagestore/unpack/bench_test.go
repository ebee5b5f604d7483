package unpack

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func benchApply(b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	base := b.TempDir()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(base, fmt.Sprint(i))
		if err := os.Mkdir(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if _, err := Apply(b.Context(), dir, bytes.NewReader(data), Options{NoChown: os.Geteuid() != 0}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}

// BenchmarkApplySmallFiles: 5000 files of 1 KiB in 50 directories, the shape
// of a distribution base layer.
func BenchmarkApplySmallFiles(b *testing.B) {
	var ents []ent
	body := strings.Repeat("x", 1024)
	for d := range 50 {
		ents = append(ents, dir(fmt.Sprintf("d%d/", d)))
		for f := range 100 {
			ents = append(ents, file(fmt.Sprintf("d%d/f%d", d, f), body))
		}
	}
	benchApply(b, buildTar(b, ents...))
}

// BenchmarkApplyLargeFiles: 4 files of 16 MiB.
func BenchmarkApplyLargeFiles(b *testing.B) {
	body := strings.Repeat("0123456789abcdef", 1<<20)
	var ents []ent
	for f := range 4 {
		ents = append(ents, file(fmt.Sprintf("big%d", f), body))
	}
	benchApply(b, buildTar(b, ents...))
}
