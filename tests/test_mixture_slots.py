"""The mixture over each row's possible combinations of categories (``mixture_slots``) is
the mixture over every combination: the combinations it leaves out have weight 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytensor.tensor as pt

from hlh_meta.models.binomial import _Predictor, known_shares, mixture_slots, prepare_binomial

# known shares with zeros (rows a, b), a partial mix (d), unknown shares of two groups (c, and
# b's second group), and an unknown whose source excludes a category (c's first group)
ROWS = pd.DataFrame({"study": ["a", "a", "b", "c", "d"], "events": [1, 3, 2, 5, 0], "total": [6, 9, 8, 12, 4],
                     "g[x]": [1.0, 0.0, 0.0, np.nan, 0.5], "g[y]": [0.0, 0.0, 1.0, np.nan, 0.25],
                     "h": [np.nan, 1.0, np.nan, np.nan, 1.0]})
COMPOSITION = {"g": {"3": {"exclude": ["g[y]"]}}}


def _shares(design, rng) -> dict[str, np.ndarray]:
    """Each group's shares per row: the known ones, and for an unknown a random draw over the
    categories its parts allow."""
    shares = known_shares(design, design.X)
    for g, lat in design.latent.items():
        for row, unit in zip(lat.rows, lat.units):
            allowed = np.zeros(shares[g].shape[1], dtype=bool)
            for part, owner in enumerate(lat.part_unit):
                if owner == unit:
                    allowed |= lat.allowed[part]
            shares[g][row] = np.where(allowed, rng.dirichlet(np.ones(len(allowed))), 0.0)
            shares[g][row] /= shares[g][row].sum()
    return shares


def _p(design, shares, beta, base, slots=None) -> np.ndarray:
    predictor = _Predictor(design, pt.as_tensor(beta), pt.as_tensor(0.0), "mixture")
    tensors = {g: pt.as_tensor(s) for g, s in shares.items()}
    given = None if slots is None else (pt.as_tensor(slots["mixture_slot"]), pt.as_tensor(slots["mixture_valid"]))
    return predictor.probability(pt.as_tensor(base), tensors, slots=given)[2].eval()


def test_the_rows_possible_combinations_give_the_full_mixture():
    inputs = prepare_binomial(ROWS, covariates=["g[x]", "g[y]", "h"], fractions={"g": ["g[x]", "g[y]"], "h": ["h"]},
                              composition=COMPOSITION)
    design = inputs.design
    slots = {k: inputs.data[k] for k in ("mixture_slot", "mixture_valid")}
    full = slots["mixture_slot"].shape[1]
    assert full < 6 and inputs.structure.mixture_slots == full       # fewer than the 3 x 2 combinations
    assert slots["mixture_valid"][0].sum() == 2                      # row a: g known (x), h unknown (2 levels)
    rng = np.random.default_rng(4)
    for _ in range(5):
        shares = _shares(design, rng)
        beta, base = rng.normal(size=len(design.names)), rng.normal(size=len(ROWS))
        np.testing.assert_allclose(_p(design, shares, beta, base, slots), _p(design, shares, beta, base), rtol=1e-13)
    # a row that loses one of its combinations no longer gives the full mixture
    dropped = {"mixture_slot": slots["mixture_slot"], "mixture_valid": slots["mixture_valid"].copy()}
    dropped["mixture_valid"][3, 0] = 0.0
    assert not np.allclose(_p(design, shares, beta, base, dropped), _p(design, shares, beta, base))


def test_slots_are_the_data_of_the_rows_given():
    """Known shares that change (a data swap into the same structure) change the slots, not the
    compiled model: the slots are computed from the rows' own shares."""
    inputs = prepare_binomial(ROWS, covariates=["g[x]", "g[y]", "h"], fractions={"g": ["g[x]", "g[y]"], "h": ["h"]})
    design = inputs.design
    other = known_shares(design, design.X)
    other["g"][0] = [0.0, 0.0, 1.0]                                    # row a: y instead of x
    changed = mixture_slots(design, other)
    assert not np.array_equal(changed["mixture_slot"], inputs.data["mixture_slot"])
    assert changed["mixture_slot"].shape == inputs.data["mixture_slot"].shape
