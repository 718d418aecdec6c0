"""deploy/kubernetes: the manifests, checked without a cluster.

- every resource kustomization.yaml lists exists and parses; `kustomize build` (or
  `kubectl kustomize`) runs when one of them is installed;
- the core resources validate against the Kubernetes OpenAPI schemas (kubernetes-validate,
  strict, oldest and newest bundled versions);
- the Prometheus Operator resources are checked for structure here, the PrometheusRule's groups
  must equal prometheus/alerts.yml's, and the generated files must be up to date;
- the Deployment's container spec (args, env, Secret files, probe paths) is run locally
  against the simulator.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import requests
import yaml

from cph_exporter.simulator import (
    SIMULATOR_ACCESS_KEY,
    SIMULATOR_PROJECT_ID,
    SIMULATOR_SECRET_KEY,
    CphSimulator,
)
from tests.helpers.net import free_port
from tests.helpers.processes import stop, wait_for

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"
ALERTS = REPO / "prometheus" / "alerts.yml"
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
SECRET_EXAMPLE = K8S / "secret.example.yaml"
PORT = 9852
MONITORING = "monitoring.coreos.com/v1"
# Oldest schema kubernetes-validate bundles, and its newest: the manifests must suit both.
OLDEST_KUBERNETES = "1.25.0"
# Prometheus Operator's Duration pattern (monitoring.coreos.com CRDs).
DURATION = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
# kubectl's client-side apply keeps the whole object in an annotation of at most 256 KiB.
LAST_APPLIED_LIMIT = 262144


def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> list[dict[str, Any]]:
    """The documents of every file kustomization.yaml lists, in order."""
    return [doc for name in kustomization()["resources"] for doc in load(K8S / name)]


def one(kind: str, api_version: str | None = None, name: str | None = None) -> dict[str, Any]:
    found = [
        r
        for r in resources()
        if r["kind"] == kind
        and (api_version is None or r["apiVersion"] == api_version)
        and (name is None or r["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def settings() -> dict[str, Any]:
    """The ConfigMap the container reads its environment from."""
    return one("ConfigMap", name="cph-exporter")


def container() -> dict[str, Any]:
    (main,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(main)


def seconds(duration: str) -> int:
    units = {"y": 31536000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(
        int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|[ywdhms])", duration) if u != "ms"
    )


def test_every_listed_resource_exists_and_parses() -> None:
    spec = kustomization()
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert spec["kind"] == "Kustomization"
    listed = spec["resources"]
    assert len(listed) == len(set(listed))
    for name in listed:
        path = K8S / name
        assert path.is_file(), f"kustomization.yaml lists {name}, which does not exist"
        docs = load(path)
        assert docs, f"{name} holds no resource"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), name
            assert doc.get("metadata", {}).get("name"), name
    keys = [(r["kind"], r["metadata"]["name"]) for r in resources()]
    assert len(keys) == len(set(keys)), f"duplicate resources: {keys}"
    # Nothing forgotten: every manifest here is listed, except the placeholder Secret.
    on_disk = {p.name for p in K8S.glob("*.yaml") if "secret" not in p.name}  # git-ignored
    on_disk -= {"kustomization.yaml"}
    assert on_disk == set(listed)
    assert SECRET_EXAMPLE.name not in listed, "the example Secret must never be applied"
    kinds = {r["kind"] for r in resources()}
    assert {"Deployment", "Service", "ConfigMap", "ServiceMonitor", "PrometheusRule"} <= kinds


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.skipif(kustomize_command() is None, reason="neither kustomize nor kubectl found")
def test_kustomize_build() -> None:
    command = kustomize_command()
    assert command
    result = subprocess.run(
        [*command, str(K8S)], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted((r["kind"], r["metadata"]["name"]) for r in built) == sorted(
        (r["kind"], r["metadata"]["name"]) for r in resources()
    )
    namespace = kustomization()["namespace"]
    for resource in built:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace, resource["kind"]
    (deployment,) = [r for r in built if r["kind"] == "Deployment"]
    (image,) = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    assert image == f"cph-exporter:{kustomization()['images'][0]['newTag']}"


def core_resources() -> list[dict[str, Any]]:
    return [r for r in resources() if r["apiVersion"] != MONITORING] + load(SECRET_EXAMPLE)


@pytest.mark.parametrize(
    "resource",
    core_resources(),
    ids=lambda r: f"{r['kind']}-{r['metadata']['name']}",
)
def test_core_resources_validate_against_the_kubernetes_schemas(resource: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install '.[test]' (kubernetes-validate)"
    )
    for version in (OLDEST_KUBERNETES, kubernetes_validate.latest_version()):
        # Strict: an unknown or misspelt field fails instead of being ignored by the API server.
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{resource['kind']} against Kubernetes {version}: {where}: {exc.message}")


def test_schema_validation_catches_a_misspelt_field() -> None:
    """The validation above can fail: a typo in a probe is rejected."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = copy.deepcopy(one("Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    probe["httpGet"]["pth"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)


def test_only_prometheus_operator_resources_lack_a_core_schema() -> None:
    """A core resource with a wrong apiVersion would otherwise skip validation unnoticed."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for resource in resources():
        try:
            kubernetes_validate.validate(resource, OLDEST_KUBERNETES, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert resource["apiVersion"] == MONITORING, resource["kind"]
            assert resource["kind"] in {"ServiceMonitor", "PrometheusRule"}


def test_deployment_runs_unprivileged() -> None:
    """What the pod-security "restricted" profile (set on the namespace) demands, and more."""
    pod = one("Deployment")["spec"]["template"]["spec"]
    main = container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod.get("automountServiceAccountToken") is False, "the exporter never calls the API"
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    security = main["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security["capabilities"].get("add")
    assert not security.get("privileged")
    assert security.get("runAsNonRoot", True) is True
    resources_ = main["resources"]
    assert {"cpu", "memory"} <= set(resources_["requests"])
    assert "memory" in resources_["limits"]
    namespace = one("Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


def test_image_user_matches_the_dockerfile() -> None:
    """runAsUser must be the image's user, or the Secret's group-readable files are unreadable."""
    from tests.helpers.deploy import dockerfile_instructions

    users = [arg for op, arg in dockerfile_instructions() if op == "USER"]
    uid, gid = users[-1].split(":")
    pod = one("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert (str(pod["runAsUser"]), str(pod["runAsGroup"]), str(pod["fsGroup"])) == (uid, gid, gid)


def test_image_tag_is_the_package_version() -> None:
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert version
    (image,) = kustomization()["images"]
    assert image["name"] == container()["image"] == "cph-exporter"
    assert image["newTag"] == version.group(1)


def test_probes_ports_and_selectors_line_up() -> None:
    main = container()
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"metrics": PORT}
    assert f"--web.listen-address=:{PORT}" in main["args"]
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        get = main[probe]["httpGet"]
        assert get["path"] == path and get["port"] in (PORT, "metrics"), probe
    deployment = one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()

    service = one("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["port"] == PORT
    assert port["targetPort"] in ("metrics", PORT)

    monitor = one("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics"}


def secret_example() -> dict[str, Any]:
    (secret,) = load(SECRET_EXAMPLE)
    return dict(secret)


def credential_files() -> dict[str, PurePosixPath]:
    """*_FILE variable -> the file the container reads it from."""
    return {
        e["name"]: PurePosixPath(e["value"])
        for e in container()["env"]
        if e["name"].endswith("_FILE")
    }


def test_credentials_come_from_the_secret_as_files() -> None:
    main = container()
    pod = one("Deployment")["spec"]["template"]["spec"]
    assert not [e for e in main["env"] if "valueFrom" in e or e["name"].endswith(("_AK", "_SK"))]
    files = credential_files()
    assert set(files) == {"HUAWEICLOUD_SDK_AK_FILE", "HUAWEICLOUD_SDK_SK_FILE"}
    (mount,) = [m for m in main["volumeMounts"] if m["name"] == "credentials"]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "credentials"]
    secret = secret_example()
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    for path in files.values():
        assert path.parent == PurePosixPath(mount["mountPath"])
        assert path.name in secret["stringData"], f"the Secret has no key {path.name}"
    # The region and project come from the ConfigMap, which the container reads whole.
    (source,) = main["envFrom"]
    assert source["configMapRef"]["name"] == settings()["metadata"]["name"]


def test_secret_example_holds_placeholders_only() -> None:
    secret = secret_example()
    assert secret["kind"] == "Secret" and "data" not in secret
    for key, value in secret["stringData"].items():
        assert re.fullmatch(r"REPLACE_WITH_[A-Z_]+", value), f"{key} is not a placeholder"
    for path in K8S.iterdir():
        text = path.read_text(errors="replace") if path.is_file() else ""
        assert SIMULATOR_SECRET_KEY not in text and not re.search(r"\bAK[A-Z0-9]{16,}\b", text)


def test_the_container_spec_runs_and_its_probes_answer(
    simulator: CphSimulator, tmp_path: Path
) -> None:
    """The Deployment's args and environment, run here: credentials from files named by the
    *_FILE variables, the region from the ConfigMap, the probes on the paths it names."""
    main = container()
    mount = PurePosixPath(next(m["mountPath"] for m in main["volumeMounts"]))
    keys = {"access-key": SIMULATOR_ACCESS_KEY, "secret-key": SIMULATOR_SECRET_KEY}
    assert set(keys) == set(secret_example()["stringData"])
    for name, value in keys.items():
        (tmp_path / name).write_text(value)
    environ = dict(settings()["data"])
    # An empty project ID means an IAM lookup at start; the simulator has no IAM.
    environ["HUAWEICLOUD_SDK_PROJECT_ID"] = SIMULATOR_PROJECT_ID
    for name, path in credential_files().items():
        environ[name] = str(tmp_path / path.relative_to(mount))
    environ["PATH"] = "/usr/bin:/bin"
    address = f"127.0.0.1:{free_port()}"
    args = [a for a in main["args"] if not a.startswith("--web.listen-address=")]
    args += [f"--web.listen-address={address}", f"--cph.endpoint={simulator.url}"]

    def probe(kind: str) -> str:
        get = main[kind]["httpGet"]
        return f"http://{address}{get['path']}"

    with (tmp_path / "exporter.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cph_exporter", *args],
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / "exporter.log").read_text())
        return requests.get(probe("readinessProbe"), timeout=2).ok

    try:
        wait_for("the readiness probe to pass", ready, timeout=30)
        assert requests.get(probe("livenessProbe"), timeout=5).status_code == 200
        metrics = requests.get(f"http://{address}/metrics", timeout=10).text
        assert re.search(r"^cph_up\{[^}]*\} 1\.0$", metrics, re.M), metrics[:2000]
    finally:
        stop(proc)
    log_text = (tmp_path / "exporter.log").read_text()
    assert SIMULATOR_SECRET_KEY not in log_text
    # --log.format=json, as the Deployment asks: one JSON object a line
    assert all(json.loads(line) for line in log_text.splitlines() if line.strip())


def test_service_monitor_structure() -> None:
    monitor = one("ServiceMonitor", MONITORING)
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    assert spec["selector"]["matchLabels"]
    allowed = {"port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels"}
    allowed |= {"relabelings", "metricRelabelings", "tlsConfig", "basicAuth"}
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= allowed, set(endpoint) - allowed
        assert endpoint.get("path", "/metrics") == "/metrics"
        interval, timeout = endpoint["interval"], endpoint["scrapeTimeout"]
        assert DURATION.match(interval) and DURATION.match(timeout)
        # Prometheus refuses a scrape timeout longer than the interval.
        assert 0 < seconds(timeout) <= seconds(interval)


def test_prometheus_rule_is_alerts_yml() -> None:
    rule = one("PrometheusRule", MONITORING)
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(rule["spec"]) == {"groups"}
    groups = rule["spec"]["groups"]
    assert groups == yaml.safe_load(ALERTS.read_text())["groups"], (
        "prometheusrule.yaml is out of date: run python deploy/kubernetes/generate.py"
    )
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names))
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for r in group["rules"]:
            assert ("alert" in r) != ("record" in r), r
            assert isinstance(r["expr"], str) and r["expr"].strip()
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert DURATION.match(r.get("for", "0")), r.get("for")
            for field in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in r.get(field, {}).values()), r


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not found")
def test_promtool_accepts_the_prometheus_rule_groups(tmp_path: Path) -> None:
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(yaml.safe_dump({"groups": one("PrometheusRule")["spec"]["groups"]}))
    result = subprocess.run(
        ["promtool", "check", "rules", str(rule_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboards_configmap_holds_every_dashboard_for_the_sidecar() -> None:
    configmap = one("ConfigMap", name="cph-exporter-dashboards")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    data = configmap["data"]
    assert sorted(data) == [p.name for p in DASHBOARDS], (
        "grafana-dashboards.yaml is out of date: run python deploy/kubernetes/generate.py"
    )
    for path in DASHBOARDS:
        assert data[path.name] == path.read_text(encoding="utf-8"), (
            f"{path.name} changed: run python deploy/kubernetes/generate.py"
        )
        json.loads(data[path.name])
    assert len(json.dumps(configmap)) < LAST_APPLIED_LIMIT, "too big for kubectl apply"


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


SHARDED = K8S / "sharded"


def statefulset() -> dict[str, Any]:
    (resource,) = load(SHARDED / "statefulset.yaml")
    return dict(resource)


def test_sharded_variant_replaces_the_deployment_with_a_statefulset() -> None:
    variant = yaml.safe_load((SHARDED / "kustomization.yaml").read_text())
    assert variant["resources"][0] == ".."
    for name in variant["resources"][1:]:
        assert (SHARDED / name).is_file(), name
    (patch,) = variant["patches"]
    deleted = yaml.safe_load(patch["patch"])
    assert deleted["$patch"] == "delete"
    base = one("Deployment")
    assert (deleted["kind"], deleted["metadata"]["name"]) == (
        "Deployment",
        base["metadata"]["name"],
    )
    sts = statefulset()
    assert sts["spec"]["serviceName"] == one("Service")["metadata"]["name"]
    # The same pod as the base but for the shard flag and the pod name it reads.
    pod, base_pod = copy.deepcopy(sts["spec"]["template"]), copy.deepcopy(base["spec"]["template"])
    (main,), (base_main,) = pod["spec"]["containers"], base_pod["spec"]["containers"]
    assert [a for a in main.pop("args") if not a.startswith("--shard=")] == base_main.pop("args")
    assert [e for e in main.pop("env") if e["name"] != "POD_NAME"] == base_main.pop("env")
    assert pod == base_pod
    assert sts["spec"]["selector"] == base["spec"]["selector"]


def test_each_shard_takes_its_index_from_its_ordinal() -> None:
    """Every pod name the StatefulSet makes, expanded as Kubernetes does and parsed by the
    exporter's own flag parsing, gives a different shard; together, all of them."""
    from cph_exporter.cli import build_parser, config_from_args
    from cph_exporter.refresh.shard import Shard

    sts = statefulset()
    replicas = sts["spec"]["replicas"]
    (main,) = sts["spec"]["template"]["spec"]["containers"]
    (flag,) = [a for a in main["args"] if a.startswith("--shard=")]
    (pod_name,) = [e for e in main["env"] if e["name"] == "POD_NAME"]
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    shards = []
    for ordinal in range(replicas):
        expanded = flag.replace("$(POD_NAME)", f"{sts['metadata']['name']}-{ordinal}")
        config = config_from_args(build_parser().parse_args(["--simulate", expanded]), {})
        shards.append(config.shard)
    assert shards == [Shard(i, replicas) for i in range(replicas)]


@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "latest"])
def test_statefulset_validates_against_the_kubernetes_schemas(version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    if version == "latest":
        version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(statefulset(), version, strict=True)


def test_network_policy_admits_only_the_prometheus_namespace_to_the_metrics_port() -> None:
    policy = one("NetworkPolicy")
    pod_labels = one("Deployment")["spec"]["template"]["metadata"]["labels"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress"]  # egress to the CPH API stays open
    (rule,) = spec["ingress"]
    (source,) = rule["from"]
    assert set(source) == {"namespaceSelector"}  # no podSelector/ipBlock widening it
    assert source["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_dashboards_configmap_names_its_grafana_folder() -> None:
    configmap = one("ConfigMap", name="cph-exporter-dashboards")
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "CPH"}


def test_the_detail_cache_is_on_an_empty_dir() -> None:
    main = container()
    (flag,) = [a for a in main["args"] if a.startswith("--cache.dir=")]
    directory = flag.partition("=")[2]
    (mount,) = [m for m in main["volumeMounts"] if m["mountPath"] == directory]
    assert not mount.get("readOnly")  # written after each refresh (the root stays read-only)
    pod = one("Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "sizeLimit" in volume["emptyDir"]
