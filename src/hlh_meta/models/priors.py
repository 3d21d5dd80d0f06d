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

from ..errors import PriorError

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


def _closest(word: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6) or \
        [c for c in choices if c.lower() == str(word).lower()]
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_values(key: str, dist: str, args: Mapping[str, float]) -> None:
    """Values every engine needs: finite numbers, positive scales, a proper Uniform range."""
    for name, value in args.items():
        if not np.isfinite(value):
            raise PriorError(key, f"must be finite, got {value:g}", name)
    for name in ("sigma", "beta", "lam", "nu", "alpha"):
        if name in args and not (dist == "Cauchy" and name == "alpha") and args[name] <= 0:
            raise PriorError(key, f"must be > 0, got {args[name]:g}", name)
    if dist == "Uniform" and not 0 <= args["lower"] < args["upper"]:
        raise PriorError(key, f"Uniform needs 0 <= lower < upper, got lower={args['lower']:g}, "
                              f"upper={args['upper']:g}")
    if dist == "Fixed" and key == "tau" and args["value"] < 0:
        raise PriorError("tau", f"must be >= 0, got {args['value']:g}", "value")


def resolve_priors(priors: Mapping | None, defaults: Mapping[str, Mapping]) -> dict[str, dict]:
    """Merge user priors over the defaults and check every name, argument and value.

    The one validation of priors for every engine: an invalid prior is an
    :class:`~hlh_meta.errors.PriorError` (an ``InputError``) before any model is built.
    """
    merged = {k: dict(v) for k, v in defaults.items()}
    if priors is not None and not isinstance(priors, Mapping):
        raise PriorError(None, f"must be a mapping from parameter name to a prior, got {type(priors).__name__}")
    for key, spec in (priors or {}).items():
        if key not in defaults:
            raise PriorError(None, f"unknown parameter '{key}'{_closest(key, defaults)}; the model's parameters "
                                     f"are {', '.join(defaults)}")
        if not isinstance(spec, Mapping) or "dist" not in spec:
            raise PriorError(key, f"must be a mapping with a 'dist' key, e.g. {dict(defaults[key])}")
        dist = spec["dist"]
        if dist not in DISTRIBUTIONS:
            raise PriorError(key, f"unknown distribution '{dist}'{_closest(dist, DISTRIBUTIONS)}; "
                                    f"choose from {', '.join(DISTRIBUTIONS)}")
        allowed = POSITIVE if key == "tau" else REAL
        if dist not in allowed:
            raise PriorError(key, f"'{dist}' is not allowed here; use one of {', '.join(sorted(allowed))}")
        args = {k: v for k, v in spec.items() if k != "dist"}
        need = set(DISTRIBUTIONS[dist])
        if set(args) != need:
            raise PriorError(key, f"{dist} takes {', '.join(DISTRIBUTIONS[dist])}; "
                                    f"got {', '.join(sorted(args)) or 'none'}")
        for name, value in args.items():
            if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
                raise PriorError(key, f"must be a number, got {value!r}", name)
        args = {k: float(v) for k, v in args.items()}
        _check_values(key, dist, args)
        merged[key] = {"dist": dist, **args}
    return merged


def hyper_name(param: str, arg: str) -> str:
    return f"prior_{param}_{arg}"


def prior_data(priors: Mapping[str, Mapping]) -> dict[str, np.ndarray]:
    """Hyperparameter values by their ``pm.Data`` name: swapping them needs no recompilation."""
    return {hyper_name(p, a): np.asarray(v, dtype=float) for p, spec in priors.items() for a, v in spec.items() if a != "dist"}


def families(priors: Mapping[str, Mapping]) -> tuple[tuple[str, str], ...]:
    """The distribution families of a model's priors: part of its structure (hyperparameters are data)."""
    return tuple(sorted((p, spec["dist"]) for p, spec in priors.items()))


def hyperparameters(name: str, spec: Mapping) -> dict:
    """The hyperparameters of ``spec`` as ``pm.Data`` (inside a model context)."""
    return {a: pm.Data(hyper_name(name, a), float(v)) for a, v in spec.items() if a != "dist"}


def make_rv(name: str, spec: Mapping, param: str | None = None, **kwargs):
    """Create the PyMC random variable (or constant, for ``Fixed``) described by ``spec``.

    Hyperparameters are ``pm.Data`` (named after ``param``, default ``name``: the prior of
    parameter ``param`` may serve a variable of another name), so a prior-sensitivity variant
    of the same family is a data swap on the compiled model.
    """
    args = hyperparameters(param or name, spec)
    if spec["dist"] == "Fixed":
        return pm.Deterministic(name, pt.full(kwargs.get("shape", ()), args["value"]), dims=kwargs.get("dims"))
    return getattr(pm, spec["dist"])(name, **args, **kwargs)


def describe(spec: Mapping) -> str:
    """Human-readable prior, e.g. ``HalfNormal(sigma=1)``."""
    args = ", ".join(f"{k}={v:g}" for k, v in spec.items() if k != "dist")
    return f"{spec['dist']}({args})"
