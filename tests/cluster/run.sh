#!/usr/bin/env bash
# The operator as users run it, end to end on a node started by tests/env/cluster.sh: the
# image built and pushed to the node's registry, the chart installed, a policy on MinIO, a Go
# worker Deployment with the injected sidecar, then upgrade and uninstall (tests/cluster/).
#
# Usage: run.sh [PYTEST_ARGS...]   the tests
#        run.sh --demo             the story printed step by step (make demo-cluster)
# As root: the node needs network namespaces and mounts. Brings the node up in a temporary
# directory, runs pytest (or the demo) inside its network namespace, and tears everything down
# however it ends; the directory (logs) is kept when a test fails.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
env_dir="$root/tests/env"
: "${CLAIMCHECK_BIN:?the release binary, as make passes it}"
venv="$("$env_dir/python-venv.sh" | tail -n 1)"
# Built before the node is up, so that its start is not slowed by a build.
WORKER_IMAGE_DIR="$("$root/tests/worker-go/build.sh" image | tail -n 1)"
export WORKER_IMAGE_DIR CLAIMCHECK_BIN

dir="$(mktemp -d /tmp/claimcheck-cluster.XXXXXX)"
status=1
finish() {
    # CLAIMCHECK_KEEP_CLUSTER=1 leaves the node running for a look (cluster.sh down DIR stops it).
    if [[ -n "${CLAIMCHECK_KEEP_CLUSTER:-}" ]]; then echo "node left running in $dir" >&2; return; fi
    "$env_dir/cluster.sh" down "$dir" || true
    if ((status == 0)); then rm -rf "$dir"; else echo "cluster logs kept in $dir" >&2; fi
}
trap finish EXIT
started=$SECONDS
watch=(--watch $$)
[[ -z "${CLAIMCHECK_KEEP_CLUSTER:-}" ]] || watch=()
"$env_dir/cluster.sh" up "$dir" --only node,s3 "${watch[@]}"
echo "node up in $((SECONDS - started)) s" >&2
if [[ "${1:-}" == --demo ]]; then
    command=("$root/tests/cluster/demo.py")
else
    command=(-m pytest -c "$root/tests/cluster/pytest.ini" "$root/tests/cluster" "$@")
fi
set +e
CLUSTER_DIR="$dir" PYTHONPATH="$root/tests/cluster" "$env_dir/node/enter.sh" "$dir" "$venv/bin/python" "${command[@]}"
status=$?
exit "$status"
