# The node group of cluster.sh (sourced by it; see its header): the network namespace, the
# configuration of containerd, the CNI bridge, the kubelet, kube-proxy and CoreDNS, and the
# launch, readiness and teardown of the node's servers. Uses cluster.sh's start, wait_until, take_port, client_cert and
# write_kubeconfig, and its dir, pki and env_lines.

NODE_NAME=claimcheck-node

# node_socket: containerd's socket, DIR/containerd/containerd.sock.
node_socket() { echo "$dir/containerd/containerd.sock"; }

# --- the network namespace (made outside it, before cluster.sh re-runs itself inside) ---------

# netns_up NETNS: the namespace with its loopback up and the node IP on a veth whose both ends
# stay inside, and no default route: whatever a server or pod sends to an address that is not in
# the namespace fails at once. Services' IPs get a route only so that kube-proxy's DNAT (in
# OUTPUT, after routing) sees connections from the namespace's own processes.
netns_up() {
    local netns=$1
    # The node's runtime and tools (a no-op once installed).
    "$env_dir/debian.sh" containerd runc containernetworking-plugins iproute2 util-linux
    ip netns add "$netns"
    echo "$netns" >"$dir/netns"   # from here on, down removes it
    ip -n "$netns" link set lo up
    ip -n "$netns" link add node0 type veth peer name node0-peer
    ip -n "$netns" addr add "$NODE_IP/$NODE_PREFIX" dev node0
    ip -n "$netns" link set node0-peer up
    ip -n "$netns" link set node0 up
    ip -n "$netns" route add "$SERVICE_SUBNET" dev node0
    # Forwarding between pods and the node; bridged pod traffic through iptables, so a Service
    # whose endpoint is on the same bridge answers through kube-proxy's NAT.
    nsenter --net="/var/run/netns/$netns" sysctl -q -w net.ipv4.ip_forward=1 \
        net.bridge.bridge-nf-call-iptables=1
}

# --- teardown ---------------------------------------------------------------------------------

# node_down NETNS: what outlives the pid files of a node: the containers (children of their
# shims, which run in NETNS, in namespaces of their own), the namespace itself with its veth and
# bridge, the mounts under DIR, and what runc, the shims and the CNI plugins keep outside DIR:
# the containers' cgroups, the shims' sockets, the CNI plugins' cached results.
node_down() {
    local netns=$1 mountpoint id
    local -a cgroups=()
    if [[ -e "/var/run/netns/$netns" ]]; then
        kill_tree KILL $(ip netns pids "$netns")
        ip netns delete "$netns"
    fi
    # Deepest first; lazily, as a mount still busy would keep the rest.
    # One that will not go must not stop the rest of the teardown.
    dir_mounts | sort -r | while read -r mountpoint; do
        umount -l "$mountpoint" || log "cannot unmount $mountpoint"
    done
    # The tasks that were running when killed: a shim listens on /run/containerd/s/<sha256 of
    # "<containerd socket>/<namespace>/<id>">; runc made the cgroup /k8s.io/<id> in each hierarchy
    # (the kubelet gives no parent when cgroupsPerQOS is off); CNI results are
    # /var/lib/cni/results/<network>-<sandbox id>-<interface>.
    shopt -s nullglob
    for id in "$dir"/containerd/state/io.containerd.runtime.v2.task/k8s.io/*; do
        id=${id##*/}
        rm -f "/run/containerd/s/$(printf '%s' "$(node_socket)/k8s.io/$id" | sha256sum | cut -c1-64)" \
            /var/lib/cni/results/{"$netns",cni-loopback}-"$id"-*
        # v1 and hybrid hierarchies, then the unified one.
        cgroups+=(/sys/fs/cgroup/*/k8s.io/"$id" /sys/fs/cgroup/k8s.io/"$id")
    done
    remove_cgroups "${cgroups[@]}"
    # The parents runc and the shims made; another node may still use them (then they are not
    # empty, and stay).
    rmdir /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/k8s.io /run/containerd/s /run/containerd 2>/dev/null || true
    rm -f "$dir/netns"
}

# dir_mounts: the mount points under DIR.
dir_mounts() { findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1'; }

# remove_cgroups CGROUP_DIR...: removes them once the killed processes have left them (an
# exiting process leaves its cgroup at once, even as a zombie).
remove_cgroups() {
    local deadline=$((SECONDS + 10)) cgroup
    local -a left=("$@")
    while ((${#left[@]})); do
        for cgroup in "${left[@]}"; do rmdir "$cgroup" 2>/dev/null || true; done
        mapfile -t left < <(for cgroup in "${left[@]}"; do [[ -d "$cgroup" ]] && echo "$cgroup"; done)
        ((${#left[@]})) || break
        ((SECONDS < deadline)) || { log "cgroups left: ${left[*]}"; return 0; }
        sleep 0.1
    done
}

# reaped PID...: waits (up to 5 s) until the PIDs are gone from /proc, zombies too: once a node's
# down returns, `pgrep` finds none of its servers or containers.
reaped() {
    local deadline=$((SECONDS + 5)) pid
    for pid; do
        [[ "$pid" != "$$" ]] || continue   # a watcher running down
        while [[ -e "/proc/$pid" ]] && ((SECONDS < deadline)); do sleep 0.1; done
    done
}

# kill_tree SIGNAL PID...: signals the PIDs and all their descendants, except this script, its
# ancestors and its children (a watcher runs down from inside the namespace).
kill_tree() {
    local signal=$1; shift
    (($#)) || return 0
    local -a victims
    mapfile -t victims < <(python3 - "$$" "$@" <<'PY'
import os, sys
me, roots = int(sys.argv[1]), {int(p) for p in sys.argv[2:]}
parent = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            pass
spared, p = set(), me
while p > 1:
    spared.add(p)
    p = parent.get(p, 0)
def tree(roots):
    found, frontier = set(), set(roots)
    while frontier:
        found |= frontier
        frontier = {c for c, pp in parent.items() if pp in frontier} - found
    return found
print("\n".join(str(v) for v in tree(roots) - spared - tree({me})))
PY
    )
    ((${#victims[@]})) || return 0
    kill "-$signal" "${victims[@]}" 2>/dev/null || true   # some may have exited meanwhile
    reaped "${victims[@]}"
}


# --- configuration ----------------------------------------------------------------------------

# node_prepare: what the kube group needs to know before it starts, called by up inside the
# namespace: servers listen on every address of the namespace (pods reach them at NODE_IP), the
# API server's certificate names its Service and node addresses, and its flags for a cluster
# with a node.
node_prepare() {
    local pki="$dir/pki"
    listen_ip=0.0.0.0
    serving_sans=",IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default"
    serving_sans+=",DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    # The "kubernetes" Service's endpoint is the node IP (pods' in-cluster config); the
    # ServiceAccount admission plugin is on, as the controller-manager's token controllers run.
    # The kubelet is reached at its InternalIP (its name resolves nowhere) with a client
    # certificate of the client CA, which the kubelet trusts.
    apiserver_node_flags=(--bind-address 0.0.0.0 --advertise-address "$NODE_IP"
        --authorization-mode Node,RBAC --kubelet-preferred-address-types InternalIP
        --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt"
        --kubelet-client-key "$pki/apiserver-kubelet-client.key")
}

# node_pki: client certificates of the node's components, under the names RBAC's bootstrap
# roles and the Node authorizer expect. Called by make_pki, before the API server starts.
node_pki() {
    client_cert apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client"
    client_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
    client_cert kube-controller-manager "/CN=system:kube-controller-manager"
    client_cert kube-scheduler "/CN=system:kube-scheduler"
    client_cert kube-proxy "/CN=system:kube-proxy"
}

# node_config CONF: containerd's, the CNI's, the kubelet's and kube-proxy's configuration files
# in CONF; state and data go to each server's DIR/<server>/, emptied by start.
node_config() {
    local conf=$1 pki="$dir/pki" component
    mkdir -p "$conf/cni" "$conf/certs.d/$REGISTRY"
    for component in kubelet kube-controller-manager kube-scheduler kube-proxy; do
        write_kubeconfig "$component" "$conf/$component.kubeconfig"
    done
    # restrict_oom_score_adj: this machine refuses any lowering of oom_score_adj, even for root,
    # so a sandbox's -998 or a Guaranteed container's -997 would fail in runc; containerd raises
    # such scores to its own (0). netns_mounts_under_state_dir: pods' namespaces are mounted
    # under DIR, not /var/run/netns. Shims and runc keep their state under DIR too.
    cat >"$conf/containerd.toml" <<TOML
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$CONTAINERD_SOCKET"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "$dir/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$conf/cni"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$conf/certs.d"
TOML
    # The local registry speaks plain HTTP.
    printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n' \
        "$REGISTRY" "$REGISTRY" >"$conf/certs.d/$REGISTRY/hosts.toml"
    # The network is named after the namespace: containerd keeps CNI results outside DIR, in
    # /var/lib/cni/results/<network>-*, which down removes by that name.
    cat >"$conf/cni/10-pods.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "$(<"$dir/netns")", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_SUBNET", "gateway": "$POD_GATEWAY"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$dir/containerd/ipam"}}]}
JSON
    # Cluster DNS: CoreDNS at the node IP answers for cluster.local, from the API server, and
    # refuses every other name (no forward plugin). Pods with dnsPolicy Default get a resolver
    # that asks their own loopback, where nothing answers: no name ever reaches the machine's.
    printf 'nameserver 127.0.0.1\noptions ndots:1 attempts:1 timeout:1\n' >"$conf/resolv.conf"
    cat >"$conf/Corefile" <<COREFILE
.:53 {
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $dir/kubeconfig claimcheck-test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
}
COREFILE
    # This machine has cgroup v1 and v2 mounted side by side, which the kubelet refuses unless
    # failCgroupV1 is off; no QoS cgroups or node allocatable enforcement (neither works there).
    # The API server authenticates with a client certificate; a kubelet with no other tenant
    # lets any authenticated client in. syncFrequency: mounted ConfigMaps follow within ~10 s.
    # The node shares this machine's disk: at the kubelet's default thresholds (imagefs 15%
    # free) a machine whose disk is merely busy taints it and no pod is scheduled.
    cat >"$conf/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
oomScoreAdj: 0
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
resolvConf: $conf/resolv.conf
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/client-ca.crt}
authorization: {mode: AlwaysAllow}
podLogsDir: $dir/kubelet/logs
volumePluginDir: $dir/kubelet/volume-plugins
serializeImagePulls: false
syncFrequency: 10s
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, nodefs.inodesFree: 1%, imagefs.available: 1%, imagefs.inodesFree: 1%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
YAML
    # iptables mode; no conntrack sysctls (they are the machine's, not the namespace's).
    cat >"$conf/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $conf/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_SUBNET
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
}

# --- launch and readiness ---------------------------------------------------------------------

launch_node() {
    local registry_port conf="$dir/node-config" pki="$dir/pki"
    take_port registry_port
    REGISTRY="127.0.0.1:$registry_port"
    PAUSE_IMAGE="$REGISTRY/claimcheck/pause:$PAUSE_VERSION"
    CONTAINERD_SOCKET="$(node_socket)"
    rm -rf "$conf"
    node_config "$conf"
    start registry "$CRANE_BIN" registry serve --address "$REGISTRY" --disk "$dir/registry"
    start containerd containerd --config "$conf/containerd.toml"
    # The kubelet exits at once when the CRI socket is not there yet.
    wait_until containerd 30 ctr --address "$CONTAINERD_SOCKET" version
    # Ports are the defaults: nothing else listens in this namespace.
    start kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" \
        --kubeconfig "$conf/kube-controller-manager.kubeconfig" --bind-address 127.0.0.1 \
        --leader-elect=false --use-service-account-credentials \
        --service-account-private-key-file "$pki/service-account.key" --root-ca-file "$pki/ca.crt" \
        --service-cluster-ip-range "$SERVICE_SUBNET"
    start kube-scheduler "$KUBE_SCHEDULER_BIN" --kubeconfig "$conf/kube-scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false
    start kubelet "$KUBELET_BIN" --config "$conf/kubelet.yaml" --kubeconfig "$conf/kubelet.kubeconfig" \
        --root-dir "$dir/kubelet/root" --cert-dir "$dir/kubelet/pki" \
        --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
    start kube-proxy "$KUBE_PROXY_BIN" --config "$conf/kube-proxy.yaml"
    start coredns "$COREDNS_BIN" -conf "$conf/Corefile"
}

# push_pause_image: the sandbox image, /pause on an empty OCI base, into the local registry.
push_pause_image() {
    "$CRANE_BIN" append --oci-empty-base -f "$PAUSE_DIR/layer.tar" -t "$PAUSE_IMAGE" >/dev/null
    "$CRANE_BIN" mutate "$PAUSE_IMAGE" --entrypoint /pause --set-platform linux/amd64 \
        -t "$PAUSE_IMAGE" >/dev/null
}

# node_condition TYPE: the node's condition TYPE's status (True, False, Unknown), or nothing.
node_condition() {
    "$KUBECTL_BIN" --kubeconfig "$dir/kubeconfig" get node "$NODE_NAME" \
        -o "jsonpath={.status.conditions[?(@.type==\"$1\")].status}"
}
node_ready() { [[ "$(node_condition Ready)" == True ]]; }

ready_node() {
    wait_until registry 30 curl -sf "http://$REGISTRY/v2/"
    push_pause_image 2>"$dir/registry-push.log" || { cat "$dir/registry-push.log" >&2; die "pushing $PAUSE_IMAGE failed"; }
    wait_until kube-proxy 60 curl -sf http://127.0.0.1:10256/livez
    wait_until kubelet 90 node_ready
    # Pods in "default" are refused until its ServiceAccount exists.
    wait_until kube-controller-manager 60 "$KUBECTL_BIN" --kubeconfig "$dir/kubeconfig" get serviceaccount default
    wait_until kube-scheduler 30 curl -sfk https://127.0.0.1:10259/healthz
    wait_until coredns 30 curl -sf http://127.0.0.1:8181/ready
    local netns
    netns="$(<"$dir/netns")"
    env_lines+=(REGISTRY="$REGISTRY" PAUSE_IMAGE="$PAUSE_IMAGE" NODE_NAME="$NODE_NAME" NODE_IP="$NODE_IP"
        POD_SUBNET="$POD_SUBNET" NODE_NETNS="$netns" NODE_NETNS_PATH="/var/run/netns/$netns"
        NODE_ENTER="nsenter --net=/var/run/netns/$netns --" CONTAINERD_SOCKET="$CONTAINERD_SOCKET"
        REGISTRY_PID="$(<"$dir/registry.pid")" CONTAINERD_PID="$(<"$dir/containerd.pid")"
        CONTROLLER_MANAGER_PID="$(<"$dir/kube-controller-manager.pid")"
        SCHEDULER_PID="$(<"$dir/kube-scheduler.pid")" KUBELET_PID="$(<"$dir/kubelet.pid")"
        KUBE_PROXY_PID="$(<"$dir/kube-proxy.pid")" COREDNS_PID="$(<"$dir/coredns.pid")")
}
