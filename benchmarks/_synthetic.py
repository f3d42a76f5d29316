"""Synthetic councils: the real compiled councils copied under new names, each distinct.

Council ``n`` is a copy of real council ``n % 5`` renamed ``<council>_<n>``: its rule table
(``rules.json``) has the same rules, lines and conditions (so the same requests are valid
and decided alike), but every text a council holds (quotes, readings, wordings, headings,
procedures, obligation texts, the document's title) carries the copy's name, so no two
councils share a string and de-duplication cannot flatter a memory figure. Its
``policy.csv`` is exported from the renamed table by the same function the compiler uses
(the export's header names the council). ``model.conf`` is the one shared model. The directory gets a manifest with
real sha256 hashes, so it loads through the same verified path as ``policies/generated``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from remit.model.export import MODEL_CONF
from remit.model.policy import MANIFEST_FORMAT, MODEL_FILE, POLICY_FILE, RULES_FILE, council_policy


def real_councils(generated: Path) -> list[str]:
    manifest = json.loads((generated / "manifest.json").read_text(encoding="utf-8"))
    return sorted(manifest["councils"])


def synthetic_name(real: list[str], n: int) -> str:
    return f"{real[n % len(real)]}_{n:04d}"


#: the texts a council holds that no other council shares (never a condition or an id)
_OWN_TEXTS = frozenset({"quote", "reading", "wording", "heading", "procedure", "title"})


def distinct(table: Any, name: str) -> Any:
    """``table`` with every text of :data:`_OWN_TEXTS` (and each obligation's text) marked
    with ``name``; ids, conditions and structure unchanged."""

    def mark(value: Any, key: str, parent: str) -> Any:
        if isinstance(value, dict):
            return {k: mark(v, k, key) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v, key, parent) for v in value]
        own = key in _OWN_TEXTS or (key == "text" and parent == "obligations")
        if isinstance(value, str) and value and own:
            return f"{value} [{name}]"
        return value

    return dict(mark(table, "", ""), council=name)


def write_councils(generated: Path, out: Path, count: int, version: str = "") -> list[str]:
    """Write ``count`` councils renamed from the real ones under ``out``; returns their ids."""
    real = real_councils(generated)
    files: dict[str, str] = {}
    names: list[str] = []
    tables = {
        src: json.loads((generated / src / RULES_FILE).read_text(encoding="utf-8")) for src in real
    }
    texts = {MODEL_FILE: MODEL_CONF}
    for n in range(count):
        src = real[n % len(real)]
        name = synthetic_name(real, n)
        names.append(name)
        table = distinct(tables[src], name)
        texts[f"{name}/{RULES_FILE}"] = json.dumps(table, sort_keys=True, indent=1)
        texts[f"{name}/{POLICY_FILE}"] = council_policy(name, table).policy_text
    for rel, text in texts.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        files[rel] = hashlib.sha256(text.encode()).hexdigest()
    write_manifest(out, names, files, version)
    return names


def write_manifest(out: Path, names: list[str], files: dict[str, str], version: str = "") -> None:
    if not version:
        version = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    manifest = {"councils": names, "files": files, "format": MANIFEST_FORMAT, "version": version}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, sort_keys=True, indent=1), encoding="utf-8")
    tmp.replace(out / "manifest.json")  # atomic: a watcher never reads half a manifest


def bump_version(out: Path, version: str) -> None:
    """Rewrite the manifest with a new version string (same files): a new policy version."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    write_manifest(out, manifest["councils"], manifest["files"], version)
