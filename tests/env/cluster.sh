#!/usr/bin/env bash
# Starts and stops the test servers on loopback, on free ports, with everything under one directory.
#
#   cluster.sh up DIR [--only kube,node,s3,gcs,azure] [--watch PID]   (node: as root)
#   cluster.sh down DIR
#   cluster.sh restart DIR SERVER
#
# up installs what it needs (a no-op with a warm cache), generates the PKI, starts each server
# with its own, empty, data directory DIR/<server>/ and log DIR/<server>.log, waits until each
# answers, creates the default bucket/container, and writes
#   DIR/kubeconfig  an admin kubeconfig (client certificate in group system:masters)
#   DIR/env         every endpoint, credential and pid, one KEY='value' line each (shell-sourceable)
#   DIR/<server>.pid
# Groups: kube (etcd + kube-apiserver), node (below), s3 (MinIO), gcs (fake-gcs-server +
# gcp-storage-emulator), azure (Azurite blob); default all but node. With --watch PID, a watcher
# runs `down DIR` once PID exits, so a test process that dies without cleaning up leaves no
# servers behind.
# If up fails, it tears down what it started and exits non-zero; the logs stay in DIR.
# down kills what DIR's pid files name (TERM, then KILL after 10 s) and is idempotent.
# restart starts one object-store server (minio, gcp-storage-emulator, azurite) again, stopping it
# first if it still runs, with the command, port and data it had (a store that went away and came
# back); it waits until the server answers and puts the new pid in DIR/env.
#
# The node group (it implies kube) adds a node that runs pods: kube-controller-manager,
# kube-scheduler, containerd (Debian's, with runc and the CNI plugins), a kubelet, kube-proxy,
# CoreDNS (pods resolve <service>.<namespace>.svc; nothing else) and a local registry holding a
# pause image built from node/pause.c. Then EVERY server of the run,
# the other groups' too, runs in a network namespace of its own, named in DIR/netns, where
# nothing leads out (no default route): a veth carries the node IP, a CNI bridge the pods. Its
# loopback is not the machine's: run clients inside it with `tests/env/node/enter.sh DIR CMD...`
# (or DIR/env's NODE_ENTER prefix). DIR/env then also has REGISTRY (push test images there, e.g.
# with crane inside the namespace), PAUSE_IMAGE, NODE_NAME, NODE_IP, POD_SUBNET, NODE_NETNS.
# Servers in that namespace listen on all of its addresses, so pods reach them at NODE_IP.
# down also kills what the kubelet started (containers and their shims), unmounts what the
# kubelet and containerd mounted under DIR, and deletes the namespace with its bridge and veth.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$env_dir/node/lib.sh"
source "$env_dir/node/group.sh"
self="$env_dir/cluster.sh"

usage() { sed -n '4,6p' "$self" | cut -c3- >&2; exit 2; }

# Where servers listen: loopback, or every address of the node's own namespace (see node group).
listen_ip=127.0.0.1

# --- down -------------------------------------------------------------------------------------

# The pid in a pid file is ours only if the process still runs in DIR (each server's working
# directory is its data directory there): a recycled pid belongs to someone else.
our_pid() {
    local pid=$1 cwd
    cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null)" || return 1
    [[ "$cwd" == "$dir" || "$cwd" == "$dir"/* ]]
}

# stop PIDFILE...: TERM the processes the pid files name, KILL those still there after 10 s.
stop() {
    local pidfile pid
    local -a pids=()
    for pidfile in "$@"; do
        [[ -f "$pidfile" ]] || continue
        pid="$(<"$pidfile")"
        # A watcher that saw its test exit execs `down` itself: don't kill ourselves.
        if [[ "$pid" != "$$" ]] && our_pid "$pid"; then
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        fi
    done
    local deadline=$((SECONDS + 10))
    for pid in "${pids[@]}"; do
        while our_pid "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
        if our_pid "$pid"; then
            log "pid $pid ignored TERM for 10 s: KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    rm -f "$@"
}

down() {
    shopt -s nullglob
    local -a pids=()
    local pidfile
    for pidfile in "$dir"/*.pid; do our_pid "$(<"$pidfile")" && pids+=("$(<"$pidfile")"); done
    # The kubelet first, or it restarts what goes away; the API server's other clients next, or
    # it waits 10 s on their watches; then the API server: once etcd is gone, its shutdown hangs
    # on etcd calls.
    stop "$dir/kubelet.pid"
    stop "$dir"/{kube-proxy,kube-scheduler,kube-controller-manager,coredns}.pid
    stop "$dir/kube-apiserver.pid"
    stop "$dir"/*.pid
    if [[ -f "$dir/netns" ]]; then
        node_down "$(<"$dir/netns")"
        reaped "${pids[@]}"
    fi
}

# --- up ---------------------------------------------------------------------------------------

# free_ports N: N distinct free loopback ports (all held open until all are chosen). up takes all
# it needs in one call, so two of its servers never get the same port.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}
# take_port VAR...: sets each VAR to the next of the ports up reserved.
take_port() {
    local var
    for var; do
        printf -v "$var" '%s' "${ports[0]:?no port left}"
        ports=("${ports[@]:1}")
    done
}

# start NAME CMD...: runs CMD as NAME in DIR/NAME/, emptied first (every up starts from no data),
# with a fresh log DIR/NAME.log. CMD is kept in DIR/NAME.cmd for restart.
start() {
    local name=$1; shift
    rm -rf "${dir:?}/$name"
    mkdir -p "$dir/$name"
    printf '%s\0' "$@" >"$dir/$name.cmd"
    : >"$dir/$name.log"
    spawn "$name"
}

# spawn NAME: runs DIR/NAME.cmd detached (setsid: no terminal, survives this script) in DIR/NAME/,
# appending to DIR/NAME.log; its pid goes to DIR/NAME.pid. exec keeps the pid the server's own.
spawn() {
    local name=$1 cmd
    mapfile -d '' cmd <"$dir/$name.cmd"
    (cd "$dir/$name" && exec setsid "${cmd[@]}" </dev/null >>"$dir/$name.log" 2>&1) &
    echo $! >"$dir/$name.pid"
}

# wait_until NAME SECONDS CMD...: retries CMD until it succeeds; fails at once if NAME died.
wait_until() {
    local name=$1 timeout=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ! our_pid "$(<"$dir/$name.pid")"; then
            tail -n 30 "$dir/$name.log" >&2
            die "$name exited during startup (log: $dir/$name.log)"
        fi
        ((SECONDS < deadline)) || { tail -n 30 "$dir/$name.log" >&2; die "$name not ready after $timeout s"; }
        sleep 0.2
    done
}

# The PKI, with openssl: a serving CA and the API server's certificate for 127.0.0.1/localhost
# (and for its addresses on the node, serving_sans);
# a separate client CA and an admin client certificate (O=system:masters gives cluster-admin);
# the service-account signing key pair. EC P-256 keys: fast to make, accepted by kube and rustls.
make_pki() {
    local pki="$dir/pki"
    mkdir -p "$pki"
    new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$1.key" 2>/dev/null; }
    # sign NAME ISSUER SUBJECT EXTENSIONS: a certificate for NAME.key, signed by ISSUER (self if same).
    sign() {
        local name=$1 issuer=$2 subject=$3 ext=$4
        local -a by=(-CA "$pki/$issuer.crt" -CAkey "$pki/$issuer.key" -CAcreateserial)
        [[ "$name" == "$issuer" ]] && by=(-key "$pki/$name.key")
        openssl req -new -key "$pki/$name.key" -subj "$subject" 2>/dev/null |
            openssl x509 -req "${by[@]}" -days 3650 -out "$pki/$name.crt" \
                -extfile <(printf '%s\n' "$ext") 2>/dev/null
    }
    local ca_ext=$'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash'
    new_key ca && sign ca ca "/CN=claimcheck-test-ca" "$ca_ext"
    new_key serving && sign serving ca "/CN=kube-apiserver" $'basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost'"${serving_sans:-}"'
authorityKeyIdentifier=keyid'
    new_key client-ca && sign client-ca client-ca "/CN=claimcheck-test-client-ca" "$ca_ext"
    client_cert admin "/O=system:masters/CN=claimcheck-admin"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/service-account.key" 2>/dev/null
    openssl pkey -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub"
    if [[ -n "$with_node" ]]; then node_pki; fi
}

# client_cert NAME SUBJECT: DIR/pki/NAME.{key,crt}, a client certificate from the client CA.
client_cert() {
    local pki="$dir/pki"
    new_key "$1" && sign "$1" client-ca "$2" $'basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid'
}

# write_kubeconfig [USER [FILE]]: a kubeconfig for DIR/pki/USER.crt (default admin, DIR/kubeconfig).
write_kubeconfig() {
    local pki="$dir/pki" user=${1:-admin} file=${2:-$dir/kubeconfig}
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: claimcheck-test
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: claimcheck-admin
  user:
    client-certificate-data: $(base64 -w0 "$pki/$user.crt")
    client-key-data: $(base64 -w0 "$pki/$user.key")
contexts:
- name: claimcheck-test
  context:
    cluster: claimcheck-test
    user: claimcheck-admin
    namespace: default
current-context: claimcheck-test
EOF
    chmod 600 "$file"
}

# Each group has launch_GROUP (start its processes, without waiting) and ready_GROUP (wait until
# they answer, create the default bucket, add DIR/env lines), so the servers start in parallel.

launch_kube() {
    local pki="$dir/pki"
    local etcd_port etcd_peer_port apiserver_port
    take_port etcd_port etcd_peer_port apiserver_port
    make_pki
    ETCD_URL="http://127.0.0.1:$etcd_port"
    APISERVER_URL="https://127.0.0.1:$apiserver_port"
    # --unsafe-no-fsync as envtest: a throwaway store need not survive a power cut.
    start etcd "$ETCD_BIN" --name claimcheck --data-dir "$dir/etcd/data" \
        --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer_port" \
        --initial-cluster "claimcheck=http://127.0.0.1:$etcd_peer_port" \
        --unsafe-no-fsync --log-level warn
    # The API server would retry, but its log would fill with connection errors meanwhile.
    wait_until etcd 30 curl -sf "$ETCD_URL/health"
    local -a topology
    if [[ -n "$with_node" ]]; then
        topology=("${apiserver_node_flags[@]}")
    else
        # Flags as controller-runtime's envtest sets them. No controller-manager runs, so the
        # ServiceAccount admission plugin (which waits for a token controller) is off. Service
        # IPs are only allocated from the range, never routed. No endpoint reconciler: the
        # "kubernetes" Service's Endpoints may not hold a loopback address, and it would log
        # that every 10 s.
        topology=(--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --authorization-mode RBAC
            --disable-admission-plugins ServiceAccount --endpoint-reconciler-type none)
    fi
    start kube-apiserver "$KUBE_APISERVER_BIN" \
        --etcd-servers "$ETCD_URL" \
        "${topology[@]}" --secure-port "$apiserver_port" \
        --cert-dir "$dir/kube-apiserver" \
        --tls-cert-file "$pki/serving.crt" --tls-private-key-file "$pki/serving.key" \
        --client-ca-file "$pki/client-ca.crt" \
        --service-account-issuer "$APISERVER_URL" \
        --service-account-key-file "$pki/service-account.pub" \
        --service-account-signing-key-file "$pki/service-account.key" \
        --service-cluster-ip-range "$SERVICE_SUBNET" \
        --allow-privileged=true
    write_kubeconfig
}

ready_kube() {
    local pki="$dir/pki"
    local -a admin_curl=(curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key")
    wait_until kube-apiserver 90 "${admin_curl[@]}" "$APISERVER_URL/readyz"
    # readyz means the bootstrap controllers started, not that they created the system namespaces.
    wait_until kube-apiserver 30 "${admin_curl[@]}" "$APISERVER_URL/api/v1/namespaces/default"
    env_lines+=(KUBECONFIG="$dir/kubeconfig" KUBECTL="$KUBECTL_BIN" HELM="$HELM_BIN"
        APISERVER_URL="$APISERVER_URL" ETCD_URL="$ETCD_URL"
        APISERVER_CA_FILE="$pki/ca.crt" ADMIN_CERT_FILE="$pki/admin.crt" ADMIN_KEY_FILE="$pki/admin.key"
        CLIENT_CA_CERT_FILE="$pki/client-ca.crt" CLIENT_CA_KEY_FILE="$pki/client-ca.key"
        ETCD_PID="$(<"$dir/etcd.pid")" APISERVER_PID="$(<"$dir/kube-apiserver.pid")")
}

launch_s3() {
    local port console_port
    take_port port console_port
    S3_ENDPOINT="http://127.0.0.1:$port" S3_REGION=us-east-1 S3_BUCKET=claimcheck
    S3_ACCESS_KEY_ID=claimcheck S3_SECRET_ACCESS_KEY=claimcheck-secret
    # No console, no update checks: nothing may leave the machine. The settings are part of the
    # command (env), so that restart has them too.
    start minio env MINIO_ROOT_USER="$S3_ACCESS_KEY_ID" MINIO_ROOT_PASSWORD="$S3_SECRET_ACCESS_KEY" \
        MINIO_BROWSER=off MINIO_UPDATE=off MINIO_REGION="$S3_REGION" \
        "$MINIO_BIN" server --quiet --address "$listen_ip:$port" \
        --console-address "$listen_ip:$console_port" "$dir/minio/data"
}

# answers_SERVER: whether the object-store server answers (ready_GROUP and restart wait on it).
answers_minio() { curl -sf "$S3_ENDPOINT/minio/health/ready"; }
answers_gcp-storage-emulator() { curl -sf "$GCS_EMULATOR_URL/storage/v1/b/$GCS_BUCKET"; }
# Any HTTP answer (403 without credentials) means Azurite listens.
answers_azurite() { curl -s -o /dev/null "$AZURITE_BLOB_URL?comp=list"; }

ready_s3() {
    wait_until minio 30 answers_minio
    # Ready can come before MinIO's object layer is: a loaded machine saw 503 here. A failed
    # PUT creates nothing, so it is tried again.
    wait_until minio 30 s3_curl -X PUT "$S3_ENDPOINT/$S3_BUCKET"
    env_lines+=(S3_ENDPOINT="$S3_ENDPOINT" S3_REGION="$S3_REGION" S3_BUCKET="$S3_BUCKET"
        S3_ACCESS_KEY_ID="$S3_ACCESS_KEY_ID" S3_SECRET_ACCESS_KEY="$S3_SECRET_ACCESS_KEY"
        MINIO_PID="$(<"$dir/minio.pid")")
}

launch_gcs() {
    local fake_port emulator_port
    take_port fake_port emulator_port
    FAKE_GCS_URL="http://127.0.0.1:$fake_port" GCS_EMULATOR_URL="http://127.0.0.1:$emulator_port"
    GCS_BUCKET=claimcheck
    start fake-gcs-server "$FAKE_GCS_SERVER_BIN" -scheme http -host "$listen_ip" -port "$fake_port" \
        -public-host "127.0.0.1:$fake_port" -external-url "$FAKE_GCS_URL" \
        -backend filesystem -filesystem-root "$dir/fake-gcs-server/data" -log-level warn
    # Through gcs-emulator.py: it adds the XML API's ETag and Last-Modified (see that file).
    start gcp-storage-emulator "$(dirname "$GCP_STORAGE_EMULATOR_BIN")/python" "$env_dir/gcs-emulator.py" --data-dir "$dir/gcp-storage-emulator/data" \
        start --host "$listen_ip" --port "$emulator_port" --default-bucket "$GCS_BUCKET"
}

ready_gcs() {
    wait_until fake-gcs-server 30 curl -sf "$FAKE_GCS_URL/storage/v1/b"
    curl -sS --fail-with-body -X POST -H 'Content-Type: application/json' \
        -d "{\"name\": \"$GCS_BUCKET\"}" "$FAKE_GCS_URL/storage/v1/b?project=claimcheck" >/dev/null
    wait_until gcp-storage-emulator 30 answers_gcp-storage-emulator
    env_lines+=(FAKE_GCS_URL="$FAKE_GCS_URL" GCS_EMULATOR_URL="$GCS_EMULATOR_URL" GCS_BUCKET="$GCS_BUCKET"
        FAKE_GCS_PID="$(<"$dir/fake-gcs-server.pid")" GCS_EMULATOR_PID="$(<"$dir/gcp-storage-emulator.pid")")
}

launch_azure() {
    local port
    take_port port
    # Azurite's well-known development account and key (public, in Microsoft's documentation).
    AZURE_STORAGE_ACCOUNT=devstoreaccount1
    AZURE_STORAGE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
    AZURITE_BLOB_URL="http://127.0.0.1:$port/$AZURE_STORAGE_ACCOUNT" AZURE_CONTAINER=claimcheck
    # AZURITE_DEBUG=FILE makes Azurite log each request's string-to-sign there (for signing bugs).
    start azurite node "$AZURITE_BLOB_JS" --blobHost "$listen_ip" --blobPort "$port" \
        --location "$dir/azurite/data" --skipApiVersionCheck --disableTelemetry --disableProductStyleUrl \
        ${AZURITE_DEBUG:+--debug "$AZURITE_DEBUG"}
}

ready_azure() {
    wait_until azurite 30 answers_azurite
    azure_curl PUT "/$AZURE_CONTAINER?restype=container" "" >/dev/null
    # AZURITE_BLOB_STORAGE_URL (no account in the path) is what object_store's emulator mode reads.
    env_lines+=(AZURITE_BLOB_URL="$AZURITE_BLOB_URL" AZURITE_BLOB_STORAGE_URL="${AZURITE_BLOB_URL%/*}"
        AZURE_STORAGE_ACCOUNT="$AZURE_STORAGE_ACCOUNT"
        AZURE_STORAGE_KEY="$AZURE_STORAGE_KEY" AZURE_CONTAINER="$AZURE_CONTAINER"
        AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$AZURE_STORAGE_ACCOUNT;AccountKey=$AZURE_STORAGE_KEY;BlobEndpoint=$AZURITE_BLOB_URL;"
        AZURITE_PID="$(<"$dir/azurite.pid")")
}

# in_netns NETNS: whether this script runs in the network namespace NETNS.
in_netns() { [[ "$(stat -L -c %i /proc/self/ns/net)" == "$(stat -L -c %i "/var/run/netns/$1" 2>/dev/null)" ]]; }

up() {
    local only="kube,s3,gcs,azure" watch="" group with_node="" netns
    local -a args=("$@")
    while (($#)); do
        case "$1" in
            --only) only=${2:?}; shift 2 ;;
            --watch) watch=${2:?}; shift 2 ;;
            *) usage ;;
        esac
    done
    local -a groups tools=()
    IFS=, read -r -a groups <<<"$only"
    if [[ ",$only," == *,node,* ]]; then
        # The node needs the API server, started and answering before it.
        with_node=1
        local -a others
        mapfile -t others < <(printf '%s\n' "${groups[@]}" | grep -vx 'kube\|node')
        groups=(kube node "${others[@]}")
    fi
    for group in "${groups[@]}"; do
        case "$group" in
            kube) tools+=(etcd kube-apiserver kubectl helm) ;;
            node) tools+=(kube-controller-manager kube-scheduler kubelet kube-proxy coredns pause crane) ;;
            s3) tools+=(minio) ;;
            gcs) tools+=(fake-gcs-server gcp-storage-emulator) ;;
            azure) tools+=(azurite) ;;
            *) die "unknown group '$group' (kube, node, s3, gcs, azure)" ;;
        esac
    done
    "$env_dir/install.sh" "${tools[@]}" >/dev/null

    local pidfile
    for pidfile in "$dir"/*.pid; do
        if [[ -e "$pidfile" ]] && our_pid "$(<"$pidfile")"; then
            die "$dir is already up: run '$self down $dir' first"
        fi
    done
    rm -f "$dir"/*.pid "$dir/env"
    # On any failure, stop what already started; the logs stay for a look.
    trap 'status=$?; ((status == 0)) || { log "up failed: stopping what started (logs in $dir)"; down; }' EXIT
    if [[ -n "$with_node" ]]; then
        netns="$(netns_name "$dir")"
        if ! in_netns "$netns"; then
            # A namespace or mounts left from a run that was never taken down: down removes them.
            [[ -e "/var/run/netns/$netns" || -n "$(dir_mounts)" ]] &&
                die "$dir has a namespace or mounts left: run '$self down $dir' first"
            netns_up "$netns"
            # Everything from here on runs in the namespace; its failure trap takes it down.
            trap - EXIT
            exec nsenter --net="/var/run/netns/$netns" -- "$self" up "$dir" "${args[@]}"
        fi
        node_prepare
    fi

    env_lines=(CLAIMCHECK_ENV_DIR="$dir")
    if [[ -n "$watch" ]]; then
        kill -0 "$watch" 2>/dev/null || die "--watch $watch: no such process"
        # Polls rather than waits: PID is not our child. exec makes the watcher's pid down's own.
        start watch bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down "$3"' \
            watch "$watch" "$self" "$dir"
        env_lines+=(WATCH_PID="$(<"$dir/watch.pid")")
    fi
    read -r -a ports < <(free_ports 9)   # kube 3, node 1, s3 2, gcs 2, azure 1
    for group in "${groups[@]}"; do "launch_$group"; done
    for group in "${groups[@]}"; do "ready_$group"; done

    local line
    for line in "${env_lines[@]}"; do printf "%s='%s'\n" "${line%%=*}" "${line#*=}"; done >"$dir/env.tmp"
    mv "$dir/env.tmp" "$dir/env"   # appears whole, only once everything answers
}

restart() {
    local name=$1 old new
    declare -F "answers_$name" >/dev/null || die "restart: '$name' is not an object-store server"
    [[ -f "$dir/$name.pid" && -f "$dir/env" ]] || die "restart: $name was not started in $dir"
    old="$(<"$dir/$name.pid")"
    stop "$dir/$name.pid"
    spawn "$name"
    source "$dir/env"   # the endpoints answers_SERVER checks
    wait_until "$name" 30 "answers_$name"
    new="$(<"$dir/$name.pid")"
    sed -i "s/_PID='$old'\$/_PID='$new'/" "$dir/env"
}

if (($# < 2)) || [[ "$1" != up && "$1" != down && "$1" != restart ]]; then usage; fi
command=$1 dir=$2; shift 2
mkdir -p "$dir"
dir="$(cd "$dir" && pwd -P)"
case "$command" in
    up) up "$@" ;;
    down) (($# == 0)) || usage; down ;;
    restart)
        (($# == 1)) || usage
        # A node's servers run in its namespace: a restarted one too.
        if [[ -f "$dir/netns" ]] && ! in_netns "$(<"$dir/netns")"; then
            exec nsenter --net="/var/run/netns/$(<"$dir/netns")" -- "$self" restart "$dir" "$1"
        fi
        restart "$1" ;;
esac
