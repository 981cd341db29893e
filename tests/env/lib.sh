# Sourced by install.sh, cluster.sh and smoke.sh: the versions, the cache and where each binary lives.
# Rust test support can compute the same paths from versions.env, or read install.sh's output.

env_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$env_dir/versions.env"
cache="${CLAIMCHECK_CACHE:-$HOME/.cache/claimcheck}"
[[ "$cache" == /* ]] || cache="$PWD/$cache"   # the scripts cd elsewhere

# One install directory per tool and version: a changed version gets a new directory, so it rebuilds.
KUBE_APISERVER_BIN="$cache/kube-apiserver-$KUBERNETES_VERSION/bin/kube-apiserver"
ETCD_BIN="$cache/etcd-$ETCD_VERSION/bin/etcd"
MINIO_BIN="$cache/minio-$MINIO_VERSION/bin/minio"
FAKE_GCS_SERVER_BIN="$cache/fake-gcs-server-$FAKE_GCS_SERVER_VERSION/bin/fake-gcs-server"
GCP_STORAGE_EMULATOR_BIN="$cache/gcp-storage-emulator-$GCP_STORAGE_EMULATOR_VERSION/bin/gcp-storage-emulator"
# Azurite runs as `node $AZURITE_BLOB_JS ...`, so the recorded pid is node's own.
AZURITE_BLOB_JS="$cache/azurite-$AZURITE_VERSION/node_modules/azurite/dist/src/blob/main.js"
HELM_BIN="$cache/helm-$HELM_VERSION/bin/helm"
KUBECTL_BIN="$cache/kubectl-$KUBECTL_VERSION/bin/kubectl"
CRANE_BIN="$cache/crane-$CRANE_VERSION/bin/crane"
KUBECONFORM_BIN="$cache/kubeconform-$KUBECONFORM_VERSION/bin/kubeconform"

# Prints the paths above as sourceable NAME=value lines.
print_paths() {
    local name
    for name in KUBE_APISERVER_BIN ETCD_BIN MINIO_BIN FAKE_GCS_SERVER_BIN GCP_STORAGE_EMULATOR_BIN \
        AZURITE_BLOB_JS HELM_BIN KUBECTL_BIN CRANE_BIN KUBECONFORM_BIN; do
        printf '%s=%q\n' "$name" "${!name}"
    done
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# go_env: Go's modules, build cache and GOPATH under the cache, so a rebuild reuses them; the
# installed Go only (never fetch another toolchain); static binaries, no C toolchain needed.
go_env() {
    export GOPATH="$cache/go"
    export GOMODCACHE="$cache/go/pkg/mod"
    export GOCACHE="$cache/go/build-cache"
    export GOTOOLCHAIN=local
    export CGO_ENABLED=0
    # -modcacherw: the module cache is removable with rm -rf; -buildvcs=false: scratch dirs are no repos.
    export GOFLAGS="-modcacherw -buildvcs=false -trimpath"
}

# go_build_once NAME SRC OUT/BINARY: builds the main package in SRC into OUT/BINARY, unless the
# marker OUT/.built says a run before did (OUT is keyed by the caller's hash of its sources).
go_build_once() {
    local name=$1 src=$2 binary=$3 out start=$SECONDS
    out="$(dirname "$binary")"
    [[ -f "$out/.built" ]] && return 0
    log "$name: building $binary"
    mkdir -p "$out"
    (cd "$src" && nice -n 10 go build -ldflags "-s -w" -o "$binary.tmp" .)
    mv "$binary.tmp" "$binary"
    touch "$out/.built"
    log "$name: built in $((SECONDS - start)) s"
}
die() { log "error: $*"; exit 1; }

# --- Clients for the object stores with nothing but curl and openssl (used by cluster.sh, smoke.sh) ---

# s3_curl CURL_ARGS...: a SigV4-signed request to MinIO ($S3_* from DIR/env). curl signs it itself,
# but Debian 12's curl 7.88 sends no x-amz-content-sha256 header and MinIO then takes the payload
# for empty: declare it unsigned (curl signs the header's value), as S3 allows. curl 7.88 also signs
# the query string as given, so write it canonical: sorted, values %-encoded, `lifecycle=` not `lifecycle`.
s3_curl() {
    curl -sS --fail-with-body --aws-sigv4 "aws:amz:$S3_REGION:s3" \
        --user "$S3_ACCESS_KEY_ID:$S3_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

# azure_curl METHOD PATH[?QUERY] BODY_FILE|"" [HEADER...]: a Shared Key signed Blob request to
# Azurite ($AZURE_* from DIR/env), response body on stdout. PATH starts with /<container>;
# headers are "x-ms-name: value".
azure_curl() {
    local method=$1 path_query=$2 body=$3 path query length="" type="" date key_hex
    shift 3
    path=${path_query%%\?*}
    query=""; [[ "$path_query" == *\?* ]] && query=${path_query#*\?}
    date="$(LC_ALL=C TZ=GMT date '+%a, %d %b %Y %H:%M:%S GMT')"
    local -a headers=("x-ms-date: $date" "x-ms-version: 2025-01-05" "$@")
    local -a curl_args=(-X "$method")
    if [[ -n "$body" ]]; then
        length="$(stat -c %s "$body")"; type=application/octet-stream
        curl_args+=(--data-binary "@$body" -H "Content-Type: $type")
        ((length > 0)) || length=""   # a zero length is signed as empty
    elif [[ "$method" == PUT ]]; then
        curl_args+=(-H "Content-Length: 0")
    fi
    # Canonicalized headers: the x-ms-* ones, lower-cased and sorted; resource: /account/path then
    # each query parameter as "\nname:value", sorted. Path-style URLs carry the account in the
    # path, so the account appears twice.
    local canon_headers canon_resource h
    canon_headers="$(for h in "${headers[@]}"; do printf '%s:%s\n' "$(tr A-Z a-z <<<"${h%%:*}")" "${h#*: }"; done | LC_ALL=C sort)"
    canon_resource="/$AZURE_STORAGE_ACCOUNT/$AZURE_STORAGE_ACCOUNT$path"
    local param
    if [[ -n "$query" ]]; then
        while IFS= read -r param; do
            canon_resource+=$'\n'"${param%%=*}:${param#*=}"
        done < <(tr '&' '\n' <<<"$query" | LC_ALL=C sort)
    fi
    local string_to_sign
    string_to_sign="$(printf '%s\n\n\n%s\n\n%s\n\n\n\n\n\n\n%s\n%s' "$method" "$length" "$type" "$canon_headers" "$canon_resource")"
    key_hex="$(base64 -d <<<"$AZURE_STORAGE_KEY" | od -An -vtx1 | tr -d ' \n')"
    local signature
    signature="$(printf '%s' "$string_to_sign" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$key_hex" -binary | base64 -w0)"
    for h in "${headers[@]}"; do curl_args+=(-H "$h"); done
    curl -sS --fail-with-body "${curl_args[@]}" \
        -H "Authorization: SharedKey $AZURE_STORAGE_ACCOUNT:$signature" "$AZURITE_BLOB_URL$path_query"
}
