"""NUTS through nutpie (default) or PyMC, with a compile-once cache and one gated refit.

A compiled nutpie model is kept per model *structure* (shapes, priors, covariates); a fit
of new data with the same structure swaps the ``pm.Data`` values into the compiled model
instead of compiling again. The model's C callbacks come from :mod:`.callbacks`, which a
later process loads from numba's disk cache.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace

import arviz as az
import numpy as np
import pymc as pm

from .callbacks import compile_pymc_model
from .diagnostics import Diagnostics, check
from .trace import trace_to_inference_data

SAMPLERS = ("nutpie", "pymc")
_CACHE: "OrderedDict[Hashable, object]" = OrderedDict()
_CACHE_SIZE = 32


@dataclass(frozen=True)
class SamplerSettings:
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int | None = None
    sampler: str = "nutpie"
    target_accept: float = 0.8
    progress: bool = False
    refit: bool = True

    def validate(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler: unknown sampler '{self.sampler}'; choose {' or '.join(SAMPLERS)}")
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (1 if name != "tune" else 0):
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        if self.sampler == "nutpie" and self.tune < 1:
            raise ValueError("tune must be at least 1 with the nutpie sampler (it cannot sample without a "
                             "warm-up); use sampler='pymc' for tune=0")
        if not 0.5 <= self.target_accept < 1:
            raise ValueError(f"target_accept must be in [0.5, 1), got {self.target_accept}")


def _nutpie_compiled(build: Callable[[], pm.Model], key: Hashable, data: Mapping[str, np.ndarray]):
    compiled = _CACHE.get(key)
    if compiled is None:
        compiled = compile_pymc_model(build())
        _CACHE[key] = compiled
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return compiled.with_data(**data)


def _sample_once(build, key, data, s: SamplerSettings) -> az.InferenceData:
    if s.sampler == "nutpie":
        import nutpie

        compiled = _nutpie_compiled(build, key, data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            raw = nutpie.sample(compiled, draws=s.draws, tune=s.tune, chains=s.chains, seed=s.seed,
                                target_accept=s.target_accept, progress_bar=s.progress, save_warmup=False,
                                return_raw_trace=True)
        return trace_to_inference_data(raw, compiled)
    model = build()
    with model:
        pm.set_data(dict(data))
        return pm.sample(draws=s.draws, tune=s.tune, chains=s.chains, cores=1, random_seed=s.seed,
                         target_accept=s.target_accept, progressbar=s.progress, compute_convergence_checks=False)


def sample_gated(build: Callable[[], pm.Model], key: Hashable, data: Mapping[str, np.ndarray],
                 settings: SamplerSettings, gate_vars: list[str]) -> tuple[az.InferenceData, Diagnostics]:
    """Sample; if the diagnostics gate fails, refit once with target_accept 0.95 and twice the draws.

    The returned diagnostics say what still fails; nothing is hidden.
    """
    settings.validate()
    idata = _sample_once(build, key, data, settings)
    diag = check(idata, gate_vars)
    if not diag.passed and settings.refit:
        retry = replace(settings, target_accept=max(0.95, settings.target_accept),
                        draws=settings.draws * 2, tune=max(settings.tune, 1000) * 2)
        idata = _sample_once(build, key, data, retry)
        diag = check(idata, gate_vars, attempts=2)
    return idata, diag


def clear_cache() -> None:
    _CACHE.clear()
