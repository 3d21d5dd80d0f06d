"""The HTML report as a browser shows it (headless Chromium; skipped where it is absent)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlh_meta.cli import app

SPECS = Path(__file__).parent / "specs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")


def test_report_renders_figures_and_tables(tmp_path):
    res = CliRunner().invoke(app, ["fit", str(SPECS / "biomarkers_small.toml"), "--out", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    report = tmp_path / "biomarkers" / "report.html"
    profile = tmp_path / "profile"
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                          "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert html.count("<img") >= 5 and "<table" in html
    assert 'id="diagnostics-status"' in html
    assert "CRP: reduction" in html and "from one study" in html and "Ferritin: pooled reduction" in html
    # the summary of findings has a row per biomarker; the forest plot is an embedded, non-empty image
    sof = html[html.index('id="summary-of-findings"'):]
    sof = sof[:sof.index("</table>")]
    assert sof.count("<tr>") >= 3 and "Certainty" in sof
    forest = html[html.index('forest"><img'):]
    assert len(forest[forest.index("base64,") + 7:forest.index('"', forest.index("base64,"))]) > 10_000
    shot = tmp_path / "report.png"
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400",
                           f"--screenshot={shot}", report.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    # a rendered page is far from blank: many distinct colours in the screenshot
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3].reshape(-1, 3)
    assert len({tuple(p) for p in (pixels[:: 97] * 255).astype(int)}) > 50


def test_summary_of_findings_cells_hold_their_words(tmp_path):
    """At a 1000 px window no header or cell of the summary of findings is narrower than its
    longest word: header names do not run into the next column and no word is broken
    within ("suspecte d"); a narrower window scrolls the table in its own box."""
    res = CliRunner().invoke(app, ["fit", str(SPECS / "biomarkers_small.toml"), "--out", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "biomarkers" / "report.html").read_text()
    probe = """<script>
    addEventListener("load", () => {
      const cells = [...document.querySelectorAll("#summary-of-findings th, #summary-of-findings td")];
      const cramped = cells.filter(c => c.scrollWidth > c.clientWidth + 1 || [...c.querySelectorAll("b")].some(
        b => b.getClientRects().length > 1 && !b.textContent.includes(" "))).map(c => c.textContent.trim());
      document.body.setAttribute("data-cramped", JSON.stringify(cramped));
      document.body.setAttribute("data-page-scrolls", String(document.documentElement.scrollWidth > innerWidth + 1));
    });
    </script></body>"""
    page = tmp_path / "probe.html"
    page.write_text(report.replace("</body>", probe))
    for width in (1000, 640):
        dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},1200",
                              "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        body = dom.stdout[dom.stdout.index("<body"):]
        body = body[:body.index(">")]
        assert 'data-page-scrolls="false"' in body, f"the page scrolls sideways at {width} px"
        if width == 1000:
            assert 'data-cramped="[]"' in body, f"summary-of-findings cells narrower than their words: {body}"
