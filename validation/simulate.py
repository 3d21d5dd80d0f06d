"""Meta-analyses simulated from exactly the binomial model that ships, shaped like the bundled
mortality analysis (models/mortality.toml): shared by validation/sbc.py and
validation/interval_coverage.py.

Covariates as the mortality spec has them, every one a composition group of shares:
``trigger`` (4 levels: rheumatological, the reference and the group's rest, then infection,
malignancy, other as 3 share columns), ``age`` (paediatric, the rest; adult) and ``route``
(subcutaneous, the rest; intravenous) whose unknown share is one unknown per study
(``shared={"route": "study"}``). 7 studies, 12 strata (:data:`LAYOUT`): strata of one known
trigger, strata of unknown trigger mix (one with malignancy excluded by a composition rule),
one stratum of a known age mix, and the route share known for four studies and unknown for
three.

Parameters are drawn from the default priors under the exchangeable coding
(models/coding.py): the mean of the levels' log-odds m ~ N(0, 1.5); for each group its level
effects e ~ ZeroSumNormal(sigma_beta / sqrt(2)) (iid N(0, sigma_beta / sqrt(2)) less their
mean), sigma_beta = 1; mu = m + the sum of the reference levels' effects; each beta = the
level's effect - its reference's; tau ~ HalfNormal(1), u_s = tau z_s. Unknown shares are drawn
from the flat Dirichlet the model gives them (over the categories a rule allows). A stratum's
probability is the mixture p_r = sum_c w_rc expit(mu + a_c . beta + u_s) over the combinations
c of one category per group, w_rc the product of the stratum's shares of c's categories.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import expit

MU_SD, BETA_SD, TAU_SD = 1.5, 1.0, 1.0          # the default binomial priors (models/priors.py)

TRIGGERS = ["trigger[infection]", "trigger[malignancy]", "trigger[other]"]      # rest: rheumatological
AGE = ["age[adult]"]                                                           # rest: paediatric
ROUTE = ["route[iv]"]                                                          # rest: subcutaneous
COLUMNS = TRIGGERS + AGE + ROUTE
FRACTIONS = {"trigger": TRIGGERS, "age": AGE, "route": ROUTE}
LEVELS = {"trigger": 4, "age": 2, "route": 2}

#: (study, stratum, trigger: a category index 0-3 or "unknown", excluded trigger categories, adult share)
LAYOUT = [
    ("s0", "sjia", 0, (), 0.0),
    ("s0", "infection", 1, (), 0.0),
    ("s0", "other_diagnoses", "unknown", (2,), 0.0),       # the source says: no malignancy
    ("s1", "malignancy", 2, (), 1.0),
    ("s1", "rest", "unknown", (), 1.0),
    ("s2", "all", "unknown", (), 0.0),
    ("s3", "all", 3, (), 1.0),
    ("s4", "children", 0, (), 0.0),
    ("s4", "adults", 0, (), 1.0),
    ("s5", "all", 1, (), 0.4),                             # a known age mix
    ("s6", "infection", 1, (), 1.0),
    ("s6", "rest", "unknown", (), 1.0),
]
#: each study's share given IV anakinra (None: unknown, one unknown for the study's strata)
ROUTE_SHARE = {"s0": 0.0, "s1": None, "s2": None, "s3": 1.0, "s4": 0.5, "s5": 0.3, "s6": None}
STUDIES = sorted(ROUTE_SHARE)
LABELS = [f"{s}: {k}" for s, k, *_ in LAYOUT]
#: the stratum whose probability SBC ranks: an unknown trigger mix and an unknown route share
MIXED_ROW = "s2: all"
COMPOSITION = {"trigger": {f"{s}: {k}": {"exclude": [(["trigger[rest]"] + TRIGGERS)[c] for c in ex]}
                           for s, k, _, ex, _ in LAYOUT if ex}}
FIT_ARGS = {"events": "events", "total": "total", "study": "study", "label": "label", "covariates": COLUMNS,
            "fractions": FRACTIONS, "shared": {"route": "study"}, "composition": COMPOSITION}
#: a level's mortality as the mortality report gives it: infection trigger, the other
#: covariates as in the included strata (n-weighted), typical study (u = 0)
PROFILE = pd.DataFrame({c: [float(c == "trigger[infection]")] for c in TRIGGERS}, index=["infection trigger"])
PROFILE_LEVEL = ("trigger", 1)
OR_COLUMN = "trigger[infection]"


def zero_sum_normal(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    """A draw of PyMC's ZeroSumNormal(sigma) over n levels: iid N(0, sigma) less their mean."""
    x = rng.normal(0.0, sigma, n)
    return x - x.mean()


def draw(rng: np.random.Generator, n_range: tuple[int, int] = (3, 61)) -> tuple[pd.DataFrame, dict]:
    """One simulated data set (a frame for ``hlh_meta.fit_binomial(df, **FIT_ARGS)``) and its truth."""
    m = rng.normal(0.0, MU_SD)
    effects = {g: zero_sum_normal(rng, BETA_SD / np.sqrt(2.0), k) for g, k in LEVELS.items()}
    tau = abs(rng.normal(0.0, TAU_SD))
    z = rng.standard_normal(len(STUDIES))
    rows = len(LAYOUT)
    trig = np.zeros((rows, 4))
    age = np.zeros((rows, 2))
    route = np.zeros((rows, 2))
    iv_unknown = {s: rng.dirichlet(np.ones(2))[1] for s in STUDIES if ROUTE_SHARE[s] is None}
    shown = {c: np.zeros(rows) for c in COLUMNS}
    for r, (study, _, t, excluded, adult) in enumerate(LAYOUT):
        if t == "unknown":
            allowed = [c for c in range(4) if c not in excluded]
            trig[r, allowed] = rng.dirichlet(np.ones(len(allowed)))
            for c in TRIGGERS:
                shown[c][r] = np.nan
        else:
            trig[r, t] = 1.0
            for j, c in enumerate(TRIGGERS, 1):
                shown[c][r] = float(t == j)
        age[r] = [1 - adult, adult]
        shown["age[adult]"][r] = adult
        iv = ROUTE_SHARE[study]
        shown["route[iv]"][r] = np.nan if iv is None else iv
        iv = iv_unknown[study] if iv is None else iv
        route[r] = [1 - iv, iv]
    u = tau * z[[STUDIES.index(s) for s, *_ in LAYOUT]]
    n = rng.integers(*n_range, rows)
    p = np.array([mixture(m, effects, trig[r], age[r], route[r], u[r]) for r in range(rows)])
    events = rng.binomial(n, p)
    df = pd.DataFrame({"study": [s for s, *_ in LAYOUT], "label": LABELS, "events": events, "total": n, **shown})
    mu = m + sum(e[0] for e in effects.values())
    beta = {c: effects["trigger"][j] - effects["trigger"][0] for j, c in enumerate(TRIGGERS, 1)}
    beta["age[adult]"] = effects["age"][1] - effects["age"][0]
    beta["route[iv]"] = effects["route"][1] - effects["route"][0]
    weights = n / n.sum()
    g, level = PROFILE_LEVEL
    one = np.eye(4)[level]
    profile = float(sum(weights[r] * mixture(m, effects, one, age[r], route[r], 0.0) for r in range(rows)))
    truth = {"mu": mu, "beta": beta, "tau": tau, "p": dict(zip(LABELS, p)), "profile": profile,
             "m": m, "effects": effects, "z": dict(zip(STUDIES, z)),
             "shares": {"trigger": trig, "age": age, "route": route}}
    return df, truth


def mixture(m: float, effects: dict, trig: np.ndarray, age: np.ndarray, route: np.ndarray, u: float) -> float:
    """A stratum's probability: the share-weighted mean over the combinations of one trigger,
    one age group and one route of expit(m + their level effects + u)."""
    eta = (m + u + effects["trigger"][:, None, None] + effects["age"][None, :, None]
           + effects["route"][None, None, :])
    w = trig[:, None, None] * age[None, :, None] * route[None, None, :]
    return float((w * expit(eta)).sum())
