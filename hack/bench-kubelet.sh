#!/usr/bin/env bash
# `make bench-kubelet`: how long a real kubelet takes from a static pod's
# manifest being written to the pod being Ready, on berthd and on Debian's
# containerd 1.6 (installed if missing), with and without the EventedPLEG
# feature gate.
#
#   hack/bench-kubelet.sh [--runs N] [--berth-only | --containerd-only]
#
# The kubelet is the one `make deps` builds (_output/tools/kubelet,
# v1.37.2), run standalone (static pods, cgroupfs, anonymous API on free
# 127.0.0.1 ports, its own cgroup root) against each runtime in turn, on
# temp dirs, with the same local registry, image mirrors, CNI plugins and
# conflist (a bridge of this run's own). The pod is one busybox container
# (no probes, image already pulled; containerd's pause image too), a new
# name each time. Each measurement writes the manifest and polls the
# kubelet's /pods every 20 ms until the pod's Ready condition is True,
# then removes the manifest and waits for the pod and its sandbox to go.
# One warm-up pod first, then N (default 10) measured; prints the median,
# min and max per runtime and mode, and the ratios berth/containerd.
#
# containerd 1.6 has no GetContainerEvents: with EventedPLEG the kubelet
# gives up on its event stream after 5 tries and relies on relisting, as
# without the gate. Raw figures and logs: _output/bench-kubelet/. KEEP=1
# keeps the temp dir. Needs root. Stops only what it started, removes its
# temp dir, bridge, cgroups and the kubelet's iptables chains, and restores
# the kernel settings the kubelet changes.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-kubelet
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh
CT_BRIDGE="${BENCH_BRIDGE:-bkube$$}"
CT_SUBNET="${BENCH_SUBNET:-10.246.$(($$ % 250 + 1)).0/24}"

RUNS=10 RUNTIMES=(berth containerd)
while (($#)); do
	case "$1" in
	--runs) RUNS="$2"; shift ;;
	--berth-only) RUNTIMES=(berth) ;;
	--containerd-only) RUNTIMES=(containerd) ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) echo "bench-kubelet: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (the runtimes mount, create namespaces and cgroups)"
KUBELET="$REPO/_output/tools/kubelet"
if [ ! -x "$KUBELET" ]; then
	say "building the kubelet (hack/install-deps.sh)"
	bash hack/install-deps.sh >/dev/null
fi
if [[ " ${RUNTIMES[*]} " == *" containerd "* ]] && ! command -v containerd >/dev/null; then
	say "installing Debian's containerd (and runc)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q containerd >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q containerd; }
fi

ct_init
# The kubelet's side effects, undone after ct_cleanup.
KUBE_CHAINS_BEFORE="$(iptables-save 2>/dev/null | grep -c '^:KUBE-' || true)"
SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
declare -A SYSCTL_BEFORE
for s in "${SYSCTLS[@]}"; do SYSCTL_BEFORE[$s]="$(cat "/proc/sys/$s")"; done
CGROOT="/bkube-$$"
KUBELET_PID=""

kubelet_stop() {
	[ -n "$KUBELET_PID" ] || return 0
	kill -TERM "$KUBELET_PID" 2>/dev/null || true
	# Without systemd the kubelet has nothing to do on the way out, and it
	# often lingers after SIGTERM.
	for _ in $(seq 30); do ct_alive "$KUBELET_PID" || break; sleep 0.1; done
	kill -KILL "$KUBELET_PID" 2>/dev/null || true
	KUBELET_PID=""
}

bench_cleanup() {
	set +e
	kubelet_stop
	ct_cleanup
	local h d
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[ -d "$h$CGROOT" ] || continue
		find "$h$CGROOT" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	for s in "${SYSCTLS[@]}"; do echo "${SYSCTL_BEFORE[$s]}" >"/proc/sys/$s"; done
	# The kubelet's canary and firewall chains, if it added them.
	if [ "$KUBE_CHAINS_BEFORE" = 0 ]; then
		local ipt t c
		for ipt in iptables ip6tables; do
			$ipt -D INPUT -j KUBE-FIREWALL 2>/dev/null
			$ipt -D OUTPUT -j KUBE-FIREWALL 2>/dev/null
			for t in filter nat mangle; do
				for c in $($ipt-save -t $t 2>/dev/null | sed -n 's/^:\(KUBE-[A-Z-]*\) .*/\1/p'); do
					$ipt -t $t -F "$c" 2>/dev/null
					$ipt -t $t -X "$c" 2>/dev/null
				done
			done
		done
	fi
}
trap bench_cleanup EXIT

ct_tools
ct_cni_conf
ct_registry
IMAGE="$(awk '/defaultTestContainerImage/ {print $2}' "$IMAGES_FILE")"
PAUSE="registry.k8s.io/pause:3.6"

OUT="$REPO/_output/bench-kubelet"
rm -rf "$OUT"
mkdir -p "$OUT"

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# kubelet_start RUNTIME SOCK EVENTED: a kubelet on SOCK, EventedPLEG on or
# off; KDIR its directory, RO its read-only port.
kubelet_start() {
	local rt="$1" sock="$2" evented="$3" h
	KDIR="$T/kubelet-$rt-$evented"
	mkdir -p "$KDIR/manifests" "$KDIR/pods" "$KDIR/root"
	for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		[ -e "${h}cgroup.procs" ] && mkdir -p "$h$CGROOT"
	done
	RO="$(free_port)"
	local hz
	hz="$(free_port)"
	cat >"$KDIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: $CGROOT
containerRuntimeEndpoint: unix://$sock
staticPodPath: $KDIR/manifests
podLogsDir: $KDIR/pods
failSwapOn: false
failCgroupV1: false
address: 127.0.0.1
port: $(free_port)
readOnlyPort: $RO
healthzBindAddress: 127.0.0.1
healthzPort: $hz
syncFrequency: 10s
fileCheckFrequency: 20s
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
featureGates: {EventedPLEG: $evented}
YAML
	ct_start "$KDIR/kubelet.log" "$KUBELET" --config "$KDIR/kubelet.yaml" --root-dir "$KDIR/root" --hostname-override bench-node -v=2
	KUBELET_PID=$LAST_PID
	for _ in $(seq 600); do
		curl -sf "http://127.0.0.1:$hz/healthz" >/dev/null 2>&1 && return 0
		ct_alive "$KUBELET_PID" || { tail -n 30 "$KDIR/kubelet.log" >&2; die "kubelet exited (log $KDIR/kubelet.log)"; }
		sleep 0.1
	done
	die "kubelet healthz did not answer within 60 s (log $KDIR/kubelet.log)"
}

# pod_ready NAME: writes NAME's manifest and prints the milliseconds until
# the kubelet reports it Ready; then removes it and waits for it to go.
pod_ready() {
	local name="$1" t0 t1
	cat >"$KDIR/$name.tmp" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: default}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: $IMAGE
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
YAML
	t0="$(date +%s%N)"
	mv "$KDIR/$name.tmp" "$KDIR/manifests/$name.yaml"
	local ready=0
	for _ in $(seq 3000); do
		if curl -sf "http://127.0.0.1:$RO/pods" | jq -e --arg n "$name-bench-node" \
			'.items[] | select(.metadata.name == $n) | .status.conditions[]? | select(.type == "Ready" and .status == "True")' >/dev/null 2>&1; then
			ready=1
			break
		fi
		sleep 0.02
	done
	t1="$(date +%s%N)"
	((ready)) || die "pod $name not Ready within 60 s (kubelet log $KDIR/kubelet.log)"
	echo $(((t1 - t0) / 1000000))
	rm -f "$KDIR/manifests/$name.yaml"
	for _ in $(seq 600); do
		curl -sf "http://127.0.0.1:$RO/pods" | jq -e --arg n "$name-bench-node" '.items[] | select(.metadata.name == $n)' >/dev/null 2>&1 || break
		sleep 0.1
	done
	# The kubelet's GC would remove the stopped sandbox within a minute.
	crictl rmp -fa >/dev/null 2>&1 || true
}

crictl() { "$CRICTL" --config "$T/crictl.yaml" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 120s "$@"; }

stats() { # "median min max" of the numbers on stdin
	sort -n | awk '{v[NR] = $1} END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%d %d %d\n", m, v[1], v[NR] }'
}

declare -A MEDIAN
for rt in "${RUNTIMES[@]}"; do
	case "$rt" in
	berth)
		say "starting berthd"
		ct_berthd "$T/berth"
		SOCK="$BERTH_SOCK" DAEMON_PID="$BERTHD_PID"
		;;
	containerd)
		say "starting $(containerd --version | awk '{print $1, $3}')"
		ct_containerd "$T/ctd"
		SOCK="$CTD_SOCK" DAEMON_PID="$CTD_PID"
		crictl pull "$PAUSE" >/dev/null
		;;
	esac
	crictl pull "$IMAGE" >/dev/null
	for evented in false true; do
		mode=generic
		[ "$evented" = true ] && mode=evented
		say "$rt, EventedPLEG=$evented: 1 warm-up pod, then $RUNS"
		kubelet_start "$rt" "$SOCK" "$evented"
		pod_ready "warm" >/dev/null
		: >"$OUT/$rt-$mode.ms"
		for i in $(seq "$RUNS"); do
			pod_ready "p$i" >>"$OUT/$rt-$mode.ms"
		done
		read -r med min max < <(stats <"$OUT/$rt-$mode.ms")
		MEDIAN[$rt-$mode]=$med
		echo "    manifest -> Ready: median $med ms (min $min, max $max; $OUT/$rt-$mode.ms)"
		kubelet_stop
		cp "$KDIR/kubelet.log" "$OUT/kubelet-$rt-$mode.log"
		if [ "$rt" = containerd ] && [ "$evented" = true ] && grep -q 'disabling container-termination fast path' "$KDIR/kubelet.log"; then
			echo "    (the kubelet gave up on containerd's event stream: GetContainerEvents is not implemented in 1.6)"
		fi
	done
	ct_remove_pods "$SOCK"
	ct_stop "$DAEMON_PID"
done

echo
printf '%-22s %12s %12s %8s\n' "manifest -> Ready (ms)" berth containerd ratio
for mode in generic evented; do
	b="${MEDIAN[berth-$mode]:-n/a}" c="${MEDIAN[containerd-$mode]:-n/a}" r=n/a
	if [[ $b =~ ^[0-9]+$ && $c =~ ^[0-9]+$ ]] && ((c > 0)); then
		r="$(awk -v b="$b" -v c="$c" 'BEGIN {printf "%.2f", b / c}')"
	fi
	label="EventedPLEG off"
	[ "$mode" = evented ] && label="EventedPLEG on"
	printf '%-22s %12s %12s %8s\n' "$label" "$b" "$c" "$r"
done
