"""A real PostgreSQL server of the tests' own: ``initdb`` in a temporary directory, started
with ``pg_ctl`` on a free loopback port (and a unix socket in that directory), stopped and
removed at the end. Never the machine's server on 5432.

``initdb`` refuses to run as root: as root, the server's files belong to the ``postgres``
system user (which the Debian package creates) and its programs run as that user through
``runuser``. The cluster trusts local connections, so the tests connect as any role they
create (the service's INSERT-and-SELECT role among them) without passwords.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.ports import free_port

SUPERUSER = "remit_admin"


def bindir() -> Path:
    """The directory of initdb and pg_ctl: ``pg_config --bindir`` when it has them, else
    the newest /usr/lib/postgresql/*/bin."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        found = Path(out.stdout.strip())
        if (found / "initdb").is_file():
            return found
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if candidates:
        return Path(candidates[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL is not installed (scripts/test installs it)")


class PostgresServer:
    def __init__(self, port: int | None = None) -> None:
        self.bin = bindir()
        self.port = port or free_port()
        # not under pytest's tmp_path: as root that is 0700, which the postgres user cannot
        # enter; /tmp is world-writable and this directory is the server user's own
        self.dir = Path(tempfile.mkdtemp(prefix="remit-pg-"))
        self.data = self.dir / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "as root, the tests run PostgreSQL as the postgres system user, and there "
                    "is none (scripts/test creates it; apt-get install postgresql does too)"
                ) from None
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        out = subprocess.run(
            [*self._as, *args], capture_output=True, text=True, check=False, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {out.stdout}{out.stderr}")

    def start(self) -> PostgresServer:
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-o",
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c max_connections=50 -c shared_buffers=16MB",
        )
        return self

    def create_database(self) -> str:
        """A new, empty database; its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}".encode())
        return name

    def create_role(self, role: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE ROLE {role} LOGIN".encode())

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                [
                    *self._as,
                    str(self.bin / "pg_ctl"),
                    "stop",
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                ],
                capture_output=True,
                check=False,
                timeout=60,
            )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (each test takes its own database)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> str:
    """A fresh database on the tests' own server: its superuser URL."""
    return postgres_server.url(postgres_server.create_database())
