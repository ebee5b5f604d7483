#!/usr/bin/env bash
# Build benchmark: one multi-stage Dockerfile (RUN with cache and secret
# mounts, COPY --from, a 600-file context) built cold (--no-cache) and warm
# (unchanged, all cached) by berthd (`berth build`) and by BuildKit in
# Debian's dockerd 20.10 (`DOCKER_BUILDKIT=1 /usr/bin/docker build`),
# interleaved, N runs each (default 7); it prints every run, the medians and
# the ratios berth/BuildKit (the goal: both <= 1.0).
#
#   hack/bench-build.sh [-n N] [--berth-only]
#
# Both daemons run on temp dirs under /var/tmp, pull the base image from a
# registry on 127.0.0.1, and build with --network host (dockerd runs
# without a bridge of its own here; berthd's default bridge would add its
# sandbox's setup to every build): the builders are compared, not the
# networks. The base image is pulled once before timing. Installs Debian's
# docker.io if missing. Needs root. Stops only the processes it started and
# removes its temp dir (KEEP=1 keeps it). Timings on a busy machine are
# noise: take the figures on a quiet one.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

N=7 DOCKERD=1
while (($#)); do
	case "$1" in
	-n) N="$2"; shift ;;
	--berth-only) DOCKERD=0 ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) echo "bench-build: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

NAME=bench-build
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh
CT_BRIDGE="bbuild$$" # no pod network here; a name no one else uses
[ "$(id -u)" = 0 ] || die "run as root (berthd and dockerd mount overlays)"

if ((DOCKERD)) && [ ! -x /usr/sbin/dockerd ]; then
	say "installing Debian's docker.io (dockerd 20.10 with BuildKit)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q docker.io >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q docker.io; }
fi
make --no-print-directory build >/dev/null
BIN="$REPO/bin"

ct_init
go build -o "$T/" ./hack/registry ./hack/testimages
ct_start "$T/registry.log" "$T/registry" --addr 127.0.0.1:0 --quiet
for _ in $(seq 100); do grep -q '^listening on' "$T/registry.log" && break; sleep 0.1; done
REG="$(awk '/^listening on/ {print $3}' "$T/registry.log")"
[ -n "$REG" ] || die "registry did not start: $(cat "$T/registry.log")"
"$T/testimages" --registry "$REG" --only busybox >/dev/null
BASE="$REG/berth/busybox:latest"

# The context: the Dockerfile, 600 files of 4 KiB in src/, a secret.
CTX="$T/ctx"
mkdir -p "$CTX/src"
for d in $(seq 1 20); do
	mkdir -p "$CTX/src/pkg$d"
	for f in $(seq 1 30); do head -c 4096 /dev/urandom >"$CTX/src/pkg$d/f$f.dat"; done
done
echo "bench-secret-value" >"$T/secret"
cat >"$CTX/Dockerfile" <<'EOF'
ARG BASE
FROM ${BASE} AS deps
RUN --mount=type=cache,target=/var/cache/dl mkdir -p /opt/deps && for i in $(seq 1 40); do head -c 200000 /dev/zero > /opt/deps/lib$i.so; done

FROM ${BASE} AS build
WORKDIR /src
COPY src/ ./
COPY --from=deps /opt/deps /opt/deps
RUN --mount=type=secret,id=token sha256sum /run/secrets/token > /src/token.sum && tar cf /app.tar /src /opt/deps && gzip -1 /app.tar
RUN find /src -type f | wc -l > /count

FROM ${BASE}
ENV APP_HOME=/app
WORKDIR /app
COPY --from=build /app.tar.gz /count /app/
RUN tar xzf /app/app.tar.gz -C /app && rm /app/app.tar.gz
LABEL org.opencontainers.image.title=bench
EXPOSE 8080
USER www-data
CMD ["ls", "/app"]
EOF

# berthd, with the registry as a plain-http host.
HOSTS_DIR="$T/certs.d"
mkdir -p "$HOSTS_DIR/$REG"
printf 'server = "http://%s"\n' "$REG" >"$HOSTS_DIR/$REG/hosts.toml"
B="$T/berth"
mkdir -p "$B"
# NRI off: the node's NRI socket is another runtime's business.
printf '[nri]\ndisable = true\n' >"$B/berthd.toml"
# BERTHD_FLAGS adds flags (--log-level debug: per-step timings in
# berthd.log, with KEEP=1 to read it afterwards).
# shellcheck disable=SC2086
ct_start "$B/berthd.log" "$BIN/berthd" --root "$B/root" --state "$B/run" --config "$B/berthd.toml" --registry-config-dir "$HOSTS_DIR" ${BERTHD_FLAGS:-}
ct_wait_socket "$B/run/docker.sock" "$B/berthd.log"
berth() { BERTH_HOST="unix://$B/run/docker.sock" HOME="$T" "$BIN/berth" "$@"; }
berth pull -q "$BASE" >/dev/null

if ((DOCKERD)); then
	D="$T/dockerd"
	mkdir -p "$D"
	# No bridge and no iptables: nothing on the host's network changes.
	cat >"$D/daemon.json" <<JSON
{"insecure-registries": ["127.0.0.0/8"], "bridge": "none", "iptables": false, "ip-masq": false, "features": {"buildkit": true}}
JSON
	ct_start "$D/dockerd.log" /usr/sbin/dockerd --data-root "$D/root" --exec-root "$D/exec" -H "unix://$D/docker.sock" \
		--pidfile "$D/dockerd.pid" --config-file "$D/daemon.json"
	ct_wait_socket "$D/docker.sock" "$D/dockerd.log"
	docker() { DOCKER_HOST="unix://$D/docker.sock" DOCKER_BUILDKIT=1 DOCKER_CONFIG="$T/docker-config" /usr/bin/docker "$@"; }
	docker pull -q "$BASE" >/dev/null
fi

# time_ms CMD...: milliseconds CMD took; its output goes to $T/last.log
# and a failure stops the benchmark.
time_ms() {
	local t0 t1
	t0=$(date +%s%N)
	"$@" >"$T/last.log" 2>&1 || {
		tail -n 30 "$T/last.log" >&2
		die "failed: $*"
	}
	t1=$(date +%s%N)
	echo $(((t1 - t0) / 1000000))
}

berth_build() { berth build --network host --progress plain --secret "id=token,src=$T/secret" --build-arg "BASE=$BASE" -t bench:berth "$@" "$CTX"; }
docker_build() { docker build --network host --progress plain --secret "id=token,src=$T/secret" --build-arg "BASE=$BASE" -t bench:buildkit "$@" "$CTX"; }

# Prime both (not timed): the first build of each pays one-time costs.
time_ms berth_build >/dev/null
((DOCKERD)) && time_ms docker_build >/dev/null

declare -a BC BW DC DW
say "$N rounds: berth cold, BuildKit cold, berth warm, BuildKit warm (ms)"
for i in $(seq "$N"); do
	BC+=("$(time_ms berth_build --no-cache)")
	grep -q CACHED "$T/last.log" && die "berth --no-cache used the cache"
	if ((DOCKERD)); then DC+=("$(time_ms docker_build --no-cache)"); fi
	BW+=("$(time_ms berth_build)")
	[ "$(grep -c ' CACHED' "$T/last.log")" -ge 10 ] || die "berth warm build was not all cached: $(cat "$T/last.log")"
	if ((DOCKERD)); then
		DW+=("$(time_ms docker_build)")
		grep -q CACHED "$T/last.log" || die "BuildKit warm build was not cached"
	fi
	printf '  run %d: berth cold %6s  warm %6s' "$i" "${BC[-1]}" "${BW[-1]}"
	((DOCKERD)) && printf '   BuildKit cold %6s  warm %6s' "${DC[-1]}" "${DW[-1]}"
	echo
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
bc=$(median "${BC[@]}") bw=$(median "${BW[@]}")
echo "berth    cold ${bc} ms  warm ${bw} ms (median of $N)"
if ((DOCKERD)); then
	dc=$(median "${DC[@]}") dw=$(median "${DW[@]}")
	echo "BuildKit cold ${dc} ms  warm ${dw} ms (median of $N)"
	awk -v bc="$bc" -v dc="$dc" -v bw="$bw" -v dw="$dw" 'BEGIN {printf "ratio berth/BuildKit: cold %.2f  warm %.2f\n", bc / dc, bw / dw}'
fi
