package runtime

import (
	"log/slog"
	"os"
)

// BERTH_TEST_DEBUG=1 logs at debug level, with the step timings of
// CreateSandbox, CreateContainer and StartContainer (go test -bench
// BenchmarkPodStart -v).
func init() {
	if os.Getenv("BERTH_TEST_DEBUG") != "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
}
