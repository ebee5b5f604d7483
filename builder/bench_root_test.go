package builder

import (
	"crypto/rand"
	"fmt"
	"testing"
)

// BenchmarkBuild builds hack/bench-build.sh's Dockerfile (stages, cache and
// secret mounts, a 600-file context) cold (no cache) and warm, in-process,
// so that -cpuprofile shows berthd's side of a build (the RUN processes
// run in their own).
func BenchmarkBuild(b *testing.B) {
	e := newEnv(b)
	files := map[string]string{"Dockerfile": fmt.Sprintf(`FROM %[1]s AS deps
RUN --mount=type=cache,target=/var/cache/dl mkdir -p /opt/deps && for i in $(seq 1 40); do head -c 200000 /dev/zero > /opt/deps/lib$i.so; done

FROM %[1]s AS build
WORKDIR /src
COPY src/ ./
COPY --from=deps /opt/deps /opt/deps
RUN --mount=type=secret,id=token sha256sum /run/secrets/token > /src/token.sum && tar cf /app.tar /src /opt/deps && gzip -1 /app.tar
RUN find /src -type f | wc -l > /count

FROM %[1]s
ENV APP_HOME=/app
WORKDIR /app
COPY --from=build /app.tar.gz /count /app/
RUN tar xzf /app/app.tar.gz -C /app && rm /app/app.tar.gz
LABEL org.opencontainers.image.title=bench
EXPOSE 8080
USER www-data
CMD ["ls", "/app"]
`, e.busybox)}
	for d := 1; d <= 20; d++ {
		for f := 1; f <= 30; f++ {
			buf := make([]byte, 4096)
			rand.Read(buf)
			files[fmt.Sprintf("src/pkg%d/f%d.dat", d, f)] = string(buf)
		}
	}
	secrets := map[string][]byte{"token": []byte("bench")}
	for _, mode := range []struct {
		name    string
		noCache bool
	}{{"cold", true}, {"warm", false}} {
		b.Run(mode.name, func(b *testing.B) {
			e.mustBuild(files, Options{Secrets: secrets})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e.mustBuild(files, Options{NoCache: mode.noCache, Secrets: secrets})
			}
		})
	}
}
