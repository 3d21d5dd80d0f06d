"""Two versions of a model's sources define the same model: the same log density and gradient.

Run:  PYTHONPATH=src .venv/bin/python validation/equivalence.py --old DIR [--points 200] [--write]

``DIR`` is a checkout of the earlier sources (e.g. ``git worktree add /work/old <commit>``).
Each version builds, in its own process, the same models from the same inputs: the bundled
mortality analysis's primary model, its model of the covariate sets (every covariate
masked off), a 12-study model with a numeric covariate, one with unknown shares of
two composition groups (binomial engine) and the bundled biomarkers model (normal engine). At the same random points of the sampler's unconstrained space
(standard normal, the same seed in both), each evaluates the log density and its gradient
with PyMC's public ``compile_logp`` / ``compile_dlogp``, and samples the bundled model
once with the same seed. The script prints the largest differences; with ``--write`` and
every difference within 1e-9 (relative) it adds to each record (validation/records.py's
``RERUN``), per engine whose sources differ, a line naming the new sources' digest as
equivalent to the one the record ran against (validation/records.py reads it): a model
whose density and gradient are the same everywhere is the model the records validated.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "validation"))

CHILD = r"""
import json, sys, warnings
import numpy as np, pandas as pd
warnings.filterwarnings("ignore")
from hlh_meta.analyses import analysis_for, load_spec
from hlh_meta.analyses.base import PRIMARY
from hlh_meta.data import load_dataset
from hlh_meta.models.binomial import prepare_binomial
from hlh_meta.models.engine import fit_model
from hlh_meta.inference import SamplerSettings

root, n_points, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ds = load_dataset()
spec = load_spec(f"{root}/models/mortality.toml")
a = analysis_for(spec)
spec = a.resolve(ds, spec)
used, _ = a.frame(ds, spec)
rng = np.random.default_rng(3)
k = 12
numeric = pd.DataFrame({"study": [f"s{i}" for i in range(k)], "events": rng.integers(0, 5, k),
                        "total": rng.integers(5, 15, k), "x": rng.normal(size=k)})
mixed = pd.DataFrame({"study": ["a", "a", "b", "c", "d"], "events": [1, 3, 2, 5, 0], "total": [6, 9, 8, 12, 4],
                      "g[x]": [1.0, np.nan, 0.0, np.nan, 0.5], "h": [np.nan, 1.0, 0.0, np.nan, 1.0]})
cases = {
    "bundled mortality": a.inputs(ds, spec, used),
    "bundled mortality, intercept only": a.inputs(ds, spec, used, PRIMARY, covariates=[],
                                                  structure=list(spec.get("model", "covariates"))),
    "12 studies, numeric covariate": prepare_binomial(numeric, covariates=["x"]),
    "unknown shares of two groups": prepare_binomial(mixed, covariates=["g[x]", "h"],
                                                     fractions={"g": ["g[x]"], "h": ["h"]}),
}
bspec = load_spec(f"{root}/models/biomarkers.toml")
b = analysis_for(bspec)
bspec = b.resolve(ds, bspec)
cases["bundled biomarkers"] = b.inputs(ds, bspec, b.frame(ds, bspec)[0])
result = {}
for name, inp in cases.items():
    model = inp.model()
    for key, value in inp.data.items():
        model[key].set_value(np.asarray(value, dtype=model[key].dtype))
    logp, dlogp = model.compile_logp(), model.compile_dlogp()
    values = model.value_vars
    draw = np.random.default_rng(11)
    shapes = {name: np.shape(value) for name, value in model.initial_point().items()}
    lp, gr = [], []
    for _ in range(n_points):
        point = {v.name: draw.standard_normal(shapes[v.name]) for v in values}
        lp.append(float(logp(point)))
        gr.append(np.asarray(dlogp(point), dtype=float).tolist())
    result[name] = {"logp": lp, "grad": gr, "engine": inp.structure.engine}
fit = fit_model(cases["bundled mortality"], SamplerSettings(draws=200, tune=200, chains=2, seed=7), extras=False)
result["draws"] = {v: fit.posterior[v].values.tolist() for v in ("mu", "tau", "beta")}
json.dump(result, open(out, "w"))
"""


def evaluate(checkout: Path, points: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "values.json"
        env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
        subprocess.run([sys.executable, "-c", CHILD, str(checkout), str(points), str(out)], check=True, env=env,
                       cwd=checkout)
        return json.loads(out.read_text())


def compare(old: dict, new: dict) -> tuple[dict[str, tuple[float, int]], list[str]]:
    """Per engine, the largest relative difference and the number of models evaluated; a line per model."""
    worst: dict[str, tuple[float, int]] = {}
    lines = []
    for name in old:
        if name == "draws":
            continue
        engine = old[name]["engine"]
        rel = 0.0
        for part in ("logp", "grad"):
            a, b = np.asarray(old[name][part]), np.asarray(new[name][part])
            if a.shape != b.shape:
                lines.append(f"{name}: {part} shapes differ ({a.shape} vs {b.shape})")
                rel = float("inf")
                continue
            one = float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(a))))
            rel = max(rel, one)
            lines.append(f"{name} ({engine}): {part} at {a.shape[0]} points, largest relative difference {one:.2e}")
        was, count = worst.get(engine, (0.0, 0))
        worst[engine] = (max(was, rel), count + 1)
    same = all(np.array_equal(np.asarray(old["draws"][v]), np.asarray(new["draws"][v])) for v in old["draws"])
    diff = max(float(np.max(np.abs(np.asarray(old["draws"][v]) - np.asarray(new["draws"][v])))) for v in old["draws"])
    lines.append("bundled mortality, 2 x 200 draws with one seed: " +
                 ("identical" if same else f"not bit-identical (largest difference {diff:.2g}: a chain's path "
                                           "diverges once the last bits of a gradient differ)"))
    return worst, lines


def main() -> None:
    import records

    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=Path, required=True)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    old, new = evaluate(args.old, args.points), evaluate(ROOT, args.points)
    worst, lines = compare(old, new)
    print("\n".join(lines))
    for engine, (rel, count) in worst.items():
        print(f"{engine}: largest relative difference of log density or gradient over {count} models: {rel:.2e}")
    if not args.write:
        return
    if not all(rel <= 1e-9 for rel, _ in worst.values()):
        sys.exit("not equivalent within 1e-9: the records are not carried over; rerun them")
    for record, engines in records.RERUN.items():
        path = ROOT / "validation" / "results" / record
        text = path.read_text(encoding="utf-8")
        added = []
        for engine in engines:
            now = records.model_source_digest(engine)
            was = records.model_source_digest(engine, args.old)
            accepted = records.accepted_digests(text).get(engine, set())
            if now in accepted or was not in accepted:
                continue
            if engine not in worst:
                sys.exit(f"no {engine} model was evaluated: its records are not carried over")
            rel, count = worst[engine]
            draws = lines[-1].split(": ", 1)[1] if engine == "binomial" else "not sampled (the sampled model is binomial)"
            added.append(records.equivalence_line(engine, now, was, rel, args.points, count, draws))
        if added:
            path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(added) + "\n", encoding="utf-8")
            print(f"{record}: {len(added)} line(s) added")


if __name__ == "__main__":
    main()
