#!/usr/bin/env bash
# `make up`: set up this machine and start Berth with a local registry.
#
# As root on Debian 12: installs dependencies, builds, starts a registry on
# 127.0.0.1:5000 (blobs under _output/registry) with the test images, writes
# a hosts.toml for it and a CNI conflist (bridge berthup0, 10.89.0.0/24),
# starts bin/berthd on _output/root and _output/run (NRI plugins connect to
# _output/run/nri.sock), pulls berth/busybox
# through it, lists the images, and runs a first pod with a busybox httpd
# container through the CRI (crictl), then fetches its page. Then the
# standalone half: `berth build` makes berth/hello from hack/hello, and
# `berth run -d -p` starts a first container from it, whose page it fetches
# too. Everything it starts is recorded in _output/pids and stopped by
# `make down` (hack/down.sh), which removes the container and the pod first.
#
# Environment: BERTH_REGISTRY (default 127.0.0.1:5000), BIG_MB (64),
# BIG_LAYERS (8).
set -euo pipefail
cd "$(dirname "$0")/.."

REPO="$PWD"
OUT="$REPO/_output"
REG="${BERTH_REGISTRY:-127.0.0.1:5000}"
PIDS="$OUT/pids"

case "${1:-}" in
"") ;;
-h | --help)
	awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"
	exit 0
	;;
*)
	echo "up: unknown argument $1 (see --help)" >&2
	exit 2
	;;
esac

say() { echo "==> $*"; }
die() {
	echo "up: $*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "run as root (berthd unpacks layers with their owners and mounts overlays)"

say "installing dependencies (hack/install-deps.sh --no-kubelet)"
bash hack/install-deps.sh --no-kubelet

# A second `make up` restarts what the first one started.
if compgen -G "$PIDS/*.pid" >/dev/null; then
	say "stopping the previous make up (hack/down.sh)"
	bash hack/down.sh
fi

say "building (make build)"
make --no-print-directory build
mkdir -p "$OUT/hack" "$PIDS"
go build -o "$OUT/hack/" ./hack/registry ./hack/testimages

# start NAME LOG CMD...: run CMD in the background in its own session (so
# closing the terminal does not stop it), record its PID.
start() {
	local name="$1" log="$2"
	shift 2
	setsid "$@" >"$log" 2>&1 </dev/null &
	echo $! >"$PIDS/$name.pid"
}

# wait_for WHAT NAME TEST...: poll TEST for up to 30 s while NAME runs.
wait_for() {
	local what="$1" name="$2"
	shift 2
	local pid
	pid="$(cat "$PIDS/$name.pid")"
	for _ in $(seq 300); do
		if "$@"; then return 0; fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "up: $name exited before $what; its log:" >&2
			tail -n 30 "$OUT/$name.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	die "timed out waiting for $what (log: $OUT/$name.log)"
}

say "starting the registry on $REG (blobs in _output/registry)"
start registry "$OUT/registry.log" "$OUT/hack/registry" --addr "$REG" --dir "$OUT/registry" --quiet
wait_for "the registry to listen" registry grep -q '^listening on' "$OUT/registry.log"

say "pushing the test images"
"$OUT/hack/testimages" --registry "$REG" --big-mb "${BIG_MB:-64}" --big-layers "${BIG_LAYERS:-8}"

# containerd's hosts.toml convention: one directory per registry host.
mkdir -p "$OUT/certs.d/$REG"
cat >"$OUT/certs.d/$REG/hosts.toml" <<TOML
# Written by hack/up.sh: the local test registry speaks plain http.
server = "http://$REG"

[host."http://$REG"]
  capabilities = ["pull", "resolve", "push"]
TOML

# An explicit (empty) config file, so that a /etc/berth/config.toml on this
# machine does not change what `make up` starts.
[ -f "$OUT/berthd.toml" ] || cat >"$OUT/berthd.toml" <<'TOML'
# berthd configuration for `make up`; berthd's flags override it.
TOML

say "writing the CNI conflist (bridge berthup0, 10.89.0.0/24) to _output/cni/net.d"
BERTH_CNI_BRIDGE=berthup0 BERTH_CNI_NAME=berth-up BERTH_CNI_DATA_DIR="$OUT/cni/networks" \
	bash hack/cni-conf.sh "$OUT/cni/net.d" 10.89.0.0/24

say "starting berthd (log: _output/berthd.log)"
start berthd "$OUT/berthd.log" "$REPO/bin/berthd" \
	--root "$OUT/root" --state "$OUT/run" --config "$OUT/berthd.toml" \
	--registry-config-dir "$OUT/certs.d" \
	--cni-conf-dir "$OUT/cni/net.d" --cni-bin-dir "$OUT/cni/bin" \
	--nri-socket "$OUT/run/nri.sock"
wait_for "berthd's sockets" berthd test -S "$OUT/run/docker.sock" -a -S "$OUT/run/berth.sock"

export BERTH_HOST="unix://$OUT/run/docker.sock"
say "berth pull $REG/berth/busybox:latest"
"$REPO/bin/berth" pull "$REG/berth/busybox:latest"
say "berth images"
"$REPO/bin/berth" images

# The first container: a pod with busybox httpd, through the CRI as the
# kubelet would run it.
cat >"$OUT/crictl.yaml" <<YAML
runtime-endpoint: unix://$OUT/run/berth.sock
image-endpoint: unix://$OUT/run/berth.sock
timeout: 60
YAML
CRICTL=("$OUT/tools/crictl" --config "$OUT/crictl.yaml")
mkdir -p "$OUT/first"
cat >"$OUT/first/pod.json" <<JSON
{"metadata": {"name": "first", "namespace": "default", "uid": "berth-up-first"},
 "hostname": "first", "log_directory": "$OUT/first/logs",
 "port_mappings": [{"container_port": 8080, "host_port": 18080, "host_ip": "127.0.0.1"}]}
JSON
cat >"$OUT/first/container.json" <<JSON
{"metadata": {"name": "web"}, "image": {"image": "$REG/berth/busybox:latest"},
 "command": ["sh", "-c", "mkdir -p /www && echo 'hello from berth' >/www/index.html && echo serving on :8080 && exec httpd -f -v -p 8080 -h /www"],
 "log_path": "web.log"}
JSON
say "crictl runp / create / start: the first pod and container"
POD="$("${CRICTL[@]}" runp "$OUT/first/pod.json")"
CTR="$("${CRICTL[@]}" create "$POD" "$OUT/first/container.json" "$OUT/first/pod.json")"
"${CRICTL[@]}" start "$CTR" >/dev/null
echo "$POD" >"$OUT/first/pod.id"
"${CRICTL[@]}" ps
POD_IP="$("${CRICTL[@]}" inspectp -o go-template --template '{{.status.network.ip}}' "$POD")"
# http_get PORT: the body of GET / on 127.0.0.1:PORT, with bash alone (the
# static busybox's wget crashes in glibc's static resolver).
http_get() {
	local reply
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
	reply="$(timeout 5 cat <&3)"
	exec 3>&-
	[[ $reply == "HTTP/1."?" 200"* ]] || return 1
	printf '%s' "${reply#*$'\r\n\r\n'}"
}
PAGE=""
for _ in $(seq 50); do
	if PAGE="$(http_get 18080 2>/dev/null)"; then break; fi
	sleep 0.1
done
say "GET http://127.0.0.1:18080/ (host port -> pod $POD_IP:8080): ${PAGE:-no answer}"
[ -n "${PAGE:-}" ] || die "the first container did not answer on 127.0.0.1:18080 (log: $OUT/first/logs/web.log)"

# The standalone half, in docker's words: build an image, run a container
# from it with a published port.
BERTH=("$REPO/bin/berth")
say "berth build -t berth/hello hack/hello"
"${BERTH[@]}" build --progress plain --build-arg "BASE=$REG/berth/busybox:latest" -t berth/hello:latest hack/hello
say "berth run -d --name hello -p 127.0.0.1:18081:8080 berth/hello"
"${BERTH[@]}" run -d --name hello --restart unless-stopped -p 127.0.0.1:18081:8080 berth/hello:latest >/dev/null
"${BERTH[@]}" ps
HELLO=""
for _ in $(seq 50); do
	if HELLO="$(http_get 18081 2>/dev/null)"; then break; fi
	sleep 0.1
done
say "GET http://127.0.0.1:18081/ (host port -> container hello:8080): ${HELLO:-no answer}"
[ -n "${HELLO:-}" ] || die "the first standalone container did not answer on 127.0.0.1:18081 (berth logs hello)"

cat <<MSG

Berth is up.
  berthd         pid $(cat "$PIDS/berthd.pid"), log _output/berthd.log, root _output/root
  registry       http://$REG (pid $(cat "$PIDS/registry.pid")): berth/{busybox,whiteouts,nonroot,big}:latest

  first pod      $POD (ip $POD_IP), container web: http://127.0.0.1:18080/
  hello          a standalone container built from hack/hello: http://127.0.0.1:18081/

Use it as docker:
  export BERTH_HOST=unix://$OUT/run/docker.sock
  bin/berth ps
  bin/berth logs -f hello
  bin/berth exec -it hello sh
  bin/berth run --rm -it $REG/berth/busybox sh
  DOCKER_HOST=unix://$OUT/run/docker.sock docker ps

Use it as the kubelet does:
  _output/tools/crictl --config _output/crictl.yaml ps
  _output/tools/crictl --config _output/crictl.yaml logs $CTR
  _output/tools/crictl --config _output/crictl.yaml exec -it $CTR sh

  bin/berth images
  bin/berth pull $REG/berth/nonroot:latest

  _output/tools/crictl --config _output/crictl.yaml images
  _output/tools/crictl --config _output/crictl.yaml pull $REG/berth/whiteouts:latest

  DOCKER_HOST=unix://$OUT/run/docker.sock docker images

Stop it:   make down
MSG
