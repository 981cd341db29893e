#!/usr/bin/env bash
# Checks the node that `cluster.sh up DIR --only node,...` started, from inside its network
# namespace, as a user of the cluster would see it:
#   - the node is Ready, with its InternalIP;
#   - a pod with a native sidecar (an init container with restartPolicy Always and a startup
#     probe) and a main container, both from the local registry, runs both, the main one started
#     only once the sidecar's startup probe passed, with a pod IP from the CNI bridge, and
#     kubectl exec reaches it;
#   - a Deployment's pod is created by the controller-manager (Deployment -> ReplicaSet -> Pod),
#     and the garbage collector removes it with the Deployment;
#   - a Service IP leads to its endpoint through kube-proxy (the "kubernetes" Service), from the
#     node's namespace (as the API server reaches a webhook's Service) and from the sidecar pod's
#     (as pods reach the API server);
#   - the pod's resolver is CoreDNS at the node IP, which gives Service names their IPs and
#     refuses any name outside the cluster.
# Exits non-zero with the reason at the first failure.
# Usage: smoke-node.sh DIR
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$env_dir/node/lib.sh"
(($# == 1)) || { echo "usage: $0 DIR" >&2; exit 2; }
dir="$(cd "$1" && pwd -P)"
[[ -f "$dir/env" ]] || die "$dir/env missing: run cluster.sh up $dir --only node first"
source "$dir/env"
[[ -n "${NODE_NETNS:-}" ]] || die "$dir has no node: run cluster.sh up $dir --only node"

namespace="smoke-node-$$"
kubectl() { $NODE_ENTER "$KUBECTL" --kubeconfig "$KUBECONFIG" --request-timeout 20s -n "$namespace" "$@"; }
cleanup() { kubectl delete namespace "$namespace" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

check() { log "smoke-node: $*"; }
# until_true SECONDS CMD...: retries CMD for up to SECONDS.
until_true() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do ((SECONDS < deadline)) || return 1; sleep 0.5; done
}
field() { kubectl get "$1" -o "jsonpath=$2"; }
# in_pod_subnet IP: whether IP is in POD_SUBNET.
in_pod_subnet() { python3 -c 'import ipaddress,sys; sys.exit(ipaddress.ip_address(sys.argv[1]) not in ipaddress.ip_network(sys.argv[2]))' "$1" "$POD_SUBNET"; }

check "node $NODE_NAME Ready with InternalIP $NODE_IP"
ready="$(field "node/$NODE_NAME" '{.status.conditions[?(@.type=="Ready")].status}')"
[[ "$ready" == True ]] || die "node $NODE_NAME is not Ready (Ready=$ready): see $dir/kubelet.log"
internal_ip="$(field "node/$NODE_NAME" '{.status.addresses[?(@.type=="InternalIP")].address}')"
[[ "$internal_ip" == "$NODE_IP" ]] || die "node InternalIP is '$internal_ip', expected $NODE_IP"

kubectl create namespace "$namespace" >/dev/null
until_true 30 kubectl get serviceaccount default ||
    die "no ServiceAccount 'default' in $namespace after 30 s: the controller-manager's token controllers do not run"

check "pod with a native sidecar (startup probe) and a main container, images from $REGISTRY"
# The probe's first run is $probe_delay s after the sidecar starts: the main container may not
# start before.
probe_delay=2
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: sidecar}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: sidecar
    image: $PAUSE_IMAGE
    restartPolicy: Always
    startupProbe:
      exec: {command: [/pause, -v]}
      initialDelaySeconds: $probe_delay
      periodSeconds: 1
  containers:
  - name: main
    image: $PAUSE_IMAGE
YAML
kubectl wait --for condition=Ready --timeout 60s pod/sidecar >/dev/null || {
    kubectl describe pod sidecar >&2
    die "pod with a sidecar not Ready after 60 s"
}
for container in initContainerStatuses containerStatuses; do
    running="$(field pod/sidecar "{.status.${container}[0].state.running.startedAt}")"
    [[ -n "$running" ]] || die "pod/sidecar: ${container}[0] is not running: $(field pod/sidecar "{.status.${container}[0].state}")"
done
[[ "$(field pod/sidecar '{.status.initContainerStatuses[0].started}')" == true ]] ||
    die "pod/sidecar: the sidecar's startup probe did not pass"
sidecar_started="$(field pod/sidecar '{.status.initContainerStatuses[0].state.running.startedAt}')"
main_started="$(field pod/sidecar '{.status.containerStatuses[0].state.running.startedAt}')"
(($(date -d "$main_started" +%s) - $(date -d "$sidecar_started" +%s) >= probe_delay)) ||
    die "pod/sidecar: main started at $main_started, before the sidecar's startup probe passed (sidecar started at $sidecar_started, probe after ${probe_delay} s)"
pod_ip="$(field pod/sidecar '{.status.podIP}')"
in_pod_subnet "$pod_ip" || die "pod/sidecar: pod IP '$pod_ip' is not from the bridge's $POD_SUBNET"
# Through the API server, the kubelet (at its InternalIP) and containerd's stream server.
exec_out="$(kubectl exec sidecar -c main -- /pause -v)" || die "kubectl exec into pod/sidecar failed"
[[ "$exec_out" == claimcheck-pause ]] || die "kubectl exec: got '$exec_out', expected 'claimcheck-pause'"

check "Deployment -> ReplicaSet -> Pod by the controller-manager, removed with it by the garbage collector"
kubectl create deployment pause --image "$PAUSE_IMAGE" >/dev/null
kubectl rollout status deployment/pause --timeout 60s >/dev/null ||
    die "deployment/pause not rolled out after 60 s (see $dir/kube-controller-manager.log)"
pod="$(kubectl get pods -l app=pause -o name)"
[[ "$pod" == pod/* && "$pod" != *$'\n'* ]] || die "deployment/pause: expected one pod, got '$pod'"
owner="$(field "$pod" '{.metadata.ownerReferences[0].kind}')"
[[ "$owner" == ReplicaSet ]] || die "$pod is owned by '$owner', not a ReplicaSet"
in_pod_subnet "$(field "$pod" '{.status.podIP}')" || die "$pod: pod IP not from $POD_SUBNET"
kubectl delete deployment pause --wait=true >/dev/null
no_pause_pods() { [[ -z "$(kubectl get pods -l app=pause -o name)" ]]; }
until_true 60 no_pause_pods ||
    die "deployment/pause deleted, but its pods are still there after 60 s: no garbage collection"

# pod_netns IP: the network namespace (a file under DIR) of the pod whose address is IP.
pod_netns() {
    local netns
    for netns in "$dir"/containerd/state/io.containerd.grpc.v1.cri/netns/*; do
        if nsenter --net="$netns" ip -4 -o addr show | grep -qF " $1/"; then echo "$netns"; return; fi
    done
    die "no network namespace under $dir has the pod IP $1"
}
# readyz_through_service NETNS: the API server's /readyz, asked at the "kubernetes" Service IP.
readyz_through_service() {
    nsenter --net="$1" curl -sS --max-time 10 --cacert "$APISERVER_CA_FILE" --cert "$ADMIN_CERT_FILE" \
        --key "$ADMIN_KEY_FILE" "https://$KUBERNETES_SERVICE_IP/readyz" ||
        die "https://$KUBERNETES_SERVICE_IP/readyz does not answer from $1 (see $dir/kube-proxy.log)"
}

check "Service IP $KUBERNETES_SERVICE_IP:443 leads to the API server through kube-proxy, from the node and from a pod"
for netns in "$NODE_NETNS_PATH" "$(pod_netns "$pod_ip")"; do
    readyz="$(readyz_through_service "$netns")"
    [[ "$readyz" == ok ]] || die "https://$KUBERNETES_SERVICE_IP/readyz answered '$readyz' in $netns"
done

# dns_a NETNS NAME: asks the node's DNS server, from NETNS, for NAME's A record: prints the
# address, or fails with the answer's rcode (a plain UDP query: the image has no resolver tools).
dns_a() {
    nsenter --net="$1" python3 - "$NODE_IP" "$2" <<'PY'
import socket, struct, sys
server, name = sys.argv[1], sys.argv[2]
query = struct.pack(">6H", 0x1234, 0x0100, 1, 0, 0, 0)
query += b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"
query += struct.pack(">2H", 1, 1)
try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query, (server, 53))
        reply = s.recv(4096)
except OSError as e:
    sys.exit(f"{name}: no answer from {server}:53: {e or type(e).__name__}")
rcode, answers = reply[3] & 0xF, struct.unpack(">H", reply[6:8])[0]
if rcode or not answers:
    sys.exit(f"{name}: rcode {rcode}, {answers} answers")
print(socket.inet_ntoa(reply[-4:]))
PY
}

check "cluster DNS: the pod's resolver is $NODE_IP, Service names resolve, other names are refused"
resolv="$(grep -lx "search $namespace.svc.cluster.local svc.cluster.local cluster.local" \
    "$dir"/containerd/root/io.containerd.grpc.v1.cri/sandboxes/*/resolv.conf | head -n1)"
[[ -n "$resolv" ]] || die "no pod resolv.conf searches $namespace.svc.cluster.local (kubelet clusterDNS)"
grep -qx "nameserver $NODE_IP" "$resolv" || die "$resolv: the nameserver is not $NODE_IP: $(<"$resolv")"
pod_netns="$(pod_netns "$pod_ip")"
address="$(dns_a "$pod_netns" kubernetes.default.svc.cluster.local)" ||
    die "kubernetes.default.svc.cluster.local does not resolve (see $dir/coredns.log)"
[[ "$address" == "$KUBERNETES_SERVICE_IP" ]] || die "kubernetes.default.svc resolves to $address"
! dns_a "$pod_netns" claimcheck.example 2>/dev/null || die "a name outside the cluster resolved"

check "passed"
