#!/usr/bin/env bash
# Pull benchmark: how long berthd takes to pull and unpack a multi-layer
# image from a registry on 127.0.0.1, through the CRI (`crictl pull`).
#
#   hack/bench-pull.sh [-n N] [--mb MiB] [--layers L] [--vs-containerd | --containerd-only]
#
# Each of the N runs (default 5) starts a daemon on a fresh root, so nothing
# is cached, and times one `crictl pull` of <registry>/berth/big:latest (the
# busybox layer plus L data layers holding MiB of random data; default 64 MiB
# in 8 layers). It prints every run and the median. With --vs-containerd it
# installs Debian's containerd package if missing, does the same with
# containerd's CRI plugin (same registry, same hosts.toml directory) and
# prints both medians and the ratio berth/containerd.
#
# Needs root. Stops only the processes it started and removes its temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

N=5 MB=64 LAYERS=8 VS=0 BERTH=1
while (($#)); do
	case "$1" in
	-n) N="$2"; shift ;;
	--mb) MB="$2"; shift ;;
	--layers) LAYERS="$2"; shift ;;
	--vs-containerd) VS=1 ;;
	--containerd-only) VS=1 BERTH=0 ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) echo "bench-pull: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

die() { echo "bench-pull: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (the daemons unpack layers with their owners)"

bash hack/install-deps.sh >/dev/null
CRICTL="$REPO/_output/tools/crictl"
if ((BERTH)); then make --no-print-directory build >/dev/null; fi

if ((VS)) && ! command -v containerd >/dev/null; then
	echo "==> installing Debian's containerd"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q containerd >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q containerd; }
fi

T="$(mktemp -d /var/tmp/berth-bench.XXXXXX)"
PIDFILE="$T/pids" # PIDs this script started (also from subshells)

# alive PID: running and not a zombie waiting for PID 1 to reap it.
alive() {
	local s
	s="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
	[ -n "$s" ] && [ "$s" != Z ]
}

stop() { # stop PID: TERM, then KILL after 10 s
	local pid="$1"
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do alive "$pid" || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}

# umount_below DIR: unmount whatever is mounted below DIR, deepest first.
umount_below() {
	findmnt -rn -o TARGET | { grep "^$1/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
}

cleanup() {
	set +e # clean up as much as possible
	local pid
	if [ -f "$PIDFILE" ]; then
		while read -r pid; do stop "$pid"; done <"$PIDFILE"
	fi
	umount_below "$T"
	rm -rf "$T"
}
trap cleanup EXIT

# start LOG CMD...: run CMD in the background; its PID goes to LAST_PID
# and to PIDFILE.
start() {
	local log="$1"
	shift
	setsid "$@" >"$log" 2>&1 </dev/null &
	LAST_PID=$!
	echo "$LAST_PID" >>"$PIDFILE"
}

wait_socket() { # wait_socket PATH LOG
	for _ in $(seq 300); do
		[ -S "$1" ] && return 0
		alive "$LAST_PID" || { tail -n 30 "$2" >&2; die "daemon exited; log above"; }
		sleep 0.1
	done
	die "timed out waiting for $1"
}

go build -o "$T/" ./hack/registry ./hack/testimages
start "$T/registry.log" "$T/registry" --addr 127.0.0.1:0 --quiet
for _ in $(seq 100); do grep -q '^listening on' "$T/registry.log" && break; sleep 0.1; done
REG="$(awk '/^listening on/ {print $3}' "$T/registry.log")"
[ -n "$REG" ] || die "registry did not start: $(cat "$T/registry.log")"
echo "==> registry $REG: pushing berth/big ($MB MiB in $LAYERS data layers)"
"$T/testimages" --registry "$REG" --only big --big-mb "$MB" --big-layers "$LAYERS" >/dev/null
IMAGE="$REG/berth/big:latest"

mkdir -p "$T/certs.d/$REG"
cat >"$T/certs.d/$REG/hosts.toml" <<TOML
server = "http://$REG"

[host."http://$REG"]
  capabilities = ["pull", "resolve"]
TOML

# An empty crictl config: neither /etc/crictl.yaml nor a warning about it.
: >"$T/crictl.yaml"
crictl() { "$CRICTL" --config "$T/crictl.yaml" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" "$@"; }

# time_pull SOCKET: milliseconds of one crictl pull; the image must then be
# listed with all its layers' worth of size, or the run does not count.
time_pull() {
	local t0 t1
	SOCK="$1"
	t0=$(date +%s%N)
	crictl --timeout 10m pull "$IMAGE" >/dev/null
	t1=$(date +%s%N)
	crictl inspecti -o go-template --template '{{.status.size}}' "$IMAGE" >"$T/size" ||
		die "$IMAGE not found after the pull"
	if [ "$(cat "$T/size")" -lt $((MB << 20)) ]; then
		die "$IMAGE reports size $(cat "$T/size"), less than $MB MiB"
	fi
	echo $(((t1 - t0) / 1000000))
}

median() { sort -n | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }

bench_berth() {
	local i d ms
	for i in $(seq "$N"); do
		d="$T/berth-$i"
		mkdir -p "$d"
		: >"$d/berthd.toml"
		start "$d/berthd.log" "$REPO/bin/berthd" --root "$d/root" --state "$d/run" \
			--config "$d/berthd.toml" --registry-config-dir "$T/certs.d"
		wait_socket "$d/run/berth.sock" "$d/berthd.log"
		ms=$(time_pull "$d/run/berth.sock")
		echo "berth      run $i: $ms ms" >&2
		echo "$ms"
		stop "$LAST_PID"
		rm -rf "$d"
	done
}

bench_containerd() {
	local i d ms
	for i in $(seq "$N"); do
		d="$T/containerd-$i"
		mkdir -p "$d/cni"
		# Only the CRI image service matters here; containerd 1.6 config v2.
		cat >"$d/config.toml" <<TOML
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "$d/containerd.sock"

[ttrpc]
  address = "$d/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REG/berth/busybox:latest"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$d/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$T/certs.d"
TOML
		start "$d/containerd.log" containerd --config "$d/config.toml"
		wait_socket "$d/containerd.sock" "$d/containerd.log"
		ms=$(time_pull "$d/containerd.sock")
		echo "containerd run $i: $ms ms" >&2
		echo "$ms"
		stop "$LAST_PID"
		umount_below "$d"
		rm -rf "$d"
	done
}

if ((BERTH)); then
	echo "==> berth: $N pulls of $IMAGE, fresh root each"
	berth_ms="$(bench_berth | median)"
	echo "berth median: $berth_ms ms"
fi
if ((VS)); then
	echo "==> containerd $(containerd --version | awk '{print $3}'): $N pulls, fresh root each"
	ctd_ms="$(bench_containerd | median)"
	echo "containerd median: $ctd_ms ms"
	((BERTH)) && awk -v b="$berth_ms" -v c="$ctd_ms" 'BEGIN {printf "ratio berth/containerd: %.2f (target <= 0.70)\n", b / c}'
fi
