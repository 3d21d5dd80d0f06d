"""The diagnostics gate: R-hat, bulk and tail ESS, divergences (arviz computes them)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import arviz as az
import numpy as np

#: thresholds every fit is held to
GATE = {"r_hat_max": 1.01, "ess_bulk_min": 400, "ess_tail_min": 400, "divergences_max": 0}


@dataclass
class Diagnostics:
    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    attempts: int = 1
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed})

    @classmethod
    def from_json(cls, text: str) -> "Diagnostics":
        data = json.loads(text)
        data.pop("passed", None)
        return cls(**data)


def check(idata: az.InferenceData, var_names: list[str], attempts: int = 1) -> Diagnostics:
    """Worst R-hat and ESS over ``var_names`` and the number of divergent transitions."""
    post = idata.posterior[var_names]
    rhat = float(np.nanmax(az.rhat(post).to_array().values))
    ess_b = float(np.nanmin(az.ess(post, method="bulk").to_array().values))
    ess_t = float(np.nanmin(az.ess(post, method="tail").to_array().values))
    div = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    problems = []
    if not rhat <= GATE["r_hat_max"]:
        problems.append(f"R-hat {rhat:.3f} > {GATE['r_hat_max']}")
    if not ess_b >= GATE["ess_bulk_min"]:
        problems.append(f"bulk ESS {ess_b:.0f} < {GATE['ess_bulk_min']}")
    if not ess_t >= GATE["ess_tail_min"]:
        problems.append(f"tail ESS {ess_t:.0f} < {GATE['ess_tail_min']}")
    if div > GATE["divergences_max"]:
        problems.append(f"{div} divergent transitions")
    return Diagnostics(rhat, ess_b, ess_t, div, attempts, problems)
