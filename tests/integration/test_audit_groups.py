"""Group commit in strict mode, against a real gRPC server and a real fsync'd file: a batch
or stream message is one write and one fsync, concurrent unary calls share one, and an
answer is returned only once its entry is in the file."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from remit.audit.log import AuditLog, FileSink, Pseudonymiser, read_lines, verify_lines
from remit.distribution.holder import PolicyHolder
from remit.model.policy import PolicySet, load_dir
from remit.server.serve import Deps, create_server
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import GENERATED

KEY = Pseudonymiser(b"k" * 32)


@functools.cache
def _policies() -> PolicySet:
    return load_dir(GENERATED)


def _request(n: int) -> pb.AuthoriseRequest:
    return pb.AuthoriseRequest(
        council="torbay",
        decision="s17_payment",
        request_id=f"r{n}",
        actor=pb.Actor(id="tm-1", roles=["team_manager"]),
        context=pb.Context(amount_pence=150000, cumulative_amount_pence=150000),
    )


def _logged(path: Path) -> set[str]:
    return {e["decision_id"] for _, e, _ in read_lines(path) if e and "decision_id" in e}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[pb_grpc.AuthorisationServiceStub, AuditLog, Path]]:
    path = tmp_path / "decisions.jsonl"
    log = AuditLog(FileSink(path), "strict", KEY, writer="t", group_window=0.01)
    server, port = create_server("127.0.0.1:0", Deps(PolicyHolder(_policies()), audit=log))
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            yield pb_grpc.AuthorisationServiceStub(ch), log, path
    finally:
        server.stop(None)
        log.flush()


def test_a_batch_is_one_group_and_durable_when_answered(
    served: tuple[pb_grpc.AuthorisationServiceStub, AuditLog, Path],
) -> None:
    stub, log, path = served
    items = [pb.BatchItem(correlation_id=f"c{i}", request=_request(i)) for i in range(50)]
    batch = stub.AuthoriseBatch(pb.AuthoriseBatchRequest(items=items), timeout=10)
    assert all(r.WhichOneof("result") == "response" for r in batch.results)
    assert (log.stats.written, log.stats.groups) == (50, 1)  # one write, one fsync
    # in the file (fsync'd) before the answer came back
    assert {r.response.decision_id for r in batch.results} <= _logged(path)

    messages = [pb.AuthoriseStreamRequest(items=items[i : i + 10]) for i in range(0, 30, 10)]
    answers = list(stub.AuthoriseStream(iter(messages), timeout=10))
    assert (log.stats.written, log.stats.groups) == (80, 4)  # one group per stream message
    ids = {r.response.decision_id for a in answers for r in a.results}
    assert len(ids) == 30 and ids <= _logged(path)
    assert verify_lines(read_lines(path)).ok


def test_concurrent_unary_calls_share_groups_and_each_is_durable_when_answered(
    served: tuple[pb_grpc.AuthorisationServiceStub, AuditLog, Path],
) -> None:
    stub, log, path = served
    answered: list[tuple[str, bool]] = []

    def calls(t: int) -> None:
        for i in range(10):
            resp = stub.Authorise(_request(t * 100 + i), timeout=10)
            answered.append((resp.decision_id, resp.decision_id in _logged(path)))

    threads = [threading.Thread(target=calls, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answered) == 80
    assert all(durable for _, durable in answered)  # each in the file when answered
    assert log.stats.written == 80
    assert log.stats.groups <= 40, log.stats  # calls shared writes and fsyncs
    result = verify_lines(read_lines(path))
    assert result.ok and result.entries == 80
