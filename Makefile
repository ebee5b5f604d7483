# Berth's build. `make` alone lists the targets.
#
# Everything the project needs on a fresh Debian 12 machine is installed by
# `make deps` (hack/install-deps.sh); `make test` runs every test as CI does.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO      ?= go
BIN     := $(CURDIR)/bin
# berth-runc: libseccomp and glibc linked in, no NSS (pure-Go user and DNS
# lookups), so nothing is loaded at start.
RUNC_TAGS    := seccomp netgo osusergo
RUNC_LDFLAGS := -extldflags -static
OUT     := $(CURDIR)/_output
TOOLS   := $(OUT)/tools
CNI_BIN := $(OUT)/cni/bin
MODULE  := github.com/berth-dev/berth
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# berth is docker's CLI and compose: it carries Berth's version and, as
# compose's own build does, compose's (`berth compose version`, compose's
# labels). The build time is the commit's, so a rebuild links the same.
COMPOSE_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/docker/compose/v5)
BERTH_LDFLAGS = -s -w -X main.berthVersion=$(VERSION) \
	-X main.gitCommit=$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown) \
	-X main.buildTime=$(shell git log -1 --format=%cI 2>/dev/null || echo unknown) \
	-X github.com/docker/compose/v5/internal.Version=$(COMPOSE_VERSION)

# -count=1: CI must never be served cached test results.
GOTEST  := $(GO) test -count=1
# RACE=1 adds -race to the unit tests (needs cgo and takes about twice as long).
RACE    ?=
ifeq ($(RACE),1)
UNIT_FLAGS := -race
endif
E2E_TIMEOUT ?= 30m
# seccomp: the root tests that run containers through libcontainer in the
# test binary itself (runtime/spec) check the seccomp filter only with it.
UNIT_TAGS := seccomp

# Packages other than the end-to-end suites; as root this includes the
# *_root_test.go tests (they skip themselves when not root).
UNIT_PKGS = $(shell $(GO) list -e ./... | grep -v '^$(MODULE)/test/')

.PHONY: help
help: ## list the targets
	@echo "Berth: make <target>"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: up
up: ## set up this machine, build, start a registry with test images and berthd (hack/up.sh)
	bash hack/up.sh

.PHONY: down
down: ## stop what `make up` started (hack/down.sh)
	bash hack/down.sh

.PHONY: deps
deps: ## install apt packages, a docker CLI, docker-compose and pinned Go tools (crictl, the compose v5 plugin) (hack/install-deps.sh)
	bash hack/install-deps.sh

.PHONY: critest
critest: ## run the official CRI conformance suite (critest v1.37.0) offline against berthd (hack/critest.sh; ARGS="--focus 'Image Manager'")
	bash hack/critest.sh $(ARGS)

.PHONY: bench
bench: ## critest -benchmark against berthd and Debian's containerd: medians, ratios, shim RSS (hack/bench-cri.sh $(ARGS))
	bash hack/bench-cri.sh $(ARGS)

.PHONY: cni-plugins
cni-plugins: ## build the pinned CNI plugins (bridge, host-local, loopback, portmap, firewall) into _output/cni/bin
	bash hack/cni-plugins.sh $(CNI_BIN)

.PHONY: cni-conf
cni-conf: ## write the default CNI conflist (bridge berth0, 10.88.0.0/16) to /etc/cni/net.d
	bash hack/cni-conf.sh

.PHONY: build
build: cni-plugins ## build bin/berthd, bin/berth, bin/berth-shim, bin/berth-runc and the CNI plugins
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -o $(BIN)/berthd ./cmd/berthd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(BERTH_LDFLAGS)' -o $(BIN)/berth ./cmd/berth
	@# The long-lived per-container monitor is pure Go and small; it runs
	@# berth-runc, next to it, for every libcontainer operation.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/berth-shim ./cmd/berth-shim
	@# berth-runc links libcontainer: cgo, nsenter and seccomp (libseccomp-dev),
	@# statically (it starts twice per container; keep in sync with
	@# internal/shimbuild).
	CGO_ENABLED=1 $(GO) build -tags '$(RUNC_TAGS)' -trimpath -ldflags "-s -w $(RUNC_LDFLAGS)" -o $(BIN)/berth-runc ./cmd/berth-runc

.PHONY: test
test: deps build verify test-unit test-e2e critest ## everything CI runs: deps, build, verify, unit + root tests, e2e, critest
	@echo "make test: all passed"

.PHONY: test-unit
test-unit: ## unit tests of every package but test/ (as root: also the *_root_test.go tests)
	@if [ "$$(id -u)" != 0 ]; then echo "note: not root, the *_root_test.go tests will skip"; fi
	BERTH_CNI_BIN=$(CNI_BIN) $(GOTEST) -tags '$(UNIT_TAGS)' $(UNIT_FLAGS) $(UNIT_PKGS)

.PHONY: test-root
test-root: ## only the packages that have root tests; needs root
	@if [ "$$(id -u)" != 0 ]; then echo "test-root needs root" >&2; exit 1; fi
	BERTH_CNI_BIN=$(CNI_BIN) $(GOTEST) -tags '$(UNIT_TAGS)' $$(find . -name '*_root_test.go' -not -path './_output/*' -printf '%h\n' | sort -u)

.PHONY: test-e2e
test-e2e: build ## end-to-end suites in test/ against a real berthd (needs root)
	BERTH_BIN_DIR=$(BIN) BERTH_CNI_BIN=$(CNI_BIN) PATH="$(TOOLS):$$PATH" $(GOTEST) -timeout $(E2E_TIMEOUT) ./test/...

.PHONY: verify
verify: ## gofmt, go vet and the import-boundary check
	@out="$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GOTEST) ./internal/importcheck

.PHONY: lint
lint: verify ## same as verify

.PHONY: registry
registry: ## run a local registry on 127.0.0.1:5000 in the foreground
	$(GO) run ./hack/registry --addr 127.0.0.1:5000 --dir $(OUT)/registry

.PHONY: test-images
test-images: ## push the test images to the registry at REGISTRY (default 127.0.0.1:5000)
	$(GO) run ./hack/testimages --registry $${REGISTRY:-127.0.0.1:5000}

.PHONY: bench-build
bench-build: ## build benchmark: berthd vs BuildKit in Debian's dockerd 20.10, cold and warm
	bash hack/bench-build.sh $(ARGS)

.PHONY: bench-compose
bench-compose: ## compose: up -d to all running and down -v of a three-service project, berthd vs Debian's dockerd 20.10, same docker-compose 1.29 (or ARGS=--client plugin), median of 7 (hack/bench-compose.sh $(ARGS))
	bash hack/bench-compose.sh $(ARGS)

.PHONY: bench-kubelet
bench-kubelet: ## a real kubelet's manifest-to-Ready time, berthd vs Debian's containerd, EventedPLEG off and on, median of 10 (hack/bench-kubelet.sh $(ARGS))
	bash hack/bench-kubelet.sh $(ARGS)

.PHONY: bench-network
bench-network: ## networks: start on a user network, DNS lookups and a 10k qps flood, berthd vs Debian's dockerd 20.10 (hack/bench-network.sh $(ARGS))
	bash hack/bench-network.sh $(ARGS)

.PHONY: bench-pull
bench-pull: ## pull benchmark: berthd (and with ARGS=--vs-containerd, containerd)
	bash hack/bench-pull.sh $(ARGS)

.PHONY: clean
clean: ## stop `make up`'s processes, remove bin/ and _output/
	@if [ -d $(OUT)/pids ]; then bash hack/down.sh; fi
	rm -rf $(BIN) $(OUT)
