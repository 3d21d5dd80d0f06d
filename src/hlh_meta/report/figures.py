"""Figures of a result (matplotlib through arviz), one function per figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

OBS, FIT, POOL, PRED = "#444444", "#1f77b4", "#d62728", "#ff9896"


def _interval_rows(ax, y, lo, mid, hi, color, marker, label, offset=0.0, size=6):
    ax.errorbar(mid, y + offset, xerr=[mid - lo, hi - mid], fmt=marker, color=color, ms=size, capsize=2, lw=1.2, label=label)


def mortality_forest(result):
    used = result.table("data_used")
    derived = result.table("derived")
    k = len(used)
    fig, ax = plt.subplots(figsize=(8.5, 1.6 + 0.45 * (k + 3)))
    y = np.arange(k)[::-1] + 3
    deaths, n = used["deaths"].to_numpy(float), used["n"].to_numpy(float)
    lo = np.where(deaths > 0, stats.beta.ppf(0.025, deaths, n - deaths + 1), 0) * 100
    hi = np.where(deaths < n, stats.beta.ppf(0.975, deaths + 1, n - deaths), 1) * 100
    _interval_rows(ax, y, lo, 100 * deaths / n, hi, OBS, "s", "observed (exact 95% CI)", 0.15)
    _interval_rows(ax, y, used["fitted_percent_q2_5"].to_numpy(), used["fitted_percent_mean"].to_numpy(),
                   used["fitted_percent_q97_5"].to_numpy(), FIT, "o", "model estimate (95% CrI)", -0.15)
    ref = derived[derived["profile"].str.startswith("infection trigger")]
    typ = ref[ref["quantity"].str.contains("typical")].iloc[0]
    new = ref[ref["quantity"].str.contains("new study")].iloc[0]
    _interval_rows(ax, np.array([1.0]), np.array([typ["q2.5"]]), np.array([typ["median"]]), np.array([typ["q97.5"]]),
                   POOL, "D", "typical study, reference profile (95% CrI)", size=8)
    _interval_rows(ax, np.array([0.0]), np.array([new["q2.5"]]), np.array([new["median"]]), np.array([new["q97.5"]]),
                   PRED, "D", "new study, reference profile (95% prediction interval)", size=8)
    labels = [f"{r.study_id}: {r.stratum.replace('_', ' ')} ({int(r.deaths)}/{int(r.n)})" for r in used.itertuples()]
    ax.set_yticks(list(y) + [1, 0], labels + ["pooled: typical study", "pooled: new study"])
    ax.axhline(2, color="#bbbbbb", lw=0.8)
    ax.set_xlim(-2, 102)
    ax.set_xlabel("mortality (%)")
    ax.set_title(f"{result.title}\nreference profile: infection trigger, adult, subcutaneous", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _legend_below(fig, ax)
    return fig


def _legend_below(fig, ax):
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1 if len(labels) > 2 else 0.07, 1, 1))


def mortality_subgroups(result):
    from ..analyses.mortality import profile_draws

    draws = profile_draws(result.idata, seed=result.manifest.get("seed"))
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    grid = np.linspace(0, 100, 401)
    for label, d in draws.items():
        kde = stats.gaussian_kde(d["typical"])
        ax.plot(grid, kde(grid), lw=1.8, label=label)
    ax.set_xlabel("mortality of a typical study (%)")
    ax.set_ylabel("posterior density")
    ax.set_title("Posterior mortality by trigger, age group and route", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.set_xlim(0, 100)
    fig.tight_layout()
    return fig


def odds_ratios(result):
    post = result.idata.posterior
    if "beta" not in post:
        return None
    names = [str(c) for c in post["covariate"].values]
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.5 * len(names)))
    for i, name in enumerate(names):
        d = np.exp(post["beta"].sel(covariate=name).values.ravel())
        q = np.quantile(d, [0.025, 0.5, 0.975])
        ax.errorbar(q[1], i, xerr=[[q[1] - q[0]], [q[2] - q[1]]], fmt="o", color=FIT, capsize=3)
    ax.axvline(1, color="#888888", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("odds ratio of death (median, 95% CrI; log scale)")
    ax.set_title("Covariate effects (vs. infection trigger, adult, subcutaneous)", fontsize=10)
    fig.tight_layout()
    return fig


def _main_vars(idata):
    return ["mu", "tau"] + (["beta"] if "beta" in idata.posterior else [])


def trace(result):
    names = _main_vars(result.idata)
    post = result.idata.posterior
    panels = sum(int(np.prod(post[n].shape[2:])) for n in names)
    axes = az.plot_trace(result.idata, var_names=names, kind="rank_bars", compact=False, figsize=(10, 1.9 * panels))
    fig = axes.ravel()[0].figure
    fig.suptitle("Trace and rank plots (chains should overlap and ranks look uniform)", fontsize=10)
    fig.tight_layout()
    return fig


def prior_posterior(result):
    idata = result.idata
    names = [n for n in ("mu", "tau") if n in idata.prior]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4))
    for ax, name in zip(np.atleast_1d(axes), names):
        prior = idata.prior[name].values.ravel()
        post = idata.posterior[name].values.ravel()
        lo, hi = np.quantile(np.concatenate([prior, post]), [0.005, 0.995])
        bins = np.linspace(lo, hi, 60)
        ax.hist(prior, bins=bins, density=True, alpha=0.45, color="#999999", label="prior")
        ax.hist(post, bins=bins, density=True, alpha=0.6, color=FIT, label="posterior")
        ax.set_title(name)
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle("Prior vs posterior", fontsize=10)
    fig.tight_layout()
    return fig


def posterior_predictive(result):
    idata = result.idata
    obs = idata.observed_data[list(idata.observed_data.data_vars)[0]]
    pp = idata.posterior_predictive[obs.name]
    rows = [str(r) for r in obs["row"].values]
    scale = idata.constant_data["total"].values if "total" in idata.constant_data else np.ones(len(rows))
    unit = "%" if "total" in idata.constant_data else ""
    factor = 100 / scale if unit else 1.0
    q = pp.quantile([0.025, 0.25, 0.5, 0.75, 0.975], ("chain", "draw")).values * factor
    fig, ax = plt.subplots(figsize=(8.5, 1.4 + 0.42 * len(rows)))
    y = np.arange(len(rows))[::-1]
    ax.hlines(y, q[0], q[4], color="#9ecae1", lw=2, label="95% predictive")
    ax.hlines(y, q[1], q[3], color=FIT, lw=5, label="50% predictive")
    ax.plot(obs.values * factor, y, "k*", ms=9, label="observed")
    ax.set_yticks(y, rows)
    ax.set_xlabel(f"replicated outcome{' (deaths, % of n)' if unit else ' (log ratio)'}")
    ax.set_title("Posterior predictive check: observed values against replicated data", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def biomarker_forest(result):
    used = result.table("data_used")
    derived = result.table("derived")
    theta = result.idata.posterior["theta"]
    k = len(used)
    pooled = derived[derived["quantity"] == "pooled percent reduction"]
    fig, ax = plt.subplots(figsize=(8.5, 1.8 + 0.5 * (k + 2 * len(pooled))))
    y = np.arange(k)[::-1] + 2 * len(pooled) + 1
    yi, se = used["yi"].to_numpy(float), used["sei"].to_numpy(float)
    pct = lambda v: 100 * (np.exp(v) - 1)  # noqa: E731 - percent change from a log ratio
    _interval_rows(ax, y, pct(yi - 1.96 * se), pct(yi), pct(yi + 1.96 * se), OBS, "s", "observed (95% CI)", 0.15)
    q = theta.quantile([0.025, 0.5, 0.975], ("chain", "draw")).values
    _interval_rows(ax, y, pct(q[0]), pct(q[1]), pct(q[2]), FIT, "o", "model estimate (95% CrI)", -0.15)
    labels = [f"{r.study_id}: {r.biomarker} (n={int(r.n)}{', SD imputed' if r.dispersion == 'imputed' else ''})"
              for r in used.itertuples()]
    ticks, names = list(y), labels
    for j, (_, row) in enumerate(pooled.iterrows()):
        marker = row["biomarker"]
        new = derived[(derived["quantity"] == "predictive percent reduction") & (derived["biomarker"] == marker)].iloc[0]
        base = 2 * (len(pooled) - j) - 1
        # a reduction of r% is a change of -r%
        for y0, src, color, label in ((base, row, POOL, "pooled (95% CrI)"),
                                      (base - 1.0, new, PRED, "new study (95% prediction interval)")):
            _interval_rows(ax, np.array([y0]), -np.array([src["q97.5"]]), -np.array([src["median"]]),
                           -np.array([src["q2.5"]]), color, "D", label if j == 0 else None, size=7)
        ticks += [base, base - 1]
        names += [f"pooled: {marker}", f"new study: {marker}"]
    ax.set_yticks(ticks, names)
    ax.axhline(2 * len(pooled) + 0.5, color="#bbbbbb", lw=0.8)
    ax.axvline(0, color="#888888", ls="--", lw=0.8)
    ax.set_xlabel("change from baseline to follow-up (%)")
    upper = max(float(np.nanmax(pct(q[2]))), float(-derived.loc[derived["quantity"].str.contains("percent reduction"), "q2.5"].min()))
    ax.set_xlim(-100, min(300, max(60, upper + 10)))
    ax.set_title(result.title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _legend_below(fig, ax)
    return fig


def reductions(result):
    from ..analyses.biomarkers import reduction_draws

    draws = reduction_draws(result.idata, seed=result.manifest.get("seed"))
    fig, ax = plt.subplots(figsize=(8, 4))
    grid = np.linspace(-50, 100, 601)
    for name, d in draws.items():
        ax.plot(grid, stats.gaussian_kde(d["pooled"])(grid), lw=1.8, label=name)
    ax.set_xlabel("pooled percent reduction (%)")
    ax.set_ylabel("posterior density")
    ax.set_title("Pooled percent reduction per biomarker", fontsize=10)
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def sensitivity(result):
    if "sensitivity" not in result.tables:
        return None
    sens = result.table("sensitivity")
    sens = sens[sens["median"].notna()]
    keys = list(dict.fromkeys(zip(sens["quantity"], sens["label"].fillna(""))))
    variants = list(dict.fromkeys(sens["variant"]))
    ncol = min(3, len(keys))
    nrow = -(-len(keys) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol + 3.4, nrow * (1.2 + 0.24 * len(variants))), sharey=True,
                             squeeze=False)
    y = np.arange(len(variants))[::-1]
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    for ax, (quantity, label) in zip(axes.ravel(), keys):
        rows = sens[(sens["quantity"] == quantity) & (sens["label"].fillna("") == label)].set_index("variant")
        prim = rows.loc["primary"]
        ax.axvspan(prim["q2.5"], prim["q97.5"], color="#dddddd", zorder=0)
        ax.axvline(prim["median"], color=POOL, lw=1)
        for yy, v in zip(y, variants):
            if v in rows.index:
                r = rows.loc[v]
                ax.errorbar(r["median"], yy, xerr=[[r["median"] - r["q2.5"]], [r["q97.5"] - r["median"]]], fmt="o",
                            ms=3, color=POOL if v == "primary" else FIT, lw=0.8)
        short = label.split(" (")[0] if label else ""
        ax.set_title(f"{short}\n{quantity.split(' (')[0]}", fontsize=7.5)
        ax.tick_params(axis="x", labelsize=7)
    for row in axes:
        row[0].set_yticks(y, variants, fontsize=7)
    height = fig.get_figheight()           # a tall figure: keep the title 0.1 in from the top, panels below it
    fig.suptitle("Sensitivity: each variant's median and 95% interval; grey band = primary 95% interval", fontsize=9,
                 y=1 - 0.1 / height, va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.28 / height))
    return fig


_FIGURES = {
    "mortality": {"forest": mortality_forest, "subgroups": mortality_subgroups, "odds_ratios": odds_ratios,
                  "trace": trace, "prior_posterior": prior_posterior, "ppc": posterior_predictive,
                  "sensitivity": sensitivity},
    "biomarkers": {"biomarker_forest": biomarker_forest, "reductions": reductions, "trace": trace,
                   "prior_posterior": prior_posterior, "ppc": posterior_predictive, "sensitivity": sensitivity},
}


def figures_for(result) -> dict:
    out = {}
    for name, make in _FIGURES.get(result.kind, {}).items():
        fig = make(result)
        if fig is not None:
            out[name] = fig
    return out


def save_figures(result, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures_for(result).items():
        path = folder / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
