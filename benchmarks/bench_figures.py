"""What the sensitivity panels cost to draw and save, side by side for two versions.

Run:  .venv/bin/python benchmarks/bench_figures.py [--results FOLDER] [--repeats 5] [--old DIR]

``FOLDER`` is a results folder written by ``hlh-meta sensitivity`` (default: the bundled
mortality analysis, written first into a temporary folder by this checkout). Each version
draws the panels from the folder's ``sensitivity.csv`` with its own ``report.figures``
code, in its own process, and saves them as PNG (110 dpi) and SVG as a results folder
does; the versions alternate repeat by repeat so that both see the same load. Printed: the
seconds to draw (layout included), to write the PNG and to write the SVG, medians with
[min-max], and new/old.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, Version, add_version_args, header, ratio_line, versions  # noqa: E402


def child(table: str) -> None:
    """In a version's process: draw and save the panels once after a warm-up draw."""
    from types import SimpleNamespace

    import pandas as pd

    from hlh_meta.report.figures import sensitivity

    sens = pd.read_csv(table)
    result = SimpleNamespace(tables={"sensitivity": sens}, table=lambda name: sens, kind="mortality")
    sensitivity(result)                                   # fonts and caches loaded, as in a long run
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fig = sensitivity(result)
        t1 = time.perf_counter()
        fig.savefig(Path(tmp) / "s.png", dpi=110)
        t2 = time.perf_counter()
        fig.savefig(Path(tmp) / "s.svg")
        t3 = time.perf_counter()
    print(json.dumps({"draw": t1 - t0, "png": t2 - t1, "svg": t3 - t2, "total": t3 - t0}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", help="a results folder written by `hlh-meta sensitivity`")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    add_version_args(ap)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    vs = versions(args)
    header(vs)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.results) if args.results else None
        if folder is None:
            Version("new", ROOT).cli(["sensitivity", "models/mortality.toml", "--out", tmp, "--quiet"])
            folder = Path(tmp) / "mortality"
        table = folder / "sensitivity.csv"
        if not table.is_file():
            raise SystemExit(f"{folder}: no sensitivity.csv (a folder written by `hlh-meta sensitivity`)")
        print(f"panels of {table}\n")
        runs: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.repeats):
            for v in vs:
                got = v.child(Path(__file__), ["--child", str(table)])
                for step, seconds in got.items():
                    runs.setdefault(step, {}).setdefault(v.name, []).append(seconds)
    for step in ("draw", "png", "svg", "total"):
        print(ratio_line(f"sensitivity panels, {step} ({args.repeats} runs)", runs[step]))


if __name__ == "__main__":
    main()
