"""Coverage of 95% intervals in simulated meta-analyses shaped like the anakinra evidence.

Run:  .venv/bin/python validation/interval_coverage.py [--sims 500] [--seed 7] [--out validation/results]
      [--rows default,tau_hn05,...] [--cache DIR]

Scenario "evidence-shaped": each simulated meta-analysis has 3-10 studies of 3-90 patients,
a typical-study mortality expit(mu) uniform on 10%-60% and real heterogeneity (tau uniform
on 0.2-1.0, logit scale). Each row of the study fits the intercept-only binomial model
(``hlh_meta.fit_binomial``, default sampler settings, gated refit included) with one set of
priors to the same simulated data sets (simulation i uses the generator seeded [seed, i],
whatever the row) and counts how often the 95% equal-tailed credible interval of the
typical-study mortality expit(mu) contains the true expit(mu), and the one of tau the true
tau. Studies beyond the simulated number get weight 0, so one compiled model serves every
simulation of a row.

Scenario "prior-drawn" (row ``calibration``): the same design with mu and tau drawn from the
default priors themselves (mu ~ Normal(0, 1.5), tau ~ HalfNormal(1)); averaged over the
prior a correct posterior covers 95% of the time, so this row checks the computation.

Scenario "covariates" (row ``covariates``): the covariate model as the mortality analysis
ships it (validation/simulate.py: trigger, age and route composition groups, exchangeable
coding, mixture likelihood, unknown trigger mixes and route shares, 7 studies of 12 strata),
with every parameter and unknown share drawn from the default priors. It counts how often the
95% interval covers one level's mortality (infection trigger, the other covariates as in the
included strata, typical study: ``p_typical`` of a prediction profile), one odds ratio
(infection against the reference trigger, exp(beta)) and tau: a calibration row, since
averaged over the prior a correct posterior covers 95%.

Rows ``tau_fixed_true`` and ``mu_flat`` are diagnostic, not candidate defaults: tau fixed at
its true value (is the shortfall the estimation of tau?) and mu ~ Normal(0, 10) (is it the
mu prior?).

Each row reports the coverage with its Monte Carlo standard error sqrt(c(1-c)/n), the
misses split by the side the interval lies on, coverage by number of studies, true tau and
true mortality, and how many fits failed the diagnostics gate (after the refit). With
--cache DIR every simulation's result is appended to DIR/<row>.csv as it finishes and a
rerun skips the simulations already there (same --seed and the same model sources: the cache
file names carry the first 12 digits of their SHA-256). Writes coverage.md to --out, naming
the SHA-256 of the binomial model sources the fits ran against (validation/records.py); the
hand-written part of an existing coverage.md (from the notes marker line on) is kept.
500 simulations per row (8 intercept-only rows) take about 40 min on 2 shared cores, the
covariates row about as long again.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import expit, logit

sys.path.insert(0, str(Path(__file__).parent))
import records  # noqa: E402
import simulate as shipped  # noqa: E402  (the covariate model as shipped)

K_MAX = 10
NOTES_MARKER = "<!-- notes: kept when the script rewrites this file -->"
DEFAULT_MU = {"dist": "Normal", "mu": 0.0, "sigma": 1.5}
DEFAULT_TAU = {"dist": "HalfNormal", "sigma": 1.0}

#: name -> (label, scenario, priors); priors is a mapping, or a function of the true (mu, tau)
ROWS = {
    "default": ("mu ~ N(0, 1.5), tau ~ HalfNormal(1) (default)", "evidence", {}),
    "tau_hn05": ("tau ~ HalfNormal(0.5)", "evidence", {"tau": {"dist": "HalfNormal", "sigma": 0.5}}),
    "tau_hc1": ("tau ~ HalfCauchy(1)", "evidence", {"tau": {"dist": "HalfCauchy", "beta": 1.0}}),
    "mu_n25": ("mu ~ N(0, 2.5)", "evidence", {"mu": {"dist": "Normal", "mu": 0.0, "sigma": 2.5}}),
    "tau_hn15": ("tau ~ HalfNormal(1.5)", "evidence", {"tau": {"dist": "HalfNormal", "sigma": 1.5}}),
    "mu_flat": ("diagnostic: mu ~ N(0, 10), tau default", "evidence",
                {"mu": {"dist": "Normal", "mu": 0.0, "sigma": 10.0}}),
    "tau_fixed_true": ("diagnostic: tau fixed at its true value, mu default", "evidence",
                       lambda mu, tau: {"tau": {"dist": "Fixed", "value": float(tau)}}),
    "calibration": ("calibration: default priors, truth drawn from them", "prior", {}),
    "covariates": ("calibration of the covariate model (trigger, age, route; exchangeable coding, mixture "
                   "likelihood), default priors, truth drawn from them", "covariates", {}),
}
FIXED_TAU_ROWS = {"tau_fixed_true"}              # tau's "interval" is the truth itself: not reported
DEFAULT_ROWS = "default,tau_hn05,tau_hc1,mu_n25,tau_hn15,mu_flat,tau_fixed_true,calibration,covariates"
FIELDS = ["sim", "k", "patients", "mu", "p", "tau", "lo", "hi", "median", "tau_lo", "tau_hi", "tau_median",
          "passed", "attempts", "divergences", "problems", "seconds"]
COVARIATE_FIELDS = ["sim", "patients", "level", "level_lo", "level_hi", "level_median", "odds_ratio", "or_lo", "or_hi",
                    "or_median", "tau", "tau_lo", "tau_hi", "tau_median", "passed", "attempts", "divergences",
                    "problems", "seconds"]
K_GROUPS = [("3-4", 3, 4), ("5-7", 5, 7), ("8-10", 8, 10)]
TAU_GROUPS = [("0.2-0.47", 0.2, 0.4667), ("0.47-0.73", 0.4667, 0.7333), ("0.73-1.0", 0.7333, 1.0)]
P_GROUPS = [("10-25%", 0.10, 0.25), ("25-40%", 0.25, 0.40), ("40-60%", 0.40, 0.60)]


def simulate(seed: int, i: int, scenario: str = "evidence") -> tuple[pd.DataFrame, np.ndarray, float, float]:
    """Simulation ``i``: (data with K_MAX rows, 0/1 weights, true mu, true tau)."""
    rng = np.random.default_rng([seed, i])
    k = int(rng.integers(3, K_MAX + 1))
    if scenario == "evidence":
        mu = float(logit(rng.uniform(0.10, 0.60)))
        tau = float(rng.uniform(0.2, 1.0))
    else:                                   # drawn from the default priors
        mu = float(rng.normal(DEFAULT_MU["mu"], DEFAULT_MU["sigma"]))
        tau = float(abs(rng.normal(0.0, DEFAULT_TAU["sigma"])))
    n = rng.integers(3, 91, K_MAX)
    events = rng.binomial(n, expit(mu + tau * rng.standard_normal(K_MAX)))
    weights = (np.arange(K_MAX) < k).astype(float)
    df = pd.DataFrame({"study": [f"s{j:02d}" for j in range(K_MAX)], "events": events, "total": n})
    return df, weights, mu, tau


def fit_one(hm, seed: int, i: int, scenario: str, priors) -> dict:
    df, w, mu, tau = simulate(seed, i, scenario)
    spec = priors(mu, tau) if callable(priors) else priors
    start = time.perf_counter()
    idata = hm.fit_binomial(df, events="events", total="total", study="study", weights=w, priors=spec or None,
                            seed=i)
    seconds = time.perf_counter() - start
    p = expit(idata.posterior["mu"].values.ravel())          # the typical-study mortality (u = 0)
    t = idata.posterior["tau"].values.ravel()
    lo, med, hi = np.quantile(p, [0.025, 0.5, 0.975])
    tlo, tmed, thi = np.quantile(t, [0.025, 0.5, 0.975])
    diag = hm.diagnostics(idata)
    return {"sim": i, "k": int(w.sum()), "patients": int((df["total"] * w).sum()), "mu": mu, "p": float(expit(mu)),
            "tau": tau, "lo": lo, "hi": hi, "median": med, "tau_lo": tlo, "tau_hi": thi, "tau_median": tmed,
            "passed": int(diag.passed), "attempts": diag.attempts, "divergences": diag.divergences,
            "problems": "; ".join(diag.problems), "seconds": round(seconds, 3)}


def fit_covariates(hm, seed: int, i: int) -> dict:
    """Simulation ``i`` of the covariate model (validation/simulate.py), fitted as shipped."""
    df, truth = shipped.draw(np.random.default_rng([seed, i]))
    start = time.perf_counter()
    idata = hm.fit_binomial(df, seed=i, profiles=shipped.PROFILE, **shipped.FIT_ARGS)
    seconds = time.perf_counter() - start
    post = idata.posterior
    level = post["p_typical"].sel(profile=shipped.PROFILE.index[0]).values.ravel()
    odds = np.exp(post["beta"].sel(covariate=shipped.OR_COLUMN).values.ravel())
    tau = post["tau"].values.ravel()
    (llo, lmed, lhi), (olo, omed, ohi), (tlo, tmed, thi) = (np.quantile(d, [0.025, 0.5, 0.975])
                                                           for d in (level, odds, tau))
    diag = hm.diagnostics(idata)
    return {"sim": i, "patients": int(df["total"].sum()), "level": truth["profile"], "level_lo": llo,
            "level_hi": lhi, "level_median": lmed, "odds_ratio": float(np.exp(truth["beta"][shipped.OR_COLUMN])),
            "or_lo": olo, "or_hi": ohi, "or_median": omed, "tau": truth["tau"], "tau_lo": tlo, "tau_hi": thi,
            "tau_median": tmed, "passed": int(diag.passed), "attempts": diag.attempts,
            "divergences": diag.divergences, "problems": "; ".join(diag.problems), "seconds": round(seconds, 3)}


def run_row(hm, name: str, sims: int, seed: int, cache: Path | None) -> pd.DataFrame:
    _, scenario, priors = ROWS[name]
    covariates = scenario == "covariates"
    fields = COVARIATE_FIELDS if covariates else FIELDS
    done: dict[int, dict] = {}
    path = None
    if cache is not None:
        path = cache / f"{name}_seed{seed}_{records.model_source_digest('binomial')[:12]}.csv"
        if path.exists():
            for rec in pd.read_csv(path, keep_default_na=False).to_dict("records"):
                done[int(rec["sim"])] = rec
    todo = [i for i in range(sims) if i not in done]
    if todo:
        print(f"{name}: {len(done)} cached, fitting {len(todo)}", file=sys.stderr, flush=True)
    handle = writer = None
    if path is not None and todo:
        new = not path.exists()
        handle = open(path, "a", newline="", encoding="utf-8")
        writer = csv.DictWriter(handle, fieldnames=fields)
        if new:
            writer.writeheader()
    try:
        start = time.perf_counter()
        for n, i in enumerate(todo, 1):
            rec = fit_covariates(hm, seed, i) if covariates else fit_one(hm, seed, i, scenario, priors)
            done[i] = rec
            if writer is not None:
                writer.writerow(rec)
                handle.flush()
            if n % 50 == 0:
                print(f"  {name}: {n}/{len(todo)} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    finally:
        if handle is not None:
            handle.close()
    out = pd.DataFrame([done[i] for i in range(sims)])
    out["passed"] = out["passed"].astype(int).astype(bool)
    out["tau_covered"] = (out["tau_lo"] <= out["tau"]) & (out["tau"] <= out["tau_hi"])
    if covariates:
        for key, lo, hi in (("level", "level_lo", "level_hi"), ("odds_ratio", "or_lo", "or_hi")):
            out[f"{key}_covered"] = (out[lo] <= out[key]) & (out[key] <= out[hi])
            out[f"{key}_above"] = out[lo] > out[key]
            out[f"{key}_below"] = out[hi] < out[key]
        return out
    out["covered"] = (out["lo"] <= out["p"]) & (out["p"] <= out["hi"])
    out["above"] = out["lo"] > out["p"]                      # interval entirely above the truth
    out["below"] = out["hi"] < out["p"]
    out["width"] = 100 * (out["hi"] - out["lo"])
    return out


def pct(x: pd.Series) -> str:
    """Coverage (%) +- its Monte Carlo standard error, and the count."""
    n = len(x)
    if n == 0:
        return "-"
    c = float(x.mean())
    return f"{100 * c:.1f} ± {100 * np.sqrt(c * (1 - c) / n):.1f} (n={n})"


def ratio(name: str, s: pd.DataFrame) -> str:
    """Median ratio of tau's posterior median to the true tau ("fixed" where the row fixes tau)."""
    return "fixed" if name in FIXED_TAU_ROWS else f"{(s['tau_median'] / s['tau']).median():.2f}"


def group_table(results: dict[str, pd.DataFrame], column: str, groups, title: str) -> list[str]:
    head = "| row | " + " | ".join(g[0] for g in groups) + " |"
    lines = [f"### Pooled mortality covered, by {title}", "", head, "|---" * (len(groups) + 1) + "|"]
    for name, df in results.items():
        cells = [pct(df.loc[df[column].between(lo, hi), "covered"]) for _, lo, hi in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def covariate_section(results: dict[str, pd.DataFrame]) -> list[str]:
    """The rows of the covariate model: coverage of a level's mortality, an odds ratio and tau."""
    if not results:
        return []
    lines = ["## Covariate model", "",
             "Scenario `covariates` (validation/simulate.py): the mortality analysis's covariate model as it ships, "
             "trigger (4 levels; infection, malignancy, other against rheumatological), age (adult against "
             "paediatric) and route (IV against subcutaneous, one unknown share per study) composition groups, "
             "exchangeable coding, mixture likelihood; 7 studies, 12 strata of 3-60 patients: strata of one known "
             "trigger, 4 of unknown trigger mix (one with malignancy excluded), one of a known age mix, the route "
             "share unknown in 3 studies. Every parameter and unknown share drawn from the default priors (mu's "
             "prior on the mean of the levels' log-odds, beta ~ N(0, 1) for each contrast, tau ~ HalfNormal(1), flat "
             "Dirichlet shares), so a correct posterior covers 95% on average. `hlh_meta.fit_binomial` with default "
             "sampler settings. Level mortality = `p_typical` of the profile infection trigger, age and route as in "
             "the included strata (n-weighted), typical study (u = 0), against the same quantity at the true "
             "parameters and shares; odds ratio = exp(beta), infection against rheumatological.", "",
             "| row | level mortality covered (%) | above / below (%) | odds ratio covered (%) | above / below (%) "
             "| tau covered (%) | width, level mortality (points): mean / median | failed gate after refit "
             "| refitted |", "|---|---|---|---|---|---|---|---|---|"]
    for name, df in results.items():
        width = 100 * (df["level_hi"] - df["level_lo"])
        lines.append(f"| {name} | {pct(df['level_covered'])} | {100 * df['level_above'].mean():.1f} / "
                     f"{100 * df['level_below'].mean():.1f} | {pct(df['odds_ratio_covered'])} | "
                     f"{100 * df['odds_ratio_above'].mean():.1f} / {100 * df['odds_ratio_below'].mean():.1f} | "
                     f"{pct(df['tau_covered'])} | {width.mean():.1f} / {width.median():.1f} | "
                     f"{int((~df['passed']).sum())} | {int((df['attempts'] > 1).sum())} |")
    lines += ["", "| row | fits with any divergence (final attempt) | level mortality covered among fits failing "
              "the gate | mean seconds per fit |", "|---|---|---|---|"]
    for name, df in results.items():
        failed = df[~df["passed"]]
        lines.append(f"| {name} | {int((df['divergences'] > 0).sum())} | "
                     f"{pct(failed['level_covered']) if len(failed) else '-'} | {df['seconds'].mean():.2f} |")
    return lines + [""]


def report(results: dict[str, pd.DataFrame], args: argparse.Namespace, command: str, minutes: float) -> str:
    title = f"# Coverage of 95% credible intervals ({args.sims} simulated meta-analyses per row, seed {args.seed})"
    covariates = {n: d for n, d in results.items() if ROWS[n][1] == "covariates"}
    results = {n: d for n, d in results.items() if n not in covariates}
    lines = [title, "", records.digest_line("binomial"), "",
             f"Produced by `{command}`; the fits took {minutes:.0f} min in all (2-core machine, niced). Rerun when "
             "tests/test_validation_records.py says the binomial model sources changed.", "",
             "Design (intercept-only rows): 3-10 studies (uniform), 3-90 patients each (uniform), intercept-only "
             "binomial model, `hlh_meta.fit_binomial` with default sampler settings (4 chains x 1000 draws after 1000 "
             "warm-up, target acceptance 0.9, one gated refit). Truth, scenario `evidence`: typical-study mortality "
             "expit(mu) uniform on 10%-60%, tau uniform on 0.2-1.0 (logit scale); scenario `prior`: mu ~ N(0, 1.5), "
             "tau ~ HalfNormal(1), i.e. drawn from the default priors. Simulation i is the same data set in every "
             "row of a scenario. Pooled mortality = the 95% equal-tailed interval of expit(mu), the typical-study "
             "mortality, against the true expit(mu). ± is the Monte Carlo standard error sqrt(c(1-c)/n).", "",
             "Rows: " + "; ".join(f"`{n}` = {ROWS[n][0]}" for n in {**results, **covariates})
             + ". Unnamed priors are the defaults (mu ~ N(0, 1.5), tau ~ HalfNormal(1)).", "",
             "## Coverage", "",
             "| row | scenario | pooled mortality covered (%) | interval above truth / below (%) | tau covered (%) "
             "| width, pooled mortality (points): mean / median | failed gate after refit | refitted |",
             "|---|---|---|---|---|---|---|---|"]
    for name, df in results.items():
        tau_cell = "fixed at the truth" if name in FIXED_TAU_ROWS else pct(df["tau_covered"])
        lines.append(f"| {name} | {ROWS[name][1]} | {pct(df['covered'])} | {100 * df['above'].mean():.1f} / "
                     f"{100 * df['below'].mean():.1f} | {tau_cell} | {df['width'].mean():.1f} / "
                     f"{df['width'].median():.1f} | {int((~df['passed']).sum())} | {int((df['attempts'] > 1).sum())} |")
    lines.append("")
    evidence = {n: d for n, d in results.items() if ROWS[n][1] == "evidence"}
    if "default" in evidence and len(evidence) > 1:
        base = evidence["default"]["covered"].to_numpy()
        lines += ["Paired difference in pooled-mortality coverage against `default` (same data sets; ± is the "
                  "Monte Carlo SE of the paired difference):", "", "| row | difference (points) |", "|---|---|"]
        for name, df in evidence.items():
            if name == "default":
                continue
            d = df["covered"].to_numpy().astype(float) - base
            lines.append(f"| {name} | {100 * d.mean():+.1f} ± {100 * d.std(ddof=1) / np.sqrt(len(d)):.1f} |")
        lines.append("")
    lines += ["## Breakdown", ""]
    lines += group_table(results, "k", K_GROUPS, "number of studies")
    lines += group_table(evidence, "tau", TAU_GROUPS, "true tau (scenario evidence)")
    lines += group_table(evidence, "p", P_GROUPS, "true typical-study mortality (scenario evidence)")
    for column, groups, title, head in (("k", K_GROUPS, "number of studies", "studies"),
                                        ("p", P_GROUPS, "true typical-study mortality", "true mortality")):
        lines += [f"### Where the misses are, by {title} (scenario evidence)", "",
                  "Share of simulations (%) whose interval lies entirely above / below the true mortality, the mean "
                  "error of the posterior median of mu (logit), and the median ratio of tau's posterior median to "
                  "the true tau.", "", f"| row | {head} | above / below (%) | error of median mu (logit) | "
                  "tau median / true tau |", "|---|---|---|---|---|"]
        for name, df in evidence.items():
            for label, lo, hi in groups:
                s = df[df[column].between(lo, hi)]
                lines.append(f"| {name} | {label} | {100 * s['above'].mean():.1f} / {100 * s['below'].mean():.1f} | "
                             f"{(logit(s['median']) - s['mu']).mean():+.3f} | {ratio(name, s)} |")
        lines.append("")
    lines += ["### Diagnostics", "", "| row | failed gate after refit | covered among failed | refitted "
              "| fits with any divergence (final attempt) | mean seconds per fit |", "|---|---|---|---|---|---|"]
    for name, df in results.items():
        failed = df[~df["passed"]]
        lines.append(f"| {name} | {len(failed)} | {pct(failed['covered']) if len(failed) else '-'} | "
                     f"{int((df['attempts'] > 1).sum())} | {int((df['divergences'] > 0).sum())} | "
                     f"{df['seconds'].mean():.2f} |")
    lines += [""] + covariate_section(covariates)
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=int, default=500, help="simulated meta-analyses per row (default 500)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rows", default=DEFAULT_ROWS, help=f"comma-separated rows out of {', '.join(ROWS)}")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--cache", type=Path, default=None,
                    help="folder for per-simulation results; a rerun resumes from it")
    args = ap.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        ap.error(f"unknown row(s) {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    warnings.filterwarnings("ignore")
    import hlh_meta as hm

    if args.cache is not None:
        args.cache.mkdir(parents=True, exist_ok=True)
    results = {name: run_row(hm, name, args.sims, args.seed, args.cache) for name in rows}
    digest = records.model_source_digest("binomial")
    command = "PYTHONPATH=src .venv/bin/python validation/interval_coverage.py " + shlex.join(
        a for a in sys.argv[1:])
    text = report(results, args, command.strip(), sum(df["seconds"].sum() for df in results.values()) / 60)
    if records.model_source_digest("binomial") != digest:
        print("the binomial model sources changed during the run: no record written", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "coverage.md"
    notes = ""
    if target.exists():
        old = target.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER):]
    target.write_text(text + ("\n" + notes if notes else ""), encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
