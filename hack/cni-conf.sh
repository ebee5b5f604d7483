#!/usr/bin/env bash
# Writes Berth's default CNI network config for a fresh node:
#
#   hack/cni-conf.sh [DIR [SUBNET]]   defaults: /etc/cni/net.d 10.88.0.0/16
#
# DIR/10-berth.conflist: bridge berth0 (gateway, masquerade) with host-local
# IPAM on SUBNET and a default route, then portmap (pod hostPorts through the
# portMappings capability), then firewall. Loopback is not in the list: berthd
# brings up lo itself, as containerd does.
#
# Environment: BERTH_CNI_BRIDGE (default berth0), BERTH_CNI_DATA_DIR (host-local
# leases, default /var/lib/berth/cni/networks), BERTH_CNI_NAME (default berth).
#
# The file is written atomically (temp file + rename) because a watcher that
# reads a half-written conflist reports an error. An existing file with other
# content is replaced; with the same content it is left alone.
set -euo pipefail

case "${1:-}" in
-h | --help)
	awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"
	exit 0
	;;
esac
if (($# > 2)); then
	echo "cni-conf: at most two arguments (DIR SUBNET), got $*" >&2
	exit 2
fi

DIR=${1:-/etc/cni/net.d}
SUBNET=${2:-10.88.0.0/16}
BRIDGE=${BERTH_CNI_BRIDGE:-berth0}
DATA_DIR=${BERTH_CNI_DATA_DIR:-/var/lib/berth/cni/networks}
NAME=${BERTH_CNI_NAME:-berth}

# A cheap sanity check; host-local validates the subnet for real at ADD.
if ! [[ $SUBNET =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$ || $SUBNET =~ ^[0-9a-fA-F:]+/[0-9]{1,3}$ ]]; then
	echo "cni-conf: $SUBNET is not an IP prefix like 10.88.0.0/16" >&2
	exit 2
fi
if ((${#BRIDGE} > 15)); then
	echo "cni-conf: bridge name $BRIDGE is longer than the kernel's 15 bytes" >&2
	exit 2
fi

route='0.0.0.0/0'
if [[ $SUBNET == *:* ]]; then
	route='::/0'
fi

mkdir -p "$DIR"
target="$DIR/10-berth.conflist"
tmp=$(mktemp "$DIR/.10-berth.conflist.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat >"$tmp" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DATA_DIR",
        "ranges": [[{"subnet": "$SUBNET"}]],
        "routes": [{"dst": "$route"}]
      }
    },
    {
      "type": "portmap",
      "capabilities": {"portMappings": true}
    },
    {
      "type": "firewall"
    }
  ]
}
EOF
chmod 0644 "$tmp"
if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
	echo "cni-conf: $target is up to date"
	exit 0
fi
mv "$tmp" "$target"
echo "cni-conf: wrote $target ($NAME on $BRIDGE, $SUBNET)"
