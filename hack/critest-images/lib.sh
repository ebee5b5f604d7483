# Shared by hack/critest.sh and the hack/bench-*.sh scripts (sourced, not
# run): a temp dir with a PID list, the binaries, a local registry with
# critest's stand-in images or with busybox, the hosts.toml mirrors, the CNI
# plugins and conflist, and a cleanup that stops only what was started and
# unmounts only below the temp dir.
#
# The caller sets REPO (the checkout), NAME (its name for messages) and calls
# ct_init before anything else.

say() { echo "==> $*"; }
die() {
	echo "$NAME: $*" >&2
	exit 1
}

# The registries critest v1.37.0 pulls from, all mirrored to the local one.
CT_MIRRORED=(registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws docker.io)
# critest's pod network: its own bridge and subnet so that nothing else on the
# host (berth0, cni0) is touched.
CT_BRIDGE=critest0
CT_SUBNET=10.244.213.0/24

# ct_init: creates the temp dir T (short: sockets under it must stay below
# 108 bytes) and installs the cleanup trap.
ct_init() {
	T="$(mktemp -d /var/tmp/critest.XXXXXX)"
	PIDFILE="$T/pids"
	: >"$PIDFILE"
	: >"$T/crictl.yaml" # neither /etc/crictl.yaml nor a warning about it
	CT_BRIDGE_EXISTED=0
	if ip link show "$CT_BRIDGE" >/dev/null 2>&1; then CT_BRIDGE_EXISTED=1; fi
	trap ct_cleanup EXIT
	trap 'exit 130' INT TERM
}

# alive PID: running and not a zombie waiting for PID 1 to reap it.
ct_alive() {
	local s
	s="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
	[ -n "$s" ] && [ "$s" != Z ]
}

# ct_stop PID: TERM, then KILL after 10 s.
ct_stop() {
	local pid="$1"
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 100); do ct_alive "$pid" || return 0; sleep 0.1; done
	echo "$NAME: pid $pid ignored SIGTERM for 10 s; SIGKILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

# ct_start LOG CMD...: runs CMD in the background in its own session; its
# PID goes to LAST_PID and to PIDFILE.
ct_start() {
	local log="$1"
	shift
	setsid "$@" >"$log" 2>&1 </dev/null &
	LAST_PID=$!
	echo "$LAST_PID" >>"$PIDFILE"
}

# ct_wait_socket PATH LOG: waits up to 30 s for the daemon LAST_PID to
# create the socket PATH.
ct_wait_socket() {
	for _ in $(seq 300); do
		[ -S "$1" ] && return 0
		ct_alive "$LAST_PID" || {
			tail -n 30 "$2" >&2
			die "daemon exited before creating $1; log above ($2)"
		}
		sleep 0.1
	done
	die "timed out waiting for $1 (log: $2)"
}

# ct_umount_below DIR: unmounts whatever is mounted below DIR, deepest first.
ct_umount_below() {
	findmnt -rn -o TARGET | { grep "^$1/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
}

# ct_remove_pods SOCK: asks the runtime on SOCK to stop and remove every
# pod, so that its shims, netns, veths and leases go the normal way.
ct_remove_pods() {
	[ -S "$1" ] || return 0
	"$CRICTL" --config "$T/crictl.yaml" --runtime-endpoint "unix://$1" --timeout 60s rmp -fa >/dev/null 2>&1 || true
}

# ct_stop_under DIR: kills what is left whose command line names DIR or
# that holds a file under it (a berth-shim started on standby names no
# path): shims outlive their daemon by design (that is what they are for),
# and the ones of daemons started below T are ours.
ct_stop_under() {
	local p
	for p in /proc/[0-9]*; do
		[ "${p#/proc/}" = "$$" ] && continue
		if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$1/" ||
			find "$p/fd" -lname "$1/*" 2>/dev/null | grep -q .; then
			kill -KILL "${p#/proc/}" 2>/dev/null || true
		fi
	done
}

ct_cleanup() {
	set +e # clean up as much as possible
	local pid
	# Daemons first, newest first, so the registry outlives its clients.
	local sock
	for sock in ${CT_SOCKS:-}; do ct_remove_pods "$sock"; done
	if [ -f "$PIDFILE" ]; then
		tac "$PIDFILE" | while read -r pid; do ct_stop "$pid"; done
	fi
	ct_stop_under "$T"
	ct_umount_below "$T"
	# Network namespaces the daemons pinned below T are mounts, gone above;
	# the bridge is ours only if it did not exist before this run.
	if ((!CT_BRIDGE_EXISTED)) && ip link show "$CT_BRIDGE" >/dev/null 2>&1; then
		ip link delete "$CT_BRIDGE" || true
	fi
	if [ -n "${KEEP:-}" ]; then
		echo "$NAME: KEEP set: left $T"
	else
		rm -rf "$T"
	fi
}

# ct_bin: BIN, the directory of berthd and the rest: bin/ after make build,
# or the prebuilt binaries BERTH_BIN_DIR names.
ct_bin() {
	if [ -n "${BERTH_BIN_DIR:-}" ]; then
		BIN="$(cd "$BERTH_BIN_DIR" && pwd)"
		say "using prebuilt binaries in $BIN (BERTH_BIN_DIR)"
	else
		BIN="$REPO/bin"
		say "building bin/berthd, bin/berth, bin/berth-shim, bin/berth-runc (make build)"
		make --no-print-directory -C "$REPO" build >/dev/null
	fi
	[ -x "$BIN/berthd" ] || die "no berthd in $BIN"
	# berth-shim runs the berth-runc next to it.
	[ ! -x "$BIN/berth-shim" ] || [ -x "$BIN/berth-runc" ] || die "no berth-runc next to berth-shim in $BIN (make build)"
}

# ct_tools: BIN (ct_bin), critest and crictl (_output/tools) and the CNI
# plugins (_output/cni/bin).
ct_tools() {
	ct_bin
	say "installing critest and crictl (hack/install-deps.sh --critest --no-kubelet)"
	bash "$REPO/hack/install-deps.sh" --critest --no-kubelet >/dev/null
	CRITEST="$REPO/_output/tools/critest"
	CRICTL="$REPO/_output/tools/crictl"
	CNI_BIN="$REPO/_output/cni/bin"
	say "building the CNI plugins (hack/cni-plugins.sh $CNI_BIN)"
	bash "$REPO/hack/cni-plugins.sh" "$CNI_BIN" >/dev/null
}

# ct_cni_conf: writes the conflist into CNI_CONF (under T): bridge critest0
# on CT_SUBNET with IPAM leases under T, portmap, firewall.
ct_cni_conf() {
	CNI_CONF="$T/net.d"
	BERTH_CNI_BRIDGE="$CT_BRIDGE" BERTH_CNI_DATA_DIR="$T/cni-leases" BERTH_CNI_NAME=critest \
		bash "$REPO/hack/cni-conf.sh" "$CNI_CONF" "$CT_SUBNET" >/dev/null
}

# ct_registry: starts a registry on a free 127.0.0.1 port (REG), pushes the
# critest stand-ins and writes the hosts.toml mirrors (HOSTS_DIR) and
# critest's images file (IMAGES_FILE).
ct_registry() {
	local cache="$REPO/_output/critest/cache"
	mkdir -p "$cache" "$T/bin"
	# Debian's dynamic busybox (see internal/testimage/critest.go for why not
	# busybox-static): downloaded once, not installed (it conflicts with
	# busybox-static).
	if ! compgen -G "$cache/busybox_*.deb" >/dev/null; then
		say "apt-get download busybox -> $cache"
		(cd "$cache" && apt-get download busybox 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
		compgen -G "$cache/busybox_*.deb" >/dev/null || die "apt-get download busybox failed"
	fi
	rm -rf "$cache/busybox"
	dpkg-deb -x "$(compgen -G "$cache/busybox_*.deb" | head -n1)" "$cache/busybox"

	(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$T/bin/nnp" ./hack/critest-images/nnp &&
		CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$T/bin/pause" ./hack/critest-images/pause &&
		go build -o "$T/bin/" ./hack/registry ./hack/critest-images)

	ct_registry_start

	IMAGES_FILE="$T/critest-images.yaml"
	say "registry $REG: pushing critest's stand-in images"
	"$T/bin/critest-images" --registry "$REG" --busybox "$cache/busybox/bin/busybox" \
		--nnp "$T/bin/nnp" --pause "$T/bin/pause" --images-file "$IMAGES_FILE" >"$T/images.txt"
	echo "    $(wc -l <"$T/images.txt") references (list: $T/images.txt)"

	# containerd's hosts.toml convention, read by berthd and containerd alike.
	# server is the local registry, so nothing falls back to the internet.
	HOSTS_DIR="$T/certs.d"
	local h
	for h in "${CT_MIRRORED[@]}" "$REG"; do
		mkdir -p "$HOSTS_DIR/$h"
		cat >"$HOSTS_DIR/$h/hosts.toml" <<TOML
# Written by hack/critest-images/lib.sh: critest runs offline.
server = "http://$REG"

[host."http://$REG"]
  capabilities = ["pull", "resolve"]
TOML
	done
}

# ct_registry_start: starts the registry built into T/bin on a free
# 127.0.0.1 port; its address is REG.
ct_registry_start() {
	ct_start "$T/registry.log" "$T/bin/registry" --addr 127.0.0.1:0 --quiet
	for _ in $(seq 100); do grep -q '^listening on' "$T/registry.log" && break; sleep 0.1; done
	REG="$(awk '/^listening on/ {print $3}' "$T/registry.log")"
	[ -n "$REG" ] || die "registry did not start: $(cat "$T/registry.log")"
}

# ct_busybox: a registry on a free port (REG) with hack/testimages'
# busybox in it, IMAGE.
ct_busybox() {
	mkdir -p "$T/bin"
	(cd "$REPO" && go build -o "$T/bin/" ./hack/registry ./hack/testimages)
	ct_registry_start
	"$T/bin/testimages" --registry "$REG" --only busybox >/dev/null
	IMAGE="$REG/berth/busybox:latest"
}

# ct_berthd DIR: starts berthd on DIR/root and DIR/run with the mirrors and
# CNI; its CRI socket is BERTH_SOCK, its NRI socket BERTH_NRI_SOCK.
# BERTHD_ARGS adds flags (for example "--log-level debug" for the per-step
# timings of pod and container creation); BERTHD_TOML is its config file.
ct_berthd() {
	local d="$1"
	mkdir -p "$d"
	# BERTHD_TOML is the config file's content (default empty).
	printf '%s\n' "${BERTHD_TOML:-}" >"$d/berthd.toml"
	# NRI plugins connect to a socket of this run's own (BERTH_NRI_SOCK),
	# never the node's default.
	BERTH_NRI_SOCK="$d/run/nri.sock"
	local args=(--root "$d/root" --state "$d/run" --config "$d/berthd.toml" --registry-config-dir "$HOSTS_DIR"
		--cni-conf-dir "$CNI_CONF" --cni-bin-dir "$CNI_BIN" --nri-socket "$BERTH_NRI_SOCK")
	# shellcheck disable=SC2206 # word splitting of the extra flags is wanted
	args+=(${BERTHD_ARGS:-})
	ct_start "$d/berthd.log" "$BIN/berthd" "${args[@]}"
	BERTHD_PID=$LAST_PID
	BERTH_SOCK="$d/run/berth.sock"
	ct_wait_socket "$BERTH_SOCK" "$d/berthd.log"
	CT_SOCKS="${CT_SOCKS:-} $BERTH_SOCK"
}

# ct_containerd DIR: starts Debian's containerd (1.6, config v2) on DIR with
# the same mirrors, CNI plugins and conflist; sandbox image = local pause.
# Its CRI socket is CTD_SOCK.
ct_containerd() {
	local d="$1"
	mkdir -p "$d"
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
  sandbox_image = "registry.k8s.io/pause:3.6"
  # This VM lacks CAP_SYS_RESOURCE: containerd's -998 for sandboxes fails.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN"
    conf_dir = "$CNI_CONF"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$HOSTS_DIR"
TOML
	ct_start "$d/containerd.log" containerd --config "$d/config.toml"
	CTD_PID=$LAST_PID
	CTD_SOCK="$d/containerd.sock"
	ct_wait_socket "$CTD_SOCK" "$d/containerd.log"
	CT_SOCKS="${CT_SOCKS:-} $CTD_SOCK"
}

# ct_report JSON: prints passed/failed/skipped and the failed specs' names
# from a ginkgo JSON report; returns 1 when any spec failed.
ct_report() {
	local json="$1"
	[ -s "$json" ] || {
		echo "$NAME: no report at $json" >&2
		return 1
	}
	jq -r '
		[.[].SpecReports[] | select(.LeafNodeType == "It")] as $s
		| ($s | map(select(.State == "passed")) | length) as $p
		| ($s | map(select(.State == "skipped" or .State == "pending")) | length) as $k
		| ($s | map(select(.State != "passed" and .State != "skipped" and .State != "pending"))) as $f
		| "passed \($p)  failed \($f | length)  skipped \($k)  (ran \($p + ($f | length)))",
		  ($f[] | "  FAILED [\(.State)] \((.ContainerHierarchyTexts + [.LeafNodeText]) | join(" "))")
	' "$json"
	[ "$(jq '[.[].SpecReports[] | select(.LeafNodeType == "It") | select(.State != "passed" and .State != "skipped" and .State != "pending")] | length' "$json")" = 0 ]
}
