"""Check docker-compose.yml, the Dockerfiles and the provisioning files without Docker.

Docker is not available to the test suite, so the stack is checked by reading its files. Every mounted file
exists, every image build has its context and Dockerfile, and every service has a health check and a restart
policy. No secret is written into a file. The files that refer to each other (Grafana provisioning,
prometheus.yml, compose) agree on paths, host names and ports.
"""

from __future__ import annotations

import fnmatch
import re
import urllib.parse
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_PATH = REPO_ROOT / "docker-compose.yml"
SERVICES = {"platform", "exporter", "prometheus", "alertmanager", "grafana"}
RESTART_POLICIES = {"always", "unless-stopped", "on-failure"}
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PASSWD|TOKEN|PASSPHRASE|CREDENTIAL", re.IGNORECASE)
# A secret may only come from the environment, and must be required: ${NAME:?message} or ${NAME?message}.
REQUIRED_INTERPOLATION = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*):?\?[^}]*\}$")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])[^}]*)?\}")
SERVICE_PORTS = {"platform": 5000, "exporter": 9877, "prometheus": 9090, "alertmanager": 9093, "grafana": 3000}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_PATH.read_text(encoding="utf-8"))


def _services(compose: dict) -> dict:
    return compose["services"]


def _bind_mounts(service: dict) -> list[tuple[str, str]]:
    """Return (host path, container path) for every bind mount of a service; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def _host_path(service: dict, container_path: str) -> Path | None:
    """Return the host path that a container path of `service` comes from, through its bind mounts."""
    requested = PurePosixPath(container_path)
    for source, target in _bind_mounts(service):
        target_path = PurePosixPath(target)
        if requested == target_path or target_path in requested.parents:
            return (REPO_ROOT / source / requested.relative_to(target_path)).resolve()
    return None


def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """Return (instruction, arguments) pairs of a Dockerfile, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _build(service: dict) -> tuple[Path, Path]:
    build = service["build"]
    context = REPO_ROOT / (build if isinstance(build, str) else build.get("context", "."))
    dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
    return context, dockerfile


# ----------------------------------------------------------------------------------------------------------
# Services


def test_compose_defines_every_service(compose):
    assert set(_services(compose)) == SERVICES


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_has_healthcheck_and_restart(compose, name):
    service = _services(compose)[name]
    assert service.get("restart") in RESTART_POLICIES
    healthcheck = service.get("healthcheck", {})
    assert healthcheck.get("test"), f"{name} has no healthcheck test"
    assert not healthcheck.get("disable", False)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_bind_mounts_exist(compose, name):
    for source, _ in _bind_mounts(_services(compose)[name]):
        assert (REPO_ROOT / source).exists(), f"{name} mounts {source}, which does not exist"


def test_named_volumes_declared(compose):
    declared = set(compose.get("volumes") or {})
    for name, service in _services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} uses volume {source} that the top-level volumes lack"


@pytest.mark.parametrize("name", ["platform", "exporter"])
def test_build_context_and_dockerfile_exist(compose, name):
    context, dockerfile = _build(_services(compose)[name])
    assert context.is_dir(), context
    assert dockerfile.is_file(), dockerfile


def test_depends_on_known_services(compose):
    for name, service in _services(compose).items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"


def test_ports_published_on_loopback_only(compose):
    for name, service in _services(compose).items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


# ----------------------------------------------------------------------------------------------------------
# Secrets


def _walk_strings(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk_strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_strings(value, f"{path}[{index}]")
    elif node is not None:
        yield path, str(node)


def _environment(service: dict) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_secrets_come_from_environment(compose, name):
    for key, value in _environment(_services(compose)[name]).items():
        if SECRET_NAME.search(key):
            assert REQUIRED_INTERPOLATION.match(value), f"{name}: {key} must be ${{VAR:?message}}, not a literal"


def test_no_secret_literal_anywhere(compose):
    for path, value in _walk_strings(compose):
        leaf = path.rsplit(".", 1)[-1]
        # Any key or value of the form NAME=value or NAME: value where NAME looks secret must interpolate.
        for name, literal in re.findall(r"([A-Za-z_]+)=(\S+)", value):
            if SECRET_NAME.search(name):
                assert INTERPOLATION.fullmatch(literal), f"{path}: {name} has a literal value"
        if SECRET_NAME.search(leaf) and value:
            assert REQUIRED_INTERPOLATION.match(value), f"{path} holds a literal secret"


def test_env_example_lists_every_required_variable(compose):
    example = (REPO_ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", example, re.MULTILINE))
    required = {match.group(1) for _, value in _walk_strings(compose) for match in INTERPOLATION.finditer(value)
                if match.group(2) in ("?", ":?")}
    assert required, "compose requires no variable; secrets must come from .env"
    assert required <= listed


def test_env_file_not_in_build_context():
    ignored = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for pattern in (".env", ".git", ".venv"):
        assert pattern in ignored


# ----------------------------------------------------------------------------------------------------------
# Dockerfiles


@pytest.mark.parametrize("name", ["platform", "exporter"])
def test_dockerfile_runs_unprivileged_with_healthcheck(compose, name):
    context, dockerfile = _build(_services(compose)[name])
    instructions = _dockerfile_instructions(dockerfile)
    keywords = [keyword for keyword, _ in instructions]

    assert instructions[0] == ("FROM", "python:3.11-slim")
    assert "HEALTHCHECK" in keywords
    users = [arguments for keyword, arguments in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), users

    for keyword, arguments in instructions:
        if keyword == "ENV":
            for variable, _ in re.findall(r"([A-Za-z_]+)=(\S+)", arguments):
                assert not SECRET_NAME.search(variable), f"{dockerfile} sets {variable}"


@pytest.mark.parametrize("name", ["platform", "exporter"])
def test_dockerfile_copies_existing_paths(compose, name):
    context, dockerfile = _build(_services(compose)[name])
    for keyword, arguments in _dockerfile_instructions(dockerfile):
        if keyword != "COPY" or "--from" in arguments:
            continue
        for source in arguments.split()[:-1]:
            assert (context / source).exists(), f"{dockerfile} copies {source}, missing from the build context"


def test_dockerignore_keeps_copied_sources(compose):
    ignored = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for name in ("platform", "exporter"):
        context, dockerfile = _build(_services(compose)[name])
        for keyword, arguments in _dockerfile_instructions(dockerfile):
            if keyword == "COPY":
                for source in arguments.split()[:-1]:
                    top = source.rstrip("/").split("/")[0]
                    assert not any(fnmatch.fnmatch(top, pattern) for pattern in ignored), source


# ----------------------------------------------------------------------------------------------------------
# Files that refer to each other


def test_grafana_provisioning_mounted(compose):
    grafana = _services(compose)["grafana"]
    datasources = _host_path(grafana, "/etc/grafana/provisioning/datasources")
    providers = _host_path(grafana, "/etc/grafana/provisioning/dashboards")
    assert datasources is not None and any(datasources.glob("*.yml"))
    assert providers is not None and any(providers.glob("*.yml"))


def test_grafana_datasource_points_at_prometheus(compose):
    grafana = _services(compose)["grafana"]
    for path in _host_path(grafana, "/etc/grafana/provisioning/datasources").glob("*.yml"):
        for datasource in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]:
            url = urllib.parse.urlsplit(datasource["url"])
            assert url.hostname in SERVICES
            assert url.port == SERVICE_PORTS[url.hostname]
            assert datasource["uid"] == "jt-prometheus"


def test_grafana_provider_path_holds_dashboards(compose):
    grafana = _services(compose)["grafana"]
    for path in _host_path(grafana, "/etc/grafana/provisioning/dashboards").glob("*.yml"):
        for provider in yaml.safe_load(path.read_text(encoding="utf-8"))["providers"]:
            folder = _host_path(grafana, provider["options"]["path"])
            assert folder is not None and folder.is_dir(), provider["options"]["path"]
            assert {"overview.json", "broker-execution.json"} <= {p.name for p in folder.glob("*.json")}

    home = _environment(grafana).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    assert home and _host_path(grafana, home).is_file(), home


def _prometheus_config(compose) -> tuple[dict, dict]:
    prometheus = _services(compose)["prometheus"]
    config_path = _host_path(prometheus, "/etc/prometheus/prometheus.yml")
    assert config_path is not None and config_path.is_file(), "prometheus.yml is not mounted or missing"
    return prometheus, yaml.safe_load(config_path.read_text(encoding="utf-8"))


def test_prometheus_scrapes_compose_services(compose):
    _, config = _prometheus_config(compose)
    jobs = {}
    for scrape in config["scrape_configs"]:
        for static in scrape.get("static_configs", []):
            jobs.setdefault(scrape["job_name"], []).extend(static["targets"])

    assert jobs.get("justtrades") == [f"platform:{SERVICE_PORTS['platform']}"]
    assert jobs.get("justtrades-exporter") == [f"exporter:{SERVICE_PORTS['exporter']}"]


def test_prometheus_rule_files_mounted(compose):
    prometheus, config = _prometheus_config(compose)
    matched = []
    for pattern in config.get("rule_files", []):
        container_pattern = PurePosixPath("/etc/prometheus") / pattern
        folder = _host_path(prometheus, str(container_pattern.parent))
        assert folder is not None, f"rule_files {pattern} is outside every mount"
        matched.extend(path for path in folder.glob(container_pattern.name) if path.is_file())

    assert matched, "rule_files match no file"
    for path in matched:
        assert "groups" in yaml.safe_load(path.read_text(encoding="utf-8")), f"{path} is not a rule file"


def test_prometheus_sends_to_alertmanager(compose):
    _, config = _prometheus_config(compose)
    targets = [target for alertmanager in config["alerting"]["alertmanagers"]
               for static in alertmanager.get("static_configs", []) for target in static["targets"]]
    assert f"alertmanager:{SERVICE_PORTS['alertmanager']}" in targets


def test_scrape_interval_matches_grafana_time_interval(compose):
    _, config = _prometheus_config(compose)
    grafana = _services(compose)["grafana"]
    for path in _host_path(grafana, "/etc/grafana/provisioning/datasources").glob("*.yml"):
        for datasource in yaml.safe_load(path.read_text(encoding="utf-8"))["datasources"]:
            # Grafana's $__rate_interval is four times this value; it must not be shorter than the scrapes.
            assert datasource["jsonData"]["timeInterval"] == config["global"]["scrape_interval"]
