"""The benchmark scripts start, and the internals they time still exist (no sampling here)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BENCH = ROOT / "benchmarks"


#: the scripts that time this checkout alone (no --old)
NEW_ONLY = ("profile_sensitivity.py", "bench_variant_settings.py", "bench_numba_opt.py")


@pytest.mark.parametrize("script", ["bench_cli.py", "bench_fit.py", "bench_run.py", "bench_sensitivity.py", "bench_figures.py",
                                    *NEW_ONLY])
def test_script_starts(script):
    res = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--old" in res.stdout or script in NEW_ONLY


def test_profiled_steps_name_existing_functions():
    sys.path.insert(0, str(BENCH))
    try:
        import profile_sensitivity
    finally:
        sys.path.remove(str(BENCH))
    site = Path(__import__("nutpie").__file__).parents[1]
    for step, (suffix, name) in profile_sensitivity.STEPS.items():
        if suffix.startswith("concurrent/"):
            continue
        path = site / suffix if suffix.startswith("nutpie/") else ROOT / "src" / "hlh_meta" / suffix.removeprefix("hlh_meta/")
        tree = ast.parse(path.read_text())
        names = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assert name in names, f"{step}: no {name} in {path}"


def test_internals_the_benchmarks_use():
    from hlh_meta.inference import sampling
    from hlh_meta.models import posterior

    assert callable(sampling.clear_cache) and callable(posterior.clear_prior_cache)
    assert hasattr(sampling, "_CACHE") and callable(sampling._sample_once) and callable(sampling.sample_gated)
    assert callable(sampling.compile_pymc_model)
    from hlh_meta.models import engine        # bench_variant_settings.py records the gated fits here

    assert callable(engine.sample_gated) and callable(engine.shared_model) and callable(sampling.compile_structure)
    # bench_variant_settings.py's @primary starts: nutpie's compiled model replaced with another initial point function
    import dataclasses

    from nutpie.compile_pymc import CompiledPyMCModel

    from hlh_meta.inference.trace import sample_to_inference_data

    assert callable(sampling._nutpie_compiled) and callable(sample_to_inference_data)
    assert "initial_point_func" in {f.name for f in dataclasses.fields(CompiledPyMCModel)}
    from hlh_meta.analyses.base import PRIMARY, AnalysisType

    assert PRIMARY.name == "primary" and callable(AnalysisType.variant_inputs)
