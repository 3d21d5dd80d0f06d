"""The identity of a derived quantity (QuantityId): stable, unambiguous, apart from its label."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hlh_meta.analyses import Contrast, Quantity, QuantityId, analysis_for, load_spec
from hlh_meta.analyses.base import quantity_table, with_support
from hlh_meta.sensitivity import robustness

MODELS = Path(__file__).parents[1] / "models"


@pytest.fixture(scope="module", params=["mortality", "biomarkers"])
def bundled(request, ds):
    """The bundled spec's analysis on the bundled data, fitted with few draws: its quantities."""
    spec = load_spec(MODELS / f"{request.param}.toml").patched(
        {"sampling": {"draws": 100, "tune": 100, "chains": 2}})
    analysis = analysis_for(spec)
    spec = analysis.resolve(ds, spec)
    used, _ = analysis.frame(ds, spec)
    with warnings.catch_warnings():          # so few draws fail the diagnostics gate; ids do not depend on them
        warnings.simplefilter("ignore")
        idata = analysis.fit(ds, spec, used, extras=False)
    return request.param, analysis, idata, analysis.quantities(idata)


def test_ids_are_unique_and_read_back_from_their_strings(bundled):
    kind, _, _, quantities = bundled
    ids = [q.id for q in quantities]
    assert len(set(ids)) == len(ids) and len({str(i) for i in ids}) == len(ids)
    for q in quantities:
        assert QuantityId.parse(str(q.id)) == q.id
        assert str(q.id).startswith(f"{q.outcome}:{q.key}")
    table = quantity_table(quantities)
    assert table.columns[0] == "id" and list(table["id"]) == [str(i) for i in ids]
    if kind == "biomarkers":
        assert {"crp:reduction_pooled", "crp:reduction_new", "crp:tau"} <= set(table["id"])


def test_what_a_quantity_rests_on_is_a_quantity_of_the_analysis(bundled):
    _, _, _, quantities = bundled
    ids = {q.id for q in quantities}
    resting = [q for q in quantities if q.rests_on]
    assert resting
    for q in resting:
        assert set(q.rests_on) <= ids, q.id


def test_lookup_by_id_finds_the_population_typical_study_mortality(bundled):
    from hlh_meta.analyses.mortality import POPULATION, POPULATION_ID

    kind, _, _, quantities = bundled
    if kind != "mortality":
        pytest.skip("the population profile is the mortality analysis's")
    by_id = {q.id: q for q in quantities}
    q = by_id[QuantityId.parse("mortality:mortality_typical")]
    assert q.id == POPULATION_ID and q.key == "mortality_typical" and q.label == POPULATION and not q.levels
    new = by_id[q.id.of_kind("mortality_new")]
    assert new.label == q.label and q.id in new.rests_on


def test_profile_holds_covariate_values_and_an_odds_ratio_its_contrast(bundled):
    """``profile`` means covariate values only; an odds ratio's two levels are its contrast,
    the reference level being the analysis's."""
    import json

    kind, _, idata, quantities = bundled
    if kind != "mortality":
        pytest.skip("odds ratios of covariate levels are the mortality analysis's")
    refs = json.loads(idata.posterior.attrs["references"])
    ratios = [q for q in quantities if q.key == "odds_ratio"]
    assert ratios
    for q in ratios:
        assert not q.profile and not q.levels and q.contrast is not None
        assert q.contrast.reference == refs[q.contrast.covariate] and q.contrast.level != q.contrast.reference
        assert str(q.id) == f"mortality:odds_ratio:{q.contrast.covariate}={q.contrast.level}|vs={q.contrast.reference}"
    for q in quantities:
        if q.key == "mortality_typical" and q.levels:
            (covariate, level), = q.levels.items()
            assert covariate in refs and level in q.label


def test_labels_can_change_without_changing_ids(bundled):
    _, analysis, idata, quantities = bundled
    relabelled = [replace(q, label=f"reworded {i}", description="reworded") for i, q in enumerate(quantities)]
    assert [q.id for q in relabelled] == [q.id for q in quantities]
    statements = dict((q.id, t) for q, t in analysis.statements(with_support(idata, relabelled)))
    assert set(statements) <= {q.id for q in quantities} and statements


def test_a_prediction_rests_on_its_parts_by_id_whatever_their_labels():
    """A new study's prediction is no better supported than tau whatever tau is called."""
    import arviz as az
    import xarray as xr

    rng = np.random.default_rng(4)
    wide, narrow = rng.normal(30, 20, 2000), rng.normal(30, 3, 2000)
    idata = az.InferenceData(posterior=xr.Dataset({"x": (("chain", "draw"), rng.normal(size=(1, 100)))}))
    typical = Quantity(key="mortality_typical", outcome="mortality", label="all", description="m", scale="percent",
                       draws=np.clip(narrow, 1, 99), prior=np.clip(wide, 1, 99), studies_informing=4,
                       patients_informing=70)
    new = replace(typical, key="mortality_new", rests_on=(typical.id, QuantityId("mortality", "tau")))
    tau = Quantity(key="tau", outcome="mortality", label="between studies", description="tau", scale="SD",
                   draws=np.abs(rng.normal(0, 0.8, 2000)), prior=np.abs(rng.normal(0, 1, 2000)), studies_informing=4,
                   patients_informing=70)
    for label in ("between studies", "heterogeneity"):
        out = with_support(idata, [typical, new, replace(tau, label=label)])
        assert out[1].label_support == "weak" and out[1].support["limited_by"] == "tau (weak)"


@pytest.mark.parametrize("text, quantity_id", [
    ("mortality:mortality_typical", QuantityId("mortality", "mortality_typical")),
    ("mortality:tau", QuantityId("mortality", "tau")),
    ("mortality:mortality_new:trigger=malignancy", QuantityId("mortality", "mortality_new", (("trigger", "malignancy"),))),
    ("mortality:mortality_typical:iv_fraction=0.5,trigger=malignancy",
     QuantityId.of("mortality", "mortality_typical", {"trigger": "malignancy", "iv_fraction": "0.5"})),
    ("mortality:odds_ratio:trigger=malignancy|vs=rheumatological",
     QuantityId("mortality", "odds_ratio", contrast=Contrast("trigger", "malignancy", "rheumatological"))),
    ("mortality:odds_ratio:age_group=adult:trigger=malignancy|vs=rheumatological",
     QuantityId("mortality", "odds_ratio", (("age_group", "adult"),), Contrast("trigger", "malignancy", "rheumatological"))),
    ("crp~ferritin:correlation", QuantityId("crp~ferritin", "correlation")),
    ("crp:ratio_of_means:age_group[adult]=1|vs=0", QuantityId("crp", "ratio_of_means", contrast=Contrast("age_group[adult]", "1", "0"))),
])
def test_the_grammar(text, quantity_id):
    assert str(quantity_id) == text and QuantityId.parse(text) == quantity_id
    assert hash(QuantityId.parse(text)) == hash(quantity_id)


def test_a_profile_is_sorted_whatever_order_it_is_given_in():
    one = QuantityId.of("mortality", "mortality_typical", {"trigger": "malignancy", "age_group": "adult"})
    other = QuantityId.of("mortality", "mortality_typical", [("age_group", "adult"), ("trigger", "malignancy")])
    assert one == other and one.levels == {"age_group": "adult", "trigger": "malignancy"}
    assert str(one) == "mortality:mortality_typical:age_group=adult,trigger=malignancy"
    assert one.of_kind("mortality_new") == QuantityId.of("mortality", "mortality_new", one.levels)


@pytest.mark.parametrize("make", [
    lambda: QuantityId("", "tau"),
    lambda: QuantityId("mortality", "odds:ratio"),
    lambda: QuantityId("mortality", "mortality_typical", (("trigger", "a=b"),)),
    lambda: QuantityId("mortality", "mortality_typical", (("trigger", "x"), ("age_group", "y"))),     # not sorted
    lambda: QuantityId("mortality", "mortality_typical", (("trigger", "x"), ("trigger", "y"))),       # twice
    lambda: Contrast("trigger", "malignancy", "a|b"),
])
def test_names_that_would_make_a_string_ambiguous_are_refused(make):
    with pytest.raises(ValueError):
        make()


@pytest.mark.parametrize("text", ["mortality", "mortality:tau:", "mortality:tau:trigger", "a:b:c=d:e=f",
                                  "a:b:c=d|vs=e:f=g", "mortality:mortality_typical:trigger=b,age_group=a", "a:b:c=|vs=d"])
def test_strings_outside_the_grammar_are_refused(text):
    with pytest.raises(ValueError):
        QuantityId.parse(text)


def _row(**row):
    base = {"id": "mortality:mortality_typical", "variant": "primary", "family": "primary",
            "quantity": "mortality, typical study (%)", "key": "mortality_typical", "label": "all", "mean": 50.0,
            "sd": 10.0, "median": 50.0, "q2.5": 30.0, "q97.5": 70.0, "P(<20%)": 0.02, "P(<1)": np.nan,
            "diagnostics_passed": True}
    return {**base, **row}


def test_robustness_compares_rows_by_id_not_by_label():
    """A variant's row is compared with the primary row of the same id, however it is worded;
    a row of another id is another quantity, even worded alike."""
    moves = _row(variant="moves", family="f", median=56.0, label="all (reworded)")
    other = _row(variant="other", family="f", median=90.0, id="mortality:mortality_typical:trigger=malignancy")
    rob = robustness(pd.DataFrame([_row(), moves, other]))
    assert list(rob["id"]) == ["mortality:mortality_typical"]
    assert rob.iloc[0]["verdict"] == "NOT robust" and rob.iloc[0]["most_influential_variant"] == "moves"
    support = {QuantityId("mortality", "mortality_typical"): "prior"}          # keyed by id, or its string
    assert robustness(pd.DataFrame([_row(), moves]), support).iloc[0]["verdict"] == "not assessable"


@pytest.mark.parametrize("fixed, levels", [
    ({}, {}),
    ({"trigger[infection]": 0.0, "trigger[malignancy]": 1.0}, {"trigger": "malignancy"}),
    ({"trigger[malignancy]": 1.0, "trigger[infection]": 0.0}, {"trigger": "malignancy"}),
    ({"trigger[infection]": 0.0, "trigger[malignancy]": 0.0}, {"trigger": "rheumatological"}),   # the reference
    ({"iv_fraction": 1.0}, {"iv_fraction": "intravenous"}),
    ({"iv_fraction": 0.0}, {"iv_fraction": "subcutaneous"}),
    ({"iv_fraction": 0.25, "trigger[malignancy]": 1.0}, {"iv_fraction": "0.25", "trigger": "malignancy"}),
])
def test_a_mortality_profile_s_levels_from_its_design_values(fixed, levels):
    from hlh_meta.analyses.mortality import _levels

    assert _levels(fixed, {"trigger": "rheumatological", "iv_fraction": "subcutaneous"}) == levels
