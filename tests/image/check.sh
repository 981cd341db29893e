#!/usr/bin/env bash
# The container image as its users meet it (issue 10, section 1):
#   1. image/build.sh builds it with no daemon, and a second build gives the same digest;
#   2. its configuration: linux/amd64, user 65532:65532, entrypoint /usr/local/bin/claimcheck,
#      OCI labels with Cargo.toml's version, the git revision, the licence and the source;
#   3. its one layer holds exactly the binary, the libraries `ldd` names, the CA bundle and
#      /etc/{passwd,group}, all regular files: no shell, no package manager;
#   4. unpacked, it runs `claimcheck --version` and `claimcheck crd` chrooted as 65532:65532 in
#      an empty environment, so the libraries it carries suffice;
#   5. TLS trusts the image's own CA bundle: a store with a CA outside it is refused before any
#      request, and reached once that CA is appended to the bundle; a name that only the pod's
#      /etc/hosts holds resolves from it, with no DNS query;
#   6. pushed to a loopback registry and pulled back, its digest is unchanged;
#   7. the Containerfile, built by Debian's buildah (vfs storage, chroot isolation), gives the same
#      configuration and files, and runs too.
# Needs the release binary (CLAIMCHECK_BIN, default $CARGO_TARGET_DIR/release/claimcheck) and
# root (chroot). Ends with `N passed, M failed`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../image/lib.sh"

root="$(cd "$here/../.." && pwd)"
built_bin="${CLAIMCHECK_BIN:-${CARGO_TARGET_DIR:-$cache/target}/release/claimcheck}"
[[ -x "$built_bin" ]] || die "no binary at $built_bin: run \`cargo build --release --locked\` first"
((EUID == 0)) || die "run as root: the image is run with chroot"
"$env_dir/debian.sh" buildah
use_crane
version="$(package_version "$root")"

work="$(mktemp -d)"
# Every build of this run from the same inputs, even while cargo relinks the binary or a commit
# lands meanwhile.
bin="$work/claimcheck"
cp "$built_bin" "$bin"
export CLAIMCHECK_BIN=$bin REVISION SOURCE_DATE_EPOCH
REVISION="$(git -C "$root" rev-parse HEAD)"
SOURCE_DATE_EPOCH="$(git -C "$root" log -1 --format=%ct)"
REGISTRY_PID="" TLS_SERVER_PID="" DNS_SERVER_PID=""
cleanup() {
    local pid
    for pid in $REGISTRY_PID $TLS_SERVER_PID $DNS_SERVER_PID; do
        kill "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0

check() { # NAME COMMAND...: one check; its output is shown, a failure counted
    local name=$1
    shift
    echo "== $name"
    if "$@"; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}

oci() { python3 "$here/oci.py" "$@"; }

# The same text, or a diff.
same() { # EXPECTED ACTUAL (strings)
    diff <(echo "$1") <(echo "$2")
}

# --- The image built by image/build.sh (crane) ---

# OUT: builds into OUT (IMAGE, when set, is pushed to), and says how long it took.
build() {
    local out=$1 start=$EPOCHREALTIME
    IMAGE_DIR=$out "$root/image/build.sh"
    echo "build time: $(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $start}") s"
}

reproducible() {
    build "$work/again" >/dev/null 2>&1 &&
        same "$(oci "$work/built/oci" digest)" "$(oci "$work/again/oci" digest)"
}

# LAYOUT: the configuration a runtime reads, as every user expects it.
configured() {
    local summary
    summary="$(oci "$1" summary)" || return 1
    echo "$summary"
    same "$(printf '%s\n' \
        'entrypoint=["/usr/local/bin/claimcheck"]' \
        'cmd=null' \
        "label.org.opencontainers.image.licenses=Apache-2.0" \
        "label.org.opencontainers.image.revision=$REVISION" \
        "label.org.opencontainers.image.source=https://github.com/claimcheck/claimcheck" \
        "label.org.opencontainers.image.title=claimcheck" \
        "label.org.opencontainers.image.version=$version" \
        'platform=linux/amd64' \
        'user=65532:65532' | LC_ALL=C sort)" "$(grep -v '^label.org.opencontainers.image.description=' <<<"$summary")" &&
        grep -q '^label.org.opencontainers.image.description=..' <<<"$summary"
}

# LAYOUT: every entry of its layers but directories, as "TYPE PATH" (TYPE from tar -tv: - is a
# regular file, l a symlink, h a hard link).
layer_entries() {
    local layer
    for layer in $(oci "$1" layers); do
        tar -tvf "$layer" | awk '$1 !~ /^d/ {print substr($1, 1, 1), $NF}'
    done | sed 's| \./| |; s| /| |' | LC_ALL=C sort
}

# LAYOUT: the layer is exactly the binary, its libraries and three files, all regular files.
holds_only_what_it_needs() {
    local expected actual
    expected="$({
        echo usr/local/bin/claimcheck
        libraries "$bin" | sed 's|^/||'
        printf '%s\n' etc/ssl/certs/ca-certificates.crt etc/passwd etc/group
    } | sed 's|^|- |' | LC_ALL=C sort)"
    actual="$(layer_entries "$1")"
    echo "$actual"
    same "$expected" "$actual" && ! grep -qE ' (bin|usr/bin)/(sh|bash|dash|apt|apt-get|dpkg)$' <<<"$actual"
}

# LAYOUT DIR: the layers unpacked into DIR, as a runtime lays them out.
unpack() {
    local layer
    mkdir -p "$2"
    for layer in $(oci "$1" layers); do
        tar -xf "$layer" -C "$2" || return 1
    done
}

# ROOTFS ARGS...: the entrypoint as the runtime starts it, with nothing from this machine.
run_in() {
    local rootfs=$1
    shift
    env -i "$(command -v chroot)" --userspec=65532:65532 --groups=65532 "$rootfs" /usr/local/bin/claimcheck "$@"
}

# LAYOUT: runs from its own files alone, as 65532.
runs() {
    local rootfs out
    rootfs="$work/rootfs-$(basename "$(dirname "$1")")"
    unpack "$1" "$rootfs" || return 1
    out="$(run_in "$rootfs" --version)" || return 1
    echo "claimcheck --version: $out"
    same "claimcheck $version" "$out" || return 1
    out="$(run_in "$rootfs" crd)" || return 1
    head -n 3 <<<"$out"
    grep -q '^kind: CustomResourceDefinition$' <<<"$out" && grep -q 'name: payloadstoragepolicies.claimcheck.dev' <<<"$out"
}

# The TLS and /etc/hosts checks run `claimcheck probe` in the image against an S3 store at
# https://HOST:PORT on loopback: tls_server.py, with a certificate from a CA of its own, records
# each request that passed the handshake. Beside it, a DNS server that answers NXDOMAIN to all.
store_host=store.claimcheck.test
dns_address=127.0.0.153

# DIR: a CA, and a certificate it signed for the store (rustls takes no self-signed leaf).
make_certificates() {
    local dir=$1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=claimcheck-test-ca \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$store_host" \
            -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null &&
        openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -days 1 -out "$dir/server.pem" \
            -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$store_host") \
            2>/dev/null
}

# FILE: a server's first line (its port, or "ready"), waited for up to 5 s.
first_line() {
    local i line
    for ((i = 0; i < 50; i++)); do
        line="$(head -n 1 "$1")"
        if [[ -n "$line" ]]; then
            echo "$line"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Starts both servers; sets STORE_PORT.
start_servers() {
    local dir="$work/store"
    mkdir -p "$dir"
    make_certificates "$dir" || die "openssl could not make the test certificates"
    python3 "$here/tls_server.py" "$dir/server.pem" "$dir/server.key" >"$dir/requests" 2>"$dir/server.log" &
    TLS_SERVER_PID=$!
    python3 "$here/dns_nxdomain.py" "$dns_address" >"$dir/dns-queries" 2>"$dir/dns.log" &
    DNS_SERVER_PID=$!
    STORE_PORT="$(first_line "$dir/requests")" || die "tls_server.py did not start: $(<"$dir/server.log")"
    first_line "$dir/dns-queries" >/dev/null || die "dns_nxdomain.py did not start: $(<"$dir/dns.log")"
}

# ROOTFS HOST OUT: the probe of the store at https://HOST:STORE_PORT, its report in OUT. It never
# passes (the store answers 404); what counts is whether its requests reach the store.
probe_store() {
    printf '%s\n' "apiVersion: claimcheck.dev/v1alpha1" "kind: PayloadStoragePolicy" \
        "metadata: {name: store, namespace: default}" "spec:" \
        "  temporal: {address: '127.0.0.1:1', namespace: default}" "  thresholdBytes: 0" "  drivers:" \
        "    - {name: store, url: 's3://bucket/p/', options: {endpoint: 'https://$2:$STORE_PORT', region: us-east-1, skip_signature: 'true'}}" \
        >"$1/policy.yaml"
    run_in "$1" probe -f /policy.yaml >"$3" 2>&1 || true
}

store_requests() { grep -c '^PUT /bucket/p/' "$work/store/requests" || true; }

# ROOTFS: the image's TLS clients trust its CA bundle, and only it.
trusts_its_ca_bundle() {
    local rootfs=$1 out="$work/store/probe.out" before
    before="$(store_requests)"
    probe_store "$rootfs" 127.0.0.1 "$out"
    echo "CA not in the bundle: $(grep -m 1 'reason' "$out")"
    if (($(store_requests) != before)); then
        echo "a request got through with a CA that is not in the image's bundle"
        return 1
    fi
    # With no roots at all the S3 client is not even built ("cannot open store").
    grep -q 'reason: store unavailable' "$out" || { cat "$out"; return 1; }
    cat "$work/store/ca.pem" >>"$rootfs/etc/ssl/certs/ca-certificates.crt"
    probe_store "$rootfs" 127.0.0.1 "$out"
    echo "CA appended to the bundle: the store got $(($(store_requests) - before)) requests"
    (($(store_requests) > before))
}

# ROOTFS: a name that only the pod's /etc/hosts holds (hostAliases, the pod's own name) resolves
# from it, with no DNS query, while DNS knows it not: glibc 2.36 reads /etc/hosts before DNS with
# no nsswitch.conf, so the image carries none. The kubelet writes both files into every pod.
resolves_from_etc_hosts() {
    local rootfs=$1 out="$work/store/probe.out" before
    printf '127.0.0.1 localhost\n127.0.0.1 %s\n' "$store_host" >"$rootfs/etc/hosts"
    printf 'nameserver %s\n' "$dns_address" >"$rootfs/etc/resolv.conf"
    cat "$work/store/ca.pem" >>"$rootfs/etc/ssl/certs/ca-certificates.crt" # trusted, once or twice
    before="$(store_requests)"
    probe_store "$rootfs" "$store_host" "$out"
    echo "$store_host: the store got $(($(store_requests) - before)) requests;" \
        "DNS was asked for: $(tail -n +2 "$work/store/dns-queries" | sort -u | tr '\n' ' ')"
    (($(store_requests) > before)) && ! grep -qx "$store_host" "$work/store/dns-queries"
}

pushed_and_pulled() {
    local built pushed
    built="$(oci "$work/built/oci" digest)"
    pushed="$("$CRANE" digest "$REGISTRY/claimcheck:test")" || return 1
    "$CRANE" pull --format oci "$REGISTRY/claimcheck:test" "$work/pulled/oci" || return 1
    echo "built $built, in the registry $pushed, pulled back $(oci "$work/pulled/oci" digest)"
    same "$built" "$pushed" && same "$built" "$(oci "$work/pulled/oci" digest)"
}

# --- The Containerfile, built by buildah ---

buildah_() {
    TMPDIR="$work/tmp" buildah --storage-driver vfs --root "$work/buildah/root" --runroot "$work/buildah/run" "$@"
}

buildah_builds() {
    local args
    mkdir -p "$work/tmp"
    args="$("$root/image/build.sh" --context "$work/context")" || return 1
    # shellcheck disable=SC2086 # the --build-arg flags, split on purpose
    buildah_ build --isolation chroot --identity-label=false -f "$root/Containerfile" $args \
        -t localhost/claimcheck:test "$work/context" &&
        buildah_ push --quiet localhost/claimcheck:test "oci:$work/buildah/oci"
}

same_as_crane() {
    same "$(oci "$work/built/oci" summary)" "$(oci "$work/buildah/oci" summary)" &&
        same "$(layer_entries "$work/built/oci")" "$(layer_entries "$work/buildah/oci")"
}

# --- Run ---

echo "ldd $bin:"
ldd "$bin"
start_registry "$work/registry.log"
IMAGE="$REGISTRY/claimcheck:test" check "image/build.sh builds the image and pushes it" build "$work/built"
if ((failed)); then
    echo "0 passed, 1 failed"
    exit 1
fi
check "a second build gives the same digest" reproducible
check "configuration: linux/amd64, 65532:65532, entrypoint, OCI labels" configured "$work/built/oci"
check "the layer is the binary, its ldd libraries and 3 files" holds_only_what_it_needs "$work/built/oci"
check "the image runs claimcheck as 65532 from its own files" runs "$work/built/oci"
start_servers
check "TLS trusts the image's CA bundle, and only it" trusts_its_ca_bundle "$work/rootfs-built"
check "names in the pod's /etc/hosts resolve before DNS" resolves_from_etc_hosts "$work/rootfs-built"
check "pushed to a loopback registry and pulled back, same digest" pushed_and_pulled
check "buildah builds the Containerfile" buildah_builds
check "the buildah image has the same configuration and files" same_as_crane
check "the buildah image runs claimcheck as 65532 too" runs "$work/buildah/oci"
layer="$(oci "$work/built/oci" layers)"
echo "image size: layer $(stat -c %s "$layer") bytes compressed, $(gzip -dc "$layer" | wc -c) bytes uncompressed"
echo "$passed passed, $failed failed"
((failed == 0))
