"""Prior specifications: TOML-friendly mappings turned into PyMC distributions.

A prior is ``{"dist": NAME, **parameters}``; a model's priors are a mapping from its
parameter name (``mu``, ``tau``, ``beta``) to such a prior. Unknown parameter names,
distribution names or distribution arguments are errors raised before any model is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import pymc as pm
import pytensor.tensor as pt

#: distribution name -> its required arguments (PyMC's names)
DISTRIBUTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "Normal": ("mu", "sigma"),
    "StudentT": ("nu", "mu", "sigma"),
    "Cauchy": ("alpha", "beta"),
    "HalfNormal": ("sigma",),
    "HalfCauchy": ("beta",),
    "HalfStudentT": ("nu", "sigma"),
    "Exponential": ("lam",),
    "Uniform": ("lower", "upper"),
    "Fixed": ("value",),
})
POSITIVE = frozenset({"HalfNormal", "HalfCauchy", "HalfStudentT", "Exponential", "Uniform", "Fixed"})
REAL = frozenset({"Normal", "StudentT", "Cauchy"})

#: Binomial (logit scale). mu ~ N(0, 1.5): flat-ish over mortality 5%-95% without piling
#: mass at 0 or 1; beta ~ N(0, 1): odds ratios mostly within 1/7 to 7; tau ~ HN(1):
#: between-study odds varying up to ~e^2 is plausible, larger is not.
BINOMIAL_DEFAULTS: Mapping[str, Mapping] = MappingProxyType({
    "mu": {"dist": "Normal", "mu": 0.0, "sigma": 1.5},
    "beta": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
    "tau": {"dist": "HalfNormal", "sigma": 1.0},
})
#: Normal (log ratio of means). mu ~ N(0, 1): ratios 0.14-7 a priori, no direction
#: favoured; beta ~ N(0, 1); tau ~ HN(0.5): studies' true ratios differing by up to a
#: factor ~2.7 is plausible.
NORMAL_DEFAULTS: Mapping[str, Mapping] = MappingProxyType({
    "mu": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
    "beta": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
    "tau": {"dist": "HalfNormal", "sigma": 0.5},
})


def resolve_priors(priors: Mapping | None, defaults: Mapping[str, Mapping]) -> dict[str, dict]:
    """Merge user priors over the defaults and check every name and argument."""
    merged = {k: dict(v) for k, v in defaults.items()}
    for key, spec in (priors or {}).items():
        if key not in defaults:
            raise ValueError(f"priors: unknown parameter '{key}'; the model's parameters are {', '.join(defaults)}")
        if not isinstance(spec, Mapping) or "dist" not in spec:
            raise ValueError(f"priors['{key}'] must be a mapping with a 'dist' key, e.g. {dict(defaults[key])}")
        dist = spec["dist"]
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"priors['{key}']: unknown distribution '{dist}'; choose from {', '.join(DISTRIBUTIONS)}")
        allowed = POSITIVE if key == "tau" else REAL
        if dist not in allowed:
            raise ValueError(f"priors['{key}']: '{dist}' is not allowed here; use one of {', '.join(sorted(allowed))}")
        args = {k: v for k, v in spec.items() if k != "dist"}
        need = set(DISTRIBUTIONS[dist])
        if set(args) != need:
            raise ValueError(f"priors['{key}']: {dist} takes {', '.join(DISTRIBUTIONS[dist])}; got {', '.join(sorted(args)) or 'none'}")
        for name, value in args.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ValueError(f"priors['{key}'].{name} must be a number, got {value!r}")
        merged[key] = {"dist": dist, **{k: float(v) for k, v in args.items()}}
    return merged


def hyper_name(param: str, arg: str) -> str:
    return f"prior_{param}_{arg}"


def prior_data(priors: Mapping[str, Mapping]) -> dict[str, np.ndarray]:
    """Hyperparameter values by their ``pm.Data`` name: swapping them needs no recompilation."""
    return {hyper_name(p, a): np.asarray(v, dtype=float) for p, spec in priors.items() for a, v in spec.items() if a != "dist"}


def prior_structure(priors: Mapping[str, Mapping]) -> tuple:
    """What a compiled model depends on: the distribution families, not their hyperparameters."""
    return tuple(sorted((p, spec["dist"]) for p, spec in priors.items()))


def hyperparameters(name: str, spec: Mapping) -> dict:
    """The hyperparameters of ``spec`` as ``pm.Data`` (inside a model context)."""
    return {a: pm.Data(hyper_name(name, a), float(v)) for a, v in spec.items() if a != "dist"}


def make_rv(name: str, spec: Mapping, **kwargs):
    """Create the PyMC random variable (or constant, for ``Fixed``) described by ``spec``.

    Hyperparameters are ``pm.Data``, so a prior-sensitivity variant of the same family is a
    data swap on the compiled model.
    """
    args = hyperparameters(name, spec)
    if spec["dist"] == "Fixed":
        return pm.Deterministic(name, pt.full(kwargs.get("shape", ()), args["value"]), dims=kwargs.get("dims"))
    return getattr(pm, spec["dist"])(name, **args, **kwargs)


def describe(spec: Mapping) -> str:
    """Human-readable prior, e.g. ``HalfNormal(sigma=1)``."""
    args = ", ".join(f"{k}={v:g}" for k, v in spec.items() if k != "dist")
    return f"{spec['dist']}({args})"
