"""``remit matrix`` rendered in headless Chromium: every cell's state and tooltip as the
engine decides it, the service-area filter from the URL, and a screenshot of the table."""

from __future__ import annotations

import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from remit.cli.main import main
from remit.model.policy import PolicySet
from remit.tools import matrix as _matrix


class _Dom(HTMLParser):
    """Rows and cells of the rendered matrix."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, object]] = {}
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and "decision" in (a.get("class") or ""):
            self._row = a.get("data-d") or ""
            hidden = "hidden" in (a.get("class") or "").split()
            self.rows[self._row] = {"hidden": hidden, "cells": {}}
        elif tag == "td" and self._row is not None:
            cells = self.rows[self._row]["cells"]
            assert isinstance(cells, dict)
            cells[a.get("data-r")] = (a.get("class"), a.get("title") or "")


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None and shutil.which("apt-get") and hasattr(__import__("os"), "geteuid"):
        import os

        if os.geteuid() == 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=600)
            subprocess.run(
                ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"],
                capture_output=True,
                timeout=1200,
            )
            found = shutil.which("chromium")
    if found is None:
        pytest.skip("chromium is not installed and could not be installed (apt-get as root)")
    return found


def _browse(tmp_path: Path, url: str, *mode: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    return subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--window-size=1600,1000",
            *mode,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.mark.slow
def test_matrix_renders_in_headless_chromium(
    policies: PolicySet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "torbay.html"
    assert main(["matrix", "torbay", "--out", str(page)]) == 0
    torbay = policies.councils["torbay"]
    roles = _matrix.columns(torbay)

    done = _browse(tmp_path, page.as_uri(), "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _Dom()
    dom.feed(done.stdout)
    assert set(dom.rows) == set(torbay.decisions)
    for did, row in dom.rows.items():
        cells = row["cells"]
        assert isinstance(cells, dict) and list(cells) == roles
        assert not row["hidden"]
        for rid, (state, title) in cells.items():
            want = _matrix.cell(torbay, torbay.decisions[did], rid)
            assert state == want.state, (did, rid)
            if want.state != "none":  # the tooltip cites a rule of this decision and its quote
                cited = [r for r in torbay.decisions[did].rules if f"[{r}]" in title]
                assert cited, (did, rid, title)
                assert f'"{torbay.rules[cited[0]].quote}"' in title
    s17 = dom.rows["s17_payment"]["cells"]
    assert isinstance(s17, dict)
    assert s17["team_manager"][0] == "conditional"
    assert "the amount up to £2,000.00" in s17["team_manager"][1]
    assert (
        '"s.17: One off or cumulative expenditure up to £2,000 Team Manager"'
        in s17["team_manager"][1]
    )

    # the service-area filter, applied by the page's script from the URL
    area = "iyss"
    filtered = _browse(tmp_path, page.as_uri() + f"#area={area}", "--dump-dom")
    fdom = _Dom()
    fdom.feed(filtered.stdout)
    hidden = {d for d, row in fdom.rows.items() if row["hidden"]}
    expect_hidden = {
        d.id
        for d in torbay.decisions.values()
        if all(_matrix.cell(torbay, d, r, area).state == "none" for r in roles)
    }
    assert hidden == expect_hidden and hidden  # some decisions belong to other areas only
    for did, row in fdom.rows.items():
        cells = row["cells"]
        assert isinstance(cells, dict)
        for rid, (state, _) in cells.items():
            assert state == _matrix.cell(torbay, torbay.decisions[did], rid, area).state

    shot = _browse(tmp_path, page.as_uri(), "--screenshot=matrix.png")
    png = (tmp_path / "matrix.png").read_bytes()
    assert shot.returncode == 0 and png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1600, 1000)
    assert len(png) > 50_000  # a rendered table, not a blank page
