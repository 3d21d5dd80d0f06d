"""The main job end to end, old and new code side by side: `hlh-meta run`, `fit` and `sensitivity`.

Run:  .venv/bin/python benchmarks/bench_run.py [--repeats 1] [--sensitivity] [--workers N] [--cold] [--seeds S ...]
                                              [--old DIR | --new-only]
Every command runs in a fresh process with the version's code, data and specs (see
common.py), output to a temporary folder; wall time and the child's peak resident memory
(from the kernel, ``wait4``) are printed, with medians over repeats and the ratio new/old.
The versions alternate command by command (old, new, old, new), so both see the same load.

- `hlh-meta run --quiet`: every spec in models/ (import, compilation or loading it from
  numba's disk cache, sampling, figures, reports). Targets: <= 60 s and <= 2 GB.
- --sensitivity: `hlh-meta fit models/mortality.toml` and `hlh-meta sensitivity
  models/mortality.toml --serial` one after the other, and the **marginal cost per
  variant**: (sensitivity wall - fit wall) / variants, with the number of variants (those
  fitted, and all declared) read from sensitivity.csv; also the sum of the per-variant
  seconds that sensitivity.csv records (fits only) and the manifest's timings. With
  --workers N also with N worker processes (--workers 0: the default executor).
- --seeds S ...: with --sensitivity, run `fit` and `sensitivity` once per seed instead of
  with the spec's own, each version's mortality spec copied to a temporary folder with only
  its ``[sampling] seed`` changed (the data are still the version's: the command runs in its
  checkout, and the spec's folder does not name them): the refits
  that fail the diagnostics gate, and so the time a run spends on them, depend on the seed,
  and every variant of a run shares it; the medians and ratios are then over seeds and repeats.
- --compare: the new version's explicit comparison step on the folder its `fit` wrote
  (`hlh-meta compare models/mortality.toml`), and `hlh-meta fit models/mortality.toml
  --compare` (fit and comparison in one command); the old version's `fit` compared as a
  matter of course, so these are printed beside its `fit`.
- --cold: the first `hlh-meta run`, and the first `hlh-meta fit models/mortality.toml`, each
  on an empty compile cache: PyTensor's compile directory
  (which holds numba's disk cache of PyTensor's functions and of hlh-meta's callbacks) and
  NUMBA_CACHE_DIR point to new empty folders, deleted afterwards.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import CLI, add_version_args, header, ratio_line, versions  # noqa: E402


def timed(version, args: list[str], env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of ``hlh-meta ARGS`` in a fresh process."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], cwd=version.root, env=version.env(**(env or {})),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{version.name}: hlh-meta {' '.join(args)} exited {proc.returncode}:\n{out[-3000:]}")
    return wall, usage.ru_maxrss / 1024


@contextmanager
def seeded_spec(version, seed: int | None):
    """The mortality spec of ``version`` (relative to its root), or a copy of it in a
    temporary folder with ``[sampling] seed = seed``."""
    if seed is None:
        yield "models/mortality.toml"
        return
    original = (version.root / "models" / "mortality.toml").read_text(encoding="utf-8")
    text, n = re.subn(r"(?m)^seed = \d+", f"seed = {seed}", original)
    if n != 1:
        raise SystemExit(f"{version.name}: models/mortality.toml has {n} 'seed = ' lines, not 1")
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "mortality.toml"
        copy.write_text(text, encoding="utf-8")
        yield str(copy)


def sensitivity_counts(folder: Path) -> dict:
    with open(folder / "sensitivity.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_variant: dict[str, dict] = {}
    for r in rows:
        by_variant.setdefault(r["variant"], r)
    declared = [v for v in by_variant if v != "primary"]
    fitted = [v for v in declared if not by_variant[v].get("note", "").startswith(("not run", "not estimable"))]
    seconds = sum(float(r.get("seconds") or 0) for v, r in by_variant.items() if v != "primary")
    manifest = json.loads((folder / "manifest.json").read_text())
    return {"declared": len(declared), "fitted": len(fitted), "variant_seconds": seconds,
            "timings": manifest.get("timings_s", {})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-run", dest="run", action="store_false", help="skip `hlh-meta run`")
    ap.add_argument("--sensitivity", action="store_true", help="fit and sensitivity of the mortality spec")
    ap.add_argument("--workers", type=int, metavar="N",
                    help="with --sensitivity: also with N worker processes (0: the default executor)")
    ap.add_argument("--no-serial", dest="serial", action="store_false",
                    help="with --sensitivity --workers N: skip the --serial runs")
    ap.add_argument("--seeds", type=int, nargs="+", metavar="S",
                    help="with --sensitivity: the spec's seed replaced by each of these in turn")
    ap.add_argument("--cold", action="store_true", help="the first `hlh-meta run` and `fit` on an empty compile cache")
    ap.add_argument("--compare", action="store_true",
                    help="the new version's `hlh-meta compare` step and `fit --compare`, beside the old `fit`")
    add_version_args(ap)
    args = ap.parse_args()
    vs = versions(args)
    header(vs)
    if args.run:
        walls = {v.name: [] for v in vs}
        peaks = {v.name: [] for v in vs}
        for _ in range(args.repeats):
            for v in vs:
                with tempfile.TemporaryDirectory() as tmp:
                    wall, peak = timed(v, ["run", "--out", tmp, "--quiet"])
                walls[v.name].append(wall)
                peaks[v.name].append(peak)
        print(ratio_line("hlh-meta run (every spec in models/), wall", walls, digits=1))
        print(ratio_line("hlh-meta run, peak resident memory", peaks, unit="MiB", digits=0))
    if args.sensitivity:
        modes = ([["--serial"]] if args.serial else []) + \
            ([] if args.workers is None else [["--workers", str(args.workers)] if args.workers else []])
        fits = {v.name: [] for v in vs}
        sens = {(v.name, tuple(m)): [] for v in vs for m in modes}
        info = {}
        for _ in range(args.repeats):
            for seed, v in [(seed, v) for seed in (args.seeds or [None]) for v in vs]:
                with seeded_spec(v, seed) as spec, tempfile.TemporaryDirectory() as tmp:
                    fits[v.name].append(timed(v, ["fit", spec, "--out", tmp, "--quiet"])[0])
                for m in modes:
                    with seeded_spec(v, seed) as spec, tempfile.TemporaryDirectory() as tmp:
                        wall, _ = timed(v, ["sensitivity", spec, "--out", tmp, "--quiet", *m])
                        counts = sensitivity_counts(Path(tmp) / "mortality")
                    sens[(v.name, tuple(m))].append(wall)
                    info[(v.name, tuple(m))] = counts
                    print(f"  {v.name}{'' if seed is None else f' seed {seed}'} sensitivity "
                          f"{' '.join(m) or '(default executor)'}: wall {wall:.1f} s "
                          f"(fit alone {fits[v.name][-1]:.1f} s); {counts['fitted']} variants fitted of "
                          f"{counts['declared']} declared; their recorded seconds sum to "
                          f"{counts['variant_seconds']:.1f} s; manifest timings {counts['timings']}", flush=True)
        print(ratio_line("hlh-meta fit models/mortality.toml, wall", fits, digits=1))
        for m in modes:
            label = " ".join(m) or "default executor"
            walls = {v.name: sens[(v.name, tuple(m))] for v in vs}
            print(ratio_line(f"hlh-meta sensitivity models/mortality.toml {label}, wall", walls, digits=1))
            marginal = {}
            for v in vs:
                n = info[(v.name, tuple(m))]["fitted"]
                marginal[v.name] = [(s - f) / n for s, f in zip(walls[v.name], fits[v.name])]
            print(ratio_line(f"marginal cost per fitted variant ({label}; target <= 0.35x of 66c4c18, issue 24)", marginal, digits=2)
                  + "; variants fitted: " + ", ".join(f"{v.name} {info[(v.name, tuple(m))]['fitted']}" for v in vs))
    if args.compare:
        rows: dict[str, list] = {}
        for _ in range(args.repeats):
            for v in vs:
                with tempfile.TemporaryDirectory() as tmp:
                    if v.name == "old":
                        rows.setdefault("old: hlh-meta fit (comparison included)", []).append(
                            timed(v, ["fit", "models/mortality.toml", "--out", tmp, "--quiet"])[0])
                        continue
                    rows.setdefault("new: hlh-meta fit", []).append(
                        timed(v, ["fit", "models/mortality.toml", "--out", tmp, "--quiet"])[0])
                    rows.setdefault("new: then hlh-meta compare (from the fit's draws)", []).append(
                        timed(v, ["compare", "models/mortality.toml", "--out", tmp, "--quiet"])[0])
                with tempfile.TemporaryDirectory() as tmp:
                    if v.name == "new":
                        rows.setdefault("new: hlh-meta fit --compare", []).append(
                            timed(v, ["fit", "models/mortality.toml", "--compare", "--out", tmp, "--quiet"])[0])
        for label, walls in rows.items():
            walls = sorted(walls)
            print(f"{label}: {walls[len(walls) // 2]:.1f} s" + (f" [{walls[0]:.1f}-{walls[-1]:.1f}]" if len(walls) > 1 else ""))
    if args.cold:
        for what, command in (("run", ["run"]), ("fit models/mortality.toml", ["fit", "models/mortality.toml"])):
            walls = {v.name: [] for v in vs}
            for _ in range(args.repeats):
                for v in vs:
                    fresh = Path(tempfile.mkdtemp(prefix="fresh_cache_"))
                    env = {"PYTENSOR_FLAGS": f"base_compiledir={fresh / 'pytensor'}",
                           "NUMBA_CACHE_DIR": str(fresh / "numba")}
                    try:
                        with tempfile.TemporaryDirectory() as tmp:
                            wall, _ = timed(v, [*command, "--out", tmp, "--quiet"], env=env)
                    finally:
                        shutil.rmtree(fresh, ignore_errors=True)
                    walls[v.name].append(wall)
                    print(f"  {v.name} first hlh-meta {what} on an empty compile cache: {wall:.1f} s", flush=True)
            target = " (target <= 50 s)" if what == "run" else ""
            print(ratio_line(f"first hlh-meta {what} on an empty compile cache{target}, wall", walls, digits=1))


if __name__ == "__main__":
    main()
