"""Compare hlh-meta's binomial engine with an independent implementation (brms / Stan).

Run:  .venv/bin/python validation/peer_brms.py
Needs R with brms (Debian: apt-get install r-base-core r-cran-brms libboost-dev). Fits the
intercept-only random-effects model to two public datasets, (1) the mortality strata of
the bundled anakinra data and (2) a 5-study example, with the same priors in both tools,
and prints and records (validation/peer_brms_results.md) the posterior summaries of mu
and tau side by side with the difference in units of the Monte Carlo standard error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd

HERE = Path(__file__).parent


def datasets() -> dict[str, pd.DataFrame]:
    from hlh_meta import load_dataset
    from hlh_meta.analyses import analysis_for, load_spec
    from hlh_meta.spec import bundled_specs_dir

    # the strata the bundled mortality analysis fits: its registered analysis type's frame
    spec = load_spec(bundled_specs_dir() / "mortality.toml")
    used, _ = analysis_for(spec).frame(load_dataset(), spec)
    anakinra = pd.DataFrame({"study": used["study_id"].to_numpy(), "events": used["deaths"].astype(int).to_numpy(),
                             "total": used["n"].astype(int).to_numpy()})
    five = pd.DataFrame({"study": list("abcde"), "events": [2, 5, 0, 9, 3], "total": [10, 20, 13, 30, 8]})
    return {"anakinra mortality strata": anakinra, "five studies": five}


def ours(df: pd.DataFrame) -> pd.DataFrame:
    import hlh_meta as hm

    idata = hm.fit_binomial(df, events="events", total="total", study="study", draws=3000, seed=1)
    rows = {}
    for name in ("mu", "tau"):
        d = idata.posterior[name].values.ravel()
        q = np.quantile(d, [0.025, 0.5, 0.975])
        mcse = float(az.mcse(idata, var_names=[name])[name])
        rows[name] = {"mean": d.mean(), "sd": d.std(), "q2.5": q[0], "q50": q[1], "q97.5": q[2], "mcse": mcse}
    return pd.DataFrame(rows).T


def brms(df: pd.DataFrame) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        df.to_csv(src, index=False)
        subprocess.run(["Rscript", str(HERE / "peer_brms.R"), str(src), str(dst), "1"], check=True,
                       capture_output=True, text=True)
        return pd.read_csv(dst, index_col=0)


def main() -> int:
    inputs = datasets()            # built (and checked) before looking for R
    if shutil.which("Rscript") is None:
        print("Rscript not found: install r-base-core r-cran-brms to run this validation; its inputs: "
              + "; ".join(f"{name}, {len(df)} rows, {int(df['events'].sum())}/{int(df['total'].sum())} events"
                          for name, df in inputs.items()))
        return 2
    lines = ["# hlh-meta against brms (Stan)", "",
             "Intercept-only binomial random-effects model, mu ~ Normal(0, 1.5), tau ~ HalfNormal(1);",
             "hlh-meta: nutpie, 4 x 3000 draws; brms: 4 x 3000 draws after 1000 warm-up, adapt_delta 0.95.",
             "`diff/mcse`: difference of the posterior means over sqrt(2) x hlh-meta's Monte Carlo SE (brms draws the same number of samples).", ""]
    worst = 0.0
    for name, df in inputs.items():
        a, b = ours(df), brms(df)
        lines += [f"## {name} ({len(df)} rows)", "", "| parameter | statistic | hlh-meta | brms |", "|---|---|---|---|"]
        for p in ("mu", "tau"):
            for stat in ("mean", "sd", "q2.5", "q50", "q97.5"):
                lines.append(f"| {p} | {stat} | {a.at[p, stat]:.3f} | {b.at[p, stat]:.3f} |")
            z = abs(a.at[p, "mean"] - b.at[p, "mean"]) / np.hypot(a.at[p, "mcse"], a.at[p, "mcse"])
            worst = max(worst, z)
            lines.append(f"| {p} | diff/mcse | {z:.2f} | |")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    (HERE / "peer_brms_results.md").write_text(text + "\n", encoding="utf-8")
    print(f"largest standardised difference of means: {worst:.2f}")
    return 0 if worst < 4 else 1


if __name__ == "__main__":
    sys.exit(main())
