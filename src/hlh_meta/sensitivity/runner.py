"""Running variants and judging whether conclusions hold.

Variants that keep the model structure (same-family priors, study weights, counts,
correlation r) reuse the compiled model: only data change. A variant that changes the
structure (another prior family, a common-effect model, another partition) compiles once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from ..data import Dataset, load_dataset
from ..errors import DataError
from ..models.posterior import diagnostics_of
from ..spec import Spec, load_spec
from .variants import Variant, expand_variants

COLUMNS = ["variant", "family", "quantity", "label", "mean", "median", "q2.5", "q97.5",
           "diagnostics_passed", "diagnostics_problems", "note"]


def _quantities(spec: Spec, ds: Dataset, variant: Variant, idata=None) -> pd.DataFrame:
    """The variant's summary rows; ``idata``: its fit when the caller has it already."""
    vspec = variant.spec(spec)
    seed = spec.get("sampling", "seed")
    if spec.kind == "mortality":
        from ..analyses.mortality import derived_mortality, fit_mortality

        if idata is None:
            idata = fit_mortality(ds, vspec, soft_exclude=variant.soft_exclude, counts=variant.counts)
        d = derived_mortality(idata, seed=seed)
        d = d[d["quantity"].str.contains("typical") | d["quantity"].str.startswith("tau")]
        out = d.rename(columns={"profile": "label"})
    else:
        from ..analyses.biomarkers import biomarker_frame, derived_biomarkers, fit_biomarkers

        used, _ = biomarker_frame(ds, vspec)
        if idata is None:
            idata = fit_biomarkers(ds, vspec, soft_exclude=variant.soft_exclude, used=used)
        left = used[~used["study_id"].isin(variant.soft_exclude)]
        d = derived_biomarkers(idata, left, seed=seed)
        d = d[d["quantity"].isin(["pooled percent reduction"]) | d["quantity"].str.startswith("tau")].copy()
        empty = ~d["biomarker"].isin(set(left["biomarker"]))
        d.loc[empty, ["mean", "median", "q2.5", "q97.5"]] = np.nan
        out = d.rename(columns={"biomarker": "label"})
        out["note"] = np.where(empty, "not estimable: no study of this biomarker left (posterior = prior)", "")
    diag = diagnostics_of(idata)
    if "note" not in out:
        out["note"] = ""
    return out.assign(variant=variant.name, family=variant.family, diagnostics_passed=diag.passed,
                      diagnostics_problems="; ".join(diag.problems))


def _note_row(v: Variant, note: str) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v.name, "family": v.family, "quantity": "", "label": "",
                          "diagnostics_passed": np.nan, "diagnostics_problems": "", "note": note}])


def _run_one(spec: Spec, ds: Dataset, v: Variant, idata=None) -> pd.DataFrame:
    t = time.perf_counter()
    if v.skip:
        return _note_row(v, f"not run: {v.skip}").assign(seconds=0.0)
    try:
        q = _quantities(spec, ds, v, idata)
    except (ValueError, DataError) as exc:
        if v.family == "primary":
            raise
        q = _note_row(v, f"not estimable: {str(exc).splitlines()[-1].strip(' -')}")
    return q.assign(seconds=round(time.perf_counter() - t, 3))


def run_group(spec: Spec, ds: Dataset, variants: list[Variant], fitted: dict | None = None) -> list[pd.DataFrame]:
    """Run variants of one model structure in order (one worker compiles the structure once).
    ``fitted``: InferenceData already at hand, by variant name (not fitted again)."""
    return [_run_one(spec, ds, v, (fitted or {}).get(v.name)) for v in variants]


def run_sensitivity(spec: Spec | str, ds: Dataset | None = None,
                    progress: Callable[[int, int, str], None] | None = None,
                    executor: str = "processes", workers: int | None = None, scheduler=None,
                    alongside: Callable[[], object] | None = None) -> pd.DataFrame:
    """Primary analysis and every declared variant: one row per variant and quantity.

    Variants are checked (names, studies, families) before any sampling. A variant that
    leaves nothing to fit is kept as a row saying so. ``executor``: ``"serial"``,
    ``"processes"`` (local cores: the primary analysis's group runs in this process, the
    others in ``workers`` worker processes; by default one per ``chains`` cores beyond the
    first ``chains``, as each fit samples its chains in parallel, so none on a small
    machine, where every group runs here in turn) or ``"dask"`` (``scheduler`` = address of a Dask
    distributed scheduler, or a ``distributed.Client``). Variants are grouped by model
    structure and each group runs in one worker, so no structure is compiled twice in a
    worker; the same seeds give the same numbers whichever executor runs them.
    ``alongside`` (optional) runs in this process while the workers start on their groups;
    ``hlh-meta sensitivity`` runs the primary analysis there. If it returns the primary
    analysis's InferenceData, the primary variant uses it instead of fitting it again
    (with the serial and local-process executors).
    """
    from .executors import run_groups

    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    ds = load_dataset() if ds is None else ds
    variants = [Variant("primary", "primary")] + expand_variants(ds, spec)
    frames = run_groups(spec, ds, variants, executor=executor, workers=workers, scheduler=scheduler, progress=progress,
                        alongside=alongside)
    return pd.concat(frames, ignore_index=True).reindex(columns=COLUMNS + ["seconds"])


def robustness(sens: pd.DataFrame) -> pd.DataFrame:
    """Per quantity: is every variant's median inside the primary 95% interval, and which variant moves it most."""
    rows = []
    primary = sens[sens["variant"] == "primary"]
    others = sens[(sens["variant"] != "primary") & sens["median"].notna()]
    for _, p in primary.iterrows():
        same = others[(others["quantity"] == p["quantity"]) & (others["label"] == p["label"])]
        if same.empty:
            continue
        shift = (same["median"] - p["median"]).abs()
        worst = same.loc[shift.idxmax()]
        outside = same[(same["median"] < p["q2.5"]) | (same["median"] > p["q97.5"])]
        robust = outside.empty
        what = f"{p['quantity']}{' — ' + p['label'] if p['label'] else ''}"
        sentence = (f"{what}: {'robust' if robust else 'NOT robust'} — primary median {p['median']:.2f} "
                    f"(95% interval {p['q2.5']:.2f} to {p['q97.5']:.2f}); across {len(same)} variants the median "
                    f"moves most under '{worst['variant']}' (to {worst['median']:.2f})"
                    + ("" if robust else f"; {len(outside)} variant(s) fall outside the primary interval") + ".")
        rows.append({"quantity": p["quantity"], "label": p["label"], "primary_median": p["median"], "robust": robust,
                     "most_influential_variant": worst["variant"], "its_median": worst["median"],
                     "variants_outside_primary_interval": len(outside), "sentence": sentence})
    return pd.DataFrame(rows)
