#!/usr/bin/env bash
# Builds the peer pass-through proxy (this directory) once per source version into
# $CLAIMCHECK_CACHE/peer-proxy-<hash of go.mod, go.sum, *.go, build.sh>/peer-proxy and prints that
# path as its last line. A second run finds the marker and does nothing. Progress goes to stderr.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../tests/env/lib.sh
source "$src/../../tests/env/lib.sh"

# As tests/env/install.sh: Go's caches under the cache, the installed Go only, static binaries.
export GOPATH="$cache/go"
export GOMODCACHE="$cache/go/pkg/mod"
export GOCACHE="$cache/go/build-cache"
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="-modcacherw -buildvcs=false -trimpath"

hash="$(cd "$src" && cat go.mod go.sum ./*.go build.sh | sha256sum | cut -c1-16)"
out="$cache/peer-proxy-$hash"

build() {
    [[ -f "$out/.built" ]] && return 0
    local start=$SECONDS
    log "peer-proxy: building $out/peer-proxy"
    mkdir -p "$out"
    (cd "$src" && nice -n 10 go build -ldflags "-s -w" -o "$out/peer-proxy.tmp" .)
    mv "$out/peer-proxy.tmp" "$out/peer-proxy"
    touch "$out/.built"
    log "peer-proxy: built in $((SECONDS - start)) s"
}

mkdir -p "$cache"
(flock 9 && build) 9>"$cache/.lock-peer-proxy"
echo "$out/peer-proxy"
