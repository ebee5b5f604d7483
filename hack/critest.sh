#!/usr/bin/env bash
# `make critest`: the official CRI conformance suite (critest v1.37.0 from
# cri-tools), offline, against a berthd on a temp root.
#
#   hack/critest.sh [--focus REGEX] [--skip REGEX] [--containerd]
#
# Builds bin/ (make build), critest/crictl (_output/tools) and the CNI plugins
# (_output/cni/bin); starts a registry on a free 127.0.0.1 port holding
# stand-ins of every image critest pulls (hack/critest-images), mirrors
# registry.k8s.io, k8s.gcr.io, gcr.io, public.ecr.aws and docker.io to it with
# hosts.toml files, writes a bridge conflist (critest0, 10.244.213.0/24),
# starts berthd on them and runs critest. Reports go to _output/critest/
# (conformance.json, conformance.xml, critest.log, berthd.log). Prints
# passed/failed/skipped and the failed specs; exits 1 if any spec outside the
# skip list below failed.
#
# --focus/--skip are ginkgo regexes over the spec names (e.g. --focus 'Image
# Manager'); --skip adds to the built-in skip list. --containerd runs the same
# suite, images and CNI against Debian's containerd instead (a reference: it
# shows what the stand-in images and the set-up allow; the result goes to
# _output/critest/containerd/). KEEP=1 keeps the temp dir.
# Needs root. Stops only what it started and removes its temp dir, mounts and
# bridge.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=critest
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh
# CRITEST_NET=N (1-40) gives this run bridge critestN, subnet
# 10.244.(213+N).0/24 and reports in _output/critest-N, so that runs in
# parallel on one host share no bridge, IP range or report.
if [ -n "${CRITEST_NET:-}" ]; then
	[[ "$CRITEST_NET" =~ ^[0-9]+$ ]] && ((CRITEST_NET >= 1 && CRITEST_NET <= 40)) || die "CRITEST_NET must be 1-40"
	CT_BRIDGE="critest$CRITEST_NET" CT_SUBNET="10.244.$((213 + CRITEST_NET)).0/24"
fi

# Specs that cannot pass here, each with its reason. critest also skips the
# AppArmor specs itself when the kernel has none; listing them keeps the
# count the same on a kernel that has AppArmor but no profile for Berth.
SKIPS=(
	# This kernel has no AppArmor (/sys/module/apparmor is absent).
	'AppArmor'
	# Pins gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2...,
	# an upstream manifest list whose bytes cannot be rebuilt offline.
	'public image with digest should be pulled and removed'
)

FOCUS="" USER_SKIP="" RT=berth
while (($#)); do
	case "$1" in
	--focus) FOCUS="$2"; shift ;;
	--skip) USER_SKIP="$2"; shift ;;
	--containerd) RT=containerd ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) echo "critest: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (berthd mounts overlays, namespaces and cgroups)"
command -v jq >/dev/null || die "jq is needed for the summary (apt-get install jq)"

ct_init
# mktemp makes T 0700; a container in a user namespace reaches its rootfs
# under T as the mapped user, so T must be traversable (containerd: 0711).
chmod 0711 "$T"
ct_tools
ct_cni_conf
ct_registry

OUT="$REPO/_output/critest${CRITEST_NET:+-$CRITEST_NET}"
if [ "$RT" = containerd ]; then
	command -v containerd >/dev/null || die "containerd is not installed (apt-get install containerd)"
	say "starting $(containerd --version | awk '{print $1, $3}') (root $T/ctd)"
	ct_containerd "$T/ctd"
	SOCK="$CTD_SOCK" LOG="$T/ctd/containerd.log"
	OUT="$OUT/containerd"
else
	say "starting berthd (root $T/berth)"
	# critest's "plugin synchronization" specs hold a plugin's Synchronize
	# open for 2 s, exactly NRI's default request timeout, so berthd would
	# drop the plugin as hung before the spec lets go: give plugins 5 s.
	# No plugins of the machine's own (plugin_path) take part.
	BERTHD_TOML="$(printf '[nri]\nplugin_request_timeout = "5s"\nplugin_path = "%s"\nplugin_config_path = "%s"' "$T/nri-plugins" "$T/nri-conf.d")" \
		ct_berthd "$T/berth"
	SOCK="$BERTH_SOCK" LOG="$T/berth/berthd.log"
fi
mkdir -p "$OUT"
rm -f "$OUT/conformance.json" "$OUT/conformance.xml"
skip="$(IFS='|'; echo "${SKIPS[*]}")"
[ -z "$USER_SKIP" ] || skip="$skip|$USER_SKIP"
args=(
	--runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK"
	--test-images-file "$IMAGES_FILE"
	-ginkgo.timeout=2h -ginkgo.no-color
	-ginkgo.json-report="$OUT/conformance.json" -ginkgo.junit-report="$OUT/conformance.xml"
	-ginkgo.skip="$skip"
)
[ -z "$FOCUS" ] || args+=(-ginkgo.focus="$FOCUS")
# The NRI specs connect plugins of their own to berthd's NRI socket.
[ "$RT" != berth ] || args+=(--nri-socket="$BERTH_NRI_SOCK")

say "critest against $RT ${FOCUS:+--focus '$FOCUS' }(log: ${OUT#"$REPO/"}/critest.log)"
t0=$(date +%s)
set +e
"$CRITEST" "${args[@]}" >"$OUT/critest.log" 2>&1
rc=$?
set -e
cp "$LOG" "$OUT/" 2>/dev/null || true
echo "critest exited $rc after $(($(date +%s) - t0)) s"
set +e
ct_report "$OUT/conformance.json"
ok=$?
set -e
if ((ok != 0 || rc != 0)); then
	echo "critest: FAILED (reports in ${OUT#"$REPO/"}/)" >&2
	exit 1
fi
echo "critest: all specs passed"
