"""claimcheck as users run it, on a node that runs pods (issue 10 §5). The steps build on each
other, in order: install the chart from the image, a policy turns Ready, a Go worker Deployment
gets the sidecar and passes 10 MiB through activities, the policy's codec server gives back
that workflow's input, the threshold follows the policy, the
operator restarts under admissions, the policy goes with its bucket rule, the CRD upgrades with
the chart, and uninstall leaves no webhook behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from google.protobuf.json_format import MessageToDict
from temporalio.client import Client

from claims import checked_run_references, is_reference, iter_payloads, parse_reference, verify_stored
from story import (CHART, MiB, OPERATOR_NAMESPACE, POLICY, TEAM, WORKER, Kube, apply_policy, deploy_worker,
                   install_operator, lease_holder, operator_values, policy_ready, ready_pods, run_workflow,
                   started_at, wait_for, worker_pod)


def test_helm_install_brings_up_two_ready_replicas_one_leading(kube: Kube, images: dict[str, str]):
    started = time.monotonic()
    pods = install_operator(kube, images)
    print(f"helm install -> both replicas Ready in {time.monotonic() - started:.1f} s")
    names = {p["metadata"]["name"] for p in pods}
    assert lease_holder(kube) in names, names
    # The configuration came with the chart; a replica filled in its CA.
    wait_for("the webhook's caBundle", lambda: kube.get("mutatingwebhookconfiguration", "claimcheck")
             ["webhooks"][0]["clientConfig"].get("caBundle"))
    test = kube.helm("test", "claimcheck", "-n", OPERATOR_NAMESPACE, "--logs", "--timeout", "3m")
    assert "refuses an unknown policy" in test.stdout, test.stdout


def test_a_gitops_tool_sees_no_drift_once_the_operator_wrote_the_ca(kube: Kube, images: dict[str, str]):
    """Argo CD and Flux compare the chart's objects with the live ones by a server-side dry run:
    the caBundle the operator wrote is not the chart's, so nothing differs."""
    rendered = kube.helm("template", "claimcheck", str(CHART), "-n", OPERATOR_NAMESPACE, "--skip-tests",
                         *operator_values(images)).stdout
    diff = kube.kubectl("diff", "--server-side", "--force-conflicts", "--field-manager", "argocd-controller",
                        "-f", "-", input=rendered, check=False)
    assert diff.returncode == 0, diff.stdout or diff.stderr


def test_a_policy_on_minio_turns_ready(kube: Kube, temporal: str, node: dict[str, str]):
    started = time.monotonic()
    policy = apply_policy(kube, node, temporal, threshold=256 * 1024)
    print(f"policy applied -> Ready in {time.monotonic() - started:.1f} s")
    assert policy["status"]["lastProbe"]["largePayload"]["offloaded"] is True


def test_the_worker_starts_after_its_injected_sidecar(kube: Kube, images: dict[str, str]):
    created = time.monotonic()
    pod = deploy_worker(kube, images["worker"])
    print(f"worker Deployment applied -> pod Ready in {time.monotonic() - created:.1f} s")
    sidecars = pod["status"]["initContainerStatuses"]
    assert [s["name"] for s in sidecars] == ["claimcheck-proxy"], sidecars
    sidecar = sidecars[0]
    worker = next(s for s in pod["status"]["containerStatuses"] if s["name"] == WORKER)
    # The kubelet starts the app container only once the sidecar's startup probe passed.
    assert sidecar["started"] and sidecar["ready"], sidecar
    sidecar_start, worker_start = started_at(sidecar), started_at(worker)
    assert sidecar_start <= worker_start, (sidecar_start, worker_start)
    print(f"sidecar started {sidecar_start.time()}, worker started {worker_start.time()} "
          f"({(worker_start - sidecar_start).total_seconds():.0f} s later, after the startup probe)")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    assert env["TEMPORAL_ADDRESS"] == "localhost:7233", env


async def test_ten_mib_pass_through_activities_and_history_holds_only_references(kube: Kube, temporal: str,
                                                                                store):
    pod = worker_pod(kube)
    verdict = run_workflow(kube, pod, "ten-mib", 10 * MiB)
    print(f"10 MiB through 3 activities in the cluster: {verdict['seconds']:.1f} s")
    client = await Client.connect(temporal)
    refs = await checked_run_references(client, "ten-mib", verdict["runId"], store)
    assert refs and all(r.size_bytes >= 10 * MiB for r in refs), refs


async def test_the_policys_codec_server_gives_the_originals_to_a_token_holder(kube: Kube, temporal: str,
                                                                             store, tmp_path: Path):
    """spec.codec: the operator runs `claimcheck codec` with the policy's MinIO credentials, behind
    a Service, over HTTPS; the CLI's /decode of the 10 MiB workflow's input gives the original."""
    token = secrets.token_urlsafe(16)
    cert = codec_certificate(kube, tmp_path)
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "codec-tokens", "namespace": TEAM},
                "stringData": {"tokens": f"oncall:{token}:default\n"}})
    started = time.monotonic()
    kube.kubectl("patch", "payloadstoragepolicy", POLICY, "-n", TEAM, "--type", "merge", "-p", json.dumps(
        {"spec": {"codec": {"tlsSecretName": "codec-tls", "tokensSecretName": "codec-tokens"}}}))
    wait_for("the codec server Ready", lambda: ready_pods(kube, TEAM, f"claimcheck.dev/codec={POLICY}"), timeout=180)
    print(f"codec added to the policy -> its pod Ready in {time.monotonic() - started:.1f} s")
    service = kube.get("service", f"{POLICY}-claimcheck-codec", "-n", TEAM)
    url = f"https://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}/decode"

    client = await Client.connect(temporal)
    history = await client.get_workflow_handle("ten-mib").fetch_history()
    reference = next(p for e in history.events for _, p in iter_payloads(e) if is_reference(p))
    original = verify_stored(parse_reference(reference, store), store)
    body = json.dumps({"payloads": [MessageToDict(reference)]}).encode()
    # The certificate names the Service's DNS name; the test reaches it by its cluster IP.
    tls = ssl.create_default_context(cafile=str(cert))
    tls.check_hostname = False

    def decode(authorization: str) -> tuple[int, bytes] | None:
        """The status and body of a /decode, or None while the Service has no endpoint yet."""
        request = urllib.request.Request(url, data=body, headers={
            "Content-Type": "application/json", "X-Namespace": "default", "Authorization": authorization})
        try:
            with urllib.request.urlopen(request, context=tls, timeout=60) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read()
        except urllib.error.URLError:
            return None

    status, answer = wait_for("the codec answering through its Service", lambda: decode(f"Bearer {token}"))
    assert status == 200, answer[:300]
    decoded = json.loads(answer)["payloads"][0]
    assert hashlib.sha256(base64.b64decode(decoded["data"])).digest() == hashlib.sha256(original.data).digest()
    assert decode("Bearer not-the-token") == (401, b"the bearer token is not one of the configured tokens")


def codec_certificate(kube: Kube, tmp_path: Path) -> Path:
    """A self-signed certificate for the codec's Service, as Secret codec-tls; its PEM path."""
    name = f"{POLICY}-claimcheck-codec.{TEAM}.svc"
    cert, key = tmp_path / "codec.crt", tmp_path / "codec.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "codec-tls", "namespace": TEAM},
                "stringData": {"tls.crt": cert.read_text(), "tls.key": key.read_text()}})
    return cert


async def history_payload_sizes(client: Client, workflow_id: str) -> tuple[list[int], int]:
    """Sizes of the inline payloads of a run's history, and how many references it holds."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    inline, references = [], 0
    for event in history.events:
        for _, payload in iter_payloads(event):
            if is_reference(payload):
                references += 1
            else:
                inline.append(payload.ByteSize())
    return inline, references


async def test_the_sidecar_follows_a_threshold_change(kube: Kube, temporal: str):
    pod = worker_pod(kube)
    client = await Client.connect(temporal)
    run_workflow(kube, pod, "half-mib-before", 512 * 1024)
    assert (await history_payload_sizes(client, "half-mib-before"))[1] > 0, "512 KiB offloaded at 256 KiB"

    changed = time.monotonic()
    kube.kubectl("patch", "payloadstoragepolicy", POLICY, "-n", TEAM, "--type", "merge",
                 "-p", json.dumps({"spec": {"thresholdBytes": 1 * MiB}}))
    wait_for("the policy Ready at its new generation", lambda: policy_ready(kube))
    # The kubelet updates the mounted ConfigMap; the sidecar reloads it (its metrics say so).
    ip = pod["status"]["podIP"]
    wait_for("the sidecar's reload", lambda: reloads(ip) >= 1, timeout=180, every=1)
    print(f"threshold changed -> sidecar reloaded in {time.monotonic() - changed:.1f} s")
    run_workflow(kube, pod, "half-mib-after", 512 * 1024)
    inline, references = await history_payload_sizes(client, "half-mib-after")
    assert references == 0 and max(inline) >= 512 * 1024, (inline, references)


def reloads(pod_ip: str) -> float:
    try:
        with urllib.request.urlopen(f"http://{pod_ip}:9090/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("claimcheck_config_reloads_total"):
            return float(line.split()[-1])
    return 0


def test_restarting_the_operator_refuses_no_admission(kube: Kube, images: dict[str, str]):
    refused, admitted = [], []
    stop = threading.Event()
    manifest = json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "admission-", "namespace": TEAM, "labels": {"claimcheck.dev/policy": POLICY}},
        "spec": {"containers": [{"name": WORKER, "image": images["worker"]}]},
    })

    def admit_pods():
        while not stop.is_set():
            done = kube.kubectl("create", "--dry-run=server", "-o", "name", "-f", "-", input=manifest, check=False)
            (admitted if done.returncode == 0 else refused).append(done.stderr.strip())

    threads = [threading.Thread(target=admit_pods) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        kube.kubectl("rollout", "restart", "deployment/claimcheck-controller", "-n", OPERATOR_NAMESPACE)
        kube.kubectl("rollout", "status", "deployment/claimcheck-controller", "-n", OPERATOR_NAMESPACE,
                     "--timeout", "5m")
        # The old replicas drain for 10 s (the webhook's DRAIN) after the rollout reports done.
        time.sleep(13)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print(f"operator restarted under {len(admitted)} admissions, {len(refused)} refused")
    assert admitted and not refused, refused[:3]


GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def test_the_operators_permissions_are_the_pinned_ones(kube: Kube):
    """What the API server lets the operator's ServiceAccount do, cluster-wide and in a team's
    namespace, is exactly what tests/golden/can-i-*.txt pins (UPDATE_GOLDEN=1 rewrites them):
    a permission the chart gains shows up in review, never silently."""
    deployment = kube.get("deployment", "claimcheck-controller", "-n", OPERATOR_NAMESPACE)
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    subject = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{account}"
    for namespace in (OPERATOR_NAMESPACE, TEAM):
        header, *rules = kube.kubectl("auth", "can-i", "--list", "--as", subject, "-n", namespace).stdout.splitlines()
        # The API server lists the rules of each binding in no fixed order.
        listed = "\n".join([header, *sorted(rules)]) + "\n"
        golden = GOLDEN / f"can-i-{'operator' if namespace == OPERATOR_NAMESPACE else 'team'}-namespace.txt"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.write_text(listed)
        assert listed == golden.read_text(), f"{subject} in {namespace}:\n{listed}"


def secret_values(kube: Kube, node: dict[str, str]) -> dict[str, str]:
    """Every secret this cluster holds for claimcheck: the store's keys and the webhook's key."""
    webhook = kube.get("secret", "claimcheck-webhook-tls", "-n", OPERATOR_NAMESPACE)["data"]
    key_pem = base64.b64decode(webhook["tls.key"]).decode()
    key_body = "".join(line for line in key_pem.splitlines() if "-----" not in line)
    return {
        "the store's secret key": node["S3_SECRET_ACCESS_KEY"],
        "the webhook's private key": key_body[:64],
    }


def what_claimcheck_shows(kube: Kube) -> dict[str, str]:
    """Everything claimcheck writes where others read: every container's log, Events, the
    policy's status, the ConfigMaps it renders, and the metrics of the operator and the proxy."""
    shown = {}
    for namespace in (OPERATOR_NAMESPACE, TEAM):
        for pod in kube.get("pods", "-n", namespace)["items"]:
            name, spec = pod["metadata"]["name"], pod["spec"]
            for container in spec.get("initContainers", []) + spec["containers"]:
                logs = kube.kubectl("logs", "-n", namespace, name, "-c", container["name"], check=False)
                shown[f"log of {namespace}/{name}/{container['name']}"] = logs.stdout
            for port in (9090, 8080):
                metrics = kube.kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/pods/{name}:{port}/proxy/metrics",
                                       check=False)
                shown[f"metrics of {namespace}/{name}:{port}"] = metrics.stdout
        shown[f"events in {namespace}"] = kube.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        shown[f"configmaps in {namespace}"] = kube.kubectl("get", "configmaps", "-n", namespace, "-o", "json").stdout
    shown["the policy"] = kube.kubectl("get", "payloadstoragepolicy", POLICY, "-n", TEAM, "-o", "json").stdout
    return shown


def test_no_secret_reaches_logs_events_status_or_metrics(kube: Kube, node: dict[str, str]):
    shown = what_claimcheck_shows(kube)
    assert any(name.startswith("metrics of") and text for name, text in shown.items()), "metrics were read"
    leaks = [f"{secret} in {where}" for secret, value in secret_values(kube, node).items()
             for where, text in shown.items() if value in text]
    assert not leaks, leaks


def s3_rule_ids(store) -> list[str]:
    try:
        rules = store._client.get_bucket_lifecycle_configuration(Bucket=store.bucket)["Rules"]
    except store._client.exceptions.ClientError:
        return []
    return [r["ID"] for r in rules]


async def test_deleting_the_policy_removes_its_rule_and_keeps_the_objects(kube: Kube, temporal: str, store):
    assert s3_rule_ids(store), "the policy's bucket rule is installed"
    kube.kubectl("delete", "deployment", WORKER, "-n", TEAM)
    kube.kubectl("delete", "payloadstoragepolicy", POLICY, "-n", TEAM, "--timeout", "60s")
    assert not s3_rule_ids(store)
    # Every object the 10 MiB run references is still there, intact.
    client = await Client.connect(temporal)
    assert await checked_run_references(client, "ten-mib", None, store)


def test_helm_upgrade_updates_the_crd(kube: Kube, images: dict[str, str], tmp_path: Path):
    chart = tmp_path / "claimcheck"
    shutil.copytree(CHART, chart)
    template = chart / "templates" / "crd.yaml"
    # A new printer column: a change to the CRD as a release would bring one.
    columns = "  - additionalPrinterColumns:\n"
    column = "    - jsonPath: .spec.thresholdBytes\n      name: Threshold\n      type: integer\n"
    text = template.read_text()
    assert columns in text
    template.write_text(text.replace(columns, columns + column, 1))
    kube.helm("upgrade", "claimcheck", str(chart), "-n", OPERATOR_NAMESPACE, *operator_values(images),
              "--wait", "--timeout", "5m")
    crd = kube.get("crd", "payloadstoragepolicies.claimcheck.dev")
    columns = [c["name"] for v in crd["spec"]["versions"] for c in v.get("additionalPrinterColumns", [])]
    assert "Threshold" in columns, columns


def test_helm_uninstall_leaves_no_webhook_and_pods_are_created(kube: Kube, images: dict[str, str]):
    kube.helm("uninstall", "claimcheck", "-n", OPERATOR_NAMESPACE, "--wait", "--timeout", "3m")
    # Replicas that were still terminating must not have brought it back.
    time.sleep(5)
    left = kube.kubectl("get", "mutatingwebhookconfiguration", "-o", "name").stdout.split()
    assert not left, left
    pod = json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "after-uninstall", "namespace": TEAM, "labels": {"claimcheck.dev/policy": POLICY}},
        "spec": {"containers": [{"name": WORKER, "image": images["worker"], "args": ["worker"]}]},
    })
    created = json.loads(kube.kubectl("create", "-o", "json", "-f", "-", input=pod).stdout)
    assert [c["name"] for c in created["spec"]["containers"]] == [WORKER]
    assert not created["spec"].get("initContainers")
    # The CRD is kept (crds.keep): policies survive an uninstall.
    kube.get("crd", "payloadstoragepolicies.claimcheck.dev")
