"""Figures of a result: one drawing per figure kind, each drawing what the analysis produced.

An analysis type declares its figures (:class:`~hlh_meta.analyses.FigureSpec`); the
drawings here take the result's quantities, tables and InferenceData and compute nothing
of the model. Figures are ``matplotlib.figure.Figure`` objects made without pyplot (no
global state); functions that draw one panel accept ``ax=`` as ArviZ's do.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory
from scipy import stats

from ..analyses import FigureSpec, analysis_for

OBS, FIT, POOL, PRED, PRIOR = "#444444", "#1f77b4", "#d62728", "#ff9896", "#999999"
SENSITIVITY = FigureSpec("sensitivity", "sensitivity", "Each sensitivity variant's posterior median and 95% interval "
                         "against the primary analysis (grey band: primary 95% interval).")


def _new_ax(ax, size):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size)
    return fig, fig.add_subplot()


def _interval_rows(ax, y, lo, mid, hi, color, marker, label, offset=0.0, size=6):
    ax.errorbar(mid, y + offset, xerr=[mid - lo, hi - mid], fmt=marker, color=color, ms=size, capsize=2, lw=1.2, label=label)


#: forest plot layout: row height (inches), the plot panel's place in the figure, the text
#: columns in units of the panel's width (negative: left of it; above 1: right of it)
ROW_IN, PANEL = 0.24, (0.41, 0.27)
COLUMNS = {"label": -1.48, "grade": -0.58, "counts": -0.06, "observed": 1.04, "fitted": 1.55}


def _fmt_ci(mid, lo, hi) -> str:
    return "" if not np.isfinite(mid) else f"{mid:.1f} ({lo:.1f} to {hi:.1f})"


def _forest_lines(data) -> list[dict]:
    """The forest plot's lines from top to bottom: group headings, rows, group diamonds,
    then the summary rows."""
    rows, groups = data["rows"], data.get("groups")
    lines = []
    grouped = "group" in rows and rows["group"].astype(str).str.len().gt(0).any()
    for g in (list(dict.fromkeys(rows["group"])) if grouped else [None]):
        part = rows if g is None else rows[rows["group"] == g]
        if g is not None:
            lines.append({"kind": "heading", "text": g})
        lines += [{"kind": "row", "row": r} for r in part.itertuples()]
        if g is not None and groups is not None and len(groups):
            for d in groups[groups["group"] == g].itertuples():
                lines.append({"kind": "group", "text": d.label, "estimate": d.estimate, "lo": d.lo, "hi": d.hi})
    summaries = data["summaries"]
    if len(summaries):
        lines.append({"kind": "gap"})
        lines += [{"kind": r.kind, "text": r.label, "estimate": r.estimate, "lo": r.lo, "hi": r.hi}
                  for r in summaries.itertuples()]
    return lines


def _diamond(ax, y, lo, mid, hi, color, half=0.34):
    ax.fill([lo, mid, hi, mid], [y, y + half, y, y - half], color=color, zorder=3, lw=0)


def forest(result, spec: FigureSpec | None = None, ax=None):
    """Forest plot with its numbers: each row's label, grade of source and counts, the
    observed value and the model's estimate as marks and as text; rows grouped (e.g. by
    trigger) with a summary diamond per group; the pooled diamond and the prediction
    interval. ``ax``: draw into an existing axes (leave room beside it for the columns)."""
    data = result.forest()
    lines = _forest_lines(data)
    height = ROW_IN * (len(lines) + 2) + 1.3
    if ax is None:
        fig = Figure(figsize=(13, height))
        ax = fig.add_axes((PANEL[0], 0.95 / height, PANEL[1], 1 - 1.55 / height))
    fig = ax.figure
    at = blended_transform_factory(ax.transAxes, ax.transData)
    ys = np.arange(len(lines), dtype=float)[::-1]
    note = data.get("reconstructed_note", "count reconstructed from a printed percentage, a remainder or the "
                                          "matching of a source's lists")
    marked = False
    for y, line in zip(ys, lines):
        kind = line["kind"]
        if kind == "heading":
            ax.text(COLUMNS["label"], y, line["text"], transform=at, ha="left", va="center", fontsize=8.5,
                    fontweight="bold", clip_on=False)
        elif kind == "row":
            r = line["row"]
            _interval_rows(ax, np.array([y]), np.array([r.observed_lo]), np.array([r.observed]), np.array([r.observed_hi]),
                           OBS, "s", None, 0.14, size=5)
            _interval_rows(ax, np.array([y]), np.array([r.fitted_lo]), np.array([r.fitted]), np.array([r.fitted_hi]),
                           FIT, "o", None, -0.14, size=5)
            flag = "†" if getattr(r, "reconstructed", False) else ""
            marked |= bool(flag)
            for col, value, ha in (("label", "  " + str(r.label), "left"), ("grade", getattr(r, "grade", ""), "left"),
                                   ("counts", str(getattr(r, "counts", "")) + flag, "right"),
                                   ("observed", _fmt_ci(r.observed, r.observed_lo, r.observed_hi), "left"),
                                   ("fitted", _fmt_ci(r.fitted, r.fitted_lo, r.fitted_hi), "left")):
                ax.text(COLUMNS[col], y, value, transform=at, ha=ha, va="center", fontsize=8, clip_on=False)
        elif kind in ("group", "pooled"):
            _diamond(ax, y, line["lo"], line["estimate"], line["hi"], POOL if kind == "pooled" else "#7f7f7f")
            ax.text(COLUMNS["label"], y, ("  " if kind == "group" else "") + line["text"], transform=at, ha="left",
                    va="center", fontsize=8, fontstyle="italic" if kind == "group" else "normal",
                    fontweight="bold" if kind == "pooled" else "normal", clip_on=False)
            ax.text(COLUMNS["fitted"], y, _fmt_ci(line["estimate"], line["lo"], line["hi"]), transform=at, ha="left",
                    va="center", fontsize=8, fontweight="bold" if kind == "pooled" else "normal", clip_on=False)
        elif kind == "prediction":
            ax.hlines(y, line["lo"], line["hi"], color=PRED, lw=3, zorder=3)
            ax.plot([line["estimate"]], [y], "|", color=POOL, ms=9)
            ax.text(COLUMNS["label"], y, line["text"], transform=at, ha="left", va="center", fontsize=8, clip_on=False)
            ax.text(COLUMNS["fitted"], y, f"{line['lo']:.1f} to {line['hi']:.1f}", transform=at, ha="left",
                    va="center", fontsize=8, clip_on=False)
    top = len(lines) - 0.3
    for col, title, ha in (("label", data.get("label_header", "study: stratum"), "left"), ("grade", "grade of source", "left"),
                           ("counts", data.get("counts_header", "n"), "right"),
                           ("observed", data["observed_name"], "left"), ("fitted", data["fitted_name"], "left")):
        ax.text(COLUMNS[col], top, title, transform=at, ha=ha, va="bottom", fontsize=8, fontweight="bold",
                clip_on=False)
    ax.set_ylim(-0.7, len(lines) - 0.4)
    ax.set_yticks([])
    if "zero_line" in data:
        ax.axvline(data["zero_line"], color="#888888", ls="--", lw=0.8)
    ax.set_xlabel(data["xlabel"], fontsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    fig.suptitle(result.title + (f": {data['title']}" if data["title"] else ""), fontsize=10, x=0.02, ha="left",
                 y=1 - 0.12 / fig.get_figheight(), va="top")
    kinds = {line["kind"] for line in lines}
    legend = (f"grey squares: {data['observed_name']}; blue dots: {data['fitted_name']}"
              + ("; grey diamonds: group summaries" if "group" in kinds else "")
              + ("; red diamond: pooled" if "pooled" in kinds else "")
              + ("; pink bar: 95% prediction interval for a new study" if "prediction" in kinds else "")
              + (f"; † {note}" if marked else ""))
    fig.text(0.02, 0.12 / fig.get_figheight(), legend, fontsize=7.5, ha="left", va="bottom", wrap=True)
    return fig


def _selected(result, spec: FigureSpec):
    return [q for q in result.quantities if q.key in spec.select]


def densities(result, spec: FigureSpec, ax=None):
    """Posterior density of each selected quantity the data inform (extrapolations left out)."""
    qs = [q for q in _selected(result, spec) if not q.extrapolation]
    if not qs:
        return None
    fig, ax = _new_ax(ax, (8.5, 4.5))
    lo = min(float(np.quantile(q.draws, 0.001)) for q in qs)
    hi = max(float(np.quantile(q.draws, 0.999)) for q in qs)
    grid = np.linspace(lo, hi, 401)
    for q in qs:
        if np.ptp(q.draws) > 0:
            ax.plot(grid, stats.gaussian_kde(q.draws)(grid), lw=1.8, label=q.label)
    ax.set_xlabel(spec.xlabel)
    ax.set_ylabel("posterior density")
    ax.set_title(spec.title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def intervals(result, spec: FigureSpec, ax=None):
    """Median and 95% interval of each selected quantity."""
    qs = _selected(result, spec)
    if not qs:
        return None
    fig, ax = _new_ax(ax, (7.5, 1.4 + 0.5 * len(qs)))
    for i, q in enumerate(qs):
        s = q.summary()
        ax.errorbar(s["median"], i, xerr=[[s["median"] - s["q2.5"]], [s["q97.5"] - s["median"]]], fmt="o",
                    color=PRIOR if q.extrapolation else FIT, capsize=3)
    if spec.reference_line is not None:
        ax.axvline(spec.reference_line, color="#888888", ls="--", lw=1)
    if spec.log_x:
        ax.set_xscale("log")
    ax.set_yticks(range(len(qs)), [q.label + (" (extrapolation)" if q.extrapolation else "") for q in qs])
    ax.set_xlabel(spec.xlabel)
    ax.set_title(spec.title, fontsize=10)
    fig.tight_layout()
    return fig


def _main_vars(idata):
    return ["mu", "tau"] + (["beta"] if "beta" in idata.posterior else [])


def trace(result, spec: FigureSpec | None = None):
    import arviz as az

    names = _main_vars(result.idata)
    post = result.idata.posterior
    panels = sum(int(np.prod(post[n].shape[2:])) for n in names)
    fig = Figure(figsize=(10, 1.9 * panels))
    axes = fig.subplots(panels, 2, squeeze=False)
    # rank plots as vertical lines (each chain's rank histogram as deviations from uniform): the
    # same information as bars, with a tenth of the artists (half the time to draw and save)
    az.plot_trace(result.idata, var_names=names, kind="rank_vlines", compact=False, axes=axes)
    for ax in axes[:, 1]:
        ax.xaxis.label.set_fontsize(8)
    fig.suptitle("Density and rank plots (chains should overlap; each chain's ranks should stay near the dashed "
                 "line of uniform ranks)", fontsize=10)
    fig.tight_layout()
    return fig


def prior_posterior(result, spec: FigureSpec | None = None):
    """Prior and posterior density of the intercept and tau, overlaid."""
    idata = result.idata
    if "prior" not in idata.groups():
        return None
    names = [n for n in ("mu", "tau") if n in idata.prior]
    cols = [(n, i) for n in names for i in range(int(np.prod(idata.posterior[n].shape[2:])))]
    fig = Figure(figsize=(4.2 * min(len(cols), 3), 3.4 * -(-len(cols) // 3)))
    axes = fig.subplots(-(-len(cols) // 3), min(len(cols), 3), squeeze=False).ravel()
    for ax, (name, i) in zip(axes, cols):
        width = int(np.prod(idata.posterior[name].shape[2:]))
        prior = idata.prior[name].values.reshape(-1, width)[:, i]
        post = idata.posterior[name].values.reshape(-1, width)[:, i]
        both = np.concatenate([prior, post])
        positive = bool((both >= 0).all())          # tau: reflected at zero, where its density is largest
        lo, hi = np.quantile(both, [0.005, 0.995])
        grid = np.linspace(0.0 if positive else lo, hi, 300)
        for draws, color, label in ((prior, PRIOR, "prior"), (post, FIT, "posterior")):
            if np.ptp(draws) > 0:
                density = _positive_kde(draws, grid) if positive else stats.gaussian_kde(draws)(grid)
                ax.plot(grid, density, color=color, lw=1.8, label=label)
                ax.fill_between(grid, density, color=color, alpha=0.15)
        dims = [d for d in idata.posterior[name].dims if d not in ("chain", "draw")]
        title = name if not dims else f"{name}[{idata.posterior[name][dims[0]].values[i]}]"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8, frameon=False)
    for ax in axes[len(cols):]:
        ax.set_visible(False)
    fig.suptitle("Prior vs posterior", fontsize=10)
    fig.tight_layout()
    return fig


#: each row's parameter in the unit the forest plot shows
ROW_SCALE = {"p": ("mortality (%)", lambda v: 100 * v),
             "theta": ("change from baseline (%)", lambda v: 100 * (np.exp(v) - 1))}


def _positive_kde(draws: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Density of a positive quantity, reflected at zero so the estimate does not dip there."""
    kde = stats.gaussian_kde(draws)
    return kde(grid) + kde(-grid)


def shrinkage(result, spec: FigureSpec | None = None, bins: int = 12):
    """How each row's estimate depends on tau: its posterior mean among the draws in each
    band of tau (quantile bands), with tau's prior and posterior density beneath."""
    idata = result.idata
    post = idata.posterior
    name = next((v for v in (spec.select if spec else ()) if v in post), None) or next(
        (v for v in ROW_SCALE if v in post), None)
    if name is None or "tau" not in post or "row" not in post[name].dims:
        return None
    ylabel, scale = ROW_SCALE[name]
    values = post[name].stack(sample=("chain", "draw")).transpose("row", "sample").values
    tau = post["tau"].stack(sample=("chain", "draw"))
    outcomes = idata.constant_data["row_outcome"].values if "outcome" in tau.dims else None
    fig = Figure(figsize=(8.5, 7.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    rows = [str(r) for r in post["row"].values]
    for i, label in enumerate(rows):
        t = (tau.sel(outcome=outcomes[i]) if outcomes is not None else tau).values
        edges = np.quantile(t, np.linspace(0, 1, bins + 1))
        which = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
        centre = [np.median(t[which == b]) for b in range(bins) if (which == b).any()]
        mean = [scale(values[i, which == b]).mean() for b in range(bins) if (which == b).any()]
        top.plot(centre, mean, lw=1.3, label=label if len(rows) <= 12 else None)
    top.set_ylabel(f"estimate, {ylabel}")
    top.set_title("Row estimates as the between-study SD varies (posterior mean within bands of tau)", fontsize=10)
    if len(rows) <= 12:
        top.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    top.grid(alpha=0.3)
    prior = getattr(idata, "prior", None)
    groups = [None] if "outcome" not in tau.dims else [str(o) for o in tau["outcome"].values]
    hi = float(np.quantile(tau.values, 0.995))
    grid = np.linspace(0, hi, 300)
    for g in groups:
        t_post = (tau.sel(outcome=g) if g is not None else tau).values
        suffix = f" ({g})" if g is not None else ""
        if np.ptp(t_post) > 0:
            bottom.plot(grid, _positive_kde(t_post, grid), lw=1.8, label=f"posterior{suffix}")
        if prior is not None and "tau" in prior:
            t_prior = prior["tau"].sel(outcome=g).values.ravel() if g is not None else prior["tau"].values.ravel()
            if np.ptp(t_prior) > 0:
                bottom.plot(grid, _positive_kde(t_prior, grid), lw=1.2, ls="--", color=PRIOR if g is None else None,
                            label=f"prior{suffix}")
    bottom.set_xlabel("tau (between-study SD)")
    bottom.set_ylabel("density")
    bottom.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def ppc(result, spec: FigureSpec | None = None, ax=None):
    """Each observed value against the distribution of its replicated values."""
    idata = result.idata
    if "posterior_predictive" not in idata.groups():
        return None
    obs = idata.observed_data[list(idata.observed_data.data_vars)[0]]
    pp = idata.posterior_predictive[obs.name]
    rows = [str(r) for r in obs["row"].values]
    counts = "total" in idata.constant_data
    factor = 100 / idata.constant_data["total"].values if counts else 1.0
    q = pp.quantile([0.025, 0.25, 0.5, 0.75, 0.975], ("chain", "draw")).values * factor
    fig, ax = _new_ax(ax, (8.5, 1.4 + 0.42 * len(rows)))
    y = np.arange(len(rows))[::-1]
    ax.hlines(y, q[0], q[4], color="#9ecae1", lw=2, label="95% predictive")
    ax.hlines(y, q[1], q[3], color=FIT, lw=5, label="50% predictive")
    ax.plot(obs.values * factor, y, "k*", ms=9, label="observed")
    ax.set_yticks(y, rows)
    ax.set_xlabel(f"replicated outcome{' (deaths, % of n)' if counts else ' (log ratio)'}")
    ax.set_title("Posterior predictive check: observed values against replicated data", fontsize=10)
    ax.legend(fontsize=8, frameon=False, loc="best")
    fig.tight_layout()
    return fig


def sensitivity(result, spec: FigureSpec | None = None):
    """Each variant's median and 95% interval per compared quantity, the primary interval shaded."""
    if "sensitivity" not in result.tables:
        return None
    sens = result.table("sensitivity")
    sens = sens[sens["median"].notna()]
    # one panel per quantity (its id: a variant may word or label it otherwise, e.g. another
    # observed count of a level's own strata), titled as the primary words it. A quantity only
    # some variants estimate (another partition can make strata of a level the primary has none
    # of) has no primary interval to compare with: no panel
    labels = sens["label"].fillna("")
    ident = sens["id"].astype(str) if "id" in sens else sens["key"].astype(str) + "|" + labels
    primary = sens["variant"] == "primary"
    keys = [(i, q, lab) for i, q, lab in zip(ident[primary], sens.loc[primary, "quantity"], labels[primary])]
    keys = list({i: (i, q, lab) for i, q, lab in keys}.values())
    if not keys:
        return None
    variants = list(dict.fromkeys(sens["variant"]))
    ncol = min(3, len(keys))
    nrow = -(-len(keys) // ncol)
    fig = Figure(figsize=(3.2 * ncol + 3.4, nrow * (1.2 + 0.24 * len(variants))))
    # the same rows in every panel, named in the first column only: the other columns have no
    # y ticks at all (shared ticks would make each panel lay out and draw every name again)
    axes = fig.subplots(nrow, ncol, squeeze=False)
    y = np.arange(len(variants))[::-1]
    for ax in axes.ravel():
        ax.set_ylim(-0.6, len(variants) - 0.4)
        ax.set_yticks([])
    for ax in axes.ravel()[len(keys):]:
        ax.set_visible(False)
    for ax, (ident_, quantity, label) in zip(axes.ravel(), keys):
        rows = sens[ident == ident_].set_index("variant")
        prim = rows.loc["primary"]
        ax.axvspan(prim["q2.5"], prim["q97.5"], color="#dddddd", zorder=0)
        ax.axvline(prim["median"], color=POOL, lw=1)
        at = dict(zip(variants, y))
        for is_primary, color in ((False, FIT), (True, POOL)):     # one artist per colour, not one per variant
            r = rows[(rows.index == "primary") == is_primary]
            if not r.empty:
                ax.errorbar(r["median"], [at[v] for v in r.index], fmt="o", ms=3, color=color, lw=0.8,
                            xerr=[r["median"] - r["q2.5"], r["q97.5"] - r["median"]])
        # wrapped to the panel's width: a long label must not run into the next panel's title
        ax.set_title("\n".join(textwrap.fill(t, 52) for t in ((label, quantity) if label else (quantity,))),
                     fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    for row in axes:        # long variant names on two lines, inside the figure's margin for them
        row[0].set_yticks(y, [textwrap.fill(v, 56, max_lines=2, placeholder=" ...") for v in variants], fontsize=6.5)
    height = fig.get_figheight()           # a tall figure: keep the title 0.1 in from the top, panels below it
    heading = fig.suptitle("Sensitivity: each variant's median and 95% interval; grey band = primary 95% interval",
                           fontsize=9, y=1 - 0.1 / height, va="top")
    _panel_grid_layout(fig, axes, top=1 - 0.28 / height, heading=heading)
    return fig


def _panel_grid_layout(fig, axes, top: float, heading=None) -> None:
    """Margins and gaps of a grid of panels (``axes``, rows of columns) below ``top`` (a figure
    fraction), the room ``tight_layout(rect=(0, 0, 1, top))`` would give: the y tick labels of
    the first column (every row of panels names the same rows), the tallest panel title, a line
    of x tick labels and the figure's ``heading`` (its suptitle) are measured, not every tick
    label of every panel, which for the sensitivity panels took longer than the drawing."""
    from matplotlib import rcParams
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.font_manager import FontProperties

    renderer = FigureCanvasAgg(fig).get_renderer()
    width, height = fig.get_size_inches()
    dpi = fig.dpi
    pad = 1.08 * FontProperties(size="medium").get_size_in_points() / 72     # tight_layout's default pad
    first = axes[0][0]
    tick = (first.yaxis.get_major_ticks() or [None])[0]
    tick_room = ((tick.get_tick_padding() + tick.get_pad()) / 72) if tick is not None else 0.1
    labels = first.get_yticklabels()
    label_w = max((t.get_window_extent(renderer).width for t in labels), default=0) / dpi + tick_room
    x_labels = first.xaxis.get_ticklabels()
    x_size = x_labels[0].get_fontsize() if x_labels else 7
    x_h = renderer.get_text_width_height_descent("0123456789", FontProperties(size=x_size), ismath=False)[1] / dpi
    x_room = x_h + tick_room
    visible = [ax for ax in np.ravel(axes) if ax.get_visible()]
    title_h = max((ax.title.get_window_extent(renderer).height for ax in visible), default=0) / dpi
    title_room = title_h + rcParams["axes.titlepad"] / 72
    heading_room = heading.get_window_extent(renderer).height / dpi + pad if heading is not None else 0
    nrow, ncol = np.shape(axes)
    side = 0.05                                         # an x tick label's overhang at a panel's edge
    left = (pad + label_w) / width
    right = 1 - (pad + side) / width
    bottom = (pad + x_room) / height
    top = top - (pad + title_room + heading_room) / height
    w_gap, h_gap = pad + 2 * side, pad + x_room + title_room
    ax_w = (width * (right - left) - (ncol - 1) * w_gap) / ncol
    ax_h = (height * (top - bottom) - (nrow - 1) * h_gap) / nrow
    fig.subplots_adjust(left=left, right=right, bottom=bottom, top=top,
                        wspace=w_gap / ax_w if ncol > 1 else 0, hspace=h_gap / ax_h if nrow > 1 else 0)


DRAW: dict[str, Callable] = {"forest": forest, "shrinkage": shrinkage, "densities": densities, "intervals": intervals, "trace": trace,
        "prior_posterior": prior_posterior, "ppc": ppc, "sensitivity": sensitivity}


def figure_specs(result) -> list[FigureSpec]:
    """The figures of a result: its analysis type's, and the sensitivity figure where it has one."""
    return list(analysis_for(result.kind).figures) + ([SENSITIVITY] if "sensitivity" in result.tables else [])


def figures_for(result, names=None) -> dict:
    """Matplotlib figures of a result, by file stem (a figure with nothing to draw is left
    out); ``names``: only the figures of these stems."""
    out = {}
    for spec in figure_specs(result):
        if names is not None and spec.name not in names:
            continue
        fig = DRAW[spec.kind](result, spec)
        if fig is not None:
            out[spec.name] = fig
    return out


def save_figures(result, folder: Path, names=None, *, make_folder: bool = True) -> list[Path]:
    """Each figure of ``result`` (``names``: only those stems) as PNG and SVG in ``folder``
    (created with its parents unless ``make_folder`` is off: then it must exist)."""
    if make_folder:
        folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figures_for(result, names).items():
        for ext, options in (("png", {"dpi": 110}), ("svg", {})):
            path = folder / f"{name}.{ext}"
            fig.savefig(path, **options)
            paths.append(path)
    return paths
