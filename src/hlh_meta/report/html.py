"""The self-contained HTML report (Jinja2 template, figures embedded as base64 PNG).

The report is generic: the analysis type supplies its statements (one per reported
quantity) and its methods text, the result its tables, quantities and figures. Statements
are shown by the support of their quantity: findings the data support, weakly informed
ones with a caveat, and those the data do not inform in a separate list, never as findings.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from ..inference import GATE
from ..models.priors import describe
from .figures import figure_specs, figures_for, forest
from ..analyses.findings import VERDICTS
from .tables import heterogeneity_table, quantities_table

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("hlh_meta.report", "templates"),
                          autoescape=jinja2.select_autoescape(["html", "html.j2"]), trim_blocks=True, lstrip_blocks=True)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _table(frame: pd.DataFrame, digits: int = 2, index: bool = False) -> str:
    """An HTML table; a missing value of any column (``pd.NA`` of a nullable integer, ``None``
    of a text column) is an empty cell, as NaN is."""
    frame = frame.copy()
    for col in frame.columns:
        if not pd.api.types.is_float_dtype(frame[col].dtype):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), np.nan)
    return frame.to_html(index=index, float_format=lambda v: f"{v:.{digits}f}", na_rep="", border=0, classes="data")


def _figures(result, figure_dir: Path | None) -> list[dict]:
    """Embedded PNGs in the analysis type's order: read from ``figure_dir`` when the figures
    were saved there, else drawn now."""
    specs = figure_specs(result)
    if figure_dir is not None and any(figure_dir.glob("*.png")):
        pngs = {p.stem: base64.b64encode(p.read_bytes()).decode("ascii") for p in sorted(figure_dir.glob("*.png"))}
    else:
        pngs = {k: _png(f) for k, f in figures_for(result).items()}
    return [{"name": s.name, "png": pngs[s.name], "caption": s.caption} for s in specs if s.name in pngs]


def _robustness_words(result) -> dict[str, str]:
    """What the sensitivity analysis found of each quantity (by its id), where the result has
    a robustness table: a sentence to put beside the quantity's statement and its row of the
    summary of findings, so that a finding that an analysis choice moves is never read alone."""
    rob = result.tables.get("robustness")
    if rob is None or rob.empty:
        return {}
    out = {}
    for _, r in rob.iterrows():
        if r["verdict"] == "NOT robust":
            # the rule's limits are stated once, in the report's sensitivity section
            why = [f"{int(r['variants_moving'])} variant(s) move its median or its interval width past the "
                   "rule's limits"] if int(r["variants_moving"]) else []
            why += [f"{int(r['variants_flipping'])} change the probability of its conclusion"] \
                if int(r["variants_flipping"]) else []
            out[str(r["id"])] = (f"Sensitivity analyses: NOT robust ({'; '.join(why)}); its median moves most under "
                                 f"'{r['most_influential_variant']}' (to {r['its_median']:.2f} from "
                                 f"{r['primary_median']:.2f}, {r['largest_shift_sd']:.1f} posterior SD on the "
                                 f"{r['judged_on']} scale).")
        elif r["verdict"] == "undetermined":
            out[str(r["id"])] = ("Sensitivity analyses: undetermined (failed the diagnostics gate: "
                                 f"{r['undetermined_by']}).")
        elif r["verdict"] == "robust":
            out[str(r["id"])] = "Sensitivity analyses: robust to the variants run."
    return out


def _by_support(statements, robust: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Statements grouped by their quantity's support label (``data``, ``weak``, ``prior``),
    each followed by what the sensitivity analysis found of its quantity (``robust``: by id)."""
    out: dict[str, list[str]] = {"data": [], "weak": [], "prior": []}
    for q, text in statements:
        words = (robust or {}).get(str(q.id))
        out[q.label_support or "prior"].append(f"{text} {words}" if words else text)
    return out


def _findings_rows(result) -> list[dict]:
    """The summary of findings as the template shows it: each judgement with its reason."""
    sof = result.tables.get("summary_of_findings")
    if sof is None or sof.empty:
        return []
    robust = _robustness_words(result)
    rows = []
    for _, r in sof.iterrows():
        context = r.get("context", "") if isinstance(r.get("context"), str) else ""
        words = robust.get(str(r.get("id", "")), "")
        if words:
            context = f"{context.rstrip('. ')}. {words}" if context else words
        rows.append({"outcome": r["outcome"], "studies": r["studies"], "patients": r["patients"],
                     "estimate": r["estimate"], "prediction": r["prediction_interval"], "support": r["support"],
                     "design": r["design"], "certainty": r["certainty"],
                     "context": context,
                     "judgements": [(v.replace("_", " "), r[v], r[f"{v}_reason"]) for v in VERDICTS]})
    return rows


def kept_runs_words(kept: list[dict] | None) -> str:
    """How the draws a fit holds were made (``Diagnostics.kept``), in words: after a remedy of
    the diagnostics gate these are not the settings asked for. Empty where not recorded."""
    if not kept:
        return ""
    first = kept[0]
    how = (f"target acceptance {first['target_accept']}, {first['draws']} draws per chain after "
           f"{first['tune']} tuning steps")
    if len(kept) == 1:
        return f"made at {how} (seed {first['seed']})"
    seeds = [str(run["seed"]) for run in kept]
    return (f"the chains of {len(kept)} runs of {first['chains']} chains each at {how} "
            f"(seeds {', '.join(seeds[:-1])} and {seeds[-1]})")


def headline_html(result) -> str:
    """A compact view for Jupyter: the findings the data support, the summary of findings
    and the forest plot."""
    found = _by_support(result.analysis.statements(result.quantities), _robustness_words(result))
    return _ENV.get_template("headline.html.j2").render(
        result=result, diag=result.diagnostics, findings=found, sof=_findings_rows(result),
        forest=_png(forest(result)))


def render(result, figure_dir: Path | None = None) -> str:
    analysis = result.analysis
    post = result.idata.posterior
    diag = result.diagnostics                       # parsed from the posterior's attributes once
    priors = json.loads(post.attrs.get("priors", "{}"))
    indexed = analysis.indexed_tables
    tables = {name: _table(frame, index=name in indexed) for name, frame in result.tables.items()
              if name not in ("derived", "robustness", "summary_of_findings", "heterogeneity")}
    if "heterogeneity" in result.tables:
        tables["heterogeneity"] = _table(heterogeneity_table(result.tables["heterogeneity"]))
    return _ENV.get_template("report.html.j2").render(
        result=result, manifest=result.manifest, spec=result.manifest.get("spec", {}), diag=diag,
        gate=GATE, priors={k: describe(v) for k, v in priors.items()},
        covariates=json.loads(post.attrs.get("covariates", "[]")),
        sampler=json.loads(post.attrs.get("sampler", "{}")), drawn={"chains": post.sizes["chain"], "draws": post.sizes["draw"]},
        kept=kept_runs_words(diag.kept),
        description=result.manifest.get("spec", {}).get("analysis", {}).get("description", ""),
        robustness=list(result.tables["robustness"]["sentence"]) if "robustness" in result.tables else [],
        findings=_by_support(analysis.statements(result.quantities), _robustness_words(result)), methods=analysis.methods(result.idata),
        derived=_table(quantities_table(result.table("derived"))), sof=_findings_rows(result), tables=tables,
        figures=_figures(result, figure_dir),
    )


def write_report(result, path: Path, figure_dir: Path | None = None) -> Path:
    path.write_text(render(result, figure_dir), encoding="utf-8")
    return path
