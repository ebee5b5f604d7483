#!/usr/bin/env bash
# `make bench`: `critest -benchmark` against berthd and, in the same run,
# against Debian's containerd (installed if missing), then per-pod shim memory.
#
#   hack/bench-cri.sh [--pods N] [--containers N] [--images N] [--rss-pods N]
#                     [--berth-only | --containerd-only]
#
# Both daemons run one after the other on temp roots with the same stand-in
# images (a local registry mirrored through the same hosts.toml directory),
# the same CNI plugins (_output/cni/bin) and conflist (bridge critest0), and
# the same benchmark parameters (default: 50 pods, 50 containers, 20 image
# pulls, all sequential). containerd's sandbox image is the local pause:3.6.
#
# Prints per-operation medians for both and the ratios berth/containerd:
# RunPodSandbox, PodSandboxStatus, StopPodSandbox, RemovePodSandbox,
# CreateContainer, StartContainer, ContainerStatus, StopContainer,
# RemoveContainer, PullImage, ImageStatus, RemoveImage, ListImages; then runs
# --rss-pods pods (default 10) with one `sleep` container each and sums the
# VmRSS of the runtime's shims (berth-shim vs containerd-shim-runc-v2) and of
# the daemon, and the shims' PSS and private memory per pod (smaps_rollup). A runtime that fails an operation shows "n/a" there.
# Raw data: _output/bench-cri/<runtime>/. KEEP=1 keeps the temp dir.
# Needs root. Stops only what it started, removes its temp dir and bridge.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-cri
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh
# Its own bridge and subnet (not critest0): a critest or another bench run
# may be going on at the same time on this machine.
CT_BRIDGE="${BENCH_BRIDGE:-bench$$}"
CT_SUBNET="${BENCH_SUBNET:-10.245.$(($$ % 250 + 1)).0/24}"

PODS=50 CONTAINERS=50 IMAGES=20 RSS_PODS=10 RUNTIMES=(berth containerd)
while (($#)); do
	case "$1" in
	--pods) PODS="$2"; shift ;;
	--containers) CONTAINERS="$2"; shift ;;
	--images) IMAGES="$2"; shift ;;
	--rss-pods) RSS_PODS="$2"; shift ;;
	--berth-only) RUNTIMES=(berth) ;;
	--containerd-only) RUNTIMES=(containerd) ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) echo "bench-cri: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (the runtimes mount, create namespaces and cgroups)"
command -v jq >/dev/null || die "jq is needed for the medians (apt-get install jq)"

if [[ " ${RUNTIMES[*]} " == *" containerd "* ]] && ! command -v containerd >/dev/null; then
	say "installing Debian's containerd (and runc)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q containerd >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q containerd; }
fi

ct_init
ct_tools
ct_cni_conf
ct_registry

OUT="$REPO/_output/bench-cri"
rm -rf "$OUT"
mkdir -p "$OUT"
PARAMS="$OUT/benchmark-params.yaml"
cat >"$PARAMS" <<YAML
containersNumber: $CONTAINERS
containersNumberParallel: 1
containerBenchmarkTimeoutSeconds: 120
podsNumber: $PODS
podsNumberParallel: 1
podBenchmarkTimeoutSeconds: 120
imagesNumber: $IMAGES
imagesNumberParallel: 1
imageBenchmarkTimeoutSeconds: 120
podContainerStartBenchmarkTimeoutSeconds: 120
YAML

crictl() { "$CRICTL" --config "$T/crictl.yaml" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 120s "$@"; }

# medians RTDIR: "operation<TAB>median ms" for every operation in the
# benchmark data files critest wrote (CRI RPC names).
medians() {
	local f
	for f in "$1"/pod_benchmark_data.json "$1"/container_benchmark_data.json \
		"$1"/image_lifecycle_benchmark_data.json "$1"/image_listing_benchmark_data.json; do
		[ -s "$f" ] || continue
		jq -r '
			def median: sort | if length == 0 then null
				elif length % 2 == 1 then .[(length - 1) / 2]
				else (.[length / 2 - 1] + .[length / 2]) / 2 end;
			{"CreatePod": "RunPodSandbox", "StatusPod": "PodSandboxStatus", "StopPod": "StopPodSandbox",
			 "RemovePod": "RemovePodSandbox", "StatusContainer": "ContainerStatus",
			 "StatusImage": "ImageStatus"} as $rpc
			| .datapoints as $d
			| .operationsNames | to_entries[] | . as $e
			| [($rpc[$e.value] // $e.value),
			   ([$d[] | .operationsDurationsNs[$e.key]] | median | if . == null then "n/a" else (. / 1e6 * 100 | round / 100) end)]
			| @tsv' "$f"
	done
}

# private PID: the process's private memory (Private_Clean + Private_Dirty)
# in kB.
private() {
	awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s + 0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0
}

# rss RUNTIME: runs RSS_PODS pods with a sleep container each, prints
# "shims N<TAB>RSS total kB<TAB>RSS per pod kB<TAB>daemon RSS kB<TAB>PSS
# per pod kB<TAB>private per pod kB<TAB>spare shim RSS kB<TAB>pause RSS per
# pod kB<TAB>pause private per pod kB", removes the pods.
# The spare is the berth-shim berthd keeps on standby for the next
# container (one per node, not per pod; runtime/shim.Launcher). RSS counts the
# binary's pages every shim shares; PSS splits shared pages among their
# users; private (Private_Clean + Private_Dirty of smaps_rollup) is what
# one more pod really adds.
rss() {
	local rt="$1" shim i total=0 n=0 pid kb pss=0 priv=0 spare=0 shims="" pauses="" prss=0 ppriv=0
	case "$rt" in
	berth) shim=berth-shim ;;
	containerd) shim=containerd-shim-runc-v2 ;;
	esac
	crictl pull "$(awk '/defaultTestContainerImage/ {print $2}' "$IMAGES_FILE")" >/dev/null
	for i in $(seq "$RSS_PODS"); do
		mkdir -p "$T/rss-logs/$rt-$i"
		cat >"$T/pod-$rt-$i.json" <<JSON
{"metadata": {"name": "rss-$i", "namespace": "bench-cri", "uid": "rss-$rt-$i", "attempt": 0},
 "log_directory": "$T/rss-logs/$rt-$i", "linux": {}}
JSON
		cat >"$T/ctr-$rt-$i.json" <<JSON
{"metadata": {"name": "sleep"}, "image": {"image": "$(awk '/defaultTestContainerImage/ {print $2}' "$IMAGES_FILE")"},
 "command": ["sleep", "3600"], "log_path": "sleep.log", "linux": {}}
JSON
		crictl run --no-pull "$T/ctr-$rt-$i.json" "$T/pod-$rt-$i.json" >/dev/null || return 1
	done
	sleep 1 # let every shim settle after its container's start
	# By executable, not pgrep: comm is cut at 15 bytes ("containerd-shim").
	for pid in $(ls /proc | grep -E '^[0-9]+$'); do
		[ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = "$shim" ] || continue
		# This run's shims: their command line (containerd's, a cold
		# berth-shim's) or their open files (a berth-shim started on
		# standby has no paths in its arguments) lead into $T.
		local args
		args="$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")"
		if [[ $args != *"$T/"* ]] && ! find "/proc/$pid/fd" -lname "$T/*" 2>/dev/null | grep -q .; then
			if [ "$(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null)" = "$DAEMON_PID" ]; then
				case "$args" in
				*--standby*) spare=$((spare + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0))) ;;
				*" pause "*) pauses="$pauses $pid" ;; # berth's pod PID-namespace holders
				esac
			fi
			continue
		fi
		shims="$shims $pid"
		kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" || continue
		total=$((total + kb)) n=$((n + 1))
		pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)))
		priv=$((priv + $(private "$pid")))
	done
	if [ "$rt" = containerd ]; then
		# The pause containers: "pause" children of this run's shims.
		for pid in $(ls /proc | grep -E '^[0-9]+$'); do
			[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pause ] || continue
			[[ " $shims " == *" $(awk '{print $4}' "/proc/$pid/stat" 2>/dev/null) "* ]] && pauses="$pauses $pid"
		done
	fi
	for pid in $pauses; do
		prss=$((prss + $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)))
		ppriv=$((ppriv + $(private "$pid")))
	done
	kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$DAEMON_PID/status")"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$total" "$((total / RSS_PODS))" "$kb" "$((pss / RSS_PODS))" "$((priv / RSS_PODS))" "$spare" \
		"$((prss / RSS_PODS))" "$((ppriv / RSS_PODS))"
	crictl rmp -fa >/dev/null || true
}

for rt in "${RUNTIMES[@]}"; do
	d="$OUT/$rt"
	mkdir -p "$d"
	case "$rt" in
	berth)
		say "starting berthd"
		ct_berthd "$T/berth"
		SOCK="$BERTH_SOCK" DAEMON_PID="$BERTHD_PID" LOG="$T/berth/berthd.log"
		;;
	containerd)
		say "starting $(containerd --version | awk '{print $1, $3}')"
		ct_containerd "$T/ctd"
		SOCK="$CTD_SOCK" DAEMON_PID="$CTD_PID" LOG="$T/ctd/containerd.log"
		;;
	esac
	say "$rt: critest -benchmark ($PODS pods, $CONTAINERS containers, $IMAGES images; log _output/bench-cri/$rt/critest.log)"
	set +e
	"$CRITEST" -benchmark --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" \
		--test-images-file "$IMAGES_FILE" --benchmarking-params-file "$PARAMS" --benchmarking-output-dir "$d" \
		-ginkgo.no-color -ginkgo.timeout=2h -ginkgo.json-report="$d/report.json" >"$d/critest.log" 2>&1
	echo "    critest exited $?"
	ct_report "$d/report.json" | sed 's/^/    /'
	set -e
	medians "$d" >"$d/medians.tsv" || echo "    could not read the benchmark data in $d" >&2
	say "$rt: $RSS_PODS pods with one sleep container each: shim memory"
	set +e
	rss "$rt" >"$d/rss.tsv" 2>"$d/rss.err" || echo "    $rt could not run the pods: $(tail -n 1 "$d/rss.err")"
	set -e
	cp "$LOG" "$d/daemon.log" 2>/dev/null || true
	ct_remove_pods "$SOCK"
	ct_stop "$DAEMON_PID"
done

# The table: medians in ms, and the ratio berth/containerd.
# A runtime that did not run (--berth-only) has no files: n/a, not an exit
# under set -e.
get() { [ ! -f "$OUT/$1/medians.tsv" ] || awk -F'\t' -v op="$2" '$1 == op {print $2}' "$OUT/$1/medians.tsv"; }
echo
printf '%-20s %14s %14s %10s\n' "median (ms)" berth containerd ratio
for op in RunPodSandbox PodSandboxStatus StopPodSandbox RemovePodSandbox CreateContainer StartContainer \
	ContainerStatus StopContainer RemoveContainer PullImage ImageStatus RemoveImage ListImages; do
	b="$(get berth "$op")" c="$(get containerd "$op")"
	r=n/a
	if [[ $b =~ ^[0-9.]+$ && $c =~ ^[0-9.]+$ ]]; then r="$(awk -v b="$b" -v c="$c" 'BEGIN {if (c > 0) printf "%.2f", b / c; else print "n/a"}')"; fi
	printf '%-20s %14s %14s %10s\n' "$op" "${b:-n/a}" "${c:-n/a}" "$r"
done
sum3() { # pod + container start: RunPodSandbox + CreateContainer + StartContainer
	local a b c
	a="$(get "$1" RunPodSandbox)" b="$(get "$1" CreateContainer)" c="$(get "$1" StartContainer)"
	[[ $a =~ ^[0-9.]+$ && $b =~ ^[0-9.]+$ && $c =~ ^[0-9.]+$ ]] && awk -v a="$a" -v b="$b" -v c="$c" 'BEGIN {printf "%.2f", a + b + c}'
}
b="$(sum3 berth || true)" c="$(sum3 containerd || true)"
r=n/a
if [ -n "$b" ] && [ -n "$c" ]; then r="$(awk -v b="$b" -v c="$c" 'BEGIN {printf "%.2f", b / c}')"; fi
printf '%-20s %14s %14s %10s  (target <= 0.50)\n' "pod+container start" "${b:-n/a}" "${c:-n/a}" "$r"

echo
printf '%-28s %14s %14s %10s\n' "memory with $RSS_PODS pods (kB)" berth containerd ratio
field() { [ ! -f "$OUT/$1/rss.tsv" ] || awk -F'\t' -v f="$2" '{print $f}' "$OUT/$1/rss.tsv"; }
for row in "shim processes:1" "shim RSS total:2" "shim RSS per pod:3" "shim PSS per pod:5" "shim private per pod:6" "pause RSS per pod:8" "pause private per pod:9" "daemon RSS:4" "spare shim RSS (per node):7"; do
	b="$(field berth "${row##*:}")" c="$(field containerd "${row##*:}")"
	r=n/a
	if [[ $b =~ ^[0-9]+$ && $c =~ ^[0-9]+$ && $c != 0 ]]; then r="$(awk -v b="$b" -v c="$c" 'BEGIN {printf "%.2f", b / c}')"; fi
	printf '%-28s %14s %14s %10s\n' "${row%%:*}" "${b:-n/a}" "${c:-n/a}" "$r"
done
echo "(target: shim RSS per pod <= 0.50 of containerd's; raw data in _output/bench-cri/)"
