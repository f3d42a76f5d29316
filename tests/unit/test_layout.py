"""The package is laid out as its pipeline: one folder per stage, and no module imports from
a stage after its own (README "Layout"). The host adapters depend on the model only; only
the engine's trace module walks a decision's lines."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "service" / "remit"

# the stages in pipeline order; modules of the wire stubs and config are shared ground
STAGES = ["model", "compiler", "engine", "distribution", "audit", "server", "tools", "cli"]
SHARED = {"config", "v1", "audit.v1"}


def _stage(module: str) -> int | None:
    """The stage index of a ``remit.*`` module (None: shared ground or the package root)."""
    parts = module.split(".")[1:]
    if not parts or ".".join(parts[:2]) in SHARED or parts[0] in SHARED:
        return None
    return STAGES.index(parts[0]) if parts[0] in STAGES else None


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out.extend(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        if name.startswith(("remit.v1", "remit.audit.v1")):
            continue  # generated stubs
        out.append((name, path))
    return out


def test_every_module_lives_in_a_stage_folder() -> None:
    loose = [
        name
        for name, _ in _modules()
        if name.count(".") == 1 and name.split(".")[1] not in {*STAGES, "config"}
    ]
    assert not loose, f"modules outside the stage folders: {loose}"


def test_no_module_imports_from_a_later_stage() -> None:
    wrong = []
    for name, path in _modules():
        own = _stage(name)
        if own is None:
            continue
        for target in _imports(path):
            if not target.startswith("remit."):
                continue
            stage = _stage(target)
            if stage is not None and stage > own:
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_the_host_adapters_depend_on_the_model_only() -> None:
    wrong = [
        f"{path.name} imports {target}"
        for path in sorted((ROOT / "adapters").glob("*.py"))
        for target in _imports(path)
        if target.startswith("remit.")
        and not target.startswith(("remit.model", "remit.v1"))
        and target != "remit"
    ]
    assert not wrong, wrong


def test_only_the_trace_walks_a_decisions_lines() -> None:
    """``for ... in <decision>.lines`` (a walk that decides or explains) appears only in the
    engine's trace; other modules read a walk's trace (``trace.lines``) (lint and diff, which compare the
    lines of a policy with each other rather than answer a request, are the exceptions)."""
    allowed = {"remit.engine.trace", "remit.tools.lint", "remit.tools.diff"}
    walkers = []
    for name, path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.For | ast.comprehension)
                and isinstance(node.iter, ast.Attribute)
                and node.iter.attr == "lines"
                and "decision" in ast.unparse(node.iter.value).lower()
                and name not in allowed
            ):
                walkers.append(f"{name}: {ast.unparse(node.iter)}")
    assert not walkers, walkers
