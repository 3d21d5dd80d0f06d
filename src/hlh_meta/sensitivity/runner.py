"""Running variants: each variant's model inputs, grouped by model structure, fitted, summarised.

Variants whose inputs have the primary analysis's structure (same-family priors, study
weights, counts, correlation r) reuse its compiled model: only data change. A variant
that changes the structure (another prior family, a common-effect model, another
partition) compiles once for its whole group. Variants that can be computed from the
primary's draws are first reweighted (:func:`reweighted_or_refit`).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..analyses import Variant, analysis_for
from ..data import Dataset
from ..errors import InputError
from ..inference import GateWarning, ThinDataWarning
from ..models.engine import ModelInputs, fit_model
from ..models.posterior import diagnostics_of
from ..spec import Spec
from .reweight import reweight
from .robustness import unbounded_summary

COLUMNS = ["variant", "family", "quantity", "key", "label", "mean", "sd", "median", "q2.5", "q97.5", "P(<20%)",
           "P(<1)", "scale", "unbounded_median", "unbounded_sd", "unbounded_width", "n_studies", "method", "pareto_k",
           "ess", "mcse_mean", "diagnostics_passed", "diagnostics_problems", "note"]


@dataclass(frozen=True)
class Planned:
    """A variant with its model inputs, or why it cannot be fitted (``note``)."""

    variant: Variant
    inputs: ModelInputs | None = None
    note: str = ""
    #: a reweighting attempt that left the variant to a refit: its Pareto k, ESS and seconds
    tried: dict | None = None

    @property
    def key(self):
        return self.inputs.structure if self.inputs is not None else ("no fit", self.variant.name)


def plan(spec: Spec, ds: Dataset, variants: list[Variant]) -> list[Planned]:
    """Every variant's model inputs (their structure is the grouping key). A variant that
    leaves nothing to fit is kept with the reason; a broken primary analysis is an error."""
    analysis = analysis_for(spec)
    out = []
    for v in variants:
        if v.skip:
            out.append(Planned(v, note=f"not run: {v.skip}"))
            continue
        try:
            out.append(Planned(v, analysis.variant_inputs(ds, spec, v)))
        except InputError as exc:
            if v.family == "primary":
                raise
            out.append(Planned(v, note=f"not estimable: {str(exc).splitlines()[-1].strip(' -')}"))
    return out


def variant_settings(spec: Spec):
    """A variant's sampler settings: the spec's ``[sampling]`` with ``[sensitivity] draws`` and
    ``tune`` (fewer than the primary analysis: a variant is judged by how far its median moves
    in posterior SDs, which these draws measure to a few hundredths of an SD; the
    diagnostics gate holds every variant to the same ESS and R-hat)."""
    return analysis_for(spec).settings(spec, overrides_from="sensitivity", draws=spec.get("sensitivity", "draws"),
                                       tune=spec.get("sensitivity", "tune"))


def variant_rows(spec: Spec, v: Variant, idata) -> pd.DataFrame:
    """The variant's summary rows of the quantities the analysis type compares."""
    analysis = analysis_for(spec)
    rows = []
    for q in analysis.quantities(idata):
        if q.key not in analysis.robustness_keys:
            continue
        d = np.asarray(q.draws, dtype=float)
        row = {"id": str(q.id), "quantity": q.description, "key": q.key, "label": q.label, "n_studies": q.n_studies, "note": ""}
        if q.n_studies == 0:
            row["note"] = "not estimable: no study of this outcome left (posterior = prior)"
        else:
            qs = np.quantile(d, [0.025, 0.5, 0.975])
            row.update({"mean": d.mean(), "sd": d.std(ddof=1), "median": qs[1], "q2.5": qs[0], "q97.5": qs[2],
                        "scale": q.scale, **unbounded_summary(d, q.scale)})
            if q.scale == "percent":
                row["P(<20%)"] = float((d < 20).mean())
            if q.scale in ("odds ratio", "ratio of means"):
                row["P(<1)"] = float((d < 1).mean())
        rows.append(row)
    diag = diagnostics_of(idata)
    return pd.DataFrame(rows).assign(variant=v.name, family=v.family, diagnostics_passed=diag.passed,
                                     diagnostics_problems="; ".join(diag.problems))


def _note_row(v: Variant, note: str) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v.name, "family": v.family, "quantity": "", "key": "", "label": "",
                          "diagnostics_passed": np.nan, "diagnostics_problems": "", "note": note}])


def reweighted_or_refit(spec: Spec, item: Planned, base: tuple[ModelInputs, object]) -> pd.DataFrame | Planned:
    """The rows of a variant computed by reweighting the primary fit's draws (``base``: the
    primary analysis's model inputs and fit; :mod:`.reweight`), or, where the weights cannot
    be trusted or the variant cannot be reweighted, the planned variant with the attempt's
    Pareto k, ESS and seconds (``tried``), to be refitted by :func:`run_planned` in any process."""
    t = time.perf_counter()
    if item.inputs is None or item.variant.family == "primary" or item.tried is not None:
        return item
    tried = reweight(base[0], base[1], item.inputs, variant_settings(spec))
    how = {"pareto_k": tried.pareto_k, "ess": tried.ess}
    if tried.idata is None:
        return replace(item, tried={**how, "seconds": time.perf_counter() - t})
    rows = variant_rows(spec, item.variant, tried.idata).assign(method="reweighted", **how,
                                                               seconds=round(time.perf_counter() - t, 3))
    if "sd" in rows:     # Monte Carlo SE of a mean of weighted draws
        rows["mcse_mean"] = rows["sd"] / np.sqrt(how["ess"])
    return rows


def run_planned(spec: Spec, item: Planned, idata=None, base: tuple[ModelInputs, object] | None = None) -> pd.DataFrame:
    """Fit one planned variant (``idata``: its fit when the caller has it already) and summarise it.

    ``base``: the primary analysis's model inputs and fit; a variant of the same structure
    (or of the same parameters, :func:`.reweight.same_parameters`) is first computed by
    reweighting its draws (:func:`reweighted_or_refit`) and refitted only where the Pareto k
    of the weights is too high. The rows say which (``method``), with the k, the weights'
    effective sample size and, reweighted, the Monte Carlo SE of each mean (SD / sqrt(ESS)).
    A variant whose attempt was made elsewhere (``item.tried``) is refitted with its k and ESS."""
    t = time.perf_counter()
    inputs = item.inputs
    if inputs is None:
        return _note_row(item.variant, item.note).assign(seconds=0.0)
    earlier = (item.tried or {}).get("seconds", 0.0)      # an attempt made before this call
    if idata is None and base is not None:
        done = reweighted_or_refit(spec, item, base)
        if isinstance(done, pd.DataFrame):
            return done
        item = done
    tried = {k: v for k, v in (item.tried or {}).items() if k != "seconds"}
    how: dict[str, Any] = {"method": "refit", "pareto_k": np.nan, "ess": np.nan, **tried}
    if idata is None:
        primary = item.variant.family == "primary"
        settings = analysis_for(spec).settings(spec) if primary else variant_settings(spec)
        with warnings.catch_warnings():    # a variant's gate result and thin data are rows of the table
            warnings.simplefilter("ignore", GateWarning)
            warnings.simplefilter("ignore", ThinDataWarning)
            idata = fit_model(inputs, settings, extras=False)
    return variant_rows(spec, item.variant, idata).assign(**how, seconds=round(earlier + time.perf_counter() - t, 3))


def run_group(spec: Spec, items: list[Planned], fitted: dict | None = None,
              base: tuple[ModelInputs, object] | None = None) -> list[pd.DataFrame]:
    """Run planned variants of one model structure in order (the structure compiles once).
    ``fitted``: InferenceData already at hand, by variant name (not fitted again); ``base``:
    the primary analysis's inputs and fit, from which variants of its structure are reweighted."""
    return [run_planned(spec, it, (fitted or {}).get(it.variant.name), base) for it in items]
