"""Simulation-based calibration (Talts et al. 2018) of the binomial and normal engines as they ship.

Run:  PYTHONPATH=src .venv/bin/python validation/sbc.py [--reps 200] [--engines binomial,normal]
      [--out validation/results]
For each replication the parameters are drawn from exactly the priors the fit uses and the
data from exactly its likelihood, the model is fitted (4 chains x 500 draws after 500
warm-up, the default gate; compiled once per configuration and reused), and each true
parameter is ranked among 99 thinned posterior draws. If the engine is calibrated the ranks
are uniform on 0..99; a chi-square test over 10 bins checks this. Configurations:

- ``binomial``: 6 studies, a numeric covariate x (0/1): mu ~ N(0, 1.5), beta ~ N(0, 1)
  independent (a numeric covariate keeps its own prior under every coding), tau ~ HN(1),
  logit p = mu + beta x + u.
- ``binomial_unknown_shares``: 6 studies, x the share of a composition group of one column
  (two levels, the rest and x) that two studies do not report, their true share drawn from
  the flat prior the model gives it. Exchangeable coding: m ~ N(0, 1.5), d ~ N(0, 1),
  mu = m - d/2, beta = d; mixture likelihood p = (1 - x) expit(mu + u) + x expit(mu + beta + u).
- ``binomial_mortality``: shaped like the bundled mortality analysis (validation/simulate.py):
  trigger (4 levels), age (2) and route (2, one unknown per study) groups, strata of known
  single trigger, of unknown trigger mix (one with a category excluded), the route share
  unknown for some studies; exchangeable coding and mixture likelihood. Ranks of mu, each
  beta, tau and the probability p of a stratum of unknown trigger mix and route share.
- ``normal``: 6 studies, a numeric covariate: mu ~ N(0, 1), beta ~ N(0, 1), tau ~ HN(0.5).

``--engines`` runs the configurations of some engines only; the record (sbc.md) keeps the
other engines' sections, so each engine's part is rerun alone when its model changes. Each
section names the SHA-256 of the model sources it ran against (validation/records.py).
Writes rank CSVs, rank histograms (PNG) and sbc.md to --out. Exit status 1 if any p-value is
below 0.001 (a clear failure, not multiple-testing noise).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit

sys.path.insert(0, str(Path(__file__).parent))
import records  # noqa: E402
import simulate  # noqa: E402

K, L, BINS = 6, 99, 10
DRAWS = {"draws": 500, "tune": 500, "chains": 4}


def _rank(draws: np.ndarray, value: float) -> int:
    d = np.asarray(draws).ravel()
    idx = np.linspace(0, d.size - 1, L).round().astype(int)
    return int((d[idx] < value).sum())


def _ranks(idata, truth: dict) -> dict:
    post = idata.posterior
    out = {}
    for name, value in truth.items():
        if name.startswith("beta:"):
            out[name] = _rank(post["beta"].sel(covariate=name[5:]).values, value)
        elif name.startswith("p:"):
            out[name] = _rank(post["p"].sel(row=name[2:]).values, value)
        else:
            out[name] = _rank(post[name].values, value)
    return out


def binomial_rep(rng: np.random.Generator, seed: int) -> dict:
    import hlh_meta as hm

    mu, beta, tau = rng.normal(0, 1.5), rng.normal(0, 1), abs(rng.normal(0, 1))
    x = np.array([0, 0, 0, 1, 1, 1.0])
    n = rng.integers(3, 91, K)
    p = expit(mu + beta * x + tau * rng.standard_normal(K))
    df = pd.DataFrame({"study": [f"s{i}" for i in range(K)], "events": rng.binomial(n, p), "total": n, "x": x})
    idata = hm.fit_binomial(df, events="events", total="total", study="study", covariates=["x"], seed=seed, **DRAWS)
    return _ranks(idata, {"mu": mu, "beta:x": beta, "tau": tau})


def binomial_shares_rep(rng: np.random.Generator, seed: int) -> dict:
    """A composition group of one share column x (two levels: the rest and x) that two of the
    six studies do not report; exchangeable coding and the mixture likelihood, as shipped."""
    import hlh_meta as hm

    m, d, tau = rng.normal(0, 1.5), rng.normal(0, 1), abs(rng.normal(0, 1))
    mu, beta = m - d / 2, d
    x = np.array([0.0, 0.2, 0.5, 0.9, rng.dirichlet([1, 1])[1], rng.dirichlet([1, 1])[1]])
    n = rng.integers(3, 91, K)
    u = tau * rng.standard_normal(K)
    p = (1 - x) * expit(mu + u) + x * expit(mu + beta + u)
    shown = x.copy()
    shown[4:] = np.nan
    df = pd.DataFrame({"study": [f"s{i}" for i in range(K)], "events": rng.binomial(n, p), "total": n, "x": shown})
    idata = hm.fit_binomial(df, events="events", total="total", study="study", covariates=["x"],
                            fractions={"share": ["x"]}, seed=seed, **DRAWS)
    return _ranks(idata, {"mu": mu, "beta:x": beta, "tau": tau})


def binomial_mortality_rep(rng: np.random.Generator, seed: int) -> dict:
    """Shaped like the bundled mortality analysis (validation/simulate.py)."""
    import hlh_meta as hm

    df, truth = simulate.draw(rng)
    idata = hm.fit_binomial(df, seed=seed, **simulate.FIT_ARGS, **DRAWS)
    return _ranks(idata, {"mu": truth["mu"], **{f"beta:{c}": b for c, b in truth["beta"].items()},
                          "tau": truth["tau"], f"p:{simulate.MIXED_ROW}": truth["p"][simulate.MIXED_ROW]})


def normal_rep(rng: np.random.Generator, seed: int) -> dict:
    import hlh_meta as hm

    mu, beta, tau = rng.normal(0, 1), rng.normal(0, 1), abs(rng.normal(0, 0.5))
    x = rng.uniform(0, 1, K)
    se = rng.uniform(0.1, 0.5, K)
    y = rng.normal(mu + beta * x + tau * rng.standard_normal(K), se)
    df = pd.DataFrame({"study": [f"s{i}" for i in range(K)], "yi": y, "sei": se, "x": x})
    idata = hm.fit_normal(df, estimate="yi", std_err="sei", study="study", covariates=["x"], seed=seed, **DRAWS)
    return _ranks(idata, {"mu": mu, "beta:x": beta, "tau": tau})


#: engine -> its configurations (name, replicate)
CONFIGS = {
    "binomial": [("binomial", binomial_rep), ("binomial_unknown_shares", binomial_shares_rep),
                 ("binomial_mortality", binomial_mortality_rep)],
    "normal": [("normal", normal_rep)],
}


def uniformity(ranks: np.ndarray) -> float:
    counts = np.histogram(ranks, bins=BINS, range=(0, L + 1))[0]
    return float(stats.chisquare(counts).pvalue)


def run_config(name: str, rep, reps: int, log) -> tuple[pd.DataFrame, float]:
    rng = np.random.default_rng(2018)
    rows, start = [], time.perf_counter()
    for seed in range(reps):
        rows.append(rep(rng, seed))
        if (seed + 1) % 10 == 0:
            print(f"{name}: {seed + 1}/{reps} ({time.perf_counter() - start:.0f} s)", file=log, flush=True)
    return pd.DataFrame(rows), time.perf_counter() - start


def histogram(rows: pd.DataFrame, name: str, path: Path) -> dict[str, float]:
    import matplotlib.pyplot as plt

    params = list(rows.columns)
    cols = min(4, len(params))
    nrow = -(-len(params) // cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(3.4 * cols, 2.9 * nrow), squeeze=False)
    pvalues = {}
    reps = len(rows)
    band = stats.binom.ppf([0.005, 0.995], reps, 1 / BINS)
    for ax, param in zip(axes.flat, params):
        p = pvalues[param] = uniformity(rows[param].to_numpy())
        ax.hist(rows[param], bins=BINS, range=(0, L + 1), color="#1f77b4", edgecolor="white")
        ax.axhspan(band[0], band[1], color="#dddddd", zorder=0)
        ax.axhline(reps / BINS, color="#444444", lw=1)
        ax.set_title(f"{param} (p = {p:.2f})", fontsize=8)
        ax.set_xlabel(f"rank among {L} posterior draws", fontsize=7)
    for ax in list(axes.flat)[len(params):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("replications", fontsize=7)
    fig.suptitle(f"SBC rank histograms, {name} ({reps} replications); grey band: 99% range of a bin count "
                 "under uniformity", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return pvalues


def section(engine: str, results: dict[str, tuple[pd.DataFrame, dict[str, float], float]], reps: int,
            command: str) -> str:
    lines = [f"<!-- engine: {engine} -->", f"## {engine} engine", "", records.digest_line(engine), "",
             f"{reps} replications per configuration, 4 chains x 500 draws after 500 warm-up; produced by `{command}` "
             f"on {datetime.date.today().isoformat()} (Python {platform.python_version()}; "
             + ", ".join(f"{n} {s / 60:.0f} min" for n, (_, _, s) in results.items()) + ").", "",
             "| configuration | parameter | chi-square p (10 bins) |", "|---|---|---|"]
    for name, (_, pvalues, _) in results.items():
        for param, p in pvalues.items():
            lines.append(f"| {name} | {param} | {p:.3f} |")
    lines += [""] + [f"![{name}](sbc_{name}.png)" for name in results] + ["", f"<!-- end engine: {engine} -->"]
    return "\n".join(lines)


HEADER = """# Simulation-based calibration

Each configuration simulates from exactly the priors and likelihood its fit uses (see the
docstring of validation/sbc.py); ranks of the true values among 99 thinned posterior draws
should be uniform. Each engine's section names the SHA-256 of the model sources it ran
against; tests/test_validation_records.py fails when those sources have changed since, and
the section is rerun alone with `PYTHONPATH=src .venv/bin/python validation/sbc.py --engines ENGINE`.
"""


def merge(path: Path, sections: dict[str, str]) -> str:
    """sbc.md with ``sections`` replaced or added, the other engines' sections kept."""
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    pattern = r"<!-- engine: (?P<engine>\w+) -->.*?<!-- end engine: (?P=engine) -->"
    kept = {m["engine"]: m[0] for m in re.finditer(pattern, old, re.S)}
    kept.update(sections)
    order = list(records.MODEL_SOURCES) + sorted(set(kept) - set(records.MODEL_SOURCES))
    return HEADER + "\n" + "\n\n".join(kept[e] for e in order if e in kept) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--engines", default=",".join(CONFIGS), help=f"comma-separated, out of {', '.join(CONFIGS)}")
    ap.add_argument("--configs", default=None, help="comma-separated configurations (default: every one of the "
                                                     "engines); a partial run writes its CSVs and PNGs but no record")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in CONFIGS]
    if bad:
        ap.error(f"unknown engine(s) {', '.join(bad)}; choose from {', '.join(CONFIGS)}")
    only = None if args.configs is None else {c.strip() for c in args.configs.split(",")}
    warnings.filterwarnings("ignore")
    import matplotlib

    matplotlib.use("Agg")
    args.out.mkdir(parents=True, exist_ok=True)
    digests = {e: records.model_source_digest(e) for e in engines}
    command = "PYTHONPATH=src .venv/bin/python validation/sbc.py " + " ".join(sys.argv[1:])
    sections, worst = {}, 1.0
    for engine in engines:
        results = {}
        for name, rep in CONFIGS[engine]:
            if only is not None and name not in only:
                continue
            rows, seconds = run_config(name, rep, args.reps, sys.stderr)
            rows.to_csv(args.out / f"sbc_{name}_ranks.csv", index=False)
            pvalues = histogram(rows, name, args.out / f"sbc_{name}.png")
            worst = min(worst, *pvalues.values())
            results[name] = (rows, pvalues, seconds)
            print(f"{name}: " + ", ".join(f"{k} p={v:.3f}" for k, v in pvalues.items()), flush=True)
        if records.model_source_digest(engine) != digests[engine]:
            print(f"the {engine} model sources changed during the run: no record written", file=sys.stderr)
            return 2
        if only is None:
            sections[engine] = section(engine, results, args.reps, command.strip())
    if sections:
        text = merge(args.out / "sbc.md", sections)
        (args.out / "sbc.md").write_text(text, encoding="utf-8")
        print(text)
    return 0 if worst >= 0.001 else 1


if __name__ == "__main__":
    sys.exit(main())
