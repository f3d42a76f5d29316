"""The Casbin reference evaluator: pycasbin on the compiled model.conf / policy.csv.

Used by the differential tests and by ``remit check --reference``; never on the serving
path (pycasbin scans every line per call and re-parses its matcher). One enforcer per
council, each guarded by a lock (concurrent pycasbin calls are not safe, see the notes).
Casbin's own request logging is switched off: requests carry personal data.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import casbin

from remit.engine.evaluate import Prepared
from remit.model.conditions import FactValue, holds
from remit.model.policy import CouncilPolicy

logging.getLogger("casbin").setLevel(logging.CRITICAL)


def _cond(text: str, ctx: Mapping[str, FactValue]) -> bool:
    return holds(text, ctx)


class ReferenceEvaluator:
    """Decides with pycasbin. Returns the deciding rule id, effect, and matched role."""

    def __init__(self, policy: CouncilPolicy, decision: str | None = None) -> None:
        """``decision`` loads only that decision's p lines (same answers, faster scans)."""
        text = policy.policy_text
        if decision is not None:
            text = "\n".join(
                line
                for line in text.splitlines()
                if not line.startswith("p, ") or line.startswith(f"p, {decision}, ")
            )
        with tempfile.TemporaryDirectory() as tmp:
            model = Path(tmp) / "model.conf"
            csv = Path(tmp) / "policy.csv"
            model.write_text(policy.model_text, encoding="utf-8")
            csv.write_text(text, encoding="utf-8")
            self._enforcer: Any = casbin.Enforcer(str(model), str(csv))
        self._enforcer.add_function("cond", _cond)
        if not self._enforcer.enabled:  # a disabled enforcer allows everything
            raise RuntimeError("casbin enforcer is disabled")
        self._lock = threading.Lock()

    def decide(self, prep: Prepared) -> tuple[bool, str, str]:
        """(allowed, rule id or "", role) — best line over the actor's roles."""
        best: tuple[int, int, bool, str, str] | None = None
        policy_lines: list[list[str]] = self._enforcer.model["p"]["p"].policy
        with self._lock:
            for role in sorted(prep.roles):
                allowed, explain = self._enforcer.enforce_ex(
                    prep.decision.id, role, prep.area, dict(prep.ctx)
                )
                if not explain:
                    continue
                index = policy_lines.index(explain)
                candidate = (int(explain[5]), index, bool(allowed), explain[6], role)
                if best is None or candidate[:2] < best[:2]:
                    best = candidate
        if best is None:
            return False, "", ""
        return best[2], best[3], best[4]
