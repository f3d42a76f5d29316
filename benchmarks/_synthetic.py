"""Synthetic councils: the real compiled councils copied under new names.

Council ``n`` is a copy of real council ``n % 5`` renamed ``<council>_<n>``: its rule table
(``rules.json``) is unchanged but for the council id, and its ``policy.csv`` is exported
from the renamed table by the same function the compiler uses (the export's header names
the council). ``model.conf`` is the one shared model. The directory gets a manifest with
real sha256 hashes, so it loads through the same verified path as ``policies/generated``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from remit.model.export import MODEL_CONF
from remit.model.policy import MANIFEST_FORMAT, MODEL_FILE, POLICY_FILE, RULES_FILE, council_policy


def real_councils(generated: Path) -> list[str]:
    manifest = json.loads((generated / "manifest.json").read_text(encoding="utf-8"))
    return sorted(manifest["councils"])


def synthetic_name(real: list[str], n: int) -> str:
    return f"{real[n % len(real)]}_{n:04d}"


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
        table = dict(tables[src], council=name)
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
