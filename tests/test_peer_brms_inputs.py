"""validation/peer_brms.py builds its inputs with the current API (R is not needed for this)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("peer_brms", ROOT / "validation" / "peer_brms.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_inputs_are_the_mortality_analysis_strata():
    import hlh_meta as hm
    from hlh_meta.analyses import analysis_for

    data = _module().datasets()
    strata = data["anakinra mortality strata"]
    spec = hm.load_spec(ROOT / "models" / "mortality.toml")
    used, _ = analysis_for(spec).frame(hm.load_dataset(), spec)
    assert list(strata.columns) == ["study", "events", "total"]
    assert strata["study"].tolist() == used["study_id"].tolist()
    assert strata["events"].tolist() == used["deaths"].astype(int).tolist()
    assert strata["total"].tolist() == used["n"].astype(int).tolist()
    assert (strata["events"] <= strata["total"]).all() and len(data["five studies"]) == 5


def test_without_r_it_says_so_and_exits_2():
    if shutil.which("Rscript") is not None:
        import pytest

        pytest.skip("R is installed here; the slow validation test runs the comparison")
    res = subprocess.run([sys.executable, str(ROOT / "validation" / "peer_brms.py")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Rscript not found" in res.stdout and "anakinra mortality strata" in res.stdout
