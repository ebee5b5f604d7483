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

NAME=bench-pull
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh
# No pod network here: a bridge name no one else uses, so that the cleanup
# never takes another run's bridge for its own.
CT_BRIDGE="pull$$"
[ "$(id -u)" = 0 ] || die "run as root (the daemons unpack layers with their owners)"

bash hack/install-deps.sh --no-kubelet >/dev/null
CRICTL="$REPO/_output/tools/crictl"
BIN="$REPO/bin"
if ((BERTH)); then make --no-print-directory build >/dev/null; fi

if ((VS)) && ! command -v containerd >/dev/null; then
	echo "==> installing Debian's containerd"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q containerd >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q containerd; }
fi

ct_init
# Pulls only: the daemons get an empty CNI config directory.
HOSTS_DIR="$T/certs.d" CNI_CONF="$T/net.d" CNI_BIN=/usr/lib/cni
mkdir -p "$HOSTS_DIR" "$CNI_CONF"

go build -o "$T/" ./hack/registry ./hack/testimages
ct_start "$T/registry.log" "$T/registry" --addr 127.0.0.1:0 --quiet
for _ in $(seq 100); do grep -q '^listening on' "$T/registry.log" && break; sleep 0.1; done
REG="$(awk '/^listening on/ {print $3}' "$T/registry.log")"
[ -n "$REG" ] || die "registry did not start: $(cat "$T/registry.log")"
echo "==> registry $REG: pushing berth/big ($MB MiB in $LAYERS data layers)"
"$T/testimages" --registry "$REG" --only big --big-mb "$MB" --big-layers "$LAYERS" >/dev/null
IMAGE="$REG/berth/big:latest"

mkdir -p "$HOSTS_DIR/$REG"
cat >"$HOSTS_DIR/$REG/hosts.toml" <<TOML
server = "http://$REG"

[host."http://$REG"]
  capabilities = ["pull", "resolve"]
TOML

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
	local i ms
	for i in $(seq "$N"); do
		ct_berthd "$T/berth-$i"
		ms=$(time_pull "$BERTH_SOCK")
		echo "berth      run $i: $ms ms" >&2
		echo "$ms"
		ct_stop "$BERTHD_PID"
		ct_umount_below "$T/berth-$i"
		rm -rf "$T/berth-$i"
	done
}

bench_containerd() {
	local i ms
	for i in $(seq "$N"); do
		ct_containerd "$T/containerd-$i"
		ms=$(time_pull "$CTD_SOCK")
		echo "containerd run $i: $ms ms" >&2
		echo "$ms"
		ct_stop "$CTD_PID"
		ct_umount_below "$T/containerd-$i"
		rm -rf "$T/containerd-$i"
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
