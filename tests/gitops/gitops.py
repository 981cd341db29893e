"""The GitOps checks of tests/gitops/check.sh, each printing one line per case and a summary.

    gitops.py health LUA_RUNNER HEALTH_DIR   Argo CD's health_test.yaml cases, on lua5.1
    gitops.py argocd-cm CONFIGMAP HEALTH_LUA [--write]
                                             the argocd-cm snippet embeds health.lua unchanged
    gitops.py manifests DOC OUT              the YAML blocks of a Markdown file, one file each
"""

import json
import pathlib
import re
import subprocess
import sys

import yaml


def fail(message):
    print(f"FAIL {message}")
    return 1


def health(runner, health_dir):
    """Runs every case of health_test.yaml (Argo CD's format) through the Lua runner."""
    health_dir = pathlib.Path(health_dir)
    cases = yaml.safe_load((health_dir / "health_test.yaml").read_text())["tests"]
    failures = 0
    for case in cases:
        fixture = health_dir / case["inputPath"]
        obj = yaml.safe_load(fixture.read_text())
        run = subprocess.run(
            ["lua5.1", runner, str(health_dir / "health.lua")],
            input=json.dumps(obj), capture_output=True, text=True,
        )
        if run.returncode != 0:
            failures += fail(f"{case['inputPath']}: {run.stderr.strip()}")
            continue
        got = json.loads(run.stdout)
        want = {"status": case["healthStatus"]["status"], "message": case["healthStatus"].get("message", "")}
        if got != want:
            failures += fail(f"{case['inputPath']}: got {got}, want {want}")
        else:
            print(f"ok   {case['inputPath']}: {got['status']}: {got['message']}")
    print(f"Argo CD health check: {len(cases) - failures}/{len(cases)} cases pass")
    return failures


ARGOCD_CM = """\
# Argo CD's health check for claimcheck's PayloadStoragePolicy: merge into argocd-cm with
#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file deploy/argocd/argocd-cm.yaml
# Generated from health.lua: python tests/gitops/gitops.py argocd-cm deploy/argocd/argocd-cm.yaml deploy/argocd/health.lua --write
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
  resource.customizations.health.claimcheck.dev_PayloadStoragePolicy: |
"""
HEALTH_KEY = "resource.customizations.health.claimcheck.dev_PayloadStoragePolicy"


def argocd_cm(configmap, health_lua, write=None):
    """The snippet for argocd-cm must carry health.lua byte for byte; --write makes it so."""
    lua = pathlib.Path(health_lua).read_text()
    if write == "--write":
        indented = "".join(f"    {line}" if line.strip() else "\n" for line in lua.splitlines(keepends=True))
        pathlib.Path(configmap).write_text(ARGOCD_CM + indented)
    data = yaml.safe_load(pathlib.Path(configmap).read_text()).get("data") or {}
    if data.get(HEALTH_KEY) != lua:
        return fail(f"{configmap}: data[{HEALTH_KEY}] is not {health_lua} byte for byte "
                    f"(regenerate: python tests/gitops/gitops.py argocd-cm {configmap} {health_lua} --write)")
    print(f"ok   {configmap} embeds {health_lua} unchanged ({len(lua)} bytes)")
    return 0


def manifests(doc, out):
    """Writes each document of each ```yaml block of DOC to OUT/NN-<kind>-<name>.yaml."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", pathlib.Path(doc).read_text(), re.S | re.M)
    count = 0
    for block in blocks:
        for document in yaml.safe_load_all(block):
            if not document:
                continue
            count += 1
            name = f"{count:02d}-{document['kind']}-{document['metadata']['name']}.yaml".lower()
            (pathlib.Path(out) / name).write_text(yaml.safe_dump(document, sort_keys=False))
    if not count:
        return fail(f"{doc} has no YAML manifests")
    print(f"{doc}: {count} manifests in {len(blocks)} YAML blocks")
    return 0


if __name__ == "__main__":
    commands = {"health": health, "argocd-cm": argocd_cm, "manifests": manifests}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    sys.exit(1 if commands[sys.argv[1]](*sys.argv[2:]) else 0)
