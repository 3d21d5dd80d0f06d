"""The anakinra analyses: which rows enter, why others do not, spec errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hlh_meta.analyses import analysis_for, load_spec
from hlh_meta.errors import SpecError
from hlh_meta.spec import bundled_specs_dir


def mortality_frame(ds, spec):
    return analysis_for("mortality").frame(ds, spec)


def biomarker_frame(ds, spec):
    return analysis_for("biomarkers").frame(ds, spec)

SPECS = Path(__file__).parent / "specs"


def test_every_mortality_row_is_used_or_explained(synthetic, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[analysis]\nname='m'\nkind='mortality'\n")
    used, excluded = mortality_frame(synthetic, load_spec(path))
    assert sorted(used.index.tolist() + excluded.index.tolist()) == sorted(synthetic.mortality.index.tolist())
    assert (excluded["excluded_because"].str.len() > 0).all()
    # one partition per study: no patient counted twice
    assert (used.groupby("study_id")["partition"].nunique() == 1).all()
    for sid, group in used.groupby("study_id"):
        assert group["n"].sum() <= int(synthetic.study(sid)["n_patients"])
    # a study's most detailed partition by default; the review of case reports may repeat the
    # cohort's patients: the overlap rule leaves it out
    assert set(used["study_id"]) == {"syn_a", "syn_b", "syn_c"}
    assert set(used.loc[used["study_id"] == "syn_a", "partition"]) == {"trigger"}
    reasons = dict(zip(excluded["study_id"] + ":" + excluded["stratum"], excluded["excluded_because"]))
    assert reasons["syn_d:all"] == "deaths not reported in the abstract"
    assert "partition 'trigger'" in reasons["syn_a:all"]
    assert all(reasons[f"syn_e:{s}"].startswith("may share patients with syn_a")
               for s in ("infection", "rheumatological", "malignancy", "other"))


def test_the_bundled_mortality_analysis_uses_four_studies(ds):
    """Which bundled studies enter the bundled mortality analysis, and why the others do not."""
    spec = load_spec(bundled_specs_dir() / "mortality.toml")
    used, excluded = mortality_frame(ds, spec)
    assert set(used["study_id"]) == {"rajasekaran2014", "eloseily2020", "henry2019", "alabdulla_imperial"}
    reasons = dict(zip(excluded["study_id"] + ":" + excluded["stratum"], excluded["excluded_because"]))
    assert reasons["baverez2022:all"] == "deaths not reported in the abstract"
    assert "partition 'underlying_diagnosis'" in reasons["eloseily2020:all"]
    assert reasons["ejh2023_sr:rheumatological"].startswith("may share patients with")


def test_unknown_shares_stay_unknown(synthetic, tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[analysis]\nname='m'\nkind='mortality'\n[data]\noverlap='include'\n")
    used = mortality_frame(synthetic, load_spec(path))[0].set_index("study_id", drop=False)
    unknown = used.loc["syn_c"]                                    # triggers not reported
    assert unknown["trigger[rheumatological]"] != unknown["trigger[rheumatological]"]   # NaN: a Dirichlet unknown
    assert used.loc["syn_b", "iv_fraction"] == 1.0 and (used.loc["syn_e", "iv_fraction"] == 1.0).all()
    assert unknown["iv_fraction"] == pytest.approx(10 / 24)


def test_biomarker_rows_used_or_explained(synthetic):
    spec = load_spec(SPECS / "biomarkers_small.toml")
    used, excluded = biomarker_frame(synthetic, spec)
    assert len(used) + len(excluded) == len(synthetic.biomarkers)
    assert set(excluded["study_id"]) == {"syn_c"}                  # a p-value without means
    assert (used["sei"] > 0).all()


def test_exclude_dispersionless_study(synthetic, tmp_path):
    text = (SPECS / "biomarkers_small.toml").read_text().replace("correlation = 0.5", 'correlation = 0.5\nmissing_dispersion = "exclude"')
    path = tmp_path / "b.toml"
    path.write_text(text)
    used, excluded = biomarker_frame(synthetic, load_spec(path))
    assert "syn_b" not in set(used["study_id"])
    assert "no dispersion" in excluded.set_index("study_id").loc["syn_b", "excluded_because"]


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
    [("partitions = { nobody = 'overall' }", "data"), ("partitions = { syn_b = 'trigger' }", "data.partitions.syn_b")],
)
def test_spec_naming_unknown_study_or_partition(synthetic, tmp_path, data, key):
    path = tmp_path / "spec.toml"
    path.write_text(f"[analysis]\nname='m'\nkind='mortality'\n[data]\n{data}\n")
    with pytest.raises(SpecError) as info:
        mortality_frame(synthetic, load_spec(path))
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


@pytest.mark.parametrize("kind, value, fragment", [
    ("mortality", "weather", "choose from trigger"),
    ("biomarkers", "trigger", "not read by a biomarkers analysis; it applies to mortality")])
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


@pytest.fixture(scope="module")
def biomarkers_run(synthetic):
    """The small biomarker analysis of the synthetic data, run once for the tests that read it:
    CRP and fibrinogen from one study (syn_a), ferritin from two (syn_a, and syn_b without
    dispersion: an imputed SD)."""
    import hlh_meta as hm

    return hm.run_analysis(SPECS / "biomarkers_small.toml", synthetic)


def test_an_imputed_standard_error_is_a_caveat_of_its_biomarker(biomarkers_run):
    """A pooled reduction that rests on an SD imputed from other studies' CV says so, with
    the studies and patients concerned, in its statement and in the summary of findings;
    a study given weight 0 (left out) no longer counts."""
    from hlh_meta.analyses.biomarkers import _imputed

    result = biomarkers_run
    used = result.table("data_used")
    imputed = used[used["dispersion"] == "imputed"]
    assert imputed[["study_id", "biomarker"]].values.tolist() == [["syn_b", "ferritin"]]
    outcome = imputed["biomarker"].iloc[0]
    mine = used[used["biomarker"] == outcome]
    words = (f"the standard error of 1 of {len(mine)} studies ({int(imputed['n'].iloc[0])} of {int(mine['n'].sum())} "
             "patients) rests on an SD imputed")
    pooled = {q.outcome: q for q in result.quantities if q.key == "reduction_pooled"}
    assert words in pooled[outcome].caveats[0]
    assert all(not any("imputed" in c for c in q.caveats) for name, q in pooled.items() if name != outcome)
    text = dict((q.outcome, t) for q, t in result.analysis.statements(result.quantities) if q.key == "reduction_pooled")
    assert words in text[outcome] and "imputed" not in text[next(n for n in pooled if n != outcome)]
    sof = result.table("summary_of_findings").set_index("outcome")
    assert sof["imprecision_reason"].str.contains("imputed").sum() == 1
    assert words in result.table("derived").set_index(["key", "outcome"]).loc[("reduction_pooled", outcome), "caveats"]
    cd = result.idata.constant_data.copy()
    cd["weight"] = cd["weight"].where(cd["row_dispersion"] != "imputed", 0.0)
    assert outcome not in _imputed(type(result.idata)(constant_data=cd))


def test_a_biomarker_one_study_reports_is_that_studys_estimate(biomarkers_run):
    """CRP and fibrinogen come from one study: each is reported as that
    study's true change (the conjugate normal posterior under mu's prior: y ~ N(theta, se),
    theta ~ N(0, 1)), labelled 'one study' in derived.csv, the statements and the summary of
    findings, with no new-study range; ferritin (two studies) stays pooled."""
    import arviz as az
    import numpy as np

    result = biomarkers_run
    used = result.table("data_used")
    counts = used.groupby("biomarker")["study_id"].nunique()
    single = sorted(counts.index[counts == 1])
    assert single == ["crp", "fibrinogen"] and counts["ferritin"] == 2
    assert result.idata.posterior.attrs["between_outcomes"] == "independent"    # auto: no pair of outcomes in two studies
    assert "Omega" not in result.idata.posterior
    pooled = {q.outcome: q for q in result.quantities if q.key == "reduction_pooled"}
    texts = {q.outcome: t for q, t in result.analysis.statements(result.quantities) if q.key == "reduction_pooled"}
    sof = result.table("summary_of_findings").set_index("outcome")
    derived = result.table("derived").set_index(["key", "outcome"])
    mu = result.idata.posterior["mu"]
    for name in single:
        row = used[used["biomarker"] == name].iloc[0]
        precision = 1 / row["sei"] ** 2 + 1.0                       # mu ~ Normal(0, 1), the spec's default
        mean, sd = row["yi"] / row["sei"] ** 2 / precision, precision ** -0.5
        log_ratio = np.log(1 - pooled[name].draws / 100)
        ess = float(az.ess(result.idata, var_names=["mu"])["mu"].sel(outcome=name))
        assert abs(log_ratio.mean() - mean) < 4 * sd / np.sqrt(ess), name
        assert abs(log_ratio.std() - sd) < 4 * sd / np.sqrt(2 * ess) + 0.01 * sd, name
        np.testing.assert_allclose(log_ratio, mu.sel(outcome=name).values.ravel())
        q = pooled[name]
        assert q.basis.startswith(f"one study ({row['study_id']}, {int(row['n'])} patients), not a pooled estimate")
        assert "one study" in q.description and "pooled" not in q.description.replace("not a pooled", "")
        assert derived.loc[("reduction_pooled", name), "basis"] == q.basis
        assert "tau's prior" in derived.loc[("reduction_new", name), "caveats"]
        assert q.basis in texts[name] and "No range for a new study" in texts[name] and "interval" not in \
            texts[name].replace("95% CrI", "").replace("95% CI", "")
        label = f"{name.upper() if name == 'crp' else name.capitalize()} (one study)"
        assert sof.loc[label, "studies"] == 1 and sof.loc[label, "prediction_interval"] in ("", None) or \
            pd.isna(sof.loc[label, "prediction_interval"])
    assert pooled["ferritin"].basis == "pooled (2 studies)" and "in a new study the reduction could lie" in texts["ferritin"]
    assert "Ferritin" in sof.index
    forest = result.analysis.forest(result.tables, result.quantities)
    assert set(forest["groups"]["label"]) == {"one study", "pooled"}
    assert list(forest["summaries"]["label"]) == ["new study: Ferritin"]


def test_a_fall_of_fibrinogen_is_not_called_a_benefit(biomarkers_run):
    """CRP and ferritin declare a fall as improvement; fibrinogen declares none, and its
    statement reports a change (not a reduction) and says why a fall is not a benefit."""
    from hlh_meta.effects.biomarkers import improvement

    assert (improvement("crp"), improvement("ferritin"), improvement("fibrinogen"), improvement("il6")) == \
        ("fall", "fall", None, None)
    texts = {q.outcome: t for q, t in biomarkers_run.analysis.statements(biomarkers_run.quantities)
             if q.key == "reduction_pooled"}
    fib = texts["fibrinogen"]
    assert fib.startswith("Fibrinogen: change ") and "reduction" not in fib
    assert "A fall of fibrinogen is not counted as benefit" in fib and "HLH diagnostic criterion" in fib
    assert "improvement" not in fib and "benefit" not in fib.replace("not counted as benefit", "")
    for name, shown in (("crp", "CRP"), ("ferritin", "ferritin")):
        assert f"A fall of {shown} is the direction of improvement" in texts[name]
    assert "a fall of fibrinogen is not counted as benefit" in biomarkers_run.analysis.methods(biomarkers_run.idata)


def test_within_study_correlation_is_a_declared_input_and_a_variant(synthetic, tmp_path):
    """[data] within_study_correlation reaches the likelihood; the within_correlation family
    varies it (a data swap on the primary's compiled model); bad values name the key."""
    from hlh_meta.analyses.base import PRIMARY
    from hlh_meta.sensitivity import expand_variants
    from hlh_meta.sensitivity.executors import group_variants
    from hlh_meta.sensitivity.runner import plan

    spec = load_spec(SPECS / "biomarkers_small.toml").patched({"sensitivity": {"families": ["within_correlation"]}})
    variants = expand_variants(synthetic, spec)
    assert [(v.name, v.patch) for v in variants] == [("within-study correlation = 0.5",
                                                      {"data": {"within_study_correlation": 0.5}})]
    assert len(group_variants(plan(spec, synthetic, [PRIMARY] + variants))) == 1
    analysis = analysis_for("biomarkers")
    used, _ = analysis.frame(synthetic, spec)
    inputs = analysis.variant_inputs(synthetic, spec, variants[0])
    within = inputs.data["within"]
    assert inputs.attrs["within_correlation"] == "0.5"
    ids = used["study_id"].to_numpy()
    assert (within[ids[:, None] != ids[None, :]] == 0).all() and not (within[ids[:, None] == ids[None, :]] == 0).all()
    assert (analysis.inputs(synthetic, spec, used).data["within"] == np.eye(len(used))).all()
    for text, key in (("[model]\nmultivariate = 'sometimes'\n", "model.multivariate"),
                      ("[data]\nwithin_study_correlation = 1.0\n", "data.within_study_correlation")):
        path = tmp_path / "b.toml"
        path.write_text("[analysis]\nname='b'\nkind='biomarkers'\n" + text)
        with pytest.raises(SpecError) as info:
            analysis.check_spec(load_spec(path))
        assert info.value.key == key


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


def test_fibrinogen_is_a_change_without_a_reduction_threshold_in_the_summary_of_findings(biomarkers_run):
    """A marker with no declared direction of benefit is shown as a change of the mean (its
    reduction negated) and its imprecision is not judged against the reduction threshold."""
    sof = biomarkers_run.table("summary_of_findings").set_index("quantity", drop=False)
    row = sof[sof["outcome"].str.startswith("Fibrinogen")].iloc[0]
    pooled = next(q for q in biomarkers_run.quantities if q.key == "reduction_pooled" and q.outcome == "fibrinogen")
    assert row["quantity"] == "change of the mean (%)"
    assert row["median"] == pytest.approx(-pooled.summary()["median"])
    assert row["imprecision"] == "not assessed" and "no direction of benefit" in row["imprecision_reason"]
    crp = sof[sof["outcome"].str.startswith("CRP")].iloc[0]
    assert crp["quantity"] != "change of the mean (%)" and "no direction of benefit" not in crp["imprecision_reason"]


def test_a_run_builds_each_frame_once_per_data_and_spec(ds, monkeypatch):
    """Within frames_kept (each run) an analysis frame is computed once per dataset and spec
    and handed out as copies; another spec or dataset, or a call outside, computes it. The
    mortality strata, which read the dataset alone, are resolved once per dataset."""
    from dataclasses import replace

    import hlh_meta.analyses.mortality as mortality
    from hlh_meta.analyses.frames import frames_kept

    computed, resolved = [], []
    real_exclude, real_resolve = mortality.excluded_studies, mortality.resolve_mortality
    monkeypatch.setattr(mortality, "excluded_studies", lambda *a, **k: computed.append(1) or real_exclude(*a, **k))
    monkeypatch.setattr(mortality, "resolve_mortality", lambda *a, **k: resolved.append(1) or real_resolve(*a, **k))
    spec = load_spec(bundled_specs_dir() / "mortality.toml")
    analysis = analysis_for(spec)
    alone, _ = analysis.frame(ds, spec)
    analysis.frame(ds, spec)
    assert len(computed) == 2 and len(resolved) == 2          # outside a run: every call
    with frames_kept():
        first, _ = analysis.frame(ds, spec)
        first.loc[first.index[0], "n"] = -1          # a copy: what is kept does not change
        second, _ = analysis.frame(ds, spec)
        assert len(computed) == 3 and len(resolved) == 3
        other, _ = analysis.frame(ds, spec.patched({"data": {"exclude_studies": ["henry2019"]}}))
        assert len(computed) == 4 and len(resolved) == 3      # another spec: its frame, the same strata
        assert "henry2019" in set(second["study_id"]) and "henry2019" not in set(other["study_id"])
        analysis.frame(replace(ds), spec)                      # another dataset (a copy): both again
        assert len(computed) == 5 and len(resolved) == 4
        attribution = spec.patched({"data": {"attribution": "alternative"}})
        analysis.frame(ds, attribution)                        # other strata of the same dataset
        assert len(computed) == 6 and len(resolved) == 5
    pd.testing.assert_frame_equal(second, alone)
    analysis.frame(ds, spec)
    assert len(computed) == 7 and len(resolved) == 6          # the run is over: nothing kept


def test_a_run_works_out_the_sensitivity_variants_once(ds, monkeypatch, tmp_path):
    """The variants are worked out once per dataset and spec within frames_kept (each caller
    gets its own list of the same variants), every call outside; `hlh-meta sensitivity`'s
    checks before sampling and its run share them."""
    import hlh_meta.orchestrate as orchestrate
    import hlh_meta.pipeline as pipeline
    from hlh_meta.analyses.frames import frames_kept

    spec = load_spec(bundled_specs_dir() / "mortality.toml")
    analysis = analysis_for(spec)
    calls = []
    real = analysis.families["judgements"]
    monkeypatch.setitem(type(analysis).families, "judgements", lambda *a: calls.append(1) or real(*a))
    alone = analysis.expand_variants(ds, spec)
    analysis.expand_variants(ds, spec)
    assert len(calls) == 2                           # outside a run: every call
    with frames_kept():
        first = analysis.expand_variants(ds, spec)
        first.clear()                                # the caller's own list
        second = analysis.expand_variants(ds, spec)
        assert len(calls) == 3 and second == alone
        analysis.expand_variants(ds, spec.patched({"data": {"exclude_studies": ["henry2019"]}}))
        assert len(calls) == 4

    def run(spec, ds, **kw):                         # no sampling: the variants as the run would work them out
        resolved = analysis.resolve(ds, spec)
        with frames_kept():
            analysis.expand_variants(ds, resolved)   # the run's check
            analysis.expand_variants(ds, resolved)   # run_sensitivity
        raise Stop

    class Stop(Exception):
        pass

    calls.clear()
    monkeypatch.setattr(pipeline, "run_analysis", run)
    with pytest.raises(Stop):
        orchestrate.run_all([bundled_specs_dir() / "mortality.toml"], out=tmp_path, data=ds.path, sensitivity=True)
    assert len(calls) == 1


def test_a_log_ratio_beyond_floating_point_is_an_unbounded_increase_without_a_warning():
    """A predictive draw far in a heavy-tailed tau prior's tail (the HalfCauchy variant of the
    biomarkers' sensitivity analysis) has a ratio beyond floating point: its percent
    reduction is -inf (an unbounded increase), with no overflow warning on the terminal."""
    import warnings

    from hlh_meta.analyses.biomarkers import _reduction

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _reduction(np.array([np.log(0.25), 0.0, 800.0]))
    assert out[0] == pytest.approx(75.0) and out[1] == 0.0 and out[2] == -np.inf
