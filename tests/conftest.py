"""Shared fixtures: the compiled policy, and a real gRPC server on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from remit.audit.log import AuditLog, MemorySink, Pseudonymiser
from remit.distribution.holder import PolicyHolder
from remit.model.policy import PolicySet, load_dir
from remit.server.serve import Deps, create_server

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "policies" / "generated"


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
