#!/usr/bin/env bash
# Installs (once) the Debian packages the image, chart, node and browser tests need, as root with
# apt-get; a no-op when they are all there. Debian's package list is refreshed only when a
# package is missing, so a warm machine asks no registry.
#
# Usage: debian.sh [PACKAGE...]   (default: every package below)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# buildah: builds the Containerfile (vfs storage, no daemon). containerd, runc and the CNI
# plugins: the node's runtime. lua5.1: the interpreter Argo CD's gopher-lua follows, for the
# health check. iproute2: the node's network namespace. util-linux: nsenter. chromium and
# chromium-driver: the codec tests drive the Temporal Web UI in a real headless browser.
all_packages=(buildah containerd runc containernetworking-plugins lua5.1 iproute2 util-linux
    chromium chromium-driver maven openjdk-17-jdk-headless)

packages=("$@")
((${#packages[@]})) || packages=("${all_packages[@]}")

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
((${#missing[@]})) || exit 0

((EUID == 0)) || die "Debian packages missing (${missing[*]}): run as root, or apt-get install them"
mkdir -p "$cache"
# One apt at a time: parallel tests may all find the same package missing.
# No service starts at install (policy-rc.d exits 101): on a host with an init system,
# containerd's package would otherwise start a machine-wide daemon; the tests run their own.
(
    flock 9
    log "apt-get install ${missing[*]}"
    policy=/usr/sbin/policy-rc.d
    [[ -e "$policy" ]] || { printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy"; trap 'rm -f "$policy"' EXIT; }
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
) 9>"$cache/.lock-apt"
