"""The anakinra analyses: which rows enter, why others do not, spec errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlh_meta.analyses import analysis_for, load_spec
from hlh_meta.errors import SpecError
from hlh_meta.spec import bundled_specs_dir


def mortality_frame(ds, spec):
    return analysis_for("mortality").frame(ds, spec)


def biomarker_frame(ds, spec):
    return analysis_for("biomarkers").frame(ds, spec)

SPECS = Path(__file__).parent / "specs"


def test_every_mortality_row_is_used_or_explained(ds):
    spec = load_spec(bundled_specs_dir() / "mortality.toml")
    used, excluded = mortality_frame(ds, spec)
    assert sorted(used.index.tolist() + excluded.index.tolist()) == sorted(ds.mortality.index.tolist())
    assert (excluded["excluded_because"].str.len() > 0).all()
    # one partition per study: no patient counted twice
    assert (used.groupby("study_id")["partition"].nunique() == 1).all()
    for sid, group in used.groupby("study_id"):
        assert group["n"].sum() <= int(ds.study(sid)["n_patients"])
    # the review of case reports may repeat the cohorts' patients: the overlap rule leaves it out
    assert set(used["study_id"]) == {"rajasekaran2014", "eloseily2020", "henry2019", "alabdulla_imperial"}
    reasons = dict(zip(excluded["study_id"] + ":" + excluded["stratum"], excluded["excluded_because"]))
    assert reasons["baverez2022:all"] == "deaths not reported in the abstract"
    assert "partition 'underlying_diagnosis'" in reasons["eloseily2020:all"]
    assert reasons["ejh2023_sr:rheumatological"].startswith("may share patients with")


def test_unknown_shares_stay_unknown(ds):
    used, _ = mortality_frame(ds, load_spec(bundled_specs_dir() / "mortality.toml").patched({"data": {"overlap": "include"}}))
    raj = used[used["study_id"] == "rajasekaran2014"].iloc[0]
    assert raj["trigger[rheumatological]"] != raj["trigger[rheumatological]"]   # NaN: a Dirichlet unknown
    sr = used[used["study_id"] == "ejh2023_sr"]
    assert (sr["iv_fraction"] == 1.0).all()


def test_biomarker_rows_used_or_explained(ds):
    spec = load_spec(SPECS / "biomarkers_small.toml")
    used, excluded = biomarker_frame(ds, spec)
    assert len(used) + len(excluded) == len(ds.biomarkers)
    assert set(excluded["study_id"]) == {"baverez2022"}
    assert (used["sei"] > 0).all()


def test_exclude_dispersionless_study(ds, tmp_path):
    text = (SPECS / "biomarkers_small.toml").read_text().replace("correlation = 0.5", 'correlation = 0.5\nmissing_dispersion = "exclude"')
    path = tmp_path / "b.toml"
    path.write_text(text)
    used, excluded = biomarker_frame(ds, load_spec(path))
    assert "eloseily2020" not in set(used["study_id"])
    assert "no dispersion" in excluded.set_index("study_id").loc["eloseily2020", "excluded_because"]


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ("[analysis]\nname='m'\nkind='mortality'\n[model]\ncovariate=['trigger']\n", "model.covariate", "unknown key"),
        ("[analysis]\nname='m'\nkind='survival'\n", "analysis.kind", "unknown kind"),
        ("[analysis]\nkind='mortality'\n", "analysis.name", "required"),
        ("[analysis]\nname='../evil'\nkind='mortality'\n", "analysis.name", "letters"),
        ("[analysis]\nname='m'\nkind='mortality'\n[sampling]\ndraws='many'\n", "sampling.draws", "type int"),
        ("[analysis]\nname='m'\nkind='mortality'\n[plots]\nx=1\n", "plots", "unknown section"),
        ("[analysis\nname='m'", "-", "not valid TOML"),
    ],
)
def test_bad_spec(tmp_path, text, key, fragment):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.key == key and fragment in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    "data, key",
    [("partitions = { nobody = 'overall' }", "data"), ("partitions = { eloseily2020 = 'age' }", "data.partitions.eloseily2020")],
)
def test_spec_naming_unknown_study_or_partition(ds, tmp_path, data, key):
    path = tmp_path / "spec.toml"
    path.write_text(f"[analysis]\nname='m'\nkind='mortality'\n[data]\n{data}\n")
    with pytest.raises(SpecError) as info:
        mortality_frame(ds, load_spec(path))
    assert info.value.key == key


@pytest.mark.parametrize(
    "kind, prior, key, fragment",
    [("mortality", "tau = { dist = 'HalfNormal', sigma = -1 }", "priors.tau", "sigma must be > 0"),
     ("mortality", "tau = { dist = 'halfnormal', sigma = 1 }", "priors.tau", "did you mean 'HalfNormal'"),
     ("biomarkers", "mu = { dist = 'Normal', mu = 0 }", "priors.mu", "Normal takes"),
     ("biomarkers", "sigma = { dist = 'Normal', mu = 0, sigma = 1 }", "priors.sigma", "unknown key")],
)
def test_bad_prior_names_spec_file_and_key_before_sampling(ds, tmp_path, monkeypatch, kind, prior, key, fragment):
    import hlh_meta as hm
    from hlh_meta.analyses.base import AnalysisType

    monkeypatch.setattr(AnalysisType, "fit", lambda *a, **k: pytest.fail("sampled despite a bad prior"))
    path = tmp_path / "spec.toml"
    path.write_text(f"[analysis]\nname='m'\nkind='{kind}'\n[priors]\n{prior}\n")
    with pytest.raises(SpecError) as info:
        hm.run_analysis(path, ds)
    assert info.value.key == key and fragment in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("kind, value, fragment", [("mortality", "weather", "choose from trigger"),
                                                   ("biomarkers", "trigger", "groups its forest plot itself")])
def test_bad_report_group_by_named_before_sampling(ds, tmp_path, monkeypatch, kind, value, fragment):
    import hlh_meta as hm
    from hlh_meta.analyses.base import AnalysisType

    monkeypatch.setattr(AnalysisType, "fit", lambda *a, **k: pytest.fail("sampled despite a bad [report] key"))
    path = tmp_path / "spec.toml"
    path.write_text(f"[analysis]\nname='m'\nkind='{kind}'\n[report]\ngroup_by='{value}'\n")
    with pytest.raises(SpecError) as info:
        hm.run_analysis(path, ds)
    assert info.value.key == "report.group_by" and fragment in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize("value", ["['elderly']", "[]", "['paediatric', 'neonatal']"])
def test_bad_report_population_named_before_sampling(ds, tmp_path, monkeypatch, value):
    import hlh_meta as hm
    from hlh_meta.analyses.base import AnalysisType

    monkeypatch.setattr(AnalysisType, "fit", lambda *a, **k: pytest.fail("sampled despite a bad [report] key"))
    path = tmp_path / "spec.toml"
    path.write_text(f"[analysis]\nname='m'\nkind='mortality'\n[report]\npopulation={value}\n")
    with pytest.raises(SpecError) as info:
        hm.run_analysis(path, ds)
    assert info.value.key == "report.population" and "paediatric, adult" in str(info.value) \
        and str(path) in str(info.value)


def test_an_imputed_standard_error_is_a_caveat_of_its_biomarker(ds):
    """A pooled reduction that rests on an SD imputed from other studies' CV says so, with
    the studies and patients concerned, in its statement and in the summary of findings;
    a study given weight 0 (left out) no longer counts."""
    import hlh_meta as hm
    from hlh_meta.analyses.biomarkers import _imputed

    result = hm.run_analysis(SPECS / "biomarkers_small.toml", ds)
    used = result.table("data_used")
    imputed = used[used["dispersion"] == "imputed"]
    assert len(imputed) == 1                                        # eloseily2020's ferritin in the bundled data
    outcome = imputed["biomarker"].iloc[0]
    mine = used[used["biomarker"] == outcome]
    words = (f"the standard error of 1 of {len(mine)} studies ({int(imputed['n'].iloc[0])} of {int(mine['n'].sum())} "
             "patients) rests on an SD imputed")
    pooled = {q.outcome: q for q in result.quantities if q.key == "reduction_pooled"}
    assert words in pooled[outcome].caveats[0]
    assert all(not q.caveats for name, q in pooled.items() if name != outcome)
    text = dict((q.outcome, t) for q, t in result.analysis.statements(result.quantities) if q.key == "reduction_pooled")
    assert words in text[outcome] and "imputed" not in text[next(n for n in pooled if n != outcome)]
    sof = result.table("summary_of_findings").set_index("outcome")
    assert sof["imprecision_reason"].str.contains("imputed").sum() == 1
    assert words in result.table("derived").set_index(["key", "outcome"]).loc[("reduction_pooled", outcome), "caveats"]
    cd = result.idata.constant_data.copy()
    cd["weight"] = cd["weight"].where(cd["row_dispersion"] != "imputed", 0.0)
    assert outcome not in _imputed(type(result.idata)(constant_data=cd))


@pytest.mark.parametrize("difference, se, folds, start, fragment", [
    (0.4, 0.145, 4, "indistinguishable", "under 4: the sets predict about alike"),    # the bundled data's case
    (3.9, 0.1, 40, "indistinguishable", "under 4"),
    (6.0, 4.0, 12, "indistinguishable", "under 2 SE"),
    (6.0, 2.0, 12, "worse than the best", "over 4 and over 2 SE)"),
    (6.0, 2.0, 4, "worse than the best", "with 4 studies the SE is itself uncertain"),
])
def test_a_covariate_set_is_worse_only_on_a_difference_over_4_and_2_se(difference, se, folds, start, fragment):
    """A tiny elpd difference with a tiny standard error from 4 studies is no evidence that a
    set predicts worse (it was reported 'worse than the best' at 0.4 +- 0.15)."""
    from hlh_meta.analyses.mortality import loso_verdict

    verdict = loso_verdict(difference, se, folds)
    assert verdict.startswith(start) and fragment in verdict and f"{difference:.1f}" in verdict
