"""Sensitivity variants: expansion, checks before sampling, executors agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hlh_meta.errors import SpecError
from hlh_meta.sensitivity import expand_variants, run_sensitivity
from hlh_meta.analyses.base import PRIMARY
from hlh_meta.sensitivity.executors import group_variants
from hlh_meta.sensitivity.runner import plan
from hlh_meta.analyses import load_spec
from hlh_meta.spec import bundled_specs_dir

SPECS = Path(__file__).parent / "specs"


def test_declared_families_expand_to_named_variants(ds):
    spec = load_spec(bundled_specs_dir() / "mortality.toml")
    names = [v.name for v in expand_variants(ds, spec)]
    assert len(names) == len(set(names))
    for expected in ("prior tau ~ HalfNormal(sigma=0.5)", "prior tau ~ HalfCauchy(beta=1)", "leave out eloseily2020",
                     "alternative death attribution", "common effect (tau = 0)", "partition eloseily2020 = overall",
                     "include sources that may share patients", "include COVID-19 series",
                     "linear likelihood for mixed strata"):
        assert expected in names
    # the overlap rule leaves the review of case reports out of the primary analysis: its count
    # alternatives are not variants of it (the overlap variant brings the review back)
    assert not any(n.startswith("counts ejh2023_sr") for n in names)


def test_data_swap_variants_share_one_structure(ds):
    spec = load_spec(bundled_specs_dir() / "mortality.toml")
    groups = group_variants(plan(spec, ds, [PRIMARY] + expand_variants(ds, spec)))
    biggest = max(groups, key=len)
    families = {it.variant.family for it in biggest}
    assert {"leave_one_out", "attribution", "priors"} <= families
    # another family of tau's prior, and another likelihood or partition of the same parameters,
    # join the primary's group: they are first reweighted from the primary's draws
    assert {"prior tau ~ HalfCauchy(beta=1)", "linear likelihood for mixed strata",
            "partition eloseily2020 = overall"} <= {it.variant.name for it in biggest}
    # the common-effect model, a partition with other unknown shares, other studies each
    # need their own model; excluding every study (all are at high risk of bias) leaves nothing to fit
    alone = [g for g in groups if g is not biggest and g[0].inputs is not None]
    assert all(len(g) == 1 for g in alone)
    assert {g[0].variant.family for g in alone} >= {"fixed_effect", "partition", "overlap"}
    assert "common effect (tau = 0)" in {g[0].variant.name for g in alone}
    assert all(it.note.startswith(("not estimable", "not run")) for g in groups if g[0].inputs is None for it in g)


@pytest.mark.parametrize("section, key", [("[sensitivity]\nfamilies = []", "sensitivity.families"),
                                          ("[sensitivity]\nfamilies = ['luck']", "sensitivity.families"),
                                          ("[sensitivity]\nvariants = ['priors']", "sensitivity.variants")])
def test_bad_sensitivity_section(ds, tmp_path, section, key):
    path = tmp_path / "s.toml"
    path.write_text("[analysis]\nname='m'\nkind='mortality'\n" + section + "\n")
    with pytest.raises(SpecError) as info:
        expand_variants(ds, load_spec(path))
    assert info.value.key == key and str(path) in str(info.value)


def test_dask_local_cluster_matches_serial(ds):
    distributed = pytest.importorskip("distributed")
    spec = load_spec(SPECS / "biomarkers_small.toml")
    serial = run_sensitivity(spec, ds, executor="serial")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = run_sensitivity(spec, ds, executor="dask", scheduler=client)
    cols = [c for c in serial.columns if c != "seconds"]
    pd.testing.assert_frame_equal(serial[cols], remote[cols])


def test_excluding_high_risk_studies_leaves_the_others_or_says_nothing_is_left(synthetic, tmp_path):
    """exclude_high_risk gives weight 0 to the studies in the analysis at high or critical risk
    of bias: with studies at lower risk left it is a data swap on the primary's model; when
    every study in the analysis is at high risk nothing is left to fit, and the planned variant
    says so instead of failing the run."""
    path = tmp_path / "m.toml"
    path.write_text("[analysis]\nname='m'\nkind='mortality'\n[model]\ncovariates=[]\n"
                    "[sensitivity]\nfamilies=['exclude_high_risk']\n")
    spec = load_spec(path)
    (variant,) = expand_variants(synthetic, spec)
    # syn_a and syn_c are at moderate and low risk; syn_e (high) is left out by the overlap rule
    assert variant.soft_exclude == {"syn_b"}
    planned = plan(spec, synthetic, [PRIMARY, variant])
    assert planned[1].inputs is not None and len(group_variants(planned)) == 1
    only_high = spec.patched({"data": {"exclude_studies": ["syn_a", "syn_c"]}})
    (variant,) = expand_variants(synthetic, only_high)
    planned = plan(only_high, synthetic, [PRIMARY, variant])
    assert planned[0].inputs is not None and planned[1].inputs is None
    assert planned[1].note.startswith("not estimable")


def test_family_with_nothing_to_vary_is_reported(synthetic, tmp_path):
    path = tmp_path / "b.toml"
    path.write_text("[analysis]\nname='b'\nkind='biomarkers'\n[sensitivity]\nfamilies=['exclude_case_reports']\n")
    variants = expand_variants(synthetic, load_spec(path))       # no review of case reports has a biomarker row
    assert [v.name for v in variants] == ["exclude_case_reports: nothing to vary"]
    sens = run_sensitivity(load_spec(path), synthetic, executor="serial")
    row = sens[sens["variant"] == "exclude_case_reports: nothing to vary"].iloc[0]
    assert row["note"].startswith("not run")


def test_local_processes_match_serial(ds, tmp_path, monkeypatch):
    """The primary's group runs in this process and the common-effect group in a worker
    process (with other work run alongside); the numbers must equal a serial run. Both reuse
    the primary analysis's fit handed back by the work run alongside, and reweight its draws
    for the variants of its structure (the correlation variants) in this process."""
    from hlh_meta import run_analysis
    from hlh_meta.sensitivity import runner

    path = tmp_path / "b.toml"
    path.write_text((SPECS / "biomarkers_small.toml").read_text().replace(
        'families = ["correlation", "leave_one_out"]', 'families = ["correlation", "fixed_effect"]'))
    spec = load_spec(path)
    variants = expand_variants(ds, spec)
    assert len(group_variants(plan(spec, ds, [PRIMARY] + variants))) == 2
    primary = run_analysis(spec, ds).idata
    fits, real_fit = [], runner.fit_model
    monkeypatch.setattr(runner, "fit_model", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    calls = []
    serial = run_sensitivity(spec, ds, executor="serial", alongside=lambda: calls.append("serial") or primary)
    rows = serial.drop_duplicates("variant").set_index("variant")
    assert rows.loc[[v.name for v in variants if v.family == "fixed_effect"], "method"].eq("refit").all()
    assert rows.loc[[v.name for v in variants if v.family == "correlation"], "method"].eq("reweighted").all()
    assert len(fits) == rows["method"].eq("refit").sum() - 1      # every refitted variant but the primary
    reweighted = serial[serial["method"] == "reweighted"].dropna(subset=["sd"])
    assert not reweighted.empty and np.allclose(reweighted["mcse_mean"], reweighted["sd"] / np.sqrt(reweighted["ess"]))
    local = run_sensitivity(spec, ds, executor="processes", workers=1,
                            alongside=lambda: calls.append("processes") or primary)
    cols = [c for c in serial.columns if c != "seconds"]
    pd.testing.assert_frame_equal(serial[cols], local[cols])
    assert set(serial["family"]) == {"primary", "correlation", "fixed_effect"}
    assert calls == ["serial", "processes"]          # the work given to run alongside runs once


@pytest.mark.parametrize("cores, chains, groups, expected", [(2, 4, 3, 1), (7, 4, 3, 1), (8, 4, 3, 1), (16, 4, 3, 3),
                                                             (16, 4, 2, 2), (8, 2, 3, 3), (2, 4, 0, 0), (1, 4, 3, 0),
                                                             (None, 4, 3, 0)])
def test_default_workers_leave_room_for_each_fits_chains(tmp_path, monkeypatch, cores, chains, groups, expected):
    from hlh_meta.sensitivity import executors

    path = tmp_path / "m.toml"
    path.write_text(f"[analysis]\nname='m'\nkind='mortality'\n[sampling]\nchains={chains}\n")
    monkeypatch.setattr(executors.os, "cpu_count", lambda: cores)
    assert executors.default_workers(load_spec(path), groups) == expected


def test_processes_without_idle_cores_run_every_group_here(ds, tmp_path, monkeypatch):
    """With no worker to give (one core) no process pool starts; every variant still runs,
    the work run alongside first."""
    from hlh_meta.sensitivity import executors

    path = tmp_path / "b.toml"
    path.write_text((SPECS / "biomarkers_small.toml").read_text().replace(
        'families = ["correlation", "leave_one_out"]', 'families = ["fixed_effect"]'))
    spec = load_spec(path)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 1)
    monkeypatch.setattr(executors, "ProcessPoolExecutor", None)      # any use of a pool fails
    calls = []
    sens = run_sensitivity(spec, ds, executor="processes", alongside=lambda: calls.append("alongside"))
    assert calls == ["alongside"]
    assert set(sens["family"]) == {"primary", "fixed_effect"}
