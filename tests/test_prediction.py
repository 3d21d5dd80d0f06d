"""Prediction for new covariate profiles from a fit's stored draws (AnalysisResult.predict)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import hlh_meta as hm

SPECS = Path(__file__).parent / "specs"


@pytest.fixture(scope="module")
def result(ds):
    return hm.run_analysis(SPECS / "mortality_small.toml", ds, compare=False)


def _typical(table: pd.DataFrame, label: str) -> pd.Series:
    return table[(table["key"] == "mortality_typical") & (table["label"] == label)].iloc[0]


def _row(table: pd.DataFrame, quantity_id: str) -> pd.Series:
    (row,) = [r for _, r in table.iterrows() if r["id"] == quantity_id]
    return row


def test_the_analysis_own_profiles_give_its_own_numbers(result):
    """The fit stored p_typical and p_new of its own profiles while sampling; predicting those
    profiles again through the compiled model gives the same numbers."""
    from hlh_meta.analyses.mortality import LEVELS

    derived = result.table("derived")
    refs = json.loads(result.idata.posterior.attrs["references"])
    levels = [lv for lv in LEVELS["trigger"]]
    got = result.predict(pd.DataFrame({"trigger": levels},
                                      index=[f"{lv} trigger (other covariates as in the included strata)" for lv in levels]))
    assert len(got) == 2 * len(levels) and "trigger" in refs
    assert set(got["id"]) == {f"mortality:{key}:trigger={lv}" for lv in levels
                              for key in ("mortality_typical", "mortality_new")}
    for quantity_id in got["id"]:
        mine, theirs = _row(got, quantity_id), _row(derived, quantity_id)
        assert mine["label"] == theirs["label"]
        for col in ("median", "q2.5", "q97.5", "P(<20%)"):
            assert mine[col] == pytest.approx(theirs[col], rel=1e-9, abs=1e-9), (quantity_id, col)
        assert mine["extrapolation"] == theirs["extrapolation"]


def test_a_profile_fixing_every_covariate_is_the_inverse_logit_of_its_linear_predictor(result):
    """Typical-study mortality of a profile fixing every covariate, computed by hand from the
    posterior draws of mu and beta (no shares left to mix over)."""
    post = result.idata.posterior
    got = result.predict(pd.DataFrame({"trigger": ["malignancy", "infection"], "iv_fraction": ["intravenous", 0.0]},
                                      index=["malignancy, IV", "infection, SC"]))
    names = list(map(str, post["covariate"].values))
    for label, trigger, iv in (("malignancy, IV", "malignancy", 1.0), ("infection, SC", "infection", 0.0)):
        eta = post["mu"].values.reshape(-1).copy()
        if f"trigger[{trigger}]" in names:
            eta += post["beta"].sel(covariate=f"trigger[{trigger}]").values.reshape(-1)
        eta += iv * post["beta"].sel(covariate="iv_fraction").values.reshape(-1)
        assert _typical(got, label)["median"] == pytest.approx(100 * np.median(expit(eta)), rel=1e-9)


def test_prediction_from_a_saved_result(result, tmp_path):
    profiles = pd.DataFrame({"trigger": ["malignancy", None], "iv_fraction": [0.5, "intravenous"]})
    before = result.predict(profiles)
    result.save(tmp_path / "m", figures=False, report=False)
    after = hm.AnalysisResult.load(tmp_path / "m").predict(profiles)
    pd.testing.assert_frame_equal(before, after)
    assert set(before["label"]) == {"trigger = malignancy, iv_fraction = 50% IV", "iv_fraction = intravenous"}
    assert set(before["id"]) == {f"mortality:{key}:{profile}" for key in ("mortality_typical", "mortality_new")
                                 for profile in ("iv_fraction=0.5,trigger=malignancy", "iv_fraction=intravenous")}
    assert before["extrapolation"].dtype == bool and before["studies_informing"].notna().all()


@pytest.mark.parametrize("profiles, words", [
    (pd.DataFrame({"age_group": ["adult"]}), "column(s) 'age_group' are not covariates of this model"),
    (pd.DataFrame({"trigger": ["sepsis"]}), "row 0, column 'trigger': 'sepsis' is not a level of trigger"),
    (pd.DataFrame({"iv_fraction": [1.5]}), "row 0, column 'iv_fraction': 1.5 is not a share of IV patients"),
    (pd.DataFrame({"trigger": ["other", "other"]}), "two rows have the same label"),
    (pd.DataFrame(), "give a non-empty pandas DataFrame"),
])
def test_bad_profiles_are_refused_with_row_and_column(result, profiles, words):
    with pytest.raises(hm.InputError, match=None) as err:
        result.predict(profiles)
    assert words in str(err.value)


def test_other_tables_than_those_fitted_are_refused(result, data_copy):
    from conftest import edit

    edit(data_copy / "studies.csv", "Rajasekaran", "Rajasekaran S")
    with pytest.raises(hm.InputError, match="not those this result was fitted to"):
        result.predict(pd.DataFrame({"trigger": ["other"]}), data=data_copy)
