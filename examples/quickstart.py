"""Quick start: the bundled mortality analysis from Python, then a model on your own table.

    .venv/bin/python examples/quickstart.py [--draws 1000] [--out quickstart_results] [--spec models/mortality.toml]

In a Jupyter notebook run the same lines cell by cell: a result shows its headline, its
summary of findings and its forest plot when it is the last expression of a cell.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import arviz as az
import pandas as pd

import hlh_meta as hm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000, help="draws (and tuning steps) per chain")
    ap.add_argument("--out", type=Path, default=Path("quickstart_results"))
    ap.add_argument("--spec", type=Path, default=Path(__file__).parents[1] / "models" / "mortality.toml")
    args = ap.parse_args()
    sampling = {"draws": args.draws, "tune": args.draws}

    # 1. The bundled analysis: a spec, the bundled data, one result object.
    spec = hm.load_spec(args.spec).patched({"sampling": sampling, "comparison": {"covariate_sets": []}})
    result = hm.run_analysis(spec)
    print(result)                                           # one line; in Jupyter: headline and forest plot
    print(result.table("summary_of_findings")[["outcome", "studies", "patients", "estimate", "certainty"]])
    derived = result.table("derived")
    print(derived.loc[derived["support"] == "data", ["quantity", "label", "median", "q2.5", "q97.5"]])
    fig = result.figures()["forest"]                        # a matplotlib Figure
    result.save(args.out / "mortality", force=True)         # CSVs, tables.xlsx, figures (PNG, SVG), report.html
    print(f"forest plot {fig.get_size_inches()} in; results in {args.out / 'mortality'}")

    # 2. Your own table: one row per study (or stratum), as with metafor's rma().
    mine = pd.DataFrame({"study": ["A", "B", "C", "D"], "deaths": [3, 10, 2, 7], "n": [12, 40, 9, 21]})
    idata = hm.fit_binomial(mine, events="deaths", total="n", study="study", **sampling, seed=1)
    print(az.summary(idata, var_names=["mu", "tau"], kind="stats"))
    print(hm.diagnostics(idata))
    axes = az.plot_forest(idata, var_names=["p"], combined=True)   # rows labelled by study, in input order
    axes[0].figure.savefig(args.out / "my_forest.png", dpi=80)


if __name__ == "__main__":
    main()
