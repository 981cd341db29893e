#!/usr/bin/env bash
# Runs CMD in the network namespace of the node that `cluster.sh up DIR --only node,...` started,
# where its servers listen (their 127.0.0.1 is the namespace's loopback) and pods are reachable.
# Only the network namespace is entered (nsenter --net): `ip netns exec` would also remount /sys.
#
# Usage: enter.sh DIR CMD...
set -euo pipefail
(($# >= 2)) || { echo "usage: $0 DIR CMD..." >&2; exit 2; }
netns_file="$1/netns"
[[ -f "$netns_file" ]] || { echo "$0: $1 has no node (cluster.sh up $1 --only node first)" >&2; exit 1; }
shift
exec nsenter --net="/var/run/netns/$(<"$netns_file")" -- "$@"
