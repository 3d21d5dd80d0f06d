"""Slow validation, not in the default run: `.venv/bin/python -m pytest -m slow`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def test_simulation_based_calibration(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "validation" / "sbc.py"), "--reps", "200", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=3000)
    assert res.returncode == 0, res.stdout + res.stderr
    for engine in ("binomial", "binomial_unknown_shares", "binomial_mortality", "normal"):
        assert (tmp_path / f"sbc_{engine}.png").is_file(), engine


def _has_brms() -> bool:
    if shutil.which("Rscript") is None:
        return False
    return subprocess.run(["Rscript", "-e", "quit(status = !requireNamespace('brms', quietly = TRUE))"]).returncode == 0


@pytest.mark.skipif(not _has_brms(), reason="R with brms not installed (validation/install_peer.sh)")
def test_agrees_with_brms():
    res = subprocess.run([sys.executable, str(ROOT / "validation" / "peer_brms.py")], capture_output=True, text=True,
                         timeout=3000)
    assert res.returncode == 0, res.stdout + res.stderr
