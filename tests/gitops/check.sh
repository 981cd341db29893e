#!/usr/bin/env bash
# The GitOps checks that need no cluster (the live one is `cargo test --release --test kstatus`):
#   1. Argo CD's health check (deploy/argocd/health.lua) on Debian's lua5.1 against its
#      fixtures, in Argo CD's own health_test.yaml format;
#   2. the argocd-cm snippet embeds that Lua unchanged;
#   3. every manifest of docs/gitops.md is valid against its CRD's schema: Argo CD's
#      Application, Flux's GitRepository, HelmRelease and Kustomization (from their Go
#      modules, offline once cached) and our PayloadStoragePolicy (crds/), with kubeconform -strict;
#   4. and a manifest with a misspelt field is refused, so the validation can fail.
set -euo pipefail
# shellcheck source=tests/env/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../env/lib.sh"

root="$(cd "$env_dir/../.." && pwd)"
here="$root/tests/gitops"
chart_py="$root/tests/chart/chart.py"
# The versions of docs/gitops.md's tools, whose CRDs the manifests are checked against:
# Argo CD's newest v3.5 (v3.6 needs Go 1.27) and the controllers of Flux v2.7.3 (the
# helm-controller module has no newer version on the proxy).
crd_modules=(
    "github.com/argoproj/argo-cd/v3@v3.5.8 manifests/crds/application-crd.yaml"
    "github.com/fluxcd/source-controller@v1.7.3 config/crd/bases/source.toolkit.fluxcd.io_gitrepositories.yaml"
    "github.com/fluxcd/helm-controller@v1.4.3 config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml"
    "github.com/fluxcd/kustomize-controller@v1.7.2 config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml"
)

"$env_dir/debian.sh" lua5.1
venv="$("$env_dir/python-venv.sh" | tail -n 1)"
python="$venv/bin/python"
eval "$("$env_dir/install.sh" kubeconform | grep '^KUBECONFORM_BIN=')"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()

step() { # NAME COMMAND...: runs one check, remembers it if it fails
    local name=$1
    shift
    echo "== $name"
    "$@" || failed+=("$name")
}

# The CRDs' JSON schemas, cached by module versions and converter (the modules come from the Go
# proxy once). The conversion is the chart check's, so both hold manifests to the same schema.
crd_schemas() {
    local stamp dir files=() module path
    stamp="$({ printf '%s\n' "${crd_modules[@]}"; cat "$chart_py"; } | sha256sum | cut -c1-12)"
    dir="$cache/gitops-schemas-$stamp"
    if [[ ! -f "$dir/.installed" ]]; then
        export GOPATH="$cache/go" GOMODCACHE="$cache/go/pkg/mod" GOTOOLCHAIN=local GOFLAGS=-modcacherw
        for entry in "${crd_modules[@]}"; do
            read -r module path <<<"$entry"
            log "CRD schema: $module $path"
            files+=("$(cd "$cache" && go mod download -json "$module" |
                "$python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/$path")
        done
        rm -rf "$dir"
        "$python" "$chart_py" crd-schemas "$dir" "${files[@]}" || return 1
        echo installed >"$dir/.installed"
    fi
    # Ours comes from the working tree: regenerated each run.
    cp -r "$dir" "$work/schemas"
    "$python" "$chart_py" crd-schemas "$work/schemas" "$root/crds/payloadstoragepolicies.claimcheck.dev.yaml"
}

kubeconform() {
    "$KUBECONFORM_BIN" -strict -summary \
        -schema-location "$work/schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" "$@"
}

docs_manifests() {
    mkdir -p "$work/docs"
    "$python" "$here/gitops.py" manifests "$root/docs/gitops.md" "$work/docs" && kubeconform "$work/docs"
}

# A field Argo CD does not know must be refused, nested (`sourcee` for `source`) or top-level
# (`specc`: one more field, so no missing required one refuses it instead), or check 3 proves nothing.
refuses_a_misspelt_field() {
    local applications=("$work"/docs/*-application-*.yaml) field edit
    for field in sourcee specc; do
        case $field in
            sourcee) edit='s/^  source:/  sourcee:/' ;;
            specc) edit="\$a specc: {}" ;;
        esac
        sed "$edit" "${applications[0]}" >"$work/misspelt.yaml"
        if kubeconform "$work/misspelt.yaml" >"$work/misspelt.out" 2>&1; then
            echo "FAIL kubeconform accepted a misspelt field ($field): $(<"$work/misspelt.yaml")"
            return 1
        fi
        grep -q "'$field'" "$work/misspelt.out" || { cat "$work/misspelt.out"; return 1; }
        echo "ok   a misspelt field is refused: $(head -n 1 "$work/misspelt.out")"
    done
}

step "Argo CD health check (lua5.1)" "$python" "$here/gitops.py" health "$here/argocd_health.lua" "$root/deploy/argocd"
step "argocd-cm snippet" "$python" "$here/gitops.py" argocd-cm "$root/deploy/argocd/argocd-cm.yaml" \
    "$root/deploy/argocd/health.lua"
step "CRD schemas" crd_schemas
step "docs/gitops.md manifests (kubeconform -strict)" docs_manifests
step "validation can fail" refuses_a_misspelt_field

if ((${#failed[@]})); then
    printf 'gitops: FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "gitops: all checks passed"
