#!/usr/bin/env bash
# Builds the claimcheck container image from the release binary, with no container daemon.
#
# Usage:
#   image/build.sh                 the image as an OCI image layout in $IMAGE_DIR/oci
#                                  (default $CARGO_TARGET_DIR/image/oci), pushed to $IMAGE as well
#                                  when it is set (e.g. IMAGE=127.0.0.1:5000/claimcheck:dev; crane
#                                  speaks plain HTTP to loopback registries, credentials come from
#                                  ~/.docker/config.json)
#   image/build.sh --context DIR   only stages DIR/rootfs for the Containerfile (docker/buildah
#                                  build -f Containerfile DIR), and prints its --build-arg flags
#
# Variables: CLAIMCHECK_BIN (default $CARGO_TARGET_DIR/release/claimcheck), CARGO_TARGET_DIR
# (default ~/.cache/claimcheck/target), IMAGE_DIR, IMAGE, REVISION (the revision label; default
# the git HEAD), SOURCE_DATE_EPOCH (the files' time; default the time of the git commit, so a
# rebuild of the same binary gives the same digest).
#
# The binary links glibc dynamically, so the one layer holds it (/usr/local/bin/claimcheck, without
# debug info), every library `ldd` names at the path the loader asks for, and what it reads at run
# time that is not a library (see stage_rootfs). User, entrypoint and labels are read off the
# Containerfile, so both routes give the same configuration.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/lib.sh"

root="$(cd "$here/.." && pwd)"
containerfile="$root/Containerfile"
target_dir="${CARGO_TARGET_DIR:-$cache/target}"
bin="${CLAIMCHECK_BIN:-$target_dir/release/claimcheck}"
out="${IMAGE_DIR:-$target_dir/image}"
# rustls-native-certs (tonic, the AWS SDK, kube's platform verifier) looks for this file first
# (openssl-probe's list); a Debian bundle holds every root, nothing else is read.
ca_bundle=/etc/ssl/certs/ca-certificates.crt

version="$(package_version "$root")"
revision="${REVISION:-$(git -C "$root" rev-parse HEAD 2>/dev/null || true)}"
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}"

# stage_rootfs DIR: the image's whole file system, for both routes.
stage_rootfs() {
    local dir=$1 libs lib
    [[ -x "$bin" ]] || die "no binary at $bin: run \`cargo build --release --locked\` first (or set CLAIMCHECK_BIN)"
    [[ -f "$ca_bundle" ]] || die "no CA bundle at $ca_bundle: apt-get install ca-certificates"
    libs="$(libraries "$bin")"
    rm -rf "$dir"
    # Without its DWARF (the release profile keeps line tables for the tests' backtraces) the
    # binary is a fifth of the size; the symbol table stays, so a backtrace still names functions
    # and a panic still gives its file and line.
    mkdir -p "$dir/usr/local/bin"
    objcopy --strip-debug "$bin" "$dir/usr/local/bin/claimcheck"
    chmod 0755 "$dir/usr/local/bin/claimcheck"
    # Each library as a regular file at the path ldd gives (/lib/x86_64-linux-gnu/..., the
    # loader at /lib64/...): on Debian those directories are symlinks into /usr, which the image
    # does not need.
    for lib in $libs; do
        install -D -m 0755 "$(readlink -f "$lib")" "$dir$lib"
    done
    install -D -m 0644 "$ca_bundle" "$dir$ca_bundle"
    # No /etc/nsswitch.conf: glibc 2.36 has files and dns inside libc.so.6 and, without the file,
    # reads /etc/hosts before asking DNS (tests/image/check.sh checks it).
    # The user the image runs as, so getpwuid(65532) resolves for libraries that look up $HOME
    # or a user name, and debugging tools show a name.
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' \
        >"$dir/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
    chmod 0644 "$dir"/etc/{passwd,group}
    find "$dir" -type d -exec chmod 0755 {} +
    find "$dir" -exec touch -h -d "@$epoch" {} +
}

# layer_tar ROOTFS TAR: the layer as a reproducible tar (sorted, owned by root, fixed times).
layer_tar() {
    local rootfs=$1 tar=$2
    (cd "$rootfs" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) |
        tar --create --file "$tar" --directory "$rootfs" --no-recursion --files-from - \
            --owner=0 --group=0 --numeric-owner --format=gnu
}

# containerfile_value INSTRUCTION: the argument of each INSTRUCTION line of the Containerfile.
containerfile_value() { sed -n "s/^$1 //p" "$containerfile"; }

# The platform of the binary: cargo builds for the machine it runs on.
platform() {
    case "$(uname -m)" in
    x86_64) echo linux/amd64 ;;
    aarch64) echo linux/arm64 ;;
    *) die "no OCI platform known for $(uname -m)" ;;
    esac
}

# The configuration crane sets, from the Containerfile with its two build arguments filled in.
image_config_flags() {
    local line key value entrypoint
    entrypoint="$(containerfile_value ENTRYPOINT |
        python3 -c 'import json,sys; print(",".join(json.load(sys.stdin)))')"
    echo "--set-platform=$(platform)"
    echo "--user=$(containerfile_value USER)"
    echo "--entrypoint=$entrypoint"
    while IFS= read -r line; do
        [[ "$line" =~ ^([^=]+)=\"(.*)\"$ ]] || die "Containerfile: LABEL $line is not key=\"value\""
        key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
        # shellcheck disable=SC2016 # the Containerfile's own ${VERSION}, literally
        value=${value//'${VERSION}'/$version}
        # shellcheck disable=SC2016
        value=${value//'${REVISION}'/$revision}
        echo "--label=$key=$value"
    done < <(containerfile_value LABEL)
}

build_context() {
    local dir=$1
    mkdir -p "$dir"
    stage_rootfs "$dir/rootfs"
    log "staged $dir/rootfs; build it with: buildah build --isolation chroot -f $containerfile" \
        "--build-arg VERSION=$version --build-arg REVISION=$revision $dir"
    echo "--build-arg VERSION=$version --build-arg REVISION=$revision"
}

# The image goes through a throwaway in-memory registry on loopback: crane's append and mutate
# work on registries, and `crane pull --format oci` then writes the layout.
build_image() {
    local ref flags config_flags layer_size
    work="$(mktemp -d)" REGISTRY_PID=""
    trap '[[ -z "$REGISTRY_PID" ]] || kill "$REGISTRY_PID" 2>/dev/null; rm -rf "$work"' EXIT
    flags="$(image_config_flags)"
    mapfile -t config_flags <<<"$flags"
    stage_rootfs "$work/rootfs"
    layer_tar "$work/rootfs" "$work/layer.tar"
    start_registry "$work/registry.log"
    ref="$REGISTRY/claimcheck:build"
    "$CRANE" append --oci-empty-base --new_layer "$work/layer.tar" --new_tag "$ref" >/dev/null
    "$CRANE" mutate "$ref" "${config_flags[@]}" --tag "$ref" >/dev/null
    rm -rf "$out/oci"
    mkdir -p "$out"
    "$CRANE" pull --format oci "$ref" "$out/oci"
    if [[ -n "${IMAGE:-}" ]]; then
        "$CRANE" copy "$ref" "$IMAGE"
        log "pushed $IMAGE"
    fi
    layer_size="$("$CRANE" manifest "$ref" | python3 -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["size"])')"
    log "built $out/oci: claimcheck $version, $("$CRANE" digest "$ref"), one layer of" \
        "$(numfmt --to=iec "$layer_size") ($(stat -c %s "$work/layer.tar" | numfmt --to=iec) uncompressed)"
}

case "${1:-}" in
--context)
    [[ $# -eq 2 ]] || die "usage: $0 --context DIR"
    build_context "$2"
    ;;
"") build_image ;;
*) die "usage: $0 [--context DIR]" ;;
esac
