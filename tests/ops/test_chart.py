"""The Helm chart (helm/spacecast), checked with the real helm v3.21.4 (scripts/helm.sh install).

- `helm lint --strict` with the default values and every example;
- `helm template` of the default values and of every example in helm/spacecast/examples/, each
  rendered object validated offline against the Kubernetes 1.33 JSON schemas (PyPI
  kubernetes-validate, strict: unknown fields fail). The Prometheus Operator's CRDs (ServiceMonitor,
  PrometheusRule) are not in that bundle: they are validated against CRD_SCHEMAS below, a subset of
  their CRDs' openAPIV3Schema written down here (the fields the chart sets, with their types;
  unknown fields fail);
- assertions on the rendered objects (cluster: a Deployment of >= 2 replicas, a PDB, the migrate hook
  Job, probes, drain timing; single node: a StatefulSet with a PVC; the PrometheusRule is exactly the
  groups of observability/alerts/spacecast-rules.yaml; the dashboard ConfigMap is exactly
  observability/dashboards/spacecast.json);
- every `fail` of the chart and of values.schema.json really fails, with its message.

SPACECAST_HELM and SPACECAST_OPS_PYTHON come from `scripts/helm.sh env`; a missing helm fails.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spacecast"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
RULES = ROOT / "observability" / "alerts" / "spacecast-rules.yaml"
DASHBOARD = ROOT / "observability" / "dashboards" / "spacecast.json"
KUBE_VERSION = "1.33.0"
HELM = os.environ.get("SPACECAST_HELM", str(Path.home() / ".cache/spacecast/bin/helm"))


def helm(*args: str) -> subprocess.CompletedProcess:
    assert Path(HELM).is_file(), f"helm is not installed at {HELM}: run scripts/helm.sh install"
    return subprocess.run([HELM, *args], cwd=ROOT, text=True, capture_output=True)


def render(*args: str) -> list[dict]:
    r = helm("template", "sc", str(CHART), "--namespace", "chat", *args)
    assert r.returncode == 0, f"helm template {' '.join(args)} failed:\n{r.stderr}"
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def only(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects: {[o['metadata']['name'] for o in found]}"
    return found[0]


def kinds(objs: list[dict]) -> set[str]:
    return {o["kind"] for o in objs}


def container(pod_spec: dict, name: str = "spacecast") -> dict:
    [c] = [c for c in pod_spec["containers"] if c["name"] == name]
    return c


def env_of(c: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# -- Offline schema validation ------------------------------------------------------------------

_str_map = {"type": "object", "additionalProperties": {"type": "string"}}
_label_selector = {
    "type": "object",
    "properties": {"matchLabels": _str_map, "matchExpressions": {"type": "array"}},
    "additionalProperties": False,
}
_metadata = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string"},
        "labels": _str_map,
        "annotations": _str_map,
    },
    "additionalProperties": False,
}
_duration = {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
CRD_SCHEMAS = {
    # monitoring.coreos.com/v1 ServiceMonitor: the fields of its CRD that the chart sets.
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": _metadata,
            "spec": {
                "type": "object",
                "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "namespaceSelector": {
                        "type": "object",
                        "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
                        "additionalProperties": False,
                    },
                    "selector": _label_selector,
                    "endpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string"},
                                "scheme": {"enum": ["http", "https"]},
                                "interval": _duration,
                                "scrapeTimeout": _duration,
                                "relabelings": {"type": "array", "items": {"type": "object"}},
                                "metricRelabelings": {"type": "array", "items": {"type": "object"}},
                            },
                            "additionalProperties": False,
                        },
                    },
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
    # monitoring.coreos.com/v1 PrometheusRule: spec.groups[].rules[] as in its CRD.
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "PrometheusRule"},
            "metadata": _metadata,
            "spec": {
                "type": "object",
                "properties": {
                    "groups": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["name"],
                            "properties": {
                                "name": {"type": "string", "minLength": 1},
                                "interval": _duration,
                                "limit": {"type": "integer"},
                                "query_offset": _duration,
                                "labels": _str_map,
                                "partial_response_strategy": {"type": "string"},
                                "rules": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["expr"],
                                        "properties": {
                                            "alert": {"type": "string"},
                                            "record": {"type": "string"},
                                            "expr": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                                            "for": _duration,
                                            "keep_firing_for": _duration,
                                            "labels": _str_map,
                                            "annotations": _str_map,
                                        },
                                        "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
                                        "additionalProperties": False,
                                    },
                                },
                            },
                            "additionalProperties": False,
                        },
                    }
                },
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
}


def validate(obj: dict) -> None:
    key = (obj["apiVersion"], obj["kind"])
    if key in CRD_SCHEMAS:
        jsonschema.validate(obj, CRD_SCHEMAS[key])
    else:
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def example_args(path: Path) -> list[str]:
    return ["-f", str(path)]


CASES = {"defaults": []} | {p.stem: example_args(p) for p in EXAMPLES}
# Other branches of the templates, validated like the examples.
VARIANTS = {
    "cluster, hard anti-affinity, PDB minAvailable, NetworkPolicy peers": example_args(CHART / "examples" / "cluster.yaml")
    + [
        "--set", "podAntiAffinity=hard",
        "--set", "podDisruptionBudget.maxUnavailable=null",
        "--set", "podDisruptionBudget.minAvailable=2",
        "--set", "networkPolicy.from[0].podSelector.matchLabels.app=web",
        "--set", "jwt.existingSecret=",
        "--set", "jwt.publicKey.existingSecret=idp-key",
    ],
    "single node without persistence, storage class -, no preStop": [
        "--set", "persistence.storageClass=-",
        "--set", "drain.preStopSleepSeconds=0",
        "--set", "terminationGracePeriodSeconds=90",
        "--set", "serviceMonitor.enabled=true",
        "--set", "prometheusRule.enabled=true",
        "--set", "grafanaDashboard.enabled=true",
        "--set", "networkPolicy.enabled=true",
    ],
    "single node on CQL (StatefulSet, migrate hook)": ["--set", "config.store=cql", "--set", "config.cqlNodes=cassandra:9042"],
}


def test_examples_exist():
    assert {p.stem for p in EXAMPLES} >= {"single-node", "cluster", "cluster-tracing"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lint_strict(case):
    r = helm("lint", "--strict", str(CHART), *CASES[case])
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert "0 chart(s) failed" in r.stdout, r.stdout


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_objects_are_valid_kubernetes_1_33(case):
    objs = render(*CASES[case])
    assert objs
    for obj in objs:
        try:
            validate(obj)
        except Exception as e:  # noqa: BLE001 - report which object failed
            pytest.fail(f"{case}: {obj['kind']} {obj['metadata']['name']} is invalid: {e}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_are_valid_kubernetes_1_33(variant):
    objs = render(*VARIANTS[variant])
    for obj in objs:
        try:
            validate(obj)
        except Exception as e:  # noqa: BLE001
            pytest.fail(f"{variant}: {obj['kind']} {obj['metadata']['name']} is invalid: {e}")


def test_variant_objects():
    objs = render(*VARIANTS["cluster, hard anti-affinity, PDB minAvailable, NetworkPolicy peers"])
    spec = only(objs, "Deployment")["spec"]["template"]["spec"]
    [term] = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert only(objs, "PodDisruptionBudget")["spec"] == {
        "minAvailable": 2,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "spacecast", "app.kubernetes.io/instance": "sc"}},
    }
    assert only(objs, "NetworkPolicy")["spec"]["ingress"][0]["from"] == [{"podSelector": {"matchLabels": {"app": "web"}}}]
    c = container(spec)
    assert env_of(c)["SPACECAST_JWT_PUBLIC_KEY"] == "/etc/spacecast/jwt/public.pem"
    assert "SPACECAST_JWT_SECRET" not in env_of(c)
    assert {"name": "jwt-public-key", "mountPath": "/etc/spacecast/jwt", "readOnly": True} in c["volumeMounts"]

    objs = render(*VARIANTS["single node without persistence, storage class -, no preStop"])
    sts = only(objs, "StatefulSet")
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == ""
    c = container(sts["spec"]["template"]["spec"])
    assert "lifecycle" not in c
    assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 90

    objs = render(*VARIANTS["single node on CQL (StatefulSet, migrate hook)"])
    assert only(objs, "StatefulSet") and only(objs, "Job")["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    objs = render("--set", "persistence.enabled=false")
    spec = only(objs, "StatefulSet")["spec"]["template"]["spec"]
    assert "volumeClaimTemplates" not in only(objs, "StatefulSet")["spec"]
    assert {"name": "data", "emptyDir": {}} in spec["volumes"]


def test_the_validation_rejects_an_invalid_object():
    """The validation used above fails on what it must catch (so a pass means something)."""
    [sts] = [o for o in render() if o["kind"] == "StatefulSet"]
    bad = json.loads(json.dumps(sts))
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    bad = json.loads(json.dumps(sts))
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    rule = only(render(*CASES["cluster"]), "PrometheusRule")
    bad = json.loads(json.dumps(rule))
    bad["spec"]["groups"][0]["rules"][0]["for"] = "two minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)
    bad = json.loads(json.dumps(rule))
    del bad["spec"]["groups"][0]["rules"][0]["expr"]
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


# -- What the objects say -----------------------------------------------------------------------


def test_cluster_example():
    objs = render(*CASES["cluster"])
    assert "StatefulSet" not in kinds(objs) and "PersistentVolumeClaim" not in kinds(objs)
    dep = only(objs, "Deployment")
    assert dep["spec"]["replicas"] >= 2
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert selects(dep["spec"]["selector"]["matchLabels"], pod_labels)
    spec = dep["spec"]["template"]["spec"]
    c = container(spec)

    # Probes: readiness on /readyz, liveness (and startup) on /healthz, on the http port.
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]

    # Drain: preStop sleep, then SIGTERM; the grace period covers the sleep and the server's three
    # phases bounded by SPACECAST_SHUTDOWN_TIMEOUT.
    env = env_of(c)
    assert env["SPACECAST_SHUTDOWN_TIMEOUT"] == "20s"
    assert c["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert spec["terminationGracePeriodSeconds"] == 5 + 3 * 20 + 10

    # Cluster configuration from the values and Secrets.
    assert env["SPACECAST_STORE"] == "cql"
    assert env["SPACECAST_CQL_NODES"].startswith("cassandra-0.cassandra:9042,")
    assert env["SPACECAST_NATS_URL"] == "nats://nats:4222"
    assert env["SPACECAST_MEDIA_STORE"] == "s3"
    assert env["SPACECAST_S3_BUCKET"] == "spacecast-media"
    assert env["SPACECAST_S3_SECRET_ACCESS_KEY"] == {"secretKeyRef": {"name": "spacecast-s3", "key": "secret-access-key"}}
    assert env["SPACECAST_JWT_SECRET"] == {"secretKeyRef": {"name": "spacecast-jwt", "key": "jwt-secret"}}
    assert env["SPACECAST_NODE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["resources"]["requests"] == {"cpu": "1", "memory": "512Mi"}
    # Stateless: the data dir is an emptyDir.
    [data] = [v for v in spec["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "emptyDir": {}}
    # Spread over nodes.
    [term] = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], pod_labels)
    # Rolling updates keep capacity.
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}

    pdb = only(objs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)

    svc = [o for o in objs if o["kind"] == "Service"]
    assert len(svc) == 1, "cluster mode has no headless Service"
    assert selects(svc[0]["spec"]["selector"], pod_labels)

    # The migrate hook: `spacecast migrate` with the server's configuration, before install and
    # upgrade; its pod is not selected by the Service or the PDB.
    job = only(objs, "Job")
    ann = job["metadata"]["annotations"]
    assert set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    jspec = job["spec"]["template"]["spec"]
    mc = container(jspec, "migrate")
    assert mc["args"] == ["migrate"]
    assert mc["image"] == c["image"]
    assert env_of(mc) == env
    assert jspec["restartPolicy"] == "Never"
    assert "serviceAccountName" not in jspec, "the chart's ServiceAccount does not exist at pre-install"
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert not selects(svc[0]["spec"]["selector"], job_labels)
    assert not selects(pdb["spec"]["selector"]["matchLabels"], job_labels)

    netpol = only(objs, "NetworkPolicy")
    assert netpol["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert selects(netpol["spec"]["podSelector"]["matchLabels"], pod_labels)

    sm = only(objs, "ServiceMonitor")
    assert selects(sm["spec"]["selector"]["matchLabels"], svc[0]["metadata"]["labels"])
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


def test_cluster_tracing_example():
    objs = render(*CASES["cluster-tracing"])
    dep = only(objs, "Deployment")
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    env = env_of(container(dep["spec"]["template"]["spec"]))
    assert env["SPACECAST_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert env["SPACECAST_OTLP_PROTOCOL"] == "grpc"
    assert env["SPACECAST_TRACE_SAMPLE_RATIO"] == "0.1"
    hpa = only(objs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert hpa["spec"]["minReplicas"] >= 2
    pods = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods == [
        {
            "type": "Pods",
            "pods": {"metric": {"name": "spacecast_ws_sessions"}, "target": {"type": "AverageValue", "averageValue": "5000"}},
        }
    ]
    # The metric the HPA reads is one the server exports.
    names = (ROOT / "observability" / "src" / "lib.rs").read_text()
    assert '"spacecast_ws_sessions"' in names


def test_single_node_example():
    objs = render(*CASES["single-node"])
    assert not kinds(objs) & {"Deployment", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job"}
    sts = only(objs, "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    spec = sts["spec"]["template"]["spec"]
    c = container(spec)
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    assert not [v for v in spec["volumes"] if v["name"] == "data"], "data comes from the claim"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = env_of(c)
    assert env["SPACECAST_STORE"] == "embedded" and "SPACECAST_NATS_URL" not in env
    assert "affinity" not in spec
    headless = [o for o in objs if o["kind"] == "Service" and o["spec"].get("clusterIP") == "None"]
    assert [h["metadata"]["name"] for h in headless] == [sts["spec"]["serviceName"]]


def test_the_prometheus_rule_is_the_rule_file():
    assert (CHART / "files" / "spacecast-rules.yaml").is_symlink()
    assert (CHART / "files" / "spacecast-rules.yaml").samefile(RULES)
    rule = only(render(*CASES["cluster"]), "PrometheusRule")
    source = yaml.safe_load(RULES.read_text())
    assert rule["spec"] == {"groups": source["groups"]}
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    # Templating left the rules' own {{ $labels.x }} alone.
    assert any("{{ $labels." in r.get("annotations", {}).get("summary", "") for g in rule["spec"]["groups"] for r in g["rules"])


def test_the_dashboard_configmap_is_the_dashboard():
    assert (CHART / "files" / "spacecast-dashboard.json").is_symlink()
    assert (CHART / "files" / "spacecast-dashboard.json").samefile(DASHBOARD)
    objs = render(*CASES["cluster"])
    [cm] = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["spacecast.json"]) == json.loads(DASHBOARD.read_text())


def test_packaged_chart_carries_the_files(tmp_path):
    """`helm package` stores the symlinked files' contents, so a packaged chart renders them too."""
    r = helm("package", str(CHART), "--destination", str(tmp_path))
    assert r.returncode == 0, r.stderr
    [tgz] = tmp_path.glob("spacecast-*.tgz")
    r = helm("template", "sc", str(tgz), "-f", str(CHART / "examples" / "cluster.yaml"))
    assert r.returncode == 0, r.stderr
    rule = only([d for d in yaml.safe_load_all(r.stdout) if d], "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"]


def test_default_image_is_what_scripts_image_sh_builds():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    sts = only(render(), "StatefulSet")
    image = container(sts["spec"]["template"]["spec"])["image"]
    built = subprocess.run([str(ROOT / "scripts" / "image.sh"), "name"], cwd=ROOT, text=True, capture_output=True, check=True).stdout.strip()
    assert image == built == f"spacecast:{chart['appVersion']}"
    # appVersion is the Spacecast version (the workspace's, which `spacecast --version` prints).
    cargo = (ROOT / "Cargo.toml").read_text()
    ws_version = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', cargo, re.M | re.S)
    assert ws_version and ws_version.group(1) == chart["appVersion"]


def test_every_env_var_is_a_server_option():
    """A misspelt SPACECAST_* variable would be ignored by the server: every one the chart sets
    is an option of api/src/config.rs or of CONTRACT §1 (the OTLP options)."""
    config = (ROOT / "api" / "src" / "config.rs").read_text()
    known = set(re.findall(r'env = "(SPACECAST_[A-Z0-9_]+)"', config))
    known |= {"SPACECAST_OTLP_ENDPOINT", "SPACECAST_OTLP_PROTOCOL", "SPACECAST_TRACE_SAMPLE_RATIO"}
    assert "SPACECAST_SHUTDOWN_TIMEOUT" in known and "SPACECAST_CQL_NODES" in known
    seen = set()
    for case in CASES:
        for obj in render(*CASES[case]):
            if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    seen |= {e["name"] for e in c["env"] if e["name"].startswith("SPACECAST_")}
    assert seen - known == set(), f"unknown options: {seen - known}"
    assert {"SPACECAST_OTLP_ENDPOINT", "SPACECAST_SHUTDOWN_TIMEOUT", "SPACECAST_CQL_REPLICATION"} <= seen


# -- The chart refuses inconsistent values -------------------------------------------------------

CLUSTER = example_args(CHART / "examples" / "cluster.yaml")
FAILS = {
    "replicas>1 on the embedded store": ([ "--set", "replicaCount=2"], "replicaCount > 1 needs cluster mode"),
    "cluster on the embedded store": (CLUSTER + ["--set", "config.store=embedded"], "cluster.enabled needs config.store=cql"),
    "cluster without natsUrl": (CLUSTER + ["--set", "config.natsUrl="], "cluster.enabled needs config.natsUrl"),
    "cluster with local media": (CLUSTER + ["--set", "config.mediaStore=local"], "cluster.enabled needs config.mediaStore=s3"),
    "cluster without a JWT Secret": (CLUSTER + ["--set", "jwt.existingSecret="], "cluster.enabled needs a shared JWT key"),
    "cluster of one": (CLUSTER + ["--set", "replicaCount=1"], "cluster.enabled needs replicaCount >= 2"),
    "s3 without bucket": (CLUSTER + ["--set", "config.s3.bucket="], 'config.mediaStore is "s3": set config.s3.bucket'),
    "s3 without endpoint": (["--set", "config.mediaStore=s3", "--set", "config.s3.bucket=b"], "set config.s3.endpoint"),
    "s3 without credentials": (CLUSTER + ["--set", "config.s3.credentials.existingSecret="], "set config.s3.credentials.existingSecret"),
    "cql without nodes": (["--set", "config.store=cql"], 'config.store is "cql": set config.cqlNodes'),
    "natsUrl on a single node": (["--set", "config.natsUrl=nats://nats:4222"], "config.natsUrl is set, which makes the server a cluster node"),
    "HPA on the embedded store": (["--set", "autoscaling.enabled=true"], "autoscaling.enabled needs cluster mode"),
    "HPA of one": (CLUSTER + ["--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=1"], "autoscaling.minReplicas must be at least 2"),
    "HPA max below min": (CLUSTER + ["--set", "autoscaling.enabled=true", "--set", "autoscaling.maxReplicas=2", "--set", "autoscaling.minReplicas=3"], "autoscaling.maxReplicas must be at least autoscaling.minReplicas"),
    "grace period shorter than the drain": (["--set", "terminationGracePeriodSeconds=30"], "terminationGracePeriodSeconds (30) is shorter than drain.preStopSleepSeconds + 3 x drain.shutdownTimeoutSeconds (65)"),
    "sample ratio without endpoint": (["--set-string", "config.otlp.sampleRatio=0.5"], "config.otlp.endpoint is empty"),
    "PDB with both bounds": (CLUSTER + ["--set", "podDisruptionBudget.minAvailable=1"], "set only one of maxUnavailable and minAvailable"),
    "one node id for every cluster pod": (CLUSTER + ["--set", "config.nodeId=node-1"], "config.nodeId must be empty in cluster mode"),
    "release name that is no node id": (["--set", "fullnameOverride=chat.example"], 'the pods\' names become their node ids'),
    # values.schema.json
    "schema: unknown store": (["--set", "config.store=sqlite"], "at '/config/store': value must be one of 'embedded', 'cql'"),
    "schema: unknown key": (["--set", "replicas=2"], "additional properties 'replicas' not allowed"),
    "schema: OTLP protocol": (["--set", "config.otlp.protocol=udp"], "at '/config/otlp/protocol'"),
    "schema: sample ratio": (["--set-string", "config.otlp.sampleRatio=2"], "at '/config/otlp/sampleRatio'"),
    "schema: replicas type": (["--set-string", "replicaCount=three"], "at '/replicaCount'"),
}


@pytest.mark.parametrize("case", sorted(FAILS))
def test_inconsistent_values_fail_with_their_message(case):
    args, message = FAILS[case]
    r = helm("template", "sc", str(CHART), *args)
    assert r.returncode != 0, f"{case}: rendered anyway:\n{r.stdout[:2000]}"
    assert message in r.stderr, f"{case}: expected {message!r} in:\n{r.stderr}"


@pytest.mark.parametrize("case", ["cluster", "cluster-tracing", "single-node"])
def test_each_fail_case_base_renders(case):
    """The examples the fail cases start from render: each failure comes from its one change."""
    assert render(*CASES[case])
