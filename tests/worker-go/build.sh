#!/usr/bin/env bash
# Builds the Go SDK test worker (this directory) as a static binary, once per source version:
#   build.sh          prints the binary's path, $CLAIMCHECK_CACHE/worker-go-<hash of go.mod,
#                     go.sum, *.go, build.sh, image/lib.sh>/worker
#   build.sh image    also packs it into an OCI image (a layout directory; prints its path):
#                     /worker as entrypoint, user 65532:65532, linux/amd64, nothing else in it.
# A second run finds the marker and does nothing. Progress goes to stderr, the path to stdout.
set -euo pipefail
src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=image/lib.sh
source "$src/../../image/lib.sh"

go_env

# build.sh and image/lib.sh are in the hash: they shape the binary and the image as much as the
# sources do.
hash="$(cd "$src" && cat go.mod go.sum ./*.go $(find third_party -type f | sort) build.sh ../../image/lib.sh | sha256sum | cut -c1-16)"
out="$cache/worker-go-$hash"

build_binary() { go_build_once worker-go "$src" "$out/worker"; }

# crane mutate only edits images in a registry: append the layer to a registry of our own on a
# loopback port, set entrypoint, user and platform there, and pull the result as an OCI layout.
build_image() {
    [[ -f "$out/image/.built" ]] && return 0
    local work ref
    use_crane
    work="$(mktemp -d)"
    # build_image runs in the flock subshell: the trap fires when that ends, however it ends,
    # after the function's locals are gone, so it holds work's value; REGISTRY_PID is global,
    # set once start_registry has started crane (even if it then gives up waiting for the port).
    trap "kill \${REGISTRY_PID:-} 2>/dev/null; rm -rf '$work'" EXIT
    # Owned by root, readable and executable by the image's user; a fixed mtime keeps the
    # layer's digest a function of the binary alone.
    mkdir "$work/root" && cp "$out/worker" "$work/root/worker" && chmod 0755 "$work/root/worker"
    tar -C "$work/root" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" worker
    start_registry "$work/registry.log"
    ref="$REGISTRY/worker-go:$hash"
    "$CRANE" append --oci-empty-base -f "$work/layer.tar" -t "$ref" >/dev/null
    "$CRANE" mutate "$ref" -t "$ref" --entrypoint /worker --user 65532:65532 --set-platform linux/amd64 >/dev/null
    rm -rf "$out/image"
    "$CRANE" pull --format oci "$ref" "$out/image"
    touch "$out/image/.built"
    log "worker-go: image $out/image ($(du -sh "$out/image" | cut -f1))"
}

mkdir -p "$cache"   # on a new machine the lock below is its first file
case "${1:-}" in
    "") (flock 9 && build_binary) 9>"$cache/.lock-worker-go"; echo "$out/worker" ;;
    image) (flock 9 && build_binary && build_image) 9>"$cache/.lock-worker-go"; echo "$out/image" ;;
    *) die "usage: build.sh [image]" ;;
esac
