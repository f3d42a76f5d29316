"""Hostile input against a real server: generated requests with random and malformed
parts. No crash, no hang, never INTERNAL, never an ALLOW for a request with an invalid
part, and no unbounded memory growth from junk names (the pycasbin interning trap)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import DrawFn
from remit.model.policy import PolicySet
from remit.v1 import remit_pb2 as pb
from remit.v1 import remit_pb2_grpc as pb_grpc

from tests.support import ROOT
from tests.support.ports import free_port

EXAMPLES = 10_000
REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # over the message size limit
}


@dataclass
class Served:
    stub: pb_grpc.AuthorisationServiceStub
    pid: int
    address: str


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The real server in its own process, so its memory is measured alone."""
    port = free_port()
    log = tmp_path_factory.mktemp("hostile") / "decisions.jsonl"
    env = dict(
        os.environ,
        REMIT_ADDRESS=f"127.0.0.1:{port}",
        REMIT_AUDIT_SINK=f"file:{log}",
        REMIT_AUDIT_HMAC_KEY="cd" * 32,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "remit.cli", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            grpc.channel_ready_future(ch).result(timeout=30)
            yield Served(pb_grpc.AuthorisationServiceStub(ch), proc.pid, f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


junk = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40),
    # any code point a protobuf string can carry (no lone surrogates)
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300),
    st.sampled_from(
        ["", " ", "torbay ", "TORBAY", "torbay\x00", "../../etc", "a" * 257, "🦄", "%s%n"]
    ),
)


class _Policies:
    """Hides the policy set from hypothesis's repr of strategy arguments."""

    def __init__(self, policies: PolicySet) -> None:
        self.value = policies

    def __repr__(self) -> str:
        return "policies"


@st.composite
def requests(draw: DrawFn, holder: _Policies) -> tuple[pb.AuthoriseRequest, bool]:
    """A request and whether some part of it is invalid."""
    policies = holder.value
    invalid = False
    council = draw(st.sampled_from(sorted(policies.councils)))
    policy = policies.councils[council]
    if draw(st.integers(0, 9)) == 0:
        council, invalid = draw(junk.filter(lambda s: s not in policies.councils)), True
    decision = draw(st.sampled_from(sorted(policy.decisions)))
    if draw(st.integers(0, 9)) == 0:
        decision, invalid = draw(junk.filter(lambda s: s not in policy.decisions)), True
    roles = draw(st.lists(st.sampled_from(sorted(policy.roles)), min_size=1, max_size=3))
    if draw(st.integers(0, 7)) == 0:
        roles.append(draw(junk.filter(lambda s: s not in policy.roles)))
        invalid = True
    if draw(st.integers(0, 15)) == 0:
        roles, invalid = [], True
    actor_id = draw(st.sampled_from(["w-1", "worker:42", "x@y"]))
    if draw(st.integers(0, 15)) == 0:
        actor_id, invalid = draw(st.sampled_from(["", "a b", "a" * 200, "\n", "é"])), True
    areas = (
        draw(st.lists(st.sampled_from(sorted(policy.areas) or ["none"]), max_size=2))
        if policy.areas
        else []
    )
    if draw(st.integers(0, 15)) == 0:
        areas.append(draw(junk.filter(lambda s: s not in policy.areas)))
        invalid = True
    ctx = pb.Context()
    if draw(st.booleans()):
        ctx.amount_pence = draw(st.integers(0, 10**9))
        ctx.cumulative_amount_pence = draw(st.integers(ctx.amount_pence, 10**10))
    if draw(st.integers(0, 15)) == 0:
        ctx.amount_pence, invalid = draw(st.integers(-(2**63), -1)), True
    ctx.exceptional_circumstances = draw(st.booleans())
    ctx.out_of_hours = draw(st.booleans())
    ctx.absent_roles.extend(draw(st.lists(st.sampled_from(sorted(policy.roles)), max_size=2)))
    if draw(st.integers(0, 15)) == 0:
        ctx.absent_roles.append(draw(junk.filter(lambda s: s not in policy.roles)))
        invalid = True
    if draw(st.integers(0, 15)) == 0:
        ctx.legal_status, invalid = (
            draw(
                junk.filter(
                    lambda s: (
                        s
                        not in (
                            "C1",
                            "C2",
                            "D1",
                            "E1",
                            "V2",
                            "V3",
                            "V4",
                            "L1",
                            "L2",
                            "L3",
                            "J1",
                            "J2",
                            "J3",
                            "",
                        )
                    )
                )
            ),
            True,
        )
    if draw(st.integers(0, 15)) == 0:
        name = draw(junk.filter(lambda s: s not in policy.facts))
        ctx.facts[name].bool_value = True
        invalid = True
    if draw(st.integers(0, 31)) == 0:
        ctx.child_age, invalid = -draw(st.integers(1, 100)), True
    req = pb.AuthoriseRequest(
        council=council,
        decision=decision,
        actor=pb.Actor(id=actor_id, roles=roles, service_areas=areas),
        context=ctx,
        request_id=draw(st.sampled_from(["", "r-1"])),
    )
    return req, invalid


def _rss_mb(pid: int) -> float:
    """Current resident set of a process, from /proc."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_generated_hostile_requests(policies: PolicySet, served: Served) -> None:
    stub = served.stub
    seen = {"allow": 0, "deny": 0, "refused": 0}
    rss_after_warmup: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(_Policies(policies)))
    def check(case: tuple[pb.AuthoriseRequest, bool]) -> None:
        request, invalid = case
        try:
            resp = stub.Authorise(request, timeout=5)
        except grpc.RpcError as exc:
            code = exc.code()
            if code not in REFUSALS:
                raise AssertionError(f"{code}: {exc.details()}") from exc
            seen["refused"] += 1
            return
        finally:
            total = sum(seen.values())
            if total == 1000:
                rss_after_warmup.append(_rss_mb(served.pid))
        assert not (invalid and resp.effect == pb.EFFECT_ALLOW), request
        assert not invalid, f"an invalid request was answered: {request}"
        seen["allow" if resp.effect == pb.EFFECT_ALLOW else "deny"] += 1

    check()
    assert sum(seen.values()) >= EXAMPLES
    assert min(seen.values()) > 0, seen  # the generator reached allows, denies and refusals
    grown_mb = _rss_mb(served.pid) - rss_after_warmup[0]
    print(f"server RSS after warm-up {rss_after_warmup[0]:.1f} MB, grew {grown_mb:.2f} MB")
    assert grown_mb < 16, f"server RSS grew {grown_mb:.1f} MB over {EXAMPLES} junk requests"


UNDECODABLE_BODIES = [
    b"\xff\xff\xff\xff",  # a field number past the limit
    b"\x0a\x05\xc3\x28\xa0\xa1\xff",  # council: invalid UTF-8
    b"\x0a\xff\xff\xff\xff\x0f",  # a length far past the message
    b"\x22" + b"\x7f" * 3,  # actor: a truncated sub-message
]


def _deep_struct(depth: int) -> bytes:
    """A host record whose fields Struct nests ``depth`` deep (protobuf refuses 100+)."""
    from google.protobuf import struct_pb2

    inner = struct_pb2.Struct()
    for _ in range(depth):
        outer = struct_pb2.Struct()
        outer.fields["x"].struct_value.CopyFrom(inner)
        inner = outer
    req = pb.AuthoriseRequest(council="torbay", decision="apply_epo")
    req.host.records.add(table="DIM_WORKER").fields.CopyFrom(inner)
    return req.SerializeToString()


def test_undecodable_requests_are_invalid_argument_and_leak_nothing(served: Served) -> None:
    """Bytes that do not decode (garbage, bad UTF-8, a Struct nested past protobuf's limit)
    are INVALID_ARGUMENT naming the request, before access or any decision, and the server's
    memory does not grow with them (grpcio's own decode-failure path kept ~19 KB a call)."""
    port = served.address.rsplit(":", 1)[1]
    bodies = [*UNDECODABLE_BODIES, _deep_struct(120)]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        raw_unary = ch.unary_unary("/remit.v1.AuthorisationService/Authorise")
        raw_stream = ch.stream_stream("/remit.v1.AuthorisationService/AuthoriseStream")

        def send(body: bytes) -> None:
            with pytest.raises(grpc.RpcError) as info:
                raw_unary(body, timeout=5)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
            assert "request" in info.value.details()

        for body in bodies * 50:  # warm-up
            send(body)
        before = _rss_mb(served.pid)
        for body in bodies * 1000:
            send(body)
        grown = _rss_mb(served.pid) - before
        with pytest.raises(grpc.RpcError) as info:
            list(raw_stream(iter([UNDECODABLE_BODIES[0]]), timeout=5))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    print(f"server RSS grew {grown:.2f} MB over {len(bodies) * 1000} undecodable requests")
    assert grown < 5, f"server RSS grew {grown:.1f} MB over {len(bodies) * 1000} requests"
