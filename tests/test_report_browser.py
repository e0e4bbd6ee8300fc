"""The HTML report in a real browser (headless Chromium, Debian `chromium`): it renders, runs
no script (a subject carries one), logs no console error, lists every request, and prints."""

from __future__ import annotations

import shutil
import subprocess
import zlib
from pathlib import Path

import pytest

from optout_mail.rules import RuleSet

from .reportdata import build_ledger, report_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium)"
    ),
    pytest.mark.slow,
]


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run with a private profile and nothing fetched from the net."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def png_pixels_vary(data: bytes) -> bool:
    """Whether a PNG shows more than one flat colour: its decompressed scanlines hold many
    different byte values (a blank page filters down to a handful)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, offset = [], 8
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        if kind == b"IDAT":
            chunks.append(data[offset + 8 : offset + 8 + length])
        offset += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    return len(set(raw)) > 64


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, rule_set: RuleSet) -> Path:
    folder = tmp_path_factory.mktemp("report")
    build_ledger(folder / "data", rule_set, hostile=True)
    page = folder / "report.html"
    page.write_text(report_html(folder / "data"), encoding="utf-8")
    return page


def test_the_report_renders_and_is_not_blank(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    done = chromium(
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1200,1600",
        "--hide-scrollbars",
        report.as_uri(),
    )
    assert shot.is_file(), done.stderr
    assert shot.stat().st_size > 20_000
    assert png_pixels_vary(shot.read_bytes())


def test_the_dom_lists_every_request_and_no_script_ran(report: Path, tmp_path: Path) -> None:
    done = chromium(
        tmp_path / "profile", "--enable-logging=stderr", "--v=0", "--dump-dom", report.as_uri()
    )
    dom = done.stdout
    assert done.returncode == 0, done.stderr
    assert dom.count('class="request-row"') == 6
    for account in (
        "alice@example.org",
        "erik@example.net",
        "bob@example.net",
        "maeve@example.ie",
        "carla@example.com",
        "dan@example.org",
    ):
        assert account in dom
    assert "<title>Your objections to Meta" in dom and "pwned</title>" not in dom
    assert "<script" not in dom and "<img" not in dom
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == []


def test_the_report_prints_to_pdf(report: Path, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    done = chromium(
        tmp_path / "profile", f"--print-to-pdf={pdf}", "--no-pdf-header-footer", report.as_uri()
    )
    assert pdf.is_file(), done.stderr
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 20_000
