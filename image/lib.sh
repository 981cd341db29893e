# shellcheck shell=bash
# Sourced by image/build.sh and tests/image/check.sh: the binary's libraries, crane, and a
# throwaway loopback registry.
# shellcheck source=../tests/env/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../tests/env/lib.sh"

# package_version ROOT: the version of Cargo.toml's package, which the image is labelled with.
package_version() { sed -n 's/^version = "\(.*\)"$/\1/p' "$1/Cargo.toml" | head -n 1; }

# Installs crane from the Go module proxy if needed (tests/env/install.sh) and sets CRANE.
use_crane() {
    [[ -n "${CRANE:-}" ]] && return 0
    eval "$("$env_dir/install.sh" crane | grep '^CRANE_BIN=')"
    CRANE=$CRANE_BIN
}

# start_registry LOG: `crane registry serve` on a free 127.0.0.1 port, blobs in memory. Sets
# REGISTRY (host:port; crane speaks plain HTTP to loopback registries) and REGISTRY_PID; the
# caller stops it. The port is the one crane reports, so no other process can have taken it.
start_registry() {
    local log=$1 port="" i
    use_crane
    : >"$log"   # before the background job writes it, so the first read finds a file
    "$CRANE" registry serve --address 127.0.0.1:0 >"$log" 2>&1 &
    REGISTRY_PID=$!
    for ((i = 0; i < 100; i++)); do
        port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$log")"
        if [[ -n "$port" ]]; then
            REGISTRY=127.0.0.1:$port
            return 0
        fi
        kill -0 "$REGISTRY_PID" 2>/dev/null || die "crane registry serve exited: $(<"$log")"
        sleep 0.1
    done
    die "crane registry serve did not report its port in 10 s: $(<"$log")"
}

# libraries BINARY: every file the dynamic loader maps for BINARY, as ldd names them (the loader
# itself included); nothing for a static binary.
libraries() {
    local out
    out="$(ldd "$1" 2>&1)" || true
    if grep -qE 'not a dynamic executable|statically linked' <<<"$out"; then
        return 0
    fi
    grep -q 'not found' <<<"$out" && die "ldd $1: a library is missing on this machine: $out"
    awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out"
}
