# Sourced after tests/env/lib.sh by install.sh, cluster.sh and smoke-node.sh: where the node's
# binaries live, and the node's fixed addresses.

# The node's Kubernetes binaries, built by install.sh from the same module as kube-apiserver.
KUBE_CONTROLLER_MANAGER_BIN="$cache/kube-controller-manager-$KUBERNETES_VERSION/bin/kube-controller-manager"
KUBE_SCHEDULER_BIN="$cache/kube-scheduler-$KUBERNETES_VERSION/bin/kube-scheduler"
KUBELET_BIN="$cache/kubelet-$KUBERNETES_VERSION/bin/kubelet"
KUBE_PROXY_BIN="$cache/kube-proxy-$KUBERNETES_VERSION/bin/kube-proxy"
COREDNS_BIN="$cache/coredns-$COREDNS_VERSION/bin/coredns"
# The pause program's version is its source's hash: an edit to pause.c rebuilds it.
PAUSE_SOURCE="$env_dir/node/pause.c"
PAUSE_VERSION="$(sha256sum "$PAUSE_SOURCE" | cut -c1-12)"
PAUSE_DIR="$cache/pause-$PAUSE_VERSION"

# Addresses inside the node's network namespace, where nothing else lives: every run has its own
# namespace, so they are the same in every run and never reach beyond it.
NODE_IP=10.200.0.2          # on the veth, the node's InternalIP
NODE_PREFIX=24
POD_SUBNET=10.244.0.0/24    # the CNI bridge's, for pods
POD_GATEWAY=10.244.0.1
SERVICE_SUBNET=10.0.0.0/24  # what cluster.sh gives kube-apiserver
KUBERNETES_SERVICE_IP=10.0.0.1

print_node_paths() {
    local name
    for name in KUBE_CONTROLLER_MANAGER_BIN KUBE_SCHEDULER_BIN KUBELET_BIN KUBE_PROXY_BIN COREDNS_BIN PAUSE_DIR; do
        printf '%s=%q\n' "$name" "${!name}"
    done
}

# netns_name DIR: the node's network namespace for DIR, unique per directory so parallel runs
# never share one, and short (it also names the CNI network).
netns_name() { echo "claimcheck-$(printf '%s' "$1" | sha256sum | cut -c1-10)"; }
