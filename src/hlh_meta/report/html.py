"""The self-contained HTML report (Jinja2 template, figures embedded as base64 PNG)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import jinja2
import matplotlib.pyplot as plt
import pandas as pd

from ..inference import GATE
from ..models.priors import describe
from .writer import INDEXED_TABLES

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("hlh_meta.report", "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)

FIGURE_CAPTIONS = {
    "forest": "Observed mortality of each stratum (exact 95% CI) with the model's shrunken estimate, the pooled typical-study estimate and the prediction interval for a new study.",
    "subgroups": "Posterior distribution of the mortality of a typical study for each covariate profile.",
    "odds_ratios": "Covariate effects as odds ratios of death (posterior median and 95% credible interval).",
    "biomarker_forest": "Observed log ratio of each study (95% CI) as percent change, the shrunken estimate and the pooled estimate with its prediction interval.",
    "reductions": "Posterior distribution of the pooled percent reduction of each biomarker.",
    "trace": "Trace and rank plots of the main parameters.",
    "prior_posterior": "Prior against posterior for the intercept and the between-study SD.",
    "ppc": "Posterior predictive check: each observed value against the distribution of replicated values.",
    "sensitivity": "Each sensitivity variant's posterior median and 95% interval against the primary analysis (grey band).",
}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(x, digits=1):
    return "" if pd.isna(x) else f"{x:.{digits}f}"


def _table(frame: pd.DataFrame, digits: int = 2, index: bool = False) -> str:
    return frame.to_html(index=index, float_format=lambda v: f"{v:.{digits}f}", na_rep="", border=0, classes="data")


def sentences(result) -> list[str]:
    """Plain-language statements of the main quantities."""
    d = result.table("derived")
    out = []
    if result.kind == "mortality":
        for _, r in d[d["quantity"].str.contains("typical")].iterrows():
            new = d[(d["quantity"].str.contains("new study")) & (d["profile"] == r["profile"])].iloc[0]
            out.append(f"{r['profile'][0].upper() + r['profile'][1:]}: mortality of a typical study {_fmt(r['median'])}% "
                       f"(95% CrI {_fmt(r['q2.5'])}–{_fmt(r['q97.5'])}%); a new study could see "
                       f"{_fmt(new['q2.5'])}–{_fmt(new['q97.5'])}%. P(mortality < 20%) = {r['P(<20%)']:.2f}.")
    else:
        for _, r in d[d["quantity"] == "pooled percent reduction"].iterrows():
            new = d[(d["quantity"] == "predictive percent reduction") & (d["biomarker"] == r["biomarker"])].iloc[0]
            name = "CRP" if r["biomarker"] == "crp" else r["biomarker"].capitalize()
            k = int(r["n_studies"])
            out.append(f"{name}: pooled reduction {_fmt(r['median'])}% (95% CrI {_fmt(r['q2.5'])} to {_fmt(r['q97.5'])}%), "
                       f"from {k} stud{'y' if k == 1 else 'ies'}; in a new study the reduction could lie between "
                       f"{_fmt(new['q2.5'])}% and {_fmt(new['q97.5'])}% (a negative reduction is an increase).")
    return out


def _figures(result, figure_dir: Path | None) -> list[dict]:
    """Embedded PNGs: read from ``figure_dir`` when the figures were saved there, else drawn now."""
    if figure_dir is not None and any(figure_dir.glob("*.png")):
        pngs = {p.stem: base64.b64encode(p.read_bytes()).decode("ascii") for p in sorted(figure_dir.glob("*.png"))}
    else:
        from .figures import figures_for

        pngs = {k: _png(f) for k, f in figures_for(result).items()}
    order = list(FIGURE_CAPTIONS)
    names = sorted(pngs, key=lambda k: order.index(k) if k in order else len(order))
    return [{"name": k, "png": pngs[k], "caption": FIGURE_CAPTIONS.get(k, "")} for k in names]


def render(result, figure_dir: Path | None = None) -> str:
    spec = result.manifest.get("spec", {})
    priors = json.loads(result.idata.posterior.attrs.get("priors", "{}"))
    figures = _figures(result, figure_dir)
    tables = {name: _table(frame, index=name in INDEXED_TABLES) for name, frame in result.tables.items()
              if name not in ("derived", "robustness")}
    diag = result.diagnostics
    template = _ENV.get_template("report.html.j2")
    return template.render(
        result=result, manifest=result.manifest, spec=spec, diag=diag, gate=GATE,
        priors={k: describe(v) for k, v in priors.items()},
        covariates=json.loads(result.idata.posterior.attrs.get("covariates", "[]")),
        sampler=json.loads(result.idata.posterior.attrs.get("sampler", "{}")),
        loo_warning=("comparison" in result.tables and "warning" in result.tables["comparison"]
                     and result.tables["comparison"]["warning"].astype(str).str.lower().eq("true").any()),
        robustness=list(result.tables["robustness"]["sentence"]) if "robustness" in result.tables else [],
        sentences=sentences(result), derived=_table(result.table("derived")), tables=tables, figures=figures,
    )


def write_report(result, path: Path, figure_dir: Path | None = None) -> Path:
    path.write_text(render(result, figure_dir), encoding="utf-8")
    return path
