#!/usr/bin/env bash
# Installs what Berth needs on a fresh Debian 12 machine, as root. Idempotent:
# it checks before it installs, runs `apt-get update` only when a package is
# missing, and reaches only Debian's apt repositories and the Go module proxy.
#
#   hack/install-deps.sh            apt packages, a docker CLI, docker-compose, pinned Go
#                                   tools (crictl, the compose v5 CLI plugin, kubelet)
#   hack/install-deps.sh --critest  also build critest (the CRI conformance suite)
#   hack/install-deps.sh --no-kubelet  skip the kubelet (a 4-7 minute build, once)
#
# Go tools go to _output/tools (not /usr/local/bin): the project's own pinned
# versions, found by the Makefile, the scripts and the e2e tests.
set -euo pipefail
cd "$(dirname "$0")/.."

CRI_TOOLS_VERSION=v1.37.0
KUBELET_VERSION=v1.37.2
TOOLS="$PWD/_output/tools"

want_critest=0
want_kubelet=1
for arg in "$@"; do
	case "$arg" in
	--critest) want_critest=1 ;;
	--no-kubelet) want_kubelet=0 ;;
	-h | --help)
		awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"
		exit 0
		;;
	*)
		echo "install-deps: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

say() { echo "install-deps: $*"; }

# Why each package:
#   libseccomp-dev, gcc, pkg-config  berth-runc: cgo libcontainer with -tags seccomp
#   busybox-static                   the test images are built from /bin/busybox
#   iptables, iproute2               CNI bridge/portmap and network set-up
#   git, make, ca-certificates       building from a clone
APT_PACKAGES=(libseccomp-dev gcc libc6-dev pkg-config busybox-static iptables iproute2 git make ca-certificates jq)

missing=()
for p in "${APT_PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: missing apt packages ${missing[*]}; run as root" >&2
		exit 1
	fi
	say "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
else
	say "apt packages present: ${APT_PACKAGES[*]}"
fi

# The stock docker CLI is one of the real clients the tests drive (they fail
# under CI without it). Machines of this kind ship docker 28.x in
# /usr/local/bin; elsewhere Debian's docker.io brings a 20.10 CLI
# (/usr/bin/docker, API 1.41), which Berth serves too.
if docker_bin="$(command -v docker)"; then
	say "docker CLI present: $docker_bin ($("$docker_bin" --version 2>/dev/null || echo 'version unknown'))"
else
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: no docker CLI; run as root to apt-get install docker.io" >&2
		exit 1
	fi
	say "no docker CLI: apt-get install docker.io"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# docker.io's dockerd is only a comparison daemon here: never start it as
	# a service (policy-rc.d 101 = action forbidden).
	policy=/usr/sbin/policy-rc.d
	restore_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		restore_policy=1
	fi
	apt-get install -y -q --no-install-recommends docker.io
	if ((restore_policy)); then rm -f "$policy"; fi
	command -v docker >/dev/null || {
		echo "install-deps: docker.io installed but no docker in PATH" >&2
		exit 1
	}
fi

# The compose clients the tests drive beside `berth compose` (issue 11):
# Debian's docker-compose 1.29.2 (Python, API 1.57 verbatim, `docker build`
# for builds) and the compose v5 CLI plugin at the version go.mod pins for
# `berth compose`, built into _output/tools/cli-plugins/docker-compose: run
# it as `DOCKER_CONFIG=<dir> docker compose` with a config.json in <dir> that
# names that directory in "cliPluginsExtraDirs" (or a copy in
# <dir>/cli-plugins).
if dpkg-query -W -f='${Status}' docker-compose 2>/dev/null | grep -q 'install ok installed'; then
	say "docker-compose present: $(docker-compose version --short 2>/dev/null || echo 'version unknown')"
else
	if [ "$(id -u)" != 0 ]; then
		echo "install-deps: docker-compose missing; run as root to apt-get install it" >&2
		exit 1
	fi
	say "apt-get install docker-compose"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends docker-compose
fi

if ! command -v go >/dev/null; then
	echo "install-deps: go not found; Berth needs Go 1.26 (see go.mod)" >&2
	exit 1
fi

mkdir -p "$TOOLS"

# crictl installs normally with go install.
if [ -x "$TOOLS/crictl" ] && "$TOOLS/crictl" --version 2>/dev/null | grep -q "$CRI_TOOLS_VERSION"; then
	say "crictl $CRI_TOOLS_VERSION present in $TOOLS"
else
	say "go install sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION -> $TOOLS"
	# GOFLAGS from the environment (e.g. -mod=vendor) must not leak into a
	# build outside this module; the version tag comes from the module
	# version, so crictl --version shows it.
	GOBIN="$TOOLS" GOFLAGS= GOWORK=off go install \
		-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
		"sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
fi

# The compose v5 plugin: `go install` refuses the module (its go.mod has
# exclude directives), so build ./cmd inside the module cache, with the
# version linked in as compose's own build does.
COMPOSE_VERSION="$(GOFLAGS= go list -m -f '{{.Version}}' github.com/docker/compose/v5)"
compose_plugin="$TOOLS/cli-plugins/docker-compose"
if [ -x "$compose_plugin" ] && [ "$("$compose_plugin" version --short 2>/dev/null)" = "${COMPOSE_VERSION#v}" ]; then
	say "compose plugin $COMPOSE_VERSION present in $TOOLS/cli-plugins"
else
	say "building the compose plugin $COMPOSE_VERSION -> $compose_plugin"
	dir="$(cd / && GOFLAGS= GOWORK=off go mod download -json "github.com/docker/compose/v5@$COMPOSE_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	if [ -z "$dir" ]; then
		echo "install-deps: cannot download github.com/docker/compose/v5@$COMPOSE_VERSION" >&2
		exit 1
	fi
	mkdir -p "$TOOLS/cli-plugins"
	(cd "$dir" && GOFLAGS= GOWORK=off CGO_ENABLED=0 go build -trimpath \
		-ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$COMPOSE_VERSION" \
		-o "$compose_plugin" ./cmd)
fi

if ((want_critest)); then
	if [ -x "$TOOLS/critest" ] && [ -f "$TOOLS/critest.version" ] && [ "$(cat "$TOOLS/critest.version")" = "$CRI_TOOLS_VERSION" ]; then
		say "critest $CRI_TOOLS_VERSION present in $TOOLS"
	else
		# critest's main is a _test.go file, so it cannot be go installed:
		# build the test binary inside the module cache, as upstream does.
		say "building critest $CRI_TOOLS_VERSION -> $TOOLS/critest"
		dir="$(cd / && GOFLAGS= GOWORK=off go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" |
			sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
		if [ -z "$dir" ]; then
			echo "install-deps: cannot download sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" >&2
			exit 1
		fi
		(cd "$dir" && GOFLAGS= GOWORK=off go test -mod=mod -c -o "$TOOLS/critest" ./cmd/critest)
		echo "$CRI_TOOLS_VERSION" >"$TOOLS/critest.version"
	fi
fi

if ((want_kubelet)); then
	if [ -x "$TOOLS/kubelet" ] && [ -f "$TOOLS/kubelet.version" ] && [ "$(cat "$TOOLS/kubelet.version")" = "$KUBELET_VERSION" ]; then
		say "kubelet $KUBELET_VERSION present in $TOOLS"
	else
		say "building kubelet $KUBELET_VERSION -> $TOOLS/kubelet (once; a few minutes)"
		bash hack/kubelet-build.sh "$KUBELET_VERSION" "$TOOLS/kubelet"
		echo "$KUBELET_VERSION" >"$TOOLS/kubelet.version"
	fi
fi

say "done; tools in $TOOLS: $(ls "$TOOLS" | tr '\n' ' ')"
