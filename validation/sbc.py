"""Simulation-based calibration (Talts et al. 2018) of the binomial and normal engines.

Run:  .venv/bin/python validation/sbc.py [--reps 200] [--out validation/results]
For each replication: parameters drawn from the priors, a meta-analysis of 6 studies with
one covariate simulated from them (for the binomial engine also with the covariate a share
that two studies do not report), the model fitted (4 chains x 500 draws, compiled once
and reused), and the rank of each true parameter among 99 thinned posterior draws. If the
engine is calibrated the ranks are uniform on 0..99; a chi-square test over 10 bins
checks this. Writes rank histograms (PNG) and a summary (Markdown) to --out. Exit status
1 if any p-value is below 0.001 (a clear failure, not multiple-testing noise).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

K, L, BINS = 6, 99, 10


def _ranks(idata, truth: dict) -> dict:
    out = {}
    post = idata.posterior
    for name, value in truth.items():
        d = post["beta"].sel(covariate="x") if name == "beta" else post[name]
        d = d.values.ravel()
        idx = np.linspace(0, d.size - 1, L).round().astype(int)
        out[name] = int((d[idx] < value).sum())
    return out


def binomial_rep(rng: np.random.Generator, seed: int) -> dict:
    import hlh_meta as hm

    mu, beta, tau = rng.normal(0, 1.5), rng.normal(0, 1), abs(rng.normal(0, 1))
    x = np.array([0, 0, 0, 1, 1, 1.0])
    n = rng.integers(3, 91, K)
    p = 1 / (1 + np.exp(-(mu + beta * x + tau * rng.standard_normal(K))))
    df = pd.DataFrame({"study": [f"s{i}" for i in range(K)], "events": rng.binomial(n, p), "total": n, "x": x})
    idata = hm.fit_binomial(df, events="events", total="total", study="study", covariates=["x"], draws=500,
                            tune=500, seed=seed)
    return _ranks(idata, {"mu": mu, "beta": beta, "tau": tau})


def normal_rep(rng: np.random.Generator, seed: int) -> dict:
    import hlh_meta as hm

    mu, beta, tau = rng.normal(0, 1), rng.normal(0, 1), abs(rng.normal(0, 0.5))
    x = rng.uniform(0, 1, K)
    se = rng.uniform(0.1, 0.5, K)
    y = rng.normal(mu + beta * x + tau * rng.standard_normal(K), se)
    df = pd.DataFrame({"study": [f"s{i}" for i in range(K)], "yi": y, "sei": se, "x": x})
    idata = hm.fit_normal(df, estimate="yi", std_err="sei", study="study", covariates=["x"], draws=500, tune=500,
                          seed=seed)
    return _ranks(idata, {"mu": mu, "beta": beta, "tau": tau})


def binomial_shares_rep(rng: np.random.Generator, seed: int) -> dict:
    """As ``binomial_rep``, but the covariate is a share (e.g. of patients given IV) that two
    of the six studies do not report: their true shares are drawn from the flat prior the
    model gives unknown shares, and the model must treat them as unknowns."""
    import hlh_meta as hm

    mu, beta, tau = rng.normal(0, 1.5), rng.normal(0, 1), abs(rng.normal(0, 1))
    x = np.array([0.0, 0.2, 0.5, 0.9, rng.uniform(), rng.uniform()])
    n = rng.integers(3, 91, K)
    p = 1 / (1 + np.exp(-(mu + beta * x + tau * rng.standard_normal(K))))
    shown = x.copy()
    shown[4:] = np.nan
    df = pd.DataFrame({"study": [f"s{i}" for i in range(K)], "events": rng.binomial(n, p), "total": n, "x": shown})
    idata = hm.fit_binomial(df, events="events", total="total", study="study", covariates=["x"],
                            fractions={"share": ["x"]}, draws=500, tune=500, seed=seed)
    return _ranks(idata, {"mu": mu, "beta": beta, "tau": tau})


def uniformity(ranks: np.ndarray) -> float:
    counts = np.histogram(ranks, bins=BINS, range=(0, L + 1))[0]
    return float(stats.chisquare(counts).pvalue)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    lines = [f"# Simulation-based calibration ({args.reps} replications per engine)", "",
             "| engine | parameter | chi-square p (10 bins) |", "|---|---|---|"]
    worst = 1.0
    for engine, rep in (("binomial", binomial_rep), ("binomial_unknown_shares", binomial_shares_rep),
                        ("normal", normal_rep)):
        rng = np.random.default_rng(2018)
        rows = pd.DataFrame([rep(rng, seed) for seed in range(args.reps)])
        rows.to_csv(args.out / f"sbc_{engine}_ranks.csv", index=False)
        fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
        for ax, name in zip(axes, ("mu", "beta", "tau")):
            p = uniformity(rows[name].to_numpy())
            worst = min(worst, p)
            lines.append(f"| {engine} | {name} | {p:.3f} |")
            ax.hist(rows[name], bins=BINS, range=(0, L + 1), color="#1f77b4", edgecolor="white")
            expected = args.reps / BINS
            band = stats.binom.ppf([0.005, 0.995], args.reps, 1 / BINS)
            ax.axhspan(band[0], band[1], color="#dddddd", zorder=0)
            ax.axhline(expected, color="#444444", lw=1)
            ax.set_title(f"{engine}: {name} (chi-square p = {p:.2f})", fontsize=9)
            ax.set_xlabel(f"rank of the true value among {L} posterior draws")
        axes[0].set_ylabel("replications")
        fig.suptitle("SBC rank histograms; grey band: 99% range of a bin count under uniformity", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.out / f"sbc_{engine}.png", dpi=100)
        plt.close(fig)
    text = "\n".join(lines)
    (args.out / "sbc.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if worst >= 0.001 else 1


if __name__ == "__main__":
    sys.exit(main())
