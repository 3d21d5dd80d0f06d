"""Which patients the included strata hold (analyses/compositions.py): pairs of levels a
standardised profile creates that no stratum holds, a level's own strata, and contrasts
that compare studies only. On hand-made constant data: no sampling."""

from __future__ import annotations

import numpy as np
import xarray as xr

from hlh_meta.analyses.compositions import Compositions

NAN = np.nan


def _data(trigger, age, weight=None):
    """Rows of (study, n) with known shares of triggers (rest = rheumatological, malignancy)
    and age groups (rest = paediatric, adult); NaN rows are unknown."""
    studies = ["a", "a", "b", "c"]
    n = [10.0, 5.0, 20.0, 8.0]
    return xr.Dataset({
        "weight": ("row", np.ones(4) if weight is None else np.asarray(weight, float)),
        "total": ("row", n), "row_study": ("row", studies),
        "known_shares_trigger": (("row", "trigger_category"), np.asarray(trigger, float)),
        "known_shares_age_group": (("row", "age_group_category"), np.asarray(age, float)),
    }, coords={"trigger_category": ["trigger[rest]", "trigger[malignancy]"],
               "age_group_category": ["age_group[rest]", "age_group[adult]"]})


# study a: children, one rheumatological and one malignancy stratum; b: adults with malignancy;
# c: adults of unknown trigger
TRIGGER = [[1, 0], [0, 1], [0, 1], [NAN, NAN]]
AGE = [[1, 0], [1, 0], [0, 1], [0, 1]]
REFS = {"trigger": "rheumatological", "age_group": "paediatric"}


def test_a_profile_that_pairs_levels_no_stratum_holds():
    comp = Compositions(_data(TRIGGER, AGE), REFS)
    # adults: the rheumatological children's copies become adult rheumatological patients, whom no stratum holds
    pairs, share = comp.unobserved("age_group[adult]")
    assert pairs == ["adult × rheumatological"]
    assert share == 10 / 43
    # malignancy: held in children (a) and adults (b); nothing unobserved
    assert comp.unobserved("trigger[malignancy]") == ([], 0.0)
    # rheumatological: adults (b and c) are paired with it; c's trigger is unknown but its age is known
    pairs, share = comp.unobserved("trigger[rest]")
    assert pairs == ["rheumatological × adult"] and share == 28 / 43


def test_a_left_out_row_holds_nothing():
    comp = Compositions(_data(TRIGGER, AGE, weight=[1, 1, 0, 1]), REFS)
    assert not comp.held("trigger[malignancy]", "age_group[adult]")
    assert comp.unobserved("trigger[malignancy]")[0] == ["malignancy × adult"]


def test_own_strata_and_contrasts_between_studies():
    comp = Compositions(_data(TRIGGER, AGE), REFS)
    assert comp.pure("age_group[adult]").tolist() == [False, False, True, True]
    assert comp.pure("trigger[malignancy]").tolist() == [False, True, True, False]
    # triggers differ within study a; age groups never do
    assert comp.within_study("trigger[malignancy]", "trigger[rest]")
    assert not comp.within_study("age_group[adult]", "age_group[rest]")
    assert comp.name("trigger[rest]") == "rheumatological" and comp.name("age_group[adult]") == "adult"


def test_studies_and_patients_informing_a_level_or_a_contrast():
    comp = Compositions(_data(TRIGGER, AGE), REFS)
    assert comp.informing(["trigger[malignancy]"]) == (2, 25, False)
    assert comp.informing(["trigger[malignancy]", "age_group[rest]"]) == (1, 5, False)
    assert comp.informing(["trigger[rest]", "age_group[adult]"]) == (0, 0, True)      # no adult rheumatological stratum
    assert comp.holding_any(["age_group[adult]", "age_group[rest]"]) == (3, 43)
