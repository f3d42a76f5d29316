"""Synthetic councils: the real compiled councils copied under new names.

Council ``n`` is a copy of real council ``n % 5`` renamed ``<council>_<n>``: its policy.csv
and model.conf are unchanged, its index.json names the new council. The directory gets a
manifest with real sha256 hashes, so it loads through the same verified path as
``policies/generated``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


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
    for n in range(count):
        src = real[n % len(real)]
        name = synthetic_name(real, n)
        names.append(name)
        index = json.loads((generated / src / "index.json").read_text(encoding="utf-8"))
        index["council"] = name
        texts = {
            "model.conf": (generated / src / "model.conf").read_text(encoding="utf-8"),
            "policy.csv": (generated / src / "policy.csv").read_text(encoding="utf-8"),
            "index.json": json.dumps(index, sort_keys=True, indent=1),
        }
        for fname, text in texts.items():
            rel = f"{name}/{fname}"
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            files[rel] = hashlib.sha256(text.encode()).hexdigest()
    write_manifest(out, names, files, version)
    return names


def write_manifest(out: Path, names: list[str], files: dict[str, str], version: str = "") -> None:
    if not version:
        version = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    manifest = {"councils": names, "files": files, "format": 1, "version": version}
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, sort_keys=True, indent=1), encoding="utf-8")
    tmp.replace(out / "manifest.json")  # atomic: a watcher never reads half a manifest


def bump_version(out: Path, version: str) -> None:
    """Rewrite the manifest with a new version string (same files): a new policy version."""
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    write_manifest(out, manifest["councils"], manifest["files"], version)
