"""The real schemes compiled with one change, for tests that publish a second version."""

from __future__ import annotations

from pathlib import Path

from remit.compiler import build as _compiler

from tests.support import ROOT


def compile_variant(out: Path, s17_ceiling_pence: int) -> Path:
    """Compile the real schemes with Torbay's s.17 Team Manager ceiling changed."""
    schemes = out / "schemes"
    schemes.mkdir(parents=True)
    for path in (ROOT / "policies" / "schemes").rglob("*.yaml"):
        target = schemes / path.relative_to(ROOT / "policies" / "schemes")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    torbay = schemes / "torbay.yaml"
    text = torbay.read_text()
    assert text.count("{max: 200000}") >= 2
    torbay.write_text(text.replace("{max: 200000}", f"{{max: {s17_ceiling_pence}}}", 2))
    files = _compiler.compile_all(schemes, ROOT / "policies" / "sources")
    _compiler.write(files, out / "generated")
    return out / "generated"
