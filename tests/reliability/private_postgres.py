"""A PostgreSQL cluster of a test's own, which the test may stop and start without touching the shared server.

The cluster lives in a temporary directory, runs as the `postgres` system user (initdb refuses root) through
`runuser`, listens on a free 127.0.0.1 port with trust authentication, and is removed at the end.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SYSTEM_USER = "postgres"


def postgres_bin_dir() -> Path | None:
    """Return the newest Debian PostgreSQL bin directory that has initdb and pg_ctl, or None."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name))
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def private_cluster_available() -> tuple[bool, str]:
    """Tell whether a private cluster can be started here, and if not, why."""
    if postgres_bin_dir() is None:
        return False, "PostgreSQL server binaries under /usr/lib/postgresql/*/bin"
    if shutil.which("runuser") is None:
        return False, "runuser (util-linux), to run the cluster as the postgres user"
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return False, f"the {SYSTEM_USER} system user"
    if os.geteuid() != 0:
        return False, "root, to run the private cluster as the postgres user"
    return True, ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivatePostgres:
    """One private cluster; `stop()` and `start()` simulate an outage of the platform's database."""

    def __init__(self):
        self.bin_dir = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="jt-private-pg-"))
        self.data_dir = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        account = pwd.getpwnam(SYSTEM_USER)
        os.chown(self.root, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *arguments: str, timeout: float = 60) -> subprocess.CompletedProcess:
        command = ["runuser", "-u", SYSTEM_USER, "--", *arguments]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(arguments[:2])} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result

    def init(self) -> "PrivatePostgres":
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        options = "\n".join([
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.root}'",
            "max_connections = 200",
            "fsync = off",  # the test simulates the database going away, not a power cut of its host
            "synchronous_commit = off",
            "full_page_writes = off",
        ])
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n" + options + "\n")
        return self

    def start(self, timeout: float = 30) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "-w",
                  "-t", str(int(timeout)), "start", timeout=timeout + 10)
        self._wait_accepting(timeout)

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """Stop the cluster; `fast` disconnects every client at once, as a crashed or restarted server does."""
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)),
                  "stop", timeout=timeout + 10)

    def is_running(self) -> bool:
        result = subprocess.run(["runuser", "-u", SYSTEM_USER, "--", str(self.bin_dir / "pg_ctl"), "-D",
                                 str(self.data_dir), "status"], capture_output=True, timeout=30)
        return result.returncode == 0

    def _wait_accepting(self, timeout: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def destroy(self) -> None:
        if self.data_dir.exists() and self.is_running():
            try:
                self.stop(mode="immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)
