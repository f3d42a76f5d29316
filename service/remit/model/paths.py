"""Where remit finds its scheme sources and compiled policy."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding ``policies/``: $REMIT_HOME, the cwd or a parent, or the package's."""
    env = os.environ.get("REMIT_HOME")
    if env:
        return Path(env)
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for candidate in (start, *start.parents):
            if (candidate / "policies" / "schemes").is_dir():
                return candidate
    return Path.cwd()


def schemes_dir() -> Path:
    return project_root() / "policies" / "schemes"


def sources_dir() -> Path:
    return project_root() / "policies" / "sources"


def generated_dir() -> Path:
    """Compiled policy: $REMIT_POLICY_DIR, else policies/generated of the project."""
    env = os.environ.get("REMIT_POLICY_DIR")
    return Path(env) if env else project_root() / "policies" / "generated"


def tests_dir() -> Path:
    return project_root() / "policies" / "tests"
