"""Peer check of the binomial mixture model as shipped against a hand-written Stan model (rstan).

Run:  PYTHONPATH=src .venv/bin/python validation/peer_stan.py [--draws 3000] [--out validation/results]
Needs R with rstan (Debian: apt-get install r-base-core r-cran-rstan r-cran-bh libboost-dev).
Never a dependency of the tests.

The data: the bundled mortality analysis (models/mortality.toml) as it ships: its strata,
covariates (trigger, age group, IV share, each a composition group), exchangeable coding,
mixture likelihood, unknown trigger mixes with what the sources say of them (excluded
triggers, known parts) and one unknown IV share per study. hlh-meta builds the model's inputs
(validation is of the model, not of the data preparation); validation/peer_stan/mixture.stan
writes the same prior and likelihood out independently (its own sum-to-zero construction,
Dirichlet unknowns as normalised exponentials instead of stick-breaking) and rstan samples it.
Both: 4 chains x DRAWS draws after 1000 warm-up. For mu, tau, every beta and every stratum's
probability p the posterior mean, SD and 2.5/50/97.5% quantiles are compared; z = the
difference over the combined Monte Carlo standard error (ArviZ's mcse of each tool's draws:
of the mean, of the quantile; for the SD the delta-method SE from the mcse of the mean of
the squared deviations). Writes validation/results/peer_stan.md; exit status 1 if any |z|
exceeds 4.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import records  # noqa: E402

STATS = ("mean", "sd", "q2.5", "q50", "q97.5")


def mortality_inputs():
    """The bundled mortality analysis's model inputs, as `hlh-meta run models/mortality.toml` builds them."""
    from hlh_meta import load_dataset
    from hlh_meta.analyses import analysis_for, load_spec
    from hlh_meta.spec import bundled_specs_dir

    ds = load_dataset()
    spec = load_spec(bundled_specs_dir() / "mortality.toml")
    analysis = analysis_for(spec)
    spec = analysis.resolve(ds, spec)
    used, _ = analysis.frame(ds, spec)
    return analysis.inputs(ds, spec, used), spec


def stan_data(inp) -> dict:
    """The model inputs as the Stan model's data."""
    from hlh_meta.models.binomial import known_shares

    design, d = inp.design, inp.data
    assert not design.levels and not design.numeric, "the peer model handles composition groups only"
    assert np.all(d["weight"] == 1) and np.all(d["beta_mask"] == 1)
    assert inp.structure.coding == "exchangeable" and inp.structure.likelihood == "mixture"
    pri = inp.priors
    assert (pri["mu"]["dist"], pri["beta"]["dist"], pri["tau"]["dist"]) == ("Normal", "Normal", "HalfNormal")
    assert pri["mu"]["mu"] == 0 and pri["beta"]["mu"] == 0
    groups = list(design.groups)
    sizes = [len(design.groups[g]) + 1 for g in groups]
    start = np.cumsum([0] + sizes[:-1])
    rows = len(inp.row_labels)
    known = np.hstack([known_shares(design, design.X)[g] for g in groups])
    row_unit = np.zeros((rows, len(groups)), dtype=int)
    part_unit, part_weight, part_start, part_len, slot_level = [], [], [], [], []
    offset = 0
    for gi, g in enumerate(groups):
        lat = design.latent[g]
        row_unit[lat.rows, gi] = offset + lat.units + 1
        for q in range(len(lat.weight)):
            part_unit.append(offset + int(lat.part_unit[q]) + 1)
            part_weight.append(float(lat.weight[q]))
            levels = [int(start[gi]) + k + 1 for k in np.flatnonzero(lat.allowed[q])]
            part_start.append(len(slot_level) + 1)
            part_len.append(len(levels))
            slot_level += levels
        offset += lat.n_units
    combos = np.array(list(itertools.product(*[range(k) for k in sizes]))) + start[None, :] + 1
    column_level, column_reference = np.zeros(len(design.names), int), np.zeros(len(design.names), int)
    for gi, g in enumerate(groups):
        for i, j in enumerate(design.groups[g]):
            column_level[j], column_reference[j] = start[gi] + i + 2, start[gi] + 1
    return {"R": rows, "S": len(inp.studies), "G": len(groups), "L": int(sum(sizes)),
            "level_start": start + 1, "level_len": np.array(sizes), "C": len(combos), "combo": combos,
            "events": d["events"], "total": d["total"], "study": np.asarray(inp.study_index) + 1, "known": known,
            "U": offset, "row_unit": row_unit, "P": len(part_unit), "part_unit": np.array(part_unit),
            "part_weight": np.array(part_weight), "part_start": np.array(part_start), "part_len": np.array(part_len),
            "N_slot": len(slot_level), "slot_level": np.array(slot_level), "J": len(design.names),
            "column_level": column_level, "column_reference": column_reference,
            "mu_sd": pri["mu"]["sigma"], "beta_sd": pri["beta"]["sigma"], "tau_sd": pri["tau"]["sigma"]}


def rdump(data: dict) -> str:
    """R dump format (rstan::read_rdump); arrays column-major."""
    out = []
    for name, value in data.items():
        a = np.asarray(value)
        if a.ndim == 0:
            out.append(f"{name} <- {a.item()!r}")
            continue
        body = "c(" + ", ".join(repr(x.item()) for x in a.ravel(order="F")) + ")"
        out.append(f"{name} <- {body}" if a.ndim == 1 else
                   f"{name} <- structure({body}, .Dim = c({', '.join(map(str, a.shape))}))")
    return "\n".join(out) + "\n"


def _mcse(d: np.ndarray, **options) -> float:
    return float(az.mcse(az.convert_to_dataset({"x": d}), **options)["x"])


def summaries(draws: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per quantity (draws: chains x draws) each statistic and its Monte Carlo SE."""
    rows = {}
    for name, d in draws.items():
        flat = d.ravel()
        rec = {"mean": flat.mean(), "sd": flat.std(), "se_mean": _mcse(d, method="mean")}
        dev = (d - flat.mean()) ** 2
        rec["se_sd"] = _mcse(dev, method="mean") / (2 * flat.std())
        for q in (2.5, 50, 97.5):
            rec[f"q{q:g}"] = np.quantile(flat, q / 100)
            rec[f"se_q{q:g}"] = _mcse(d, method="quantile", prob=q / 100)
        rows[name] = rec
    return pd.DataFrame(rows).T


def ours(inp, draws: int) -> tuple[dict[str, np.ndarray], str]:
    from hlh_meta.inference import SamplerSettings
    from hlh_meta.models.engine import fit_model

    idata = fit_model(inp, SamplerSettings(draws=draws, tune=1000, seed=1))
    post = idata.posterior
    out = {"mu": post["mu"].values, "tau": post["tau"].values}
    for c in inp.design.names:
        out[f"beta[{c}]"] = post["beta"].sel(covariate=c).values
    for r in inp.row_labels:
        out[f"p[{r}]"] = post["p"].sel(row=r).values
    import hlh_meta as hm

    diag = hm.diagnostics(idata)
    return out, f"gate {'passed' if diag.passed else 'FAILED: ' + '; '.join(diag.problems)} (attempts {diag.attempts})"


def theirs(inp, data: dict, draws: int) -> tuple[dict[str, np.ndarray], str]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "data.R", Path(tmp) / "draws.csv"
        src.write_text(rdump(data), encoding="utf-8")
        res = subprocess.run(["Rscript", str(HERE / "peer_stan" / "run.R"), str(HERE / "peer_stan" / "mixture.stan"),
                              str(src), str(dst), "1", str(draws)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(res.stdout + res.stderr)
        frame = pd.read_csv(dst)
        note = [ln for ln in res.stderr.splitlines() if ln.startswith("divergences")]
    def col(name):
        return frame[name].to_numpy().reshape(4, draws)        # rstan stacks the chains in order
    out = {"mu": col("mu"), "tau": col("tau")}
    for j, c in enumerate(inp.design.names, 1):
        out[f"beta[{c}]"] = col(f"beta[{j}]")
    for i, r in enumerate(inp.row_labels, 1):
        out[f"p[{r}]"] = col(f"p[{i}]")
    return out, (note[-1] if note else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    inp, _ = mortality_inputs()
    data = stan_data(inp)
    if shutil.which("Rscript") is None:
        print("Rscript not found: install r-base-core r-cran-rstan r-cran-bh libboost-dev to run this check")
        return 2
    a_draws, a_note = ours(inp, args.draws)
    b_draws, b_note = theirs(inp, data, args.draws)
    a, b = summaries(a_draws), summaries(b_draws)
    lines = ["# hlh-meta against a hand-written Stan model (rstan): the mortality mixture model", "",
             records.digest_line("binomial"), "",
             f"Produced by `PYTHONPATH=src .venv/bin/python validation/peer_stan.py --draws {args.draws}`. The bundled "
             f"mortality analysis as it ships ({len(inp.row_labels)} strata, {len(inp.studies)} studies; covariates "
             f"{', '.join(inp.design.names)}; exchangeable coding, mixture likelihood, unknown trigger mixes with the "
             "sources' rules, one unknown IV share per study); model in validation/peer_stan/mixture.stan. Both "
             f"tools 4 chains x {args.draws} draws after 1000 warm-up (hlh-meta: nutpie, target acceptance 0.9, "
             f"{a_note}; rstan: NUTS, adapt_delta 0.95, {b_note}). z = difference / combined Monte Carlo SE.", "",
             "| quantity | statistic | hlh-meta | Stan | z |", "|---|---|---|---|---|"]
    worst = 0.0
    for name in a.index:
        for stat in STATS:
            se = "se_mean" if stat == "mean" else "se_sd" if stat == "sd" else f"se_{stat}"
            z = (a.at[name, stat] - b.at[name, stat]) / np.hypot(a.at[name, se], b.at[name, se])
            worst = max(worst, abs(z))
            lines.append(f"| {name} | {stat} | {a.at[name, stat]:.4f} | {b.at[name, stat]:.4f} | {z:+.2f} |")
    n = len(a.index) * len(STATS)
    lines += ["", f"Largest |z| over the {n} comparisons: {worst:.2f} (under agreement about 95% of them lie within "
                  "±2 and the largest of this many is rarely above 3.5)."]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peer_stan.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0 if worst <= 4 else 1


if __name__ == "__main__":
    sys.exit(main())
