"""Fixtures shared by tests/unit and tests/integration: the compiled policy, an in-memory
decision log, and a real gRPC server on a free loopback port (started on first use).

Layout: ``tests/unit`` is pure Python (compiler, conditions, due dates, policy suites,
differential, adapters' mapping, tools, hot path); ``tests/integration`` starts something
(a gRPC server, a subprocess, Redis, Chromium, the CLI as a process); ``tests/support`` holds
the helpers both use. ``ROOT`` and ``GENERATED`` are re-exported here for older imports.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from remit.audit.log import AuditLog, Pseudonymiser
from remit.distribution.holder import PolicyHolder
from remit.model.policy import PolicySet, load_dir
from remit.server.serve import Deps, create_server

from tests.support import GENERATED, ROOT
from tests.support.sinks import MemorySink

__all__ = ["GENERATED", "ROOT"]

# postgres_server (one PostgreSQL of the tests' own per session) and postgres_db (a fresh
# database on it)
pytest_plugins = ["tests.support.postgres_server"]


@pytest.fixture(scope="session")
def policies() -> PolicySet:
    return load_dir(GENERATED)


@pytest.fixture(scope="session")
def audit_sink() -> MemorySink:
    return MemorySink()


@pytest.fixture(scope="session")
def server_address(policies: PolicySet, audit_sink: MemorySink) -> Iterator[str]:
    audit = AuditLog(audit_sink, "strict", Pseudonymiser(b"k" * 32))
    # the suites decide at fixed dates (bank holidays, grant expiry): a ten-year window for
    # claimed decision times here; the bound itself is tested in test_decision_hook.py
    deps = Deps(PolicyHolder(policies), audit=audit, decision_time_window_days=3660)
    server, port = create_server("127.0.0.1:0", deps)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


@pytest.fixture(scope="session")
def channel(server_address: str) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server_address) as ch:
        grpc.channel_ready_future(ch).result(timeout=10)
        yield ch
