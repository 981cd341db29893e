#!/usr/bin/env bash
# Builds (once) the kstatus command of this directory into
# $CLAIMCHECK_CACHE/kstatus-<hash of go.mod, go.sum, main.go>/ and prints the binary's path.
# A changed source or pin gets a new directory, so a warm run only checks a marker.
set -euo pipefail
# shellcheck source=tests/env/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../env/lib.sh"

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
hash="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)"
dir="$cache/kstatus-$hash"

if [[ ! -f "$dir/.installed" ]]; then
    # As tests/env/install.sh: Go's caches under the cache, the installed Go, static, niced.
    export GOPATH="$cache/go" GOMODCACHE="$cache/go/pkg/mod" GOCACHE="$cache/go/build-cache"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false -trimpath"
    mkdir -p "$cache"
    (
        flock 9
        if [[ ! -f "$dir/.installed" ]]; then
            log "kstatus: building $src"
            rm -rf "$dir" && mkdir -p "$dir/bin"
            (cd "$src" && nice -n 10 go build -mod=readonly -ldflags "-s -w" -o "$dir/bin/kstatus" .)
            echo installed >"$dir/.installed"
        fi
    ) 9>"$cache/.lock-kstatus"
fi
echo "$dir/bin/kstatus"
