"""Reweighted sensitivity variants against long refits, on a bundled analysis (mortality by default).

For every variant of the spec (models/mortality.toml unless ``--spec``) that the sensitivity command computes by
reweighting the primary draws (sensitivity/reweight.py), the variant is also fitted twice:
as the command would refit it (``[sensitivity]`` draws and tuning) and as a reference with
many more draws (``--draws`` per chain, 4 chains). The record gives, for the headline
quantity, the median, SD and 95% interval limits of each, the reference's Monte Carlo SE of
each quantile (ArviZ), and the errors of the reweighted and the short refit against the
reference: reweighting is fit for purpose where its errors are of the size of those of the
refit it replaces.

Run:  PYTHONPATH=src .venv/bin/python validation/reweighting.py [--draws 5000] [--spec models/biomarkers.toml]
Writes validation/results/reweighting.md for the mortality analysis, reweighting_<name>.md
for another spec (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import records  # noqa: E402

STATS = ("median", "sd", "q2.5", "q97.5")


def _summary(draws: np.ndarray) -> dict[str, float]:
    q = np.quantile(draws, [0.025, 0.5, 0.975])
    return {"median": q[1], "sd": draws.std(ddof=1), "q2.5": q[0], "q97.5": q[2]}


def _mcse_sd(draws: np.ndarray) -> float:
    """Monte Carlo SE of the SD of (chain, draw) draws, by the delta method on the squared
    deviations and their effective sample size (ArviZ's own ``mcse(method="sd")`` fails on
    a plain array with numpy 2.4)."""
    sq = (draws - draws.mean()) ** 2
    return float(np.sqrt(sq.var(ddof=1) / az.ess(sq)) / (2.0 * np.sqrt(sq.mean())))


def _every_quantity(name: str, summaries: dict) -> str:
    """A table row over every quantity the variant reports, on the unbounded scale (log odds,
    log ratio, log tau): the largest shift of the median from the reference's, in the
    reference's SDs, and the range of SD / reference SD - 1, reweighted and refitted."""
    ref = summaries["reference"].dropna(subset=["unbounded_sd"])
    cells = []
    for how in ("reweighted", "refit"):
        got = summaries[how].loc[ref.index]
        shift = ((got["unbounded_median"] - ref["unbounded_median"]) / ref["unbounded_sd"]).abs().max()
        ratio = 100 * (got["unbounded_sd"] / ref["unbounded_sd"] - 1)
        cells += [f"{shift:.2f}", f"{ratio.min():+.0f}% to {ratio.max():+.0f}%"]
    return f"| {name} | {len(ref)} | " + " | ".join(cells) + " |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=5000, help="draws per chain of each reference fit")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--spec", default="models/mortality.toml", help="the bundled analysis whose variants are checked")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from hlh_meta.analyses import analysis_for, as_spec
    from hlh_meta.analyses.base import PRIMARY
    from hlh_meta.analyses.biomarkers import display
    from hlh_meta.data import as_dataset
    from hlh_meta.models.engine import fit_model
    from hlh_meta.sensitivity.runner import plan, run_planned, variant_rows, variant_settings

    t0 = time.perf_counter()
    spec = as_spec(args.spec)
    if spec.kind not in ("mortality", "biomarkers"):
        ap.error(f"{args.spec} is a {spec.kind} analysis; the record is written for mortality and biomarkers")
    ds = as_dataset(None)
    analysis = analysis_for(spec)
    spec = analysis.resolve(ds, spec)
    planned = plan(spec, ds, [PRIMARY] + analysis.expand_variants(ds, spec))
    primary = planned[0]
    engine = primary.inputs.structure.engine
    digest = records.model_source_digest(engine)
    record = "reweighting.md" if spec.kind == "mortality" else f"reweighting_{spec.name}.md"
    headline = ""
    base = (primary.inputs, fit_model(primary.inputs, analysis.settings(spec), extras=False))
    short = variant_settings(spec)
    long = dataclasses.replace(short, draws=args.draws, tune=1000)
    lines, wide = [], []
    for item in planned[1:]:
        if item.inputs is None:
            continue
        rows = run_planned(spec, item, None, base)
        if rows["method"].iloc[0] != "reweighted":
            continue
        key = rows["key"].iloc[0]
        headline = headline or ("percent" if spec.kind == "mortality" else
                                f"{display(rows['label'].iloc[0])}, {rows['quantity'].iloc[0]}")
        got = {s: float(rows[s].iloc[0]) for s in STATS}
        fits, summaries = {}, {"reweighted": rows.set_index("id")}
        for name, settings in (("refit", short), ("reference", long)):
            idata = fit_model(item.inputs, settings, extras=False)
            q = next(q for q in analysis.quantities(idata) if q.key == key)
            fits[name] = np.asarray(q.draws, dtype=float).reshape(idata.posterior.sizes["chain"], -1)
            summaries[name] = variant_rows(spec, item.variant, idata).set_index("id")
        wide.append(_every_quantity(item.variant.name, summaries))
        ref = _summary(fits["reference"].reshape(-1))
        refit = _summary(fits["refit"].reshape(-1))
        se = {s: float(az.mcse(fits["reference"], method="quantile", prob=p))
              for s, p in (("median", 0.5), ("q2.5", 0.025), ("q97.5", 0.975))}
        se["sd"] = _mcse_sd(fits["reference"])
        cells = " | ".join(f"{ref[s]:.2f} ± {se[s]:.2f} | {got[s] - ref[s]:+.2f} | {refit[s] - ref[s]:+.2f}"
                           for s in STATS)
        lines.append(f"| {item.variant.name} | {rows['pareto_k'].iloc[0]:.2f} | {rows['ess'].iloc[0]:.0f} | {cells} |")
        print(lines[-1], flush=True)
    if records.model_source_digest(engine) != digest:
        print(f"the {engine} model sources changed during the run: no record written", file=sys.stderr)
        return 2
    reported = "mortality of each profile, odds ratios, tau" if spec.kind == "mortality" else \
        "each one sensitivity.csv compares: per biomarker its percent reduction and tau"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    head = "| variant | k | ESS | " + " | ".join(f"{s} reference | {s} reweighted − ref | {s} refit − ref"
                                                for s in STATS) + " |"
    text = "\n".join([
        "# Reweighted sensitivity variants against long refits",
        "",
        f"Bundled {spec.name} analysis (`{args.spec}`), headline quantity ({headline}), at commit {commit}. "
        f"Each variant the sensitivity command reweights from the primary draws (Pareto k and the weights' "
        f"effective sample size as its row gives them) against a reference fit of 4 × {args.draws} draws "
        f"(± its Monte Carlo SE: ArviZ's for the quantiles, the delta method for the SD) and against the refit it replaces "
        f"({short.chains} × {short.draws} draws, {short.tune} tuning steps).",
        "",
        head,
        "|" + "---|" * (3 + 3 * len(STATS)),
        *lines,
        "",
        f"Every quantity the variant reports ({reported}), on the "
        "unbounded scale (log odds, log ratio, log tau): the largest shift of a median from the "
        "reference's, in the reference's posterior SDs, and the range of each SD's relative "
        "difference from the reference's.",
        "",
        "| variant | quantities | worst median shift (SDs), reweighted | SD vs reference, reweighted "
        "| worst median shift (SDs), refit | SD vs reference, refit |",
        "|---|---|---|---|---|---|",
        *wide,
        "",
        f"Command: `PYTHONPATH=src .venv/bin/python validation/reweighting.py --draws {args.draws}"
        f"{'' if record == 'reweighting.md' else ' --spec ' + args.spec}` "
        f"({(time.perf_counter() - t0) / 60:.1f} min).",
        "",
        records.digest_line(engine),
        "",
    ])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / record).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
