"""The diagnostics gate: rank-normalised split R-hat, bulk and tail ESS, divergences.

The statistics are those of Vehtari et al. (2021, Bayesian Analysis 16(2):667-718) as
ArviZ computes them (``az.rhat``, ``az.ess(method="bulk"|"tail")``). ArviZ evaluates them
one scalar at a time in Python; the gate runs after every fit and every sensitivity
variant, so here they are evaluated for all parameters at once with array operations.
``tests/test_diagnostics.py`` holds them equal to ArviZ's.
"""

from __future__ import annotations

import json
import re
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import arviz as az
import numpy as np
from scipy import fft, special, stats

from ..errors import GateWarning

#: thresholds every fit is held to
GATE = {"r_hat_max": 1.01, "ess_bulk_min": 400, "ess_tail_min": 400, "divergences_max": 0}


def check_name(problem: str) -> str:
    """The check a problem of :attr:`Diagnostics.problems` names: ``"divergences"``,
    ``"R-hat"``, ``"bulk ESS"`` or ``"tail ESS"``."""
    return "divergences" if "divergen" in problem else re.match(r"\D*", problem).group().strip()  # type: ignore[union-attr]


@contextmanager
def gate_summary(what: str):
    """The :class:`GateWarning` of every fit made in the block (one per refit of a
    cross-validation, say) as one warning at its end: how many fits failed and which checks;
    other warnings pass as they are."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GateWarning)
        yield
    failed = [str(w.message) for w in caught if issubclass(w.category, GateWarning)]
    for w in caught:
        if not issubclass(w.category, GateWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    if not failed:
        return
    checks = []
    for message in failed:
        problems = message.split(": ", 1)[-1].split("; the draws")[0]
        for problem in problems.split("; "):
            name = check_name(problem)
            if name not in checks:
                checks.append(name)
    warnings.warn(f"the diagnostics gate failed in {len(failed)} of the fits for {what}: {', '.join(checks)}; their "
                  "draws may not represent their posteriors", GateWarning, stacklevel=3)


@dataclass
class Diagnostics:
    """The diagnostics gate's verdict on a fit (see :data:`GATE` for the thresholds).

    Parameters
    ----------
    r_hat_max : float
        The worst rank-normalised split R-hat over the gated parameters.
    ess_bulk_min : float
        The smallest bulk effective sample size.
    ess_tail_min : float
        The smallest tail effective sample size.
    divergences : int
        The number of divergent transitions.
    attempts : int, default 1
        Sampling runs made: 1, and one more for each remedy tried (the run again at a
        higher target acceptance after divergences alone, the chains added for too few
        effective draws, the gate's refit), up to 4 (:func:`hlh_meta.inference.sample_gated`).
    problems : list of str, optional
        The checks that failed, in words; empty when the fit passed.
    kept : list of dict, optional
        The sampler settings (``SamplerSettings.public()``: sampler, draws, tune, chains,
        seed, target_accept) of the runs whose draws the fit holds: one run, or two where
        chains were added; None where not recorded (a fit saved before they were).
    """

    r_hat_max: float
    ess_bulk_min: float
    ess_tail_min: float
    divergences: int
    attempts: int = 1
    problems: list[str] = field(default_factory=list)
    kept: list[dict] | None = None

    @property
    def passed(self) -> bool:
        """Whether every check passed (no problems)."""
        return not self.problems

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "passed": self.passed})

    @classmethod
    def from_json(cls, text: str) -> "Diagnostics":
        data = json.loads(text)
        data.pop("passed", None)
        return cls(**data)


def _split(x: np.ndarray) -> np.ndarray:
    """(k, chain, draw) -> (k, 2 chain, draw // 2): first and last half of every chain."""
    half = x.shape[-1] // 2
    return np.concatenate([x[..., :half], x[..., x.shape[-1] - half:]], axis=1)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks (1..n) along the rows of a 2-d array, ties given their average rank. Draws of
    continuous parameters rarely tie: one unstable sort then settles it, about three times
    faster than ``scipy.stats.rankdata``, which ranks the rows that hold a tie."""
    order = np.argsort(x, axis=1)
    ordered = np.take_along_axis(x, order, axis=1)
    rank = np.empty(x.shape)
    rank[np.arange(x.shape[0])[:, None], order] = np.arange(1.0, x.shape[1] + 1.0)
    tied = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if tied.any():
        rank[tied] = stats.rankdata(x[tied], method="average", axis=1)
    return rank


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the pooled ranks of each parameter (Blom offset 3/8)."""
    k, shape = x.shape[0], x.shape[1:]
    rank = _ranks(x.reshape(k, -1))
    size = rank.shape[1]
    return special.ndtri((rank - 3 / 8) / (size - 3 / 4 + 1)).reshape((k, *shape))


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    between = n * np.var(x.mean(axis=-1), axis=-1, ddof=1)
    within = np.var(x, axis=-1, ddof=1).mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((between / within + n - 1) / n)


def _ess(x: np.ndarray) -> np.ndarray:
    """Effective sample size of each parameter of (k, chain, draw) draws, Geyer's initial
    monotone sequence estimator on the chain-averaged autocorrelations."""
    k, n_chain, n_draw = x.shape
    total = n_chain * n_draw
    m = fft.next_fast_len(2 * n_draw)
    centred = x - x.mean(axis=-1, keepdims=True)
    spectrum = fft.rfft(centred, n=m, axis=-1)
    acov = fft.irfft(spectrum * np.conjugate(spectrum), n=m, axis=-1)[..., :n_draw] / n_draw
    mean_acov = acov.mean(axis=1)                                        # (k, draw)
    mean_var = mean_acov[:, 0] * n_draw / (n_draw - 1.0)
    var_plus = mean_var * (n_draw - 1.0) / n_draw
    if n_chain > 1:
        var_plus = var_plus + np.var(x.mean(axis=-1), axis=-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = 1.0 - (mean_var[:, None] - mean_acov) / var_plus[:, None]
    rho[:, 0] = 1.0
    n_pairs = n_draw // 2
    pairs = rho[:, : 2 * n_pairs].reshape(k, n_pairs, 2).sum(axis=-1)   # P_j = rho_2j + rho_2j+1
    # the positive sequence runs over pairs 0..last-1: it stops after the first pair whose sum
    # is not positive, and at the latest after pair (n_draw - 3) // 2
    last = np.minimum(np.argmax(~(pairs > 0), axis=1) + np.where((pairs > 0).all(axis=1), n_pairs, 0),
                      (n_draw - 3) // 2)
    kept = np.arange(n_pairs)[None, :] < last[:, None]
    monotone = np.minimum.accumulate(np.where(kept, pairs, np.inf), axis=1)
    head = np.where(kept, monotone, 0.0).sum(axis=1)
    rows = np.arange(k)
    even = rho[rows, 2 * last]
    with np.errstate(invalid="ignore"):
        tail = np.where((pairs[rows, np.minimum(last, n_pairs - 1)] >= 0) | (even > 0), even, 0.0)
    tau_hat = np.maximum(-1.0 + 2.0 * head + tail, 1.0 / np.log10(total))
    ess = total / tau_hat
    constant = np.ptp(x.reshape(k, -1), axis=1) < np.finfo(float).resolution
    return np.where(constant, float(total), ess)


def gate_statistics(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised split R-hat, bulk ESS and tail ESS of each column of (chain, draw, k)
    draws; NaN where undefined (non-finite draws, fewer than 4 draws, R-hat of one chain)."""
    x = np.moveaxis(np.asarray(draws, dtype=float), -1, 0)              # (k, chain, draw)
    k, n_chain, n_draw = x.shape
    nan = np.full(k, np.nan)
    if n_draw < 4:
        return nan, nan.copy(), nan.copy()
    bad = ~np.isfinite(x).all(axis=(1, 2))
    x = np.where(bad[:, None, None], 0.0, x)
    split = _split(x)
    folded = np.abs(split - np.median(split.reshape(k, -1), axis=1)[:, None, None])
    z = _z_scale(split)
    rhat = np.maximum(_rhat(z), _rhat(_z_scale(folded))) if n_chain > 1 else nan.copy()
    bulk = _ess(z)
    tail = []
    for prob in (0.05, 0.95):
        q = np.quantile(x.reshape(k, -1), prob, axis=1)
        tail.append(_ess(_split((x <= q[:, None, None]).astype(float))))
    tail = np.minimum(*tail)
    return tuple(np.where(bad, np.nan, s) for s in (rhat, bulk, tail))  # type: ignore[return-value]


def check(idata: az.InferenceData, var_names: list[str], attempts: int = 1) -> Diagnostics:
    """Worst R-hat and ESS over ``var_names`` and the number of divergent transitions."""
    post = idata.posterior
    columns = [post[v].values.reshape(post.sizes["chain"], post.sizes["draw"], -1) for v in var_names]
    rhat, bulk, tail = gate_statistics(np.concatenate(columns, axis=-1))
    with warnings.catch_warnings():         # all-NaN statistics (e.g. one chain) stay NaN and fail
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat_max, ess_b, ess_t = float(np.nanmax(rhat)), float(np.nanmin(bulk)), float(np.nanmin(tail))
    stats_ = getattr(idata, "sample_stats", None)
    div = int(stats_["diverging"].sum()) if stats_ is not None and "diverging" in stats_ else 0
    problems = []
    if not rhat_max <= GATE["r_hat_max"]:
        problems.append(f"R-hat {rhat_max:.3f} > {GATE['r_hat_max']}")
    if not ess_b >= GATE["ess_bulk_min"]:
        problems.append(f"bulk ESS {ess_b:.0f} < {GATE['ess_bulk_min']}")
    if not ess_t >= GATE["ess_tail_min"]:
        problems.append(f"tail ESS {ess_t:.0f} < {GATE['ess_tail_min']}")
    if div > GATE["divergences_max"]:
        problems.append(f"{div} divergent transitions")
    return Diagnostics(rhat_max, ess_b, ess_t, div, attempts, problems)
