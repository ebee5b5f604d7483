#!/usr/bin/env bash
# Builds the pinned CNI plugins Berth uses (bridge, host-local, loopback,
# portmap, firewall) from the github.com/containernetworking/plugins Go module,
# so a bare machine needs no distro package.
#
#   hack/cni-plugins.sh [OUTDIR]     default OUTDIR: _output/cni/bin
#
# The build happens in a throw-away module under a temp dir, so the project's
# go.mod never learns about the plugins' dependencies. Idempotent: when every
# binary is in OUTDIR and OUTDIR/.berth-cni-plugins names the same version and
# Go toolchain, nothing is rebuilt. Reaches only the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

# v1.10.0 is built against libcni v1.3.1, the version Berth's cni package uses,
# and needs Go >= 1.26.8.
PLUGINS_MODULE=github.com/containernetworking/plugins
PLUGINS_VERSION=v1.10.0
PLUGINS=(
	plugins/main/bridge
	plugins/main/loopback
	plugins/ipam/host-local
	plugins/meta/portmap
	plugins/meta/firewall
)

case "${1:-}" in
-h | --help)
	awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"
	exit 0
	;;
esac
if (($# > 1)); then
	echo "cni-plugins: at most one argument (OUTDIR), got $*" >&2
	exit 2
fi

OUTDIR=${1:-_output/cni/bin}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
GO=${GO:-go}
stamp="$PLUGINS_MODULE $PLUGINS_VERSION $("$GO" env GOVERSION)"

up_to_date() {
	[ -f "$OUTDIR/.berth-cni-plugins" ] || return 1
	[ "$(cat "$OUTDIR/.berth-cni-plugins")" = "$stamp" ] || return 1
	local p
	for p in "${PLUGINS[@]}"; do
		[ -x "$OUTDIR/$(basename "$p")" ] || return 1
	done
}

if up_to_date; then
	echo "cni-plugins: $PLUGINS_VERSION already in $OUTDIR"
	exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "cni-plugins: building $PLUGINS_MODULE@$PLUGINS_VERSION into $OUTDIR"
(
	cd "$work"
	# -mod=mod lets the temp module resolve and record dependencies; GOTOOLCHAIN
	# local refuses to download another Go behind our back.
	export GOFLAGS="-mod=mod -buildvcs=false" GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
	"$GO" mod init berth.local/cni-plugins-build >/dev/null 2>&1
	"$GO" get "$PLUGINS_MODULE@$PLUGINS_VERSION" >/dev/null
	pkgs=()
	for p in "${PLUGINS[@]}"; do
		pkgs+=("$PLUGINS_MODULE/$p")
	done
	# The plugins report this string for `--version` / the VERSION command.
	"$GO" build -trimpath \
		-ldflags "-s -w -X $PLUGINS_MODULE/pkg/utils/buildversion.BuildVersion=$PLUGINS_VERSION" \
		-o "$OUTDIR/" "${pkgs[@]}"
)
# The stamp goes last: an interrupted build leaves no stamp and is redone.
echo "$stamp" >"$OUTDIR/.berth-cni-plugins.tmp"
mv "$OUTDIR/.berth-cni-plugins.tmp" "$OUTDIR/.berth-cni-plugins"
echo "cni-plugins: built $(cd "$OUTDIR" && for p in "${PLUGINS[@]}"; do printf '%s ' "$(basename "$p")"; done)"
