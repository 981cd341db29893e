"""The static checks of the Helm chart (tests/chart/check.sh), one command each; every command
prints `ok   ...` or `FAIL ...` lines and exits non-zero on a failure.

    chart.py k8s-schemas WHEEL VERSION OUT   Kubernetes' JSON schemas out of a kubernetes-validate
                                             wheel, their $refs made absolute file:// URLs
    chart.py crd-schemas OUT FILE...         the CRDs among FILEs' documents to JSON schemas, as
                                             kubeconform's openapi2jsonschema -strict does
    chart.py render-checks CHART VALUES RENDERED NAMESPACE
                                             asserts on one `helm template` output
    chart.py templates CHART                 no certificate generated or looked up by a template
"""

import copy
import json
import pathlib
import re
import sys
import zipfile

import yaml

CRD_NAME = "payloadstoragepolicies.claimcheck.dev"
POLICY_LABEL = "claimcheck.dev/policy"
KEEP = "helm.sh/resource-policy"
HOOK = "helm.sh/hook"
HOOK_DELETE_POLICY = "helm.sh/hook-delete-policy"
INJECT_CA = "cert-manager.io/inject-ca-from"


def fail(message):
    print(f"FAIL {message}")
    return 1


def k8s_schemas(wheel, version, out):
    """The wheel's v<VERSION>-local-strict schemas refer to each other as /api/_definitions.json
    under an https://kubernetes.io $id, which kubeconform would fetch: every such $ref becomes
    file://OUT/..., and the $ids go, so nothing resolves to the network."""
    out = pathlib.Path(out).resolve()
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/"

    def rewrite(node):
        if isinstance(node, dict):
            node.pop("$id", None)
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("/api/"):
                node["$ref"] = f"file://{out}/{ref[len('/api/'):]}"
            for value in node.values():
                rewrite(value)
        elif isinstance(node, list):
            for value in node:
                rewrite(value)
        return node

    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.startswith(prefix) and name.endswith(".json"):
                (out / name[len(prefix):]).write_text(json.dumps(rewrite(json.loads(archive.read(name)))))
                count += 1
    if not (out / "_definitions.json").exists():
        return fail(f"{wheel} has no {prefix}_definitions.json")
    print(f"ok   {count} Kubernetes {version} schemas in {out}")
    return 0


def json_schema(node):
    """An openAPIV3Schema node as the JSON schema the API server applies: an object with
    properties refuses others (kubectl's strict field validation) unless it preserves unknown
    fields, nullable admits null, int-or-string admits both."""
    if isinstance(node, list):
        return [json_schema(value) for value in node]
    if not isinstance(node, dict):
        return node
    node = {key: json_schema(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    if (node.get("x-kubernetes-int-or-string") or node.get("format") == "int-or-string") \
            and "anyOf" not in node and "oneOf" not in node:
        node.pop("type", None)
        node.pop("format", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    return node


def crd_schemas(out, *files):
    """OUT/<group>/<kind>_<version>.json for each version of each CRD, the layout of kubeconform's
    -schema-location 'OUT/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'.
    The root names apiVersion, kind and metadata, so a misspelt top-level field is refused too."""
    written = []
    for file in files:
        for crd in yaml.safe_load_all(pathlib.Path(file).read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                schema.setdefault("properties", {}).update({
                    "apiVersion": {"type": "string", "enum": [f"{spec['group']}/{version['name']}"]},
                    "kind": {"type": "string", "enum": [spec["names"]["kind"]]},
                    "metadata": {"type": "object"},
                })
                path = pathlib.Path(out) / spec["group"] / f"{spec['names']['kind'].lower()}_{version['name']}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(json_schema(schema)))
                written.append(f"{spec['names']['kind']}.{spec['group']}/{version['name']}")
    if not written:
        return fail(f"no CustomResourceDefinition in {' '.join(files)}")
    print(f"ok   schemas of {', '.join(written)}")
    return 0


FORBIDDEN_FUNCTIONS = ("genCA", "genPrivateKey", "genSelfSignedCert", "genSignedCert", "lookup")


def templates(chart):
    """A certificate made or read at render time (genCA, lookup) differs on every render, and a
    GitOps tool shows the release OutOfSync forever. Helm applies crds/ at install only."""
    chart = pathlib.Path(chart)
    failures = 0
    pattern = re.compile(r"\b(" + "|".join(FORBIDDEN_FUNCTIONS) + r")\b")
    for path in sorted((chart / "templates").rglob("*")):
        if path.is_file():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for action in re.findall(r"{{.*?}}", line):
                    if pattern.search(action):
                        failures += fail(f"{path}:{number}: {action.strip()}: certificates come from "
                                         "the operator or cert-manager, never from a template")
    if (chart / "crds").exists():
        failures += fail(f"{chart}/crds exists: Helm never upgrades it; the CRD belongs in templates/")
    if not failures:
        print(f"ok   no template calls {', '.join(FORBIDDEN_FUNCTIONS)}; no crds/ folder")
    return failures


# --- render-checks: asserts on one rendered release ---------------------------------------------


class Release:
    """One `helm template` output with the values it was rendered from."""

    def __init__(self, chart, values_file, rendered, namespace):
        chart = pathlib.Path(chart)
        self.values = merge(yaml.safe_load((chart / "values.yaml").read_text()),
                            yaml.safe_load(pathlib.Path(values_file).read_text()) or {})
        self.app_version = str(yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"])
        self.objects = [doc for doc in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if doc]
        self.namespace = namespace

    def all(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind, name=None):
        """The object of KIND (named NAME); an AssertionError names what is there instead."""
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
        return found[0]

    @property
    def deployment(self):
        return self.one("Deployment")

    @property
    def controller(self):
        return self.deployment["spec"]["template"]["spec"]["containers"][0]

    def rules(self, kind):
        """The rules of every KIND (Role, ClusterRole) bound to the operator's ServiceAccount."""
        account = {"kind": "ServiceAccount", "namespace": self.namespace,
                   "name": self.deployment["spec"]["template"]["spec"]["serviceAccountName"]}
        bound = {b["roleRef"]["name"] for b in self.all(f"{kind}Binding")
                 if b["roleRef"]["kind"] == kind and account in b["subjects"]}
        return [rule for role in self.all(kind) if role["metadata"]["name"] in bound for rule in role["rules"]]

    def arg(self, flag):
        """The value of --FLAG=value in the operator's arguments, None when absent."""
        values = [a.split("=", 1)[1] for a in self.controller["args"] if a.startswith(f"--{flag}=")]
        assert len(values) <= 1, f"--{flag} given {len(values)} times: {values}"
        return values[0] if values else None


def merge(base, override):
    """Helm's values merge: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: merge(base.get(k), v) for k, v in override.items()}}
    return override


def walk(node, path=""):
    """(path, key, value) of every map entry under NODE."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield path, key, value
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")


def annotations(obj):
    return obj["metadata"].get("annotations") or {}


def ident(obj):
    return f"{obj['kind']} {obj['metadata']['name']}"


def selects(selector, labels):
    """Whether a matchLabels selector (or a Service's plain selector) selects LABELS."""
    assert "matchExpressions" not in selector, f"{selector}: only matchLabels selectors are checked"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", selector).items())


def check_no_certificates(release):
    """no caBundle, certificate or key rendered (GitOps tools would see them drift)"""
    for obj in release.objects:
        for path, key, value in walk(obj):
            assert key != "caBundle", f"{ident(obj)} renders {path}.caBundle"
            assert not (isinstance(value, str) and "-----BEGIN" in value), f"{ident(obj)} renders PEM at {path}.{key}"
        if obj["kind"] == "Secret":
            keys = {**obj.get("data", {}), **obj.get("stringData", {})}
            assert obj.get("type") != "kubernetes.io/tls" and not any(
                k.endswith((".crt", ".key", ".pem")) for k in keys), f"{ident(obj)} holds a certificate"


def check_crd(release):
    """the CRD is a plain template (upgraded with the release), kept on uninstall iff crds.keep"""
    crds = release.values["crds"]
    if not crds["enabled"]:
        assert not release.all("CustomResourceDefinition"), "crds.enabled=false still renders a CRD"
        return
    crd = release.one("CustomResourceDefinition", CRD_NAME)
    assert HOOK not in annotations(crd), f"the CRD is a {annotations(crd)[HOOK]} hook: Helm does not upgrade hooks' objects"
    want = "keep" if crds["keep"] else None
    assert annotations(crd).get(KEEP) == want, f"crds.keep={crds['keep']} but {KEEP} is {annotations(crd).get(KEEP)!r}"


def check_webhook_configuration(release):
    """the MutatingWebhookConfiguration is a release object (helm uninstall deletes it) that the operator and its Service serve"""
    webhook_values = release.values["webhook"]
    config = release.one("MutatingWebhookConfiguration")
    name = config["metadata"]["name"]
    assert HOOK not in annotations(config), f"{ident(config)} is a hook: helm uninstall would leave it behind"
    assert KEEP not in annotations(config), f"{ident(config)} has {KEEP}: helm uninstall would leave it behind"
    # The operator must keep (patch) the chart's object, not create one of its own that no
    # uninstall removes.
    assert release.arg("webhook-configuration") == name, \
        f"the operator keeps --webhook-configuration={release.arg('webhook-configuration')}, the chart renders {name}"
    container_ports = {p["name"]: p["containerPort"] for p in release.controller["ports"]}
    assert release.arg("webhook-listen").endswith(f":{webhook_values['port']}"), release.arg("webhook-listen")
    for webhook in config["webhooks"]:
        assert webhook["failurePolicy"] == webhook_values["failurePolicy"], webhook["failurePolicy"]
        assert webhook["timeoutSeconds"] == webhook_values["timeoutSeconds"], webhook["timeoutSeconds"]
        ref = webhook["clientConfig"]["service"]
        assert ref["namespace"] == release.namespace, ref
        assert release.arg("webhook-service") == ref["name"], f"--webhook-service={release.arg('webhook-service')}, configuration calls {ref['name']}"
        service = release.one("Service", ref["name"])
        port = next(p for p in service["spec"]["ports"] if p["port"] == ref.get("port", 443))
        assert container_ports.get(port["targetPort"]) == webhook_values["port"], \
            f"{ident(service)} port {port['port']} targets {port['targetPort']}, not the webhook's {webhook_values['port']}"
        assert selects(service["spec"]["selector"], release.deployment["spec"]["template"]["metadata"]["labels"])
        assert {"key": POLICY_LABEL, "operator": "Exists"} in webhook["objectSelector"]["matchExpressions"], \
            f"{webhook['name']} is not limited to pods labelled {POLICY_LABEL}"
        excluded = next(e["values"] for e in webhook["namespaceSelector"]["matchExpressions"]
                        if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "NotIn")
        missing = {"kube-system", release.namespace, *webhook_values["excludedNamespaces"]} - set(excluded)
        assert not missing, f"{webhook['name']} still sees namespaces {sorted(missing)}"
    if release.values["certManager"]["enabled"]:
        certificate = annotations(config).get(INJECT_CA, "/").split("/")
        assert certificate[0] == release.namespace, f"{INJECT_CA}: {annotations(config).get(INJECT_CA)}"
        release.one("Certificate", certificate[1])
    else:
        assert INJECT_CA not in annotations(config), f"{INJECT_CA} without cert-manager"
        rules = release.rules("ClusterRole")
        assert any("mutatingwebhookconfigurations" in r["resources"] and "patch" in r["verbs"]
                   and name in r.get("resourceNames", []) for r in rules), f"the operator may not patch {name}'s caBundle"


def check_hooks(release):
    """hook objects, which helm uninstall never deletes, are deleted once run (but the test Pod, for helm test --logs)"""
    for obj in release.objects:
        if HOOK in annotations(obj) and obj["kind"] != "Pod":
            policies = annotations(obj).get(HOOK_DELETE_POLICY, "before-hook-creation").split(",")
            assert "hook-succeeded" in policies, \
                f"{ident(obj)} ({annotations(obj)[HOOK]} hook) outlives helm uninstall: {HOOK_DELETE_POLICY} {policies}"


def pod_specs(release):
    for obj in release.objects:
        if obj["kind"] == "Pod":
            yield ident(obj), obj["spec"]
        elif obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield ident(obj), obj["spec"]["template"]["spec"]


def check_restricted(release):
    """every pod meets the restricted Pod Security Standard"""
    found = False
    for name, pod in pod_specs(release):
        found = True
        pod_context = pod.get("securityContext") or {}
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not pod.get(field), f"{name}: {field}"
        assert not any("hostPath" in v for v in pod.get("volumes", [])), f"{name}: a hostPath volume"
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name} container {container['name']}"
            context = container.get("securityContext") or {}
            effective = {**pod_context, **context}
            assert effective.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true"
            assert effective.get("runAsUser", 1) != 0, f"{where}: runs as uid 0"
            assert (effective.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost"), \
                f"{where}: seccompProfile is not RuntimeDefault"
            assert context.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation is not false"
            assert not context.get("privileged"), f"{where}: privileged"
            capabilities = context.get("capabilities") or {}
            assert "ALL" in capabilities.get("drop", []), f"{where}: capabilities do not drop ALL"
            assert set(capabilities.get("add", [])) <= {"NET_BIND_SERVICE"}, f"{where}: adds {capabilities['add']}"
    assert found, "no pod rendered"


def image_ref(image, app_version):
    if image.get("digest"):
        return f"{image['repository']}@{image['digest']}"
    return f"{image['repository']}:{image.get('tag') or app_version}"


def check_values_reach_pods(release):
    """the pod values (replicas, image, scheduling, extra args and env, PDB, service account) reach the Deployment"""
    values = release.values
    deployment = release.deployment
    template = deployment["spec"]["template"]
    pod, container = template["spec"], release.controller
    labels = template["metadata"]["labels"]

    def equal(what, got, want):
        assert got == want, f"{what}: rendered {got!r}, values say {want!r}"

    equal("replicas", deployment["spec"]["replicas"], values["replicaCount"])
    assert selects(deployment["spec"]["selector"], labels), "the Deployment does not select its own pods"
    image = image_ref(values["image"], release.app_version)
    equal("image", container["image"], image)
    equal("imagePullPolicy", container["imagePullPolicy"], values["image"]["pullPolicy"])
    sidecar = values["sidecar"]
    equal("--sidecar-image", release.arg("sidecar-image"),
          image_ref(sidecar["image"], release.app_version) if sidecar["image"]["repository"] else image)
    equal("--sidecar-pull-policy", release.arg("sidecar-pull-policy"), sidecar["pullPolicy"])
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            equal(f"--sidecar-{resource}-{kind[:-1]}", release.arg(f"sidecar-{resource}-{kind[:-1]}"),
                  str(sidecar["resources"].get(kind, {}).get(resource, "")))
    for field in ("imagePullSecrets", "nodeSelector", "tolerations", "affinity", "priorityClassName"):
        equal(field, pod.get(field), values[field] or None)
    if values["topologySpreadConstraints"]:
        equal("topologySpreadConstraints", pod["topologySpreadConstraints"], values["topologySpreadConstraints"])
    else:
        assert all(selects(c["labelSelector"], labels) for c in pod["topologySpreadConstraints"]), \
            "the default topologySpreadConstraints do not select the operator's pods"
    equal("podAnnotations", {k: v for k, v in (template["metadata"].get("annotations") or {}).items()
                             if k in values["podAnnotations"]}, values["podAnnotations"])
    equal("podLabels", {k: v for k, v in labels.items() if k in values["podLabels"]}, values["podLabels"])
    equal("resources", container["resources"], values["resources"])
    equal("pod securityContext", pod["securityContext"], values["podSecurityContext"])
    equal("securityContext", container["securityContext"], values["securityContext"])
    equal("extraArgs", container["args"][len(container["args"]) - len(values["extraArgs"]):], values["extraArgs"])
    equal("extraEnv", [e for e in container["env"] if e in values["extraEnv"]], values["extraEnv"])
    equal("--log-format", release.arg("log-format"), values["logFormat"])
    equal("RUST_LOG", next(e.get("value") for e in container["env"] if e["name"] == "RUST_LOG"), values["logLevel"])
    equal("--lease-seconds", release.arg("lease-seconds"), str(values["leaderElection"]["leaseSeconds"]))

    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    equal("health port", ports.get("health"), values["metrics"]["port"])
    assert release.arg("health-listen").endswith(f":{values['metrics']['port']}"), release.arg("health-listen")
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ports, f"{probe} on a port the container lacks"
    for service in release.all("Service"):
        assert selects(service["spec"]["selector"], labels), f"{ident(service)} does not select the operator's pods"
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{ident(service)} targets port {port['targetPort']}, not a container port"

    account = pod["serviceAccountName"]
    accounts = [a["metadata"]["name"] for a in release.all("ServiceAccount")
                if HOOK not in annotations(a)]
    if values["serviceAccount"]["create"]:
        equal("ServiceAccounts", accounts, [account])
        equal("ServiceAccount annotations", annotations(release.one("ServiceAccount", account)) or {},
              values["serviceAccount"]["annotations"])
    else:
        equal("ServiceAccounts", accounts, [])
        equal("serviceAccountName", account, values["serviceAccount"]["name"])
    for binding in release.all("ClusterRoleBinding") + release.all("RoleBinding"):
        if HOOK not in annotations(binding):
            assert {"kind": "ServiceAccount", "name": account, "namespace": release.namespace} in binding["subjects"], \
                f"{ident(binding)} does not bind {account}"

    budget_values = values["podDisruptionBudget"]
    budgets = release.all("PodDisruptionBudget")
    if not budget_values["enabled"]:
        equal("PodDisruptionBudgets", budgets, [])
        return
    budget = release.one("PodDisruptionBudget")
    assert selects(budget["spec"]["selector"], labels), "the PodDisruptionBudget does not select the operator's pods"
    field = "minAvailable" if "minAvailable" in budget_values else "maxUnavailable"
    equal(f"PodDisruptionBudget {field}", budget["spec"].get(field), budget_values[field])


def check_cert_manager(release):
    """the webhook's certificate comes from cert-manager when certManager.enabled, from the operator otherwise"""
    values = release.values["certManager"]
    cert_manager_objects = [ident(o) for o in release.objects if o["apiVersion"].startswith("cert-manager.io/")]
    pod = release.deployment["spec"]["template"]["spec"]
    if not values["enabled"]:
        assert not cert_manager_objects, f"certManager.enabled=false renders {cert_manager_objects}"
        assert release.arg("webhook-cert-dir") is None
        secret = release.arg("webhook-secret")
        assert any(secret in r.get("resourceNames", []) and {"get", "update"} <= set(r["verbs"])
                   for r in release.rules("Role")), f"the operator may not keep its Secret {secret}"
        return
    name = annotations(release.one("MutatingWebhookConfiguration"))[INJECT_CA].split("/")[1]
    certificate = release.one("Certificate", name)["spec"]
    service = release.arg("webhook-service")
    assert f"{service}.{release.namespace}.svc" in certificate["dnsNames"], certificate["dnsNames"]
    assert certificate["duration"] == values["duration"] and certificate["renewBefore"] == values["renewBefore"]
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == certificate["secretName"])
    mount = next(m for m in release.controller["volumeMounts"] if m["name"] == volume["name"])
    assert release.arg("webhook-cert-dir") == mount["mountPath"], \
        f"--webhook-cert-dir={release.arg('webhook-cert-dir')}, the certificate is at {mount['mountPath']}"
    issuer = certificate["issuerRef"]
    if values["issuerRef"]:
        assert issuer == values["issuerRef"], f"issuerRef {issuer}, values say {values['issuerRef']}"
        assert not release.all("Issuer"), "an Issuer is rendered though certManager.issuerRef is given"
        return
    # The self-signed chain: Issuer (selfSigned) -> CA Certificate -> Issuer (ca) -> webhook's.
    ca_issuer = release.one(issuer["kind"], issuer["name"])["spec"]
    ca = next(c["spec"] for c in release.all("Certificate") if c["spec"]["secretName"] == ca_issuer["ca"]["secretName"])
    assert ca.get("isCA") is True, "the webhook's CA Certificate is not isCA"
    assert "selfSigned" in release.one(ca["issuerRef"]["kind"], ca["issuerRef"]["name"])["spec"]


def check_monitoring(release):
    """ServiceMonitor, PodMonitor, PrometheusRule and the dashboard follow their toggles and scrape what exists"""
    values = release.values
    toggles = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor",
               "PrometheusRule": "prometheusRule", "ConfigMap": "grafanaDashboard"}
    for kind, key in toggles.items():
        objects = release.all(kind)
        assert len(objects) == (1 if values[key]["enabled"] else 0), f"{key}.enabled={values[key]['enabled']}: {len(objects)} {kind}"
        for obj in objects:
            missing = set(values[key]["labels"].items()) - set(obj["metadata"]["labels"].items())
            assert not missing, f"{ident(obj)} lacks the labels {dict(missing)}"
    scraped = []
    for monitor in release.all("ServiceMonitor"):
        services = [s for s in release.all("Service") if selects(monitor["spec"]["selector"], s["metadata"]["labels"])]
        assert services, f"{ident(monitor)} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["interval"] == values["serviceMonitor"]["interval"]
            for service in services:
                assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]], \
                    f"{ident(monitor)} scrapes port {endpoint['port']}, which {ident(service)} lacks"
        scraped += [s["metadata"]["name"] for s in services]
    for rule_set in release.all("PrometheusRule"):
        for group in rule_set["spec"]["groups"]:
            for rule in group["rules"]:
                assert rule["labels"].get("severity") in ("warning", "critical"), f"{rule['alert']}: severity"
                assert rule["annotations"].get("summary"), f"{rule['alert']}: no summary"
                assert "{{" not in rule["expr"], f"{rule['alert']}: a template left in {rule['expr']}"
                # Prometheus Operator names a ServiceMonitor's job after the Service.
                for job in re.findall(r'job="([^"]+)"', rule["expr"]):
                    assert not scraped or job in scraped, f"{rule['alert']}: job {job} is none of the scraped {scraped}"
    for dashboard in release.all("ConfigMap"):
        for key, text in dashboard["data"].items():
            assert json.loads(text).get("panels"), f"{ident(dashboard)} {key} has no panels"


RENDER_CHECKS = (check_no_certificates, check_crd, check_webhook_configuration, check_hooks, check_restricted,
                 check_values_reach_pods, check_cert_manager, check_monitoring)


def render_checks(chart, values_file, rendered, namespace):
    release = Release(chart, values_file, rendered, namespace)
    failures = 0
    for check in RENDER_CHECKS:
        try:
            check(release)
            print(f"ok   {check.__doc__}")
        except (AssertionError, KeyError, StopIteration) as error:
            failures += fail(f"{check.__doc__}: {type(error).__name__}: {error}")
    return failures


if __name__ == "__main__":
    commands = {"k8s-schemas": k8s_schemas, "crd-schemas": crd_schemas, "render-checks": render_checks,
                "templates": templates}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    sys.exit(1 if commands[sys.argv[1]](*sys.argv[2:]) else 0)
