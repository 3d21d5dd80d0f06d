"""What a results folder and a notebook show: forest plot with numbers, summary of findings,
manuscript tables (tables.xlsx), SVG figures, the compact notebook view."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hlh_meta.analyses.base import Quantity
from hlh_meta.analyses.quantity_id import Contrast, QuantityId
from hlh_meta.analyses.findings import certainty, egger, summary_of_findings
from hlh_meta.report.figures import forest

SPECS = Path(__file__).parent / "specs"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    import hlh_meta as hm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = hm.run_analysis(SPECS / "mortality_small.toml")
        folder = result.save(tmp_path_factory.mktemp("out") / "mortality")
    return result, folder


def test_results_folder_has_manuscript_tables_and_svg(saved):
    result, folder = saved
    sheets = pd.read_excel(folder / "tables.xlsx", sheet_name=None)
    assert {"summary of findings", "estimates", "studies", "rows used"} <= set(sheets)
    sof = sheets["summary of findings"]
    assert len(sof) == 1 and sof["estimate (95% CrI)"].str.match(r"\d+\.\d% \(\d+\.\d% to \d+\.\d%\)").all()
    est = sheets["estimates"]
    assert len(est) == len(result.table("derived")) and est["median (95% CrI)"].str.contains(" to ").all()
    for png in (folder / "figures").glob("*.png"):
        svg = png.with_suffix(".svg")
        assert svg.is_file() and svg.read_text().lstrip().startswith("<?xml"), svg
    for csv in folder.glob("*.csv"):
        assert not any(c.startswith("Unnamed") for c in pd.read_csv(csv).columns), csv.name


def test_summary_of_findings_table(saved):
    result, folder = saved
    sof = pd.read_csv(folder / "summary_of_findings.csv")
    row = sof.iloc[0]
    assert row["outcome"] == "mortality" and row["studies"] >= 2
    assert row["patients"] == int(result.table("data_used")["n"].sum())
    assert row["threshold"] == 20 and row["imprecision"] in ("serious", "not serious")
    assert row["publication_bias"] == "suspected"     # cohorts in the tables do not report deaths (else: < 10 studies)
    assert row["certainty"] in ("low", "very low", "not informed by the data")
    html = (folder / "report.html").read_text()
    assert 'id="summary-of-findings"' in html and "<td>mortality</td>" in html


def test_notebook_view_is_compact_and_shows_forest(saved):
    result, _ = saved
    assert len(repr(result)) < 400
    html = result._repr_html_()
    assert 'id="summary-of-findings"' in html and html.count("data:image/png;base64,") == 1


def test_forest_rows_carry_their_numbers(saved):
    result, _ = saved
    data = result.forest()
    rows = data["rows"]
    assert {"grade", "counts", "reconstructed", "group"} <= set(rows.columns)
    used = result.table("data_used")
    assert sorted(rows["counts"]) == sorted(f"{d}/{n}" for d, n in zip(used["deaths"], used["n"]))
    assert rows["group"].str.startswith("trigger: ").all()
    assert len(data["groups"]) == rows["group"].nunique()
    fig = forest(result)
    texts = {t.get_text() for t in fig.axes[0].texts}
    assert all(any(c in t for t in texts) for c in rows["counts"])


def _fake_result(k: int, groups: int = 3):
    rng = np.random.default_rng(k)
    n = rng.integers(3, 60, k)
    d = rng.binomial(n, 0.3)
    p = 100 * d / n
    rows = pd.DataFrame({"label": [f"study{i:02d}: some stratum name" for i in range(k)], "study_id": [f"s{i}" for i in range(k)],
                         "grade": "peer reviewed abstract", "counts": [f"{a}/{b}" for a, b in zip(d, n)],
                         "reconstructed": rng.random(k) < 0.3, "observed": p, "observed_lo": p * 0.5,
                         "observed_hi": np.minimum(p * 1.5 + 5, 100), "fitted": p * 0.9 + 3, "fitted_lo": p * 0.5,
                         "fitted_hi": np.minimum(p + 10, 100), "group": [f"trigger: g{i % groups}" for i in range(k)]})
    grp = pd.DataFrame({"group": [f"trigger: g{i}" for i in range(groups)], "label": "model", "estimate": 30.0,
                        "lo": 20.0, "hi": 40.0})
    summ = pd.DataFrame([{"label": "pooled", "estimate": 30.0, "lo": 22.0, "hi": 39.0, "kind": "pooled", "note": ""},
                         {"label": "new", "estimate": 30.0, "lo": 10.0, "hi": 60.0, "kind": "prediction", "note": ""}])
    data = {"rows": rows, "groups": grp, "summaries": summ, "xlabel": "mortality (%)", "observed_name": "observed",
            "fitted_name": "model", "title": "", "scale": "percent", "counts_header": "deaths/n"}
    return SimpleNamespace(forest=lambda: data, title="test")


@pytest.mark.parametrize("k", [3, 40])
def test_forest_stays_legible(k):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = forest(_fake_result(k))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text().startswith("  study")]
    assert len(labels) == k
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: -b.y0)
    for upper, lower in zip(boxes, boxes[1:]):
        assert lower.y1 <= upper.y0 + 0.5, "row labels overlap"
    assert all(t.get_fontsize() >= 7.5 for t in ax.texts)
    inside = fig.bbox
    assert all(inside.x0 - 1 <= b.x0 and b.x1 <= inside.x1 + 1 for b in boxes), "a label runs off the figure"


def test_egger_matches_an_independent_regression():
    rng = np.random.default_rng(3)
    se = rng.uniform(0.1, 1.0, 14)
    y = 0.4 + 1.2 * se + rng.normal(0, se)
    intercept, p = egger(y, se)
    ref = stats.linregress(1 / se, y / se)
    assert intercept == pytest.approx(ref.intercept)
    t = ref.intercept / ref.intercept_stderr
    assert p == pytest.approx(2 * stats.t.sf(abs(t), len(y) - 2))


def test_certainty_levels():
    assert certainty(True, []) == "high"
    assert certainty(True, ["serious", "not serious"]) == "moderate"
    assert certainty(False, []) == "low"
    assert certainty(False, ["serious", "serious", "serious"]) == "very low"


def _q(draws, support="data", extrapolation=False, key="mortality_typical", scale="percent"):
    return Quantity(key=key, outcome="mortality", label="x", description="mortality", scale=scale,
                    draws=np.asarray(draws, float), support={"support": support}, extrapolation=extrapolation)


def test_summary_of_findings_judgements():
    rng = np.random.default_rng(0)
    studies = pd.DataFrame({"study_id": [f"s{i}" for i in range(12)], "design": "retrospective_case_series",
                            "risk_of_bias": ["high"] * 7 + ["low"] * 5, "age_group": "adult", "covid19": False})
    patients = {f"s{i}": 10.0 for i in range(12)}
    tau = Quantity(key="tau", outcome="mortality", label="between", description="tau", scale="SD",
                   draws=rng.normal(0.8, 0.05, 4000).clip(0), support={"support": "data"})
    se = np.linspace(0.2, 1.2, 12)
    asym = (0.3 + 2.5 * se + rng.normal(0, 0.05, 12), se)           # strongly asymmetric: small studies larger
    rows = [{"outcome": "m", "pooled": _q(rng.normal(30, 3, 4000)), "new": None, "tau": tau, "patients": patients,
             "effects": asym}]
    sof = summary_of_findings(rows, studies, threshold=20).iloc[0]
    assert sof["risk_of_bias"] == "serious"                           # 7 of 12 studies, 58% of patients
    assert sof["inconsistency"] == "serious"                          # tau median 0.8
    assert sof["imprecision"] == "not serious"                        # 24-36% does not contain 20%
    assert sof["publication_bias"] == "serious"
    assert sof["certainty"] == "very low"
    wide = summary_of_findings([{**rows[0], "pooled": _q(rng.normal(25, 8, 4000)), "effects": None,
                                 "tau": _q([0.3] * 10, support="prior", key="tau")}], studies, threshold=20).iloc[0]
    assert wide["imprecision"] == "serious" and wide["inconsistency"] == "not assessable"
    assert wide["publication_bias"] == "not assessed"
    unset = summary_of_findings(rows, studies, threshold=None).iloc[0]
    assert unset["imprecision"] == "not assessed"
    prior = summary_of_findings([{**rows[0], "pooled": _q(rng.normal(30, 3, 4000), support="prior",
                                                          extrapolation=True)}], studies, 20).iloc[0]
    assert prior["certainty"] == "not informed by the data" and prior["indirectness"] == "serious"


def test_posterior_group_holds_what_users_read(saved):
    result, _ = saved
    post = result.idata.posterior
    assert not [v for v in post.data_vars if v in ("z", "z_new") or v.endswith(("__", "_stick"))]
    prior = result.idata.prior                   # the prior group reads as the posterior group does
    assert not [v for v in prior.data_vars if v in ("z", "z_new", "loglik", "log_prior") or v.endswith(("__", "_stick"))]
    assert set(prior.data_vars) == set(post.data_vars)
    assert all(c in ("chain", "draw") or any(c in post[v].dims for v in post.data_vars) for c in post.coords)
    assert list(post["row"].values) == list(result.table("data_used")["study_id"] + ": "
                                            + result.table("data_used")["stratum"])


def test_quickstart_script_runs(tmp_path):
    """The README's Python example, as a script (the small spec keeps it quick)."""
    import subprocess
    import sys

    root = Path(__file__).parents[1]
    done = subprocess.run([sys.executable, str(root / "examples" / "quickstart.py"), "--draws", "200", "--out",
                           str(tmp_path), "--spec", str(SPECS / "mortality_small.toml")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "AnalysisResult" in done.stdout and "certainty" in done.stdout
    assert (tmp_path / "mortality" / "tables.xlsx").is_file() and (tmp_path / "my_forest.png").is_file()


def test_a_loaded_result_keeps_each_quantitys_support(saved):
    """`hlh-meta report` rebuilds the report from a saved folder: the findings must sort the
    same way as when the analysis ran."""
    from hlh_meta.result import AnalysisResult

    result, folder = saved
    loaded = AnalysisResult.load(folder)
    assert [q.label_support for q in loaded.quantities] == [q.label_support for q in result.quantities]
    assert all(q.label_support for q in loaded.quantities)
    html = (folder / "report.html").read_text()
    loaded.rebuild_report(folder)
    assert (folder / "report.html").read_text().split('<h3 id="findings">')[1].split("<h2>")[0] == \
        html.split('<h3 id="findings">')[1].split("<h2>")[0]


@pytest.mark.parametrize("ratio_support, caveat", [("weak", True), ("prior", True), ("data", False)])
def test_a_profile_says_when_its_difference_from_other_levels_is_not_established(ratio_support, caveat):
    from hlh_meta.analyses.mortality import Mortality

    rng = np.random.default_rng(1)
    profile = {"age_group[paediatric]": 0.0, "age_group[adult]": 1.0}
    levels = {"age_group": "adult"}
    typical = Quantity(key="mortality_typical", outcome="mortality", label="adult patients", description="mortality",
                       scale="percent", draws=rng.normal(30, 5, 1000), profile=profile, levels=levels, thresholds=(20,),
                       support={"support": "data"}, studies_informing=2, patients_informing=18)
    new = Quantity(key="mortality_new", outcome="mortality", label="adult patients", description="mortality",
                   scale="percent", draws=rng.normal(30, 15, 1000), profile=profile, levels=levels, thresholds=(20,),
                   support={"support": "data"})
    ratio = Quantity(key="odds_ratio", outcome="mortality", label="adult vs paediatric", description="odds ratio",
                     scale="odds ratio", draws=np.exp(rng.normal(0, 1, 1000)),
                     contrast=Contrast("age_group", "adult", "paediatric"), support={"support": ratio_support})
    other = Quantity(key="odds_ratio", outcome="mortality", label="malignancy vs rheumatological trigger",
                     description="odds ratio", scale="odds ratio", draws=np.exp(rng.normal(1, 0.3, 1000)),
                     contrast=Contrast("trigger", "malignancy", "rheumatological"), support={"support": "weak"})
    text = dict((q.label, t) for q, t in Mortality().statements([typical, new, ratio, other]))["adult patients"]
    assert ("not data-supported" in text) is caveat
    assert "malignancy" not in text                      # another covariate's odds ratio is not this profile's caveat


def _trigger_profile(level: str | None) -> dict:
    levels = ("infection", "malignancy", "other")
    return {f"trigger[{lev}]": float(lev == level) for lev in levels}


@pytest.mark.parametrize("level, cited", [("malignancy", ["malignancy"]),
                                          (None, ["infection", "malignancy", "other"])])
def test_a_profile_cites_only_the_odds_ratios_that_set_its_own_level_apart(level, cited):
    """A non-reference level is set apart by its own odds ratio; the reference level
    (rheumatological here) by all of them. Other levels' odds ratios are not its caveat."""
    from hlh_meta.analyses.mortality import Mortality

    rng = np.random.default_rng(3)
    label = f"{level or 'rheumatological'} trigger"
    levels = {"trigger": level or "rheumatological"}
    typical = Quantity(key="mortality_typical", outcome="mortality", label=label, description="mortality",
                       scale="percent", draws=rng.normal(30, 5, 1000), profile=_trigger_profile(level), levels=levels,
                       thresholds=(20,), support={"support": "data"})
    new = Quantity(key="mortality_new", outcome="mortality", label=label, description="mortality", scale="percent",
                   draws=rng.normal(30, 15, 1000), profile=_trigger_profile(level), levels=levels, thresholds=(20,),
                   support={"support": "data"})
    ratios = [Quantity(key="odds_ratio", outcome="mortality", label=f"{lev} vs rheumatological trigger",
                       description="odds ratio", scale="odds ratio", draws=np.exp(rng.normal(0, 1, 1000)),
                       contrast=Contrast("trigger", lev, "rheumatological"), support={"support": "weak"})
              for lev in ("infection", "malignancy", "other")]
    text = dict((q.label, t) for q, t in Mortality().statements([typical, new, *ratios]))[label]
    for lev in ("infection", "malignancy", "other"):
        assert (f"odds ratio {lev} vs rheumatological trigger is weak" in text) is (lev in cited), lev


def test_a_prediction_is_no_better_supported_than_what_it_rests_on():
    """A new study's prediction whose own measures say 'data' is labelled as weak as tau
    when tau is weak (or prior), names why, and the statement carries it; a prediction whose
    parts are data-supported keeps its label."""
    import arviz as az
    import xarray as xr

    from hlh_meta.analyses.base import with_support
    from hlh_meta.analyses.mortality import Mortality

    rng = np.random.default_rng(4)
    wide, narrow = rng.normal(30, 20, 2000), rng.normal(30, 3, 2000)
    idata = az.InferenceData(posterior=xr.Dataset({"x": (("chain", "draw"), rng.normal(size=(1, 100)))}))

    def quantities(tau_posterior):
        return [Quantity(key="mortality_typical", outcome="mortality", label="all", description="m", scale="percent",
                         draws=np.clip(narrow, 1, 99), prior=np.clip(wide, 1, 99), thresholds=(20,),
                         studies_informing=4, patients_informing=70),
                Quantity(key="mortality_new", outcome="mortality", label="all", description="m", scale="percent",
                         draws=np.clip(narrow, 1, 99), prior=np.clip(wide, 1, 99), thresholds=(20,),
                         studies_informing=4, patients_informing=70,
                         rests_on=(QuantityId("mortality", "mortality_typical"), QuantityId("mortality", "tau"))),
                Quantity(key="tau", outcome="mortality", label="between studies", description="tau", scale="SD",
                         draws=tau_posterior, prior=np.abs(rng.normal(0, 1, 2000)), studies_informing=4,
                         patients_informing=70)]

    weak_tau = with_support(idata, quantities(np.abs(rng.normal(0, 0.8, 2000))))   # contraction ~0.36: weak
    assert [q.label_support for q in weak_tau] == ["data", "weak", "weak"]
    assert weak_tau[1].support["limited_by"] == "tau (weak)"
    text = dict((q.key, t) for q, t in Mortality().statements(weak_tau))["mortality_typical"]
    assert "(weak: it rests on the between-study SD (weak))" in text
    data_tau = with_support(idata, quantities(np.abs(rng.normal(0, 0.2, 2000))))
    assert [q.label_support for q in data_tau] == ["data", "data", "data"]
    assert data_tau[1].support["limited_by"] == ""


def test_prior_posterior_density_of_tau_does_not_dip_at_zero():
    """tau's density is largest at zero (HalfNormal); the overlaid density must show that,
    not the dip a plain kernel estimate gives at a boundary (it halves the density there)."""
    import arviz as az
    import xarray as xr

    from hlh_meta.report.figures import prior_posterior

    rng = np.random.default_rng(2)

    def group(n):
        return xr.Dataset({"mu": (("chain", "draw"), rng.normal(0, 1.5, (1, n))),
                           "tau": (("chain", "draw"), np.abs(rng.normal(0, 1.0, (1, n))))})

    fig = prior_posterior(SimpleNamespace(idata=az.InferenceData(prior=group(4000), posterior=group(4000))))
    tau_ax = next(ax for ax in fig.axes if ax.get_title() == "tau")
    for line in tau_ax.get_lines():
        x, y = line.get_data()
        assert x[0] == 0.0
        assert abs(y[0] - stats.halfnorm.pdf(0)) < 0.12, line.get_label()      # 0.80; a plain estimate gives ~0.4
    mu_ax = next(ax for ax in fig.axes if ax.get_title() == "mu")
    x, y = mu_ax.get_lines()[0].get_data()
    np.testing.assert_allclose(y, stats.norm(0, 1.5).pdf(x), atol=0.03)


def test_summary_of_findings_sees_a_covid19_series_in_the_studies_table(saved):
    """The indirectness judgement reads the studies table the analysis writes: it must carry
    the COVID-19 flag (it did not, so a COVID-19 series never counted as indirect)."""
    from hlh_meta.analyses import load_spec
    from hlh_meta.analyses.mortality import Mortality

    SPEC_SMALL = load_spec(SPECS / "mortality_small.toml")
    result, _ = saved
    studies = result.table("studies")
    assert "covid19" in studies and not studies["covid19"].astype(bool).any()
    tables = dict(result.tables)
    assert "COVID-19" not in Mortality().summary_of_findings(SPEC_SMALL, tables, result.quantities)["indirectness_reason"].iloc[0]
    flagged = studies.assign(covid19=studies["study_id"] == studies["study_id"].iloc[0])
    sof = Mortality().summary_of_findings(SPEC_SMALL, {**tables, "studies": flagged}, result.quantities)
    assert sof["indirectness"].iloc[0] == "serious"
    assert f"COVID-19 series included ({studies['study_id'].iloc[0]})" in sof["indirectness_reason"].iloc[0]


@pytest.mark.parametrize("ages, population, verdict, fragment", [
    (["paediatric", "paediatric"], ("paediatric", "adult"), "serious", "no included study is known to include adults"),
    (["adult", "unknown"], ("paediatric", "adult"), "serious", "no included study is known to include children"),
    (["unknown", "unknown"], ("paediatric", "adult"), "serious", "the age group of the included patients is not reported"),
    (["paediatric", "adult"], ("paediatric", "adult"), "not serious", "populations as in the included studies"),
    (["mixed", "unknown"], ("paediatric", "adult"), "not serious", "populations as in the included studies"),
    (["paediatric", "paediatric"], ("paediatric",), "not serious", "populations as in the included studies"),
])
def test_indirectness_when_the_studies_miss_an_age_group_of_the_question(ages, population, verdict, fragment):
    """An estimate from children alone answers a question about children and adults only
    indirectly: it must not be called 'not serious' because it is as in its own studies."""
    rng = np.random.default_rng(6)
    q = Quantity(key="reduction_pooled", outcome="ferritin", label="ferritin", description="pooled percent reduction",
                 scale="percent reduction", draws=rng.normal(50, 5, 500), support={"support": "data"})
    studies = pd.DataFrame({"study_id": ["a", "b"], "design": "case series", "risk_of_bias": "low", "age_group": ages,
                            "covid19": False})
    sof = summary_of_findings([{"outcome": "ferritin", "pooled": q, "patients": {"a": 10, "b": 12}}], studies, None,
                              population=population).iloc[0]
    assert sof["indirectness"] == verdict and fragment in sof["indirectness_reason"]
    assert sof["certainty"] == ("very low" if verdict == "serious" else "low")


@pytest.mark.parametrize("design, randomised", [("randomised controlled trial", True), ("non_randomised_trial", False),
                                                ("non-randomised cohort", False), ("case series", False)])
def test_summary_of_findings_names_only_randomised_designs_randomised(design, randomised):
    rng = np.random.default_rng(5)
    q = Quantity(key="mortality_typical", outcome="mortality", label="all", description="mortality", scale="percent",
                 draws=rng.normal(30, 5, 500), support={"support": "data"})
    studies = pd.DataFrame({"study_id": ["a", "b"], "design": design, "risk_of_bias": "low"})
    sof = summary_of_findings([{"outcome": "mortality", "pooled": q, "patients": {"a": 10, "b": 12}}], studies, 20)
    assert sof["design"].iloc[0] == ("randomised" if randomised else "non-randomised")


def test_report_text_is_html_escaped(saved, monkeypatch):
    """Statements and captions are text: a '<' or '&' in them (a study label, 'P(< 20%)')
    is escaped in the report and the notebook view, while the tables and figures render as HTML."""
    from hlh_meta.report.html import render

    result, folder = saved
    statements = result.analysis.statements(result.quantities)
    monkeypatch.setattr(type(result.analysis), "statements",
                        lambda self, qs: [(statements[0][0], "<b>risk</b> & <script>x</script>")] + statements[1:])
    for html in (render(result, folder / "figures"), result._repr_html_()):
        assert "&lt;b&gt;risk&lt;/b&gt; &amp; &lt;script&gt;x&lt;/script&gt;" in html and "<script>x" not in html
        assert 'id="summary-of-findings"' in html and "data:image/png;base64," in html
    report = render(result, folder / "figures")
    assert "<table" in report and "&lt;table" not in report and "&lt;tr" not in report
    assert "&lt;NA&gt;" not in report and "<td>None</td>" not in report     # a missing value is an empty cell


def test_own_strata_describe_patients_who_exist(saved):
    """Each level's own-strata mortality counts the strata made only of that level, and a
    standardised profile that pairs its level with one no stratum holds is an extrapolation."""
    result, folder = saved
    used = result.table("data_used")
    own = [q for q in result.quantities if q.key == "mortality_own_strata"]
    assert own and "mortality_own_strata" in set(pd.read_csv(folder / "derived.csv")["key"])
    for q in own:
        level = q.label.split(" ", 1)[0]
        rows = used[used["trigger"] == level]
        assert q.label.endswith(f"(observed {int(rows['deaths'].sum())}/{int(rows['n'].sum())})"), q.label
        assert ":" not in q.label, q.label          # the sentences about it put a colon after the label
        assert q.patients_informing == int(rows["n"].sum())
    for q in result.quantities:
        if q.key == "mortality_typical" and any(c.startswith("standardised") for c in q.caveats):
            assert q.extrapolation and q.label_support == "prior"


def test_reporting_bias_is_suspected_when_eligible_studies_do_not_report_the_outcome():
    from hlh_meta.analyses.findings import _publication_bias, unreported

    excluded = pd.DataFrame({
        "study_id": ["a", "b", "c"], "n": [21, None, 30], "derivation": ["not reported", "not reported", "reported count"],
        "reason": ["deaths not reported", "deaths not reported", ""],
        "excluded_because": ["deaths not reported", "may share patients with x", "COVID-19 setting"]})
    studies = pd.DataFrame({"study_id": ["a", "b", "c"], "n_patients": [21, 46, 30]})
    assert unreported(excluded, studies) == {"a": 21}          # b is out for an overlap, c for its setting
    verdict, why = _publication_bias(4, None, {"a": 21}, 70)
    assert verdict == "suspected" and "a (21 patients)" in why and "70 included" in why
    assert _publication_bias(4, None, {}, 70)[0] == "not assessable"
    assert certainty(False, ["serious", "suspected"]) == "very low" and certainty(True, ["suspected"]) == "moderate"


def test_headline_context_names_the_missing_comparator_the_case_mix_and_follow_up():
    from hlh_meta.analyses.mortality import headline_context

    used = pd.DataFrame({"study_id": ["a", "a", "b"], "trigger": ["rheumatological", "unknown", "malignancy"],
                         "age_group": ["paediatric", "paediatric", "adult"], "n": [13, 31, 6]})
    studies = pd.DataFrame({"study_id": ["a", "b"], "followup": ["unknown", "28 days"]})
    text = headline_context({"data_used": used, "studies": studies})
    assert text.startswith("uncontrolled series without a comparator: the figure is mortality on anakinra, not an effect")
    assert "by trigger: rheumatological 13, malignancy 6, unknown or mixed 31" in text
    assert "by age group: paediatric 44, adult 6" in text and "a holds 88% of them" in text
    assert text.endswith("follow-up of deaths not stated in 1 of 2 studies (b: 28 days)")
    assert "followup" not in headline_context({"data_used": used, "studies": studies.drop(columns="followup")})


def test_the_pooled_statement_and_summary_of_findings_carry_the_context(saved):
    result, folder = saved
    from hlh_meta.analyses.mortality import POPULATION_ID

    text = next(t for q, t in result.analysis.statements(result.quantities) if q.id == POPULATION_ID)
    assert "without a comparator: mortality on anakinra, not an effect of it" in text
    sof = pd.read_csv(folder / "summary_of_findings.csv")
    assert sof["context"].iloc[0].startswith("uncontrolled series without a comparator")
    assert sof["publication_bias"].iloc[0] == "suspected"      # the bundled tables hold cohorts without deaths
    assert "Context: uncontrolled series" in (folder / "report.html").read_text()


def test_sensitivity_figure_stays_legible():
    """Long quantity labels and variant names: panel titles do not run into each other, into
    the figure's title or into the x tick labels of the panel above, and every variant's name
    and tick label lies inside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from hlh_meta.report.figures import sensitivity

    variants = ["primary", "leave out a", "flat composition priors (what the sources say of unknown trigger mixes "
                "ignored)", "peer-reviewed sources only (alabdulla_imperial, henry2019)"]
    label = "all included strata (each with its own trigger, age and route mix)"
    rows = [{"variant": v, "key": f"k{j}", "label": f"{label} {j}", "quantity": "mortality, typical study (%)",
             "median": 30.0 + i, "q2.5": 15.0, "q97.5": 50.0} for j in range(4) for i, v in enumerate(variants)]
    table = pd.DataFrame(rows)
    fig = sensitivity(SimpleNamespace(tables={"sensitivity": table}, table=lambda name: table))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 4 and all(ax.get_title() for ax in shown)
    titles = [ax.title.get_window_extent(renderer) for ax in shown]
    for left, right in zip(titles[:2], titles[1:3]):          # the first row of three panels
        assert left.x1 <= right.x0, "panel titles overlap"
    assert fig.get_suptitle() and max(t.y1 for t in titles[:3]) <= fig._suptitle.get_window_extent(renderer).y0, \
        "a panel title runs into the figure's title"
    ticks = shown[0].xaxis.get_tightbbox(renderer)              # the x tick labels of the panel above the fourth
    assert titles[3].y1 <= ticks.y0, "a panel title runs into the tick labels of the panel above"
    for ax in shown:
        box = ax.get_tightbbox(renderer)
        assert fig.bbox.x0 - 1 <= box.x0 and box.x1 <= fig.bbox.x1 + 1 and fig.bbox.y0 - 1 <= box.y0, \
            "a panel's labels run off the figure"
    names = [t.get_window_extent(renderer) for t in fig.axes[0].get_yticklabels()]
    assert len(names) == len(variants)
    assert all(fig.bbox.x0 - 1 <= b.x0 for b in names), "a variant's name runs off the figure"
    assert len({ax.get_ylim() for ax in shown}) == 1, "a variant's row is not at the same height in every panel"
    beside = [ax for ax in shown if ax.get_subplotspec().colspan.start > 0]
    assert beside and all(len(ax.get_yticks()) == 0 for ax in beside), "variants named again beside the first column"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "figures").iterdir())}


def test_figures_drawn_beside_this_process_are_the_same(saved, tmp_path):
    """A FigureDrawer's process draws some figures while this one writes the rest: the same
    files, the PNG images byte for byte, as a save that draws every figure itself."""
    from hlh_meta.pipeline import DRAWN_AWAY, FigureDrawer

    result, folder = saved
    with FigureDrawer() as drawer:
        assert drawer._pool is not None
        result.save(tmp_path / "drawn", drawer=drawer)
    here, there = _files(folder), _files(tmp_path / "drawn")
    assert sorted(here) == sorted(there) and any(n.startswith(DRAWN_AWAY) for n in here)
    assert {n: b for n, b in here.items() if n.endswith(".png")} == {n: b for n, b in there.items() if n.endswith(".png")}


def test_the_drawer_takes_the_sensitivity_panels_and_leaves_the_trace_plot_here():
    """The sensitivity panels, the costliest figure, go to the background process; the trace
    plot is then drawn here, so neither process waits long for the other. Without the panels
    the split is as before."""
    from hlh_meta.pipeline import DRAWN_AWAY, KEPT_WITH_SENSITIVITY, drawn_away

    kinds = ["forest", "intervals", "shrinkage", "trace", "prior_posterior", "ppc"]
    assert drawn_away(kinds) == [k for k in kinds if k in DRAWN_AWAY] and "trace" in drawn_away(kinds)
    with_panels = drawn_away([*kinds, "sensitivity"])
    assert "sensitivity" in with_panels and "trace" not in with_panels
    assert set(with_panels) == set(DRAWN_AWAY) - set(KEPT_WITH_SENSITIVITY)
    assert drawn_away(["forest", "intervals"]) == []


def test_figures_of_a_drawer_that_died_are_drawn_here(saved, tmp_path):
    """Its process killed while it holds figures: those are drawn in this process, and no
    more work is handed to it (the next save draws every figure here)."""
    from hlh_meta.pipeline import FigureDrawer

    result, folder = saved
    with FigureDrawer() as drawer:
        handed = drawer.hand(result, tmp_path)
        assert handed is not None
        for process in list(drawer._pool._processes.values()):
            process.kill()
            process.join()
        drawer.collect(handed, result, tmp_path)
        assert drawer._pool is None
        assert sorted(p.stem for p in tmp_path.glob("*.png")) == sorted(handed[0])
        result.save(tmp_path / "drawn", drawer=drawer)
    assert sorted(_files(tmp_path / "drawn")) == sorted(_files(folder))


def test_an_abandoned_save_stops_the_drawer_and_leaves_nothing(saved, tmp_path, monkeypatch):
    """An error while the drawer's process draws: the error is raised, and neither the folder
    nor a partial folder nor figures written after the cleanup remain."""
    import hlh_meta.result as result_module
    from hlh_meta.pipeline import FigureDrawer

    result, _ = saved

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(result_module, "write_xlsx", broken)
    with FigureDrawer() as drawer:
        with pytest.raises(OSError, match="disk full"):
            result.save(tmp_path / "out" / "mortality", drawer=drawer)
    out = tmp_path / "out"
    assert not out.exists() or not list(out.iterdir())         # no folder, no partial folder, no figures


def test_a_report_without_sensitivity_analyses_says_its_findings_are_untested(saved):
    """A folder written without the sensitivity analysis says, in the report and the notebook
    view, that no finding has been tested against other analysis choices, and how to test them."""
    from hlh_meta.report.html import render

    result, folder = saved
    assert "sensitivity" not in result.tables
    report = render(result, folder / "figures")
    section = report.split('<h2 id="sensitivity">')[1].split("<h2>")[0]
    assert "Not run for this report" in section
    assert f"hlh-meta sensitivity {result.manifest['spec_file']}" in section
    assert "Sensitivity analyses not run" in result._repr_html_()


def test_the_report_says_when_a_fit_took_more_than_one_attempt(saved, monkeypatch):
    """The sampler line gives the settings asked for; a fit that took more than one sampling
    run (added chains, the run again at 0.95, the gate's refit) says so with the chains and
    draws its posterior holds and the settings of the runs those draws come from."""
    from dataclasses import replace

    from hlh_meta.report.html import render

    result, folder = saved
    diag = result.diagnostics
    post = result.idata.posterior
    asked = json.loads(post.attrs["sampler"])
    rerun = {**asked, "target_accept": 0.95, "seed": 11}
    for attempts, kept, words in [
            (1, [asked], None),
            (2, [rerun], f"made at target acceptance 0.95, {asked['draws']} draws per chain after {asked['tune']} "
                         "tuning steps (seed 11)"),
            (2, [asked, {**asked, "seed": 12}], f"the chains of 2 runs of {asked['chains']} chains each at target "
                                                f"acceptance {asked['target_accept']}, {asked['draws']} draws per chain "
                                                f"after {asked['tune']} tuning steps (seeds {asked['seed']} and 12)"),
            (2, None, None)]:                                        # a fit saved before the runs were recorded
        with monkeypatch.context() as m:
            m.setattr(type(result), "diagnostics", property(lambda self: replace(diag, attempts=attempts, kept=kept)))
            report = render(result, folder / "figures")
        said = (f"This fit took {attempts} sampling runs: its posterior holds {post.sizes['chain']} chains × "
                f"{post.sizes['draw']} draws")
        assert (said in report) == (attempts > 1) and ("sampling runs: its posterior" in report) == (attempts > 1)
        if attempts > 1:
            assert f"{said}{', ' + words if words else ''}." in report


def test_the_sensitivity_figure_draws_only_quantities_the_primary_has():
    """A quantity that only a variant estimates (another partition makes strata of a level
    the primary has none of) has no primary interval: it gets no panel, and the others do."""
    from hlh_meta.report.figures import sensitivity

    own = "mortality:own_strata:"
    rows = [{"id": own + i, "variant": v, "key": "mortality_own_strata", "label": lab,
             "quantity": "mortality of own strata (%)", "median": m, "q2.5": 15.0, "q97.5": 50.0}
            for i, v, lab, m in (("trigger=infection", "primary", "infection (observed 1/3)", 30.0),
                                 ("trigger=infection", "partition x = overall", "infection (observed 2/5)", 35.0),
                                 ("route=intravenous", "partition x = overall", "intravenous route (observed 1/2)", 40.0))]
    table = pd.DataFrame(rows)
    fig = sensitivity(SimpleNamespace(tables={"sensitivity": table}, table=lambda name: table))
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 1 and "observed 1/3" in shown[0].get_title()       # the primary's words
    medians = sorted(float(x) for line in shown[0].lines for x in line.get_xdata() if 20 < float(x) < 45)
    assert 35.0 in medians                 # the variant's row of the same quantity, worded otherwise, is drawn
    only = table[table["id"] == own + "route=intravenous"]
    assert sensitivity(SimpleNamespace(tables={"sensitivity": only}, table=lambda name: only)) is None
