#!/usr/bin/env bash
# Builds the peer pass-through proxy (this directory) once per source version into
# $CLAIMCHECK_CACHE/peer-proxy-<hash of go.mod, go.sum, *.go, build.sh>/peer-proxy and prints that
# path as its last line. A second run finds the marker and does nothing. Progress goes to stderr.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../../tests/env/lib.sh
source "$src/../../tests/env/lib.sh"

go_env

hash="$(cd "$src" && cat go.mod go.sum ./*.go build.sh | sha256sum | cut -c1-16)"
out="$cache/peer-proxy-$hash"

build() { go_build_once peer-proxy "$src" "$out/peer-proxy"; }

mkdir -p "$cache"
(flock 9 && build) 9>"$cache/.lock-peer-proxy"
echo "$out/peer-proxy"
