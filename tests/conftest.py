"""Fixtures shared by the whole suite: databases on SQLite and PostgreSQL, apps, and a running platform server."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy import text

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_SEED = REPO_ROOT / "platform" / "justtrades" / "demo" / "demo.yaml"
TEST_API_KEY = "test-admin-key-0123456789"
POSTGRES_ADMIN_URL = os.environ.get("JT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ON_CI = os.environ.get("CI", "").lower() == "true"

# Daemons that would connect to TradingView or Tradovate stay off unless a test points them at a local peer;
# subprocesses started by tests inherit this.
os.environ.setdefault("JT_FEEDS_ENABLED", "false")
# Every scrape reads the database, so tests compare /metrics with the JSON endpoints without waiting for a refresh.
os.environ.setdefault("JT_METRICS_REFRESH_SECONDS", "0")

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_real_getaddrinfo = socket.getaddrinfo
_real_connect = socket.socket.connect


def _is_loopback(host) -> bool:
    if host is None or host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _loopback_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host if not isinstance(host, bytes) else host.decode()):
        raise OSError(f"test suite network guard: {host!r} is not a loopback address; tests talk to 127.0.0.1 only")
    return _real_getaddrinfo(host, *args, **kwargs)


def _loopback_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise OSError(f"test suite network guard: connect to {address[0]!r} refused; tests talk to 127.0.0.1 only")
    return _real_connect(self, address)


@pytest.fixture(autouse=True, scope="session")
def loopback_only_network():
    """Refuse any connection from the test process to an address outside 127.0.0.0/8 and ::1."""
    socket.getaddrinfo = _loopback_getaddrinfo
    socket.socket.connect = _loopback_connect
    yield
    socket.getaddrinfo = _real_getaddrinfo
    socket.socket.connect = _real_connect


def require_component(available: bool, what: str) -> None:
    """Skip a test whose real component is missing, except on CI, where a missing component is a failure."""
    if available:
        return
    if ON_CI:
        pytest.fail(f"{what} is required on CI (CI=true) but is not available", pytrace=False)
    pytest.skip(f"{what} is not available")


def shared_dir() -> Path:
    return Path(os.environ.get("JT_SHARED_DIR", REPO_ROOT.parent / "shared"))


def load_shared_cases() -> list[dict]:
    path = shared_dir() / "cases" / "webhooks.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"shared webhook cases not found at {path}: clone the repository beside the shared folder, or set "
            "JT_SHARED_DIR to the folder that holds cases/webhooks.jsonl"
        )
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def case_body(case: dict) -> bytes:
    body = case["body"]
    if case.get("pad"):
        body = body.replace("{PAD}", "x" * case["pad"])
    return body.encode("utf-8")


# --- databases -------------------------------------------------------------------------------------------------


def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_database():
    """A PostgreSQL database of this test session's own, dropped at the end."""
    require_component(_postgres_available(), "PostgreSQL on 127.0.0.1:5432")
    import psycopg

    name = f"jt_core_{os.getpid()}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

    from justtrades.db.engine import create_database_engine
    from justtrades.db.migrate import upgrade

    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _truncate_postgres(url: str) -> None:
    from justtrades.db.engine import create_database_engine
    from justtrades.db.models import Base

    engine = create_database_engine(url)
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A migrated, empty database: once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
        from justtrades.db.engine import create_database_engine
        from justtrades.db.migrate import upgrade

        engine = create_database_engine(url)
        upgrade(engine)
        engine.dispose()
        return url

    url = request.getfixturevalue("postgres_database")
    _truncate_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path):
    from justtrades.db.engine import create_database_engine
    from justtrades.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'test.sqlite3'}"
    engine = create_database_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


# --- apps -------------------------------------------------------------------------------------------------------


def build_app(database_url: str, *, start_background: bool = False, seed: Path | None = DEMO_SEED, **overrides):
    """Create an app on a migrated database, seeded with the demo data unless seed is None."""
    from justtrades.app import create_app
    from justtrades.config import Settings
    from justtrades.db.engine import transaction
    from justtrades.seed import apply_seed, load_seed_file

    settings = Settings(database_url=database_url, admin_api_key=TEST_API_KEY, secret_key="test-secret",
                        worker_poll_seconds=0.2, **overrides)
    app = create_app(settings, start_background=start_background)
    app.config["TESTING"] = True
    if seed is not None:
        with transaction(app.extensions["justtrades"].session_factory) as session:
            apply_seed(session, load_seed_file(seed))
    return app


@pytest.fixture
def app(database_url):
    app = build_app(database_url)
    yield app
    app.extensions["justtrades"].stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def running_app(database_url):
    """An app whose broker workers run, on both databases."""
    app = build_app(database_url, start_background=True)
    yield app
    app.extensions["justtrades"].stop()


def stop_waitress(server, thread) -> None:
    """Stop a waitress server that `thread` runs, and its request threads."""
    # NOTE: waitress 3.0 has no public stop, so the sockets are closed from the server's own loop, which ends run().
    from waitress import wasyncore

    try:
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map, ignore_all=True))
    except OSError:
        pass  # the trigger is closed: the loop has ended already
    thread.join(5)
    server.task_dispatcher.shutdown(timeout=5)


# --- a real server process --------------------------------------------------------------------------------------


class PlatformServer:
    """`justtrades serve` in a subprocess on 127.0.0.1, on a port the OS picked, with the demo data loaded."""

    def __init__(self, workdir: Path, env_overrides: dict | None = None, seed: Path = DEMO_SEED):
        self.workdir = workdir
        self.seed = seed
        self.api_key = TEST_API_KEY
        self.database_url = f"sqlite:///{workdir / 'platform.sqlite3'}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "JT_ADMIN_API_KEY": self.api_key,
            "JT_SECRET_KEY": "test-secret",
            "JT_WORKER_POLL_SECONDS": "0.2",
            "PYTHONUNBUFFERED": "1",
            **(env_overrides or {}),
        }
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.log_path = workdir / "platform.log"

    def start(self, timeout: float = 30.0) -> "PlatformServer":
        justtrades = [sys.executable, "-m", "justtrades.cli"]
        subprocess.run([*justtrades, "seed", str(self.seed)], env=self.env, check=True, capture_output=True, timeout=60)

        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*justtrades, "serve", "--host", "127.0.0.1", "--port", "0"],
            env=self.env, stdout=subprocess.PIPE, stderr=log, cwd=self.workdir,
        )
        self.url = self._read_url(timeout)
        self._wait_healthy(timeout)
        return self

    def _read_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode()
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                return match.group(1)
            if not line and self.process.poll() is not None:
                break
        raise RuntimeError(f"platform did not start; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}")

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"platform at {self.url} never became healthy")

    def post_webhook(self, token: str, body, content_type: str = "application/json") -> requests.Response:
        data = body.encode() if isinstance(body, str) else body
        return requests.post(f"{self.url}/webhook/{token}", data=data, headers={"Content-Type": content_type}, timeout=10)

    def get(self, path: str, **kwargs) -> requests.Response:
        headers = {"X-API-Key": self.api_key, **kwargs.pop("headers", {})}
        return requests.get(self.url + path, headers=headers, timeout=10, **kwargs)

    def stop(self, sig=None) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if sig is None:
            self.process.terminate()
        else:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.fixture
def platform_server(tmp_path):
    server = PlatformServer(tmp_path).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_platform_server(tmp_path_factory):
    """One platform server for a whole test module, for read-mostly end-to-end tests."""
    server = PlatformServer(tmp_path_factory.mktemp("platform")).start()
    yield server
    server.stop()


def binary_available(name: str) -> bool:
    return shutil.which(name) is not None
