"""Helpers shared by the unit and integration tests (and the benchmarks); never shipped.

``ROOT`` is the repository, ``GENERATED`` the committed compiled policy. Modules: ``ports``
(free loopback ports), ``sinks`` (an in-memory decision-log sink), ``boundaries`` (the
boundary contexts of a decision), ``compiled`` (the real schemes compiled with one change),
``hosts`` (the LCS/PARIS seed fixtures), ``redis_server`` (a real redis-server on a free
port), ``certs`` (a throwaway CA), ``grpc_errors`` (the BadRequest detail of a refused call).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "policies" / "generated"
