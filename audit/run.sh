#!/usr/bin/env bash
# cargo audit of Cargo.lock against the RustSec advisory database snapshot vendored here
# (advisory-db.tar.gz): the database is a Git repository, which cannot be fetched from this
# machine. cargo-audit is built once into the cache; the snapshot is unpacked there as the Git
# checkout cargo-audit expects.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${CLAIMCHECK_CACHE:-$HOME/.cache/claimcheck}"
version=0.22.2
tool="$cache/cargo-audit-$version"

mkdir -p "$cache"
if [[ ! -x "$tool/bin/cargo-audit" ]]; then
    echo "building cargo-audit $version into $tool (once)" >&2
    flock "$cache/.lock-cargo" cargo install --quiet --locked --no-default-features \
        --root "$tool" --target-dir "$cache/cargo-audit-build" "cargo-audit@$version"
    rm -rf "$cache/cargo-audit-build"
fi

snapshot="$(sha256sum "$root/audit/advisory-db.tar.gz" | cut -c1-12)"
db="$cache/advisory-db-$snapshot"
if [[ ! -d "$db/.git" ]]; then
    rm -rf "$db.partial" && mkdir -p "$db.partial"
    tar -xzf "$root/audit/advisory-db.tar.gz" -C "$db.partial"
    git -C "$db.partial" init --quiet
    git -C "$db.partial" add --all
    git -C "$db.partial" -c user.name=claimcheck -c user.email=audit@claimcheck.invalid \
        commit --quiet --message "advisory-db snapshot (audit/README.md)"
    mv "$db.partial" "$db"
fi

# Unsound and unmaintained crates fail it too, not only vulnerable ones.
"$tool/bin/cargo-audit" audit --db "$db" --no-fetch --stale --deny warnings --file "$root/Cargo.lock" "$@"
