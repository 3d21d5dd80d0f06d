"""What a refitted sensitivity variant costs under other tuning lengths and target acceptances.

Run:  .venv/bin/python benchmarks/bench_variant_settings.py [--spec models/mortality.toml]
          [--settings 500:0.9 300:0.9 500:0.95 300:0.95 300:0.9:300 300:0.9:1000:2 150:0.9@primary] [--seeds 4]
          [--first-seed 10000]

Runs the spec's sensitivity analysis once in this process (serially) to collect the variants
that are refitted (not reweighted), then samples each of them again under each setting
``TUNE:TARGET_ACCEPT[:DRAWS[:CHAINS]][@primary]`` (draws per chain: the spec's ``[sensitivity]
draws`` unless given; chains: the spec's unless given; ``@primary``: each chain starts at a random draw of the
primary fit's posterior, in the sampler's coordinates, for every sampled variable of the
primary's size, instead of PyMC's jittered initial point) with
``--seeds`` seeds, the settings alternating run by run so that all see the same load. Each
sampling goes through the diagnostics gate as a fit's first attempt does, without its retry.
Printed per setting: the mean seconds of one sampling, how many failed the gate and why, and
the expected seconds of a refit with what the gate does after a failure::

    mean + (ESS-only + divergences-only failed share) x mean + other failed share x mean seconds of the retry

A sampling that fails only on ESS gets as many chains again (one more sampling of the same
settings, :func:`hlh_meta.inference.sampling.sample_gated`), and one that fails only on
divergent transitions below target acceptance 0.95 is sampled once more at 0.95 (about as
long); the cases where that second sampling fails too, which adds a retry, are not counted;
any other failure is refitted with the retry,
whose seconds are those of one sampling scaled by its iterations
(:meth:`hlh_meta.SamplerSettings.retry`: twice the draws, twice the tuning steps and at least 1000).
A shorter warm-up is worth taking only where the gate fails no more often: the gate holds every
variant to the same R-hat, ESS and divergence standard whatever its warm-up.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, Version, header  # noqa: E402


def collect(spec: str) -> tuple[list[tuple], object]:
    """The arguments of each refitted variant's gated sampling in a serial sensitivity run,
    and the primary fit's draws (its posterior in the sampler's coordinates, before completion)."""
    import hlh_meta as hm
    from hlh_meta.inference import sampling
    from hlh_meta.models import engine

    seen: list[tuple] = []
    primary = []
    gated = sampling.sample_gated

    def recording(build, key, data, settings, gate_vars):
        seen.append((build, key, dict(data), settings, gate_vars))
        out = gated(build, key, data, settings, gate_vars)
        if len(seen) == 1:
            primary.append(out[0].posterior)
        return out

    engine.sample_gated = recording
    try:
        hm.run_analysis(spec, sensitivity=True, executor="serial")
    finally:
        engine.sample_gated = gated
    return seen[1:], primary[0]                       # the first is the primary fit


def started_at(compiled, posterior):
    """The compiled model with each chain started at a random draw of ``posterior`` (every
    sampled variable of the same size; the others at PyMC's jittered initial point). nutpie
    keeps the initial point function as a field of its compiled model (a dataclass)."""
    import dataclasses

    from hlh_meta.models.points import slices

    draws = {name: posterior[name].values.reshape(posterior.sizes["chain"] * posterior.sizes["draw"], -1)
             for name in posterior.data_vars}
    n = next(iter(draws.values())).shape[0]
    layout = slices(compiled).items()
    own = compiled.initial_point_func

    def initial_point(seed):
        x = np.array(own(seed), dtype=float)
        row = np.random.default_rng(seed).integers(n)
        for name, part in layout:
            if name in draws and draws[name].shape[1] == part.stop - part.start:
                x[part] = draws[name][row]
        return x

    return dataclasses.replace(compiled, initial_point_func=initial_point)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default="models/mortality.toml")
    ap.add_argument("--settings", nargs="+", default=["500:0.9", "300:0.9", "500:0.95", "300:0.95"],
                    help="TUNE:TARGET_ACCEPT[:DRAWS] settings to compare (DRAWS: per chain; default the spec's)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--first-seed", type=int, default=10_000)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    header([Version("new", ROOT)])
    from hlh_meta.inference import sampling
    from hlh_meta.inference.diagnostics import check, check_name

    from hlh_meta.inference.trace import sample_to_inference_data

    def parsed(text: str) -> tuple:
        text, _, start = text.partition("@")
        p = text.split(":")
        return int(p[0]), float(p[1]), int(p[2]) if len(p) > 2 else None, int(p[3]) if len(p) > 3 else None, start

    pairs = [parsed(s) for s in args.settings]
    t0 = time.perf_counter()
    refits, primary = collect(args.spec)
    print(f"{args.spec}: {len(refits)} refitted variants collected in {time.perf_counter() - t0:.0f} s; "
          f"{args.seeds} seeds x {len(pairs)} settings each\n")
    runs: dict[tuple, list[tuple[float, bool, str]]] = {p: [] for p in pairs}
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for build, key, data, settings, gate_vars in refits:
            for tune, accept, n, chains, start_at in pairs:
                s = replace(settings, tune=tune, target_accept=accept, draws=n or settings.draws,
                            chains=chains or settings.chains, seed=seed)
                start = time.perf_counter()
                if start_at == "primary":
                    compiled = started_at(sampling._nutpie_compiled(build, key, data), primary)
                    idata = sample_to_inference_data(compiled, draws=s.draws, tune=s.tune, chains=s.chains, seed=s.seed,
                                                     target_accept=s.target_accept, progress_bar=False)
                else:
                    idata = sampling._sample_once(build, key, data, s)
                seconds = time.perf_counter() - start
                diag = check(idata, gate_vars)
                runs[(tune, accept, n, chains, start_at)].append((seconds, diag.passed, "; ".join(diag.problems)))
    print(f"{'tune':>5} {'target':>6} {'draws':>5} {'chains':>6} {'start':>7} {'runs':>5} {'s/sampling':>10} "
          f"{'failed':>7} {'expected s/refit':>16}  why")
    for (tune, accept, n, chains, start_at), rs in runs.items():
        draws = n or (refits[0][3].draws if refits else 0)
        chains = chains or (refits[0][3].chains if refits else 0)
        seconds = float(np.mean([r[0] for r in rs]))
        failed = [r[2] for r in rs if not r[1]]
        one_more = [why for why in failed if all(check_name(part) in ("bulk ESS", "tail ESS") for part in why.split("; "))]
        if accept < sampling.SamplerSettings.REFIT_TARGET_ACCEPT:     # divergences alone: one more sampling at 0.95
            one_more += [why for why in failed if all(check_name(part) == "divergences" for part in why.split("; "))]
        retry = replace(refits[0][3], tune=tune, draws=draws, chains=chains).retry() if refits else None
        scale = (retry.draws + retry.tune) / (draws + tune) if retry else 0.0
        expected = seconds * (1 + len(one_more) / len(rs) + (len(failed) - len(one_more)) / len(rs) * scale)
        kinds = Counter(check_name(part) for why in failed for part in why.split("; "))
        print(f"{tune:>5} {accept:>6} {draws:>5} {chains:>6} {start_at or 'default':>7} {len(rs):>5} {seconds:>10.2f} "
              f"{len(failed):>7} {expected:>16.2f}  "
              f"{', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}")


if __name__ == "__main__":
    main()
