#!/usr/bin/env bash
# Builds the kubelet at VERSION from the Go module proxy into OUT:
#
#   hack/kubelet-build.sh v1.37.2 _output/tools/kubelet
#
# `go install k8s.io/kubernetes/cmd/kubelet@VERSION` refuses the module: its
# go.mod replaces the staging modules (k8s.io/api, k8s.io/client-go, ...) with
# paths inside the repository. A throw-away module that requires
# k8s.io/kubernetes and maps every one of those staging modules to its
# published v0.X.Y tag builds the same kubelet. The staging list is read from
# kubernetes' own go.mod, so a new staging module needs no edit here.
set -euo pipefail

VERSION="${1:?usage: kubelet-build.sh VERSION OUT}"
OUT="${2:?usage: kubelet-build.sh VERSION OUT}"
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
# v1.37.2 -> v0.37.2: the staging modules' tags.
STAGING_VERSION="v0.${VERSION#v1.}"

export GOFLAGS= GOWORK=off
dir="$(cd / && go mod download -json "k8s.io/kubernetes@$VERSION" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
if [ -z "$dir" ] || [ ! -f "$dir/go.mod" ]; then
	echo "kubelet-build: cannot download k8s.io/kubernetes@$VERSION" >&2
	exit 1
fi
staging="$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$dir/go.mod")"
if [ -z "$staging" ]; then
	echo "kubelet-build: no staging replaces in $dir/go.mod" >&2
	exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
	echo "module kubeletbuild"
	echo
	echo "go $(sed -n 's/^go //p' "$dir/go.mod")"
	echo
	echo "require k8s.io/kubernetes $VERSION"
	echo
	echo "replace ("
	for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
	echo ")"
} >"$work/go.mod"
cat >"$work/main.go" <<'GO'
// Package main only pins the kubelet's packages for `go mod tidy`.
package main

import _ "k8s.io/kubernetes/cmd/kubelet/app"

func main() {}
GO
mkdir -p "$(dirname "$OUT")"
cd "$work"
go mod tidy
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w \
	-X k8s.io/component-base/version.gitVersion=$VERSION \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$(echo "$VERSION" | cut -d. -f2)" \
	-o "$OUT.tmp" k8s.io/kubernetes/cmd/kubelet
mv "$OUT.tmp" "$OUT"
echo "kubelet-build: $("$OUT" --version) -> $OUT"
