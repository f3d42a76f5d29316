"""Bounded streams: idle streams cannot take every worker thread; those beyond the limits
are refused at once with RESOURCE_EXHAUSTED, and unary calls and health keep answering."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from remit.audit.log import AuditLog, Pseudonymiser
from remit.distribution.holder import PolicyHolder
from remit.model.policy import PolicySet
from remit.server.limits import StreamSlots
from remit.server.serve import Deps, create_server
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support.sinks import MemorySink

THREADS = 8  # so 4 stream slots, 2 per caller


def test_slots_count_per_caller_and_in_all() -> None:
    slots = StreamSlots(total=3, per_caller=2)
    assert slots.acquire("a") and slots.acquire("a")
    assert not slots.acquire("a")  # the caller's limit
    assert slots.acquire("b")
    assert not slots.acquire("c")  # the total
    slots.release("a")
    assert slots.acquire("c")
    assert slots.in_use() == 3
    assert StreamSlots.for_threads(16).total == 8 and StreamSlots.for_threads(1).total == 1


def _idle(stop: threading.Event) -> Iterator[pb.AuthoriseStreamRequest]:
    stop.wait(30)  # sends nothing until told to stop
    return
    yield  # pragma: no cover


@pytest.fixture
def port(policies: PolicySet) -> Iterator[int]:
    deps = Deps(
        PolicyHolder(policies),
        audit=AuditLog(MemorySink(), "strict", Pseudonymiser(b"k" * 32)),
        max_workers=THREADS,
    )
    server, bound = create_server("127.0.0.1:0", deps)
    server.start()
    yield bound
    server.stop(None)


def _open(ch: grpc.Channel, stop: threading.Event) -> grpc.Future:  # type: ignore[type-arg]
    call = pb_grpc.AuthorisationServiceStub(ch).AuthoriseStream(_idle(stop), timeout=20)
    result: dict[str, object] = {}

    def drain() -> None:
        try:
            result["items"] = list(call)
        except grpc.RpcError as exc:
            result["code"] = exc.code()

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    return t, result  # type: ignore[return-value]


def _settle(
    opened: list[tuple[threading.Thread, dict[str, object]]], refusals: int
) -> list[object]:
    """Wait until ``refusals`` of the opened streams have ended; their status codes."""
    deadline = time.monotonic() + 10
    codes: list[object] = []
    while time.monotonic() < deadline:
        codes = [r["code"] for _, r in opened if r.get("code") is not None]
        if len(codes) >= refusals:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # and no more than that
    return [r["code"] for _, r in opened if r.get("code") is not None]


def test_idle_streams_beyond_the_limits_are_refused_and_health_answers(port: int) -> None:
    stop = threading.Event()
    # a connection of its own per channel: each is its own caller (peer) in open access
    own = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}", options=own) for _ in range(3)]
    try:
        opened = [_open(channels[0], stop) for _ in range(3)]  # one caller: 2 slots
        _settle(opened, 1)
        opened += [_open(ch, stop) for ch in channels[1:] for _ in range(2)]  # 2 more in all
        codes = _settle(opened, 3)
        assert codes == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3, codes
        # the worker threads beyond the stream slots still answer health and unary calls
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            started = time.monotonic()
            health = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=2
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            answer = pb_grpc.AuthorisationServiceStub(ch).Authorise(
                pb.AuthoriseRequest(
                    council="torbay",
                    decision="apply_epo",
                    actor=pb.Actor(id="tm-1", roles=["team_manager"]),
                ),
                timeout=2,
            )
            assert answer.effect == pb.EFFECT_DENY
            assert time.monotonic() - started < 2
    finally:
        stop.set()
        for ch in channels:
            ch.close()


def test_an_idle_stream_is_cancelled_and_its_slot_freed(policies: PolicySet) -> None:
    """A stream that sends nothing for the idle limit is cancelled, so idle streams cannot
    keep the slots; a stream that keeps sending is answered throughout."""
    deps = Deps(
        PolicyHolder(policies),
        audit=AuditLog(MemorySink(), "strict", Pseudonymiser(b"k" * 32)),
        max_workers=4,  # 2 stream slots, 1 per caller
        stream_idle_seconds=0.5,
    )
    server, port = create_server("127.0.0.1:0", deps)
    server.start()
    stop = threading.Event()
    try:
        own = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=own) as ch:
            started = time.monotonic()
            call = pb_grpc.AuthorisationServiceStub(ch).AuthoriseStream(_idle(stop), timeout=20)
            with pytest.raises(grpc.RpcError) as info:
                list(call)
            waited = time.monotonic() - started
            assert info.value.code() == grpc.StatusCode.CANCELLED
            assert 0.4 < waited < 5, waited

            def busy() -> Iterator[pb.AuthoriseStreamRequest]:
                item = pb.BatchItem(
                    correlation_id="b",
                    request=pb.AuthoriseRequest(
                        council="torbay",
                        decision="apply_epo",
                        actor=pb.Actor(id="tm-1", roles=["team_manager"]),
                    ),
                )
                for _ in range(6):  # 6 messages 0.3 s apart: 1.5 s, never 0.5 s idle
                    yield pb.AuthoriseStreamRequest(items=[item])
                    time.sleep(0.3)

            answers = list(pb_grpc.AuthorisationServiceStub(ch).AuthoriseStream(busy(), timeout=20))
            assert len(answers) == 6
        assert server_slots_free(port)
    finally:
        stop.set()
        server.stop(None)


def server_slots_free(port: int) -> bool:
    """Two new idle streams from two callers both get a slot (the cancelled one freed its):
    neither is refused within a second."""
    stop = threading.Event()
    own = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.insecure_channel(f"127.0.0.1:{port}", options=own) for _ in range(2)]
    try:
        opened = [_open(ch, stop) for ch in channels]
        time.sleep(0.3)
        return not any(r.get("code") == grpc.StatusCode.RESOURCE_EXHAUSTED for _, r in opened)
    finally:
        stop.set()
        for ch in channels:
            ch.close()
