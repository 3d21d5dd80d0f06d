"""Effect sizes and the conversions needed to compute them from what papers print.

In the spirit of metafor's ``escalc``: each function is small, takes scalars or
array-likes (numeric functions broadcast with numpy and return a ``float`` for scalar
input), and raises :class:`~hlh_meta.errors.InputError` (a ``ValueError``) naming the offending
argument on invalid input.

References
----------
Wan X, Wang W, Liu J, Tong T (2014). Estimating the sample mean and standard deviation
from the sample size, median, range and/or interquartile range. BMC Med Res Methodol
14:135.
Lajeunesse MJ (2011). On the meta-analysis of response ratios for studies with
correlated and multi-group designs. Ecology 92:2049-2055 (metafor measure "ROMC").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import special          # quantiles only: scipy.stats would double the start-up of `data check`

from ..errors import InputError

__all__ = [
    "Effect", "sd_from_sem", "sd_diff_from_paired_p", "sd_baseline_from_paired", "mean_from_median_iqr",
    "sd_from_iqr", "mean_from_median_range", "sd_from_range", "baseline_from_percent_change",
    "log_ratio_paired", "percent_reduction", "percent_interval", "counts_from_percentage",
    "count_pairs_from_percentage",
]

Number = float | np.ndarray
_TOL = 1e-9  # slack, in percentage points, for floating-point error at the rounding boundary


class Effect(NamedTuple):
    """An effect size ``yi`` with its sampling variance ``vi``.

    Parameters
    ----------
    yi : float or numpy.ndarray
        The effect size.
    vi : float or numpy.ndarray
        Its sampling variance.
    """

    yi: Number
    vi: Number

    @property
    def sei(self) -> Number:
        """Standard error, ``sqrt(vi)``."""
        return _out(np.sqrt(self.vi))


def _arr(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float)
    if np.isnan(a).any():
        raise InputError(f"{name} must not be NaN")
    return a


def _require(ok: ArrayLike, message: str) -> None:
    if not np.all(ok):
        raise InputError(message)


def _show(a: np.ndarray, bad: ArrayLike) -> str:
    """The values of ``a`` flagged by ``bad``, for an error message."""
    vals = np.broadcast_to(a, np.shape(bad))[np.asarray(bad)]
    return f"{vals.item():g}" if vals.size == 1 else np.array2string(vals, threshold=8)


def _positive(x: ArrayLike, name: str) -> np.ndarray:
    a = _arr(x, name)
    _require(a > 0, f"{name} must be positive, got {_show(a, ~(a > 0))}")
    return a


def _non_negative(x: ArrayLike, name: str) -> np.ndarray:
    a = _arr(x, name)
    _require(a >= 0, f"{name} must be non-negative, got {_show(a, a < 0)}")
    return a


def _size(n: ArrayLike, minimum: int = 2, name: str = "n") -> np.ndarray:
    a = _arr(n, name)
    ok = (a >= minimum) & (a == np.floor(a))
    _require(ok, f"{name} must be a whole number >= {minimum}, got {_show(a, ~ok)}")
    return a


def _correlation(r: ArrayLike) -> np.ndarray:
    a = _arr(r, "r")
    ok = (a >= -1) & (a <= 1)
    _require(ok, f"correlation r must be in [-1, 1], got {_show(a, ~ok)}")
    return a


def _out(a: ArrayLike) -> Number:
    return float(a) if np.ndim(a) == 0 else np.asarray(a, dtype=float)  # type: ignore[arg-type]


def sd_from_sem(sem: ArrayLike, n: ArrayLike) -> Number:
    """SD from a standard error of the mean: ``SD = SEM * sqrt(n)``.

    Parameters
    ----------
    sem : array_like
        Standard error of the mean (non-negative).
    n : array_like
        Sample size (a whole number >= 2).

    Returns
    -------
    float or numpy.ndarray
        The standard deviation.

    Raises
    ------
    hlh_meta.InputError
        For NaN, a negative ``sem`` or a bad ``n``.
    """
    return _out(_non_negative(sem, "sem") * np.sqrt(_size(n)))


def sd_diff_from_paired_p(mean1: ArrayLike, mean2: ArrayLike, n: ArrayLike, p: ArrayLike,
                          two_sided: bool = True) -> Number:
    """SD of the paired differences implied by a paired t-test p-value.

    ``t = F^-1(1 - p/2; n - 1)`` (``1 - p`` if one-sided), with ``F`` the t distribution,
    and ``SD_d = |mean1 - mean2| * sqrt(n) / t``, inverting ``t = |d| / (SD_d / sqrt(n))``.

    Parameters
    ----------
    mean1, mean2 : array_like
        The two means (baseline and follow-up); they must differ.
    n : array_like
        Number of pairs (a whole number >= 2).
    p : array_like
        The paired t-test's p-value, in (0, 1) (below 0.5 if one-sided).
    two_sided : bool, default True
        Whether ``p`` is two-sided.

    Returns
    -------
    float or numpy.ndarray
        The SD of the paired differences.

    Raises
    ------
    hlh_meta.InputError
        For NaN, equal means, a bad ``n`` or a ``p`` out of range.
    """
    m1, m2, n, p = _arr(mean1, "mean1"), _arr(mean2, "mean2"), _size(n), _arr(p, "p")
    ok = (p > 0) & (p < 1)
    _require(ok, f"p must be in (0, 1), got {_show(p, ~ok)}")
    _require(m1 != m2, "mean1 equals mean2: a p-value carries no information on the SD of a zero difference")
    if not two_sided:
        _require(p < 0.5, f"a one-sided p-value must be below 0.5 to imply a positive t, got {_show(p, p >= 0.5)}")
    t = special.stdtrit(n - 1, 1 - p / 2 if two_sided else 1 - p)
    return _out(np.abs(m1 - m2) * np.sqrt(n) / t)


def sd_baseline_from_paired(sd_diff: ArrayLike, sd2: ArrayLike, r: ArrayLike) -> Number:
    """The other arm's SD from the SD of paired differences, one arm's SD and the correlation.

    Solves ``sd_diff^2 = sd1^2 + sd2^2 - 2 r sd1 sd2`` for ``sd1``, taking the larger root
    ``sd1 = r sd2 + sqrt(sd_diff^2 - sd2^2 (1 - r^2))``. The equation is symmetric in the
    two SDs, so it serves for a missing follow-up SD too.

    Parameters
    ----------
    sd_diff : array_like
        SD of the paired differences (non-negative).
    sd2 : array_like
        The known arm's SD (non-negative).
    r : array_like
        Correlation between the two arms' values, in [-1, 1].

    Returns
    -------
    float or numpy.ndarray
        The other arm's SD.

    Raises
    ------
    hlh_meta.InputError
        For NaN, negative SDs, ``r`` out of [-1, 1], or inputs no positive SD solves.
    """
    sd_d, sd2, r = _non_negative(sd_diff, "sd_diff"), _non_negative(sd2, "sd2"), _correlation(r)
    disc = sd_d**2 - sd2**2 * (1 - r**2)
    _require(disc >= 0, "no real SD solves sd_diff^2 = sd1^2 + sd2^2 - 2 r sd1 sd2: "
                        "sd_diff is below sd2 * sqrt(1 - r^2)")
    sd1 = r * sd2 + np.sqrt(np.maximum(disc, 0))
    _require(sd1 > 0, "no positive SD solves sd_diff^2 = sd1^2 + sd2^2 - 2 r sd1 sd2 for these inputs")
    return _out(sd1)


def mean_from_median_iqr(q1: ArrayLike, median: ArrayLike, q3: ArrayLike) -> Number:
    """Mean from the median and quartiles (Wan et al. 2014, scenario C3): ``(q1 + m + q3) / 3``.

    Parameters
    ----------
    q1 : array_like
        First quartile.
    median : array_like
        Median.
    q3 : array_like
        Third quartile.

    Returns
    -------
    float or numpy.ndarray
        The estimated mean.

    Raises
    ------
    hlh_meta.InputError
        For NaN, or quartiles out of order (``q1 <= median <= q3``).
    """
    q1, m, q3 = _arr(q1, "q1"), _arr(median, "median"), _arr(q3, "q3")
    _require(q1 <= m, "q1 must not exceed the median")
    _require(m <= q3, "the median must not exceed q3")
    return _out((q1 + m + q3) / 3)


def sd_from_iqr(q1: ArrayLike, q3: ArrayLike, n: ArrayLike) -> Number:
    """SD from the interquartile range (Wan et al. 2014, scenario C3).

    ``SD = (q3 - q1) / (2 Phi^-1((0.75 n - 0.125) / (n + 0.25)))``; the divisor tends to
    ``2 Phi^-1(0.75) = 1.349`` as ``n`` grows.

    Parameters
    ----------
    q1 : array_like
        First quartile.
    q3 : array_like
        Third quartile (not below ``q1``).
    n : array_like
        Sample size (a whole number >= 2).

    Returns
    -------
    float or numpy.ndarray
        The estimated SD.

    Raises
    ------
    hlh_meta.InputError
        For NaN, ``q1 > q3`` or a bad ``n``.
    """
    q1, q3, n = _arr(q1, "q1"), _arr(q3, "q3"), _size(n)
    _require(q1 <= q3, "q1 must not exceed q3")
    return _out((q3 - q1) / (2 * special.ndtri((0.75 * n - 0.125) / (n + 0.25))))


def mean_from_median_range(minimum: ArrayLike, median: ArrayLike, maximum: ArrayLike) -> Number:
    """Mean from the median and range (Wan et al. 2014, scenario C1): ``(a + 2m + b) / 4``.

    Parameters
    ----------
    minimum : array_like
        The smallest value ``a``.
    median : array_like
        The median ``m``.
    maximum : array_like
        The largest value ``b``.

    Returns
    -------
    float or numpy.ndarray
        The estimated mean.

    Raises
    ------
    hlh_meta.InputError
        For NaN, or values out of order (``minimum <= median <= maximum``).
    """
    a, m, b = _arr(minimum, "minimum"), _arr(median, "median"), _arr(maximum, "maximum")
    _require(a <= m, "the minimum must not exceed the median")
    _require(m <= b, "the median must not exceed the maximum")
    return _out((a + 2 * m + b) / 4)


def sd_from_range(minimum: ArrayLike, maximum: ArrayLike, n: ArrayLike) -> Number:
    """SD from the range (Wan et al. 2014, scenario C1): ``(b - a) / (2 Phi^-1((n - 0.375) / (n + 0.25)))``.

    Parameters
    ----------
    minimum : array_like
        The smallest value ``a``.
    maximum : array_like
        The largest value ``b`` (not below ``a``).
    n : array_like
        Sample size (a whole number >= 2).

    Returns
    -------
    float or numpy.ndarray
        The estimated SD.

    Raises
    ------
    hlh_meta.InputError
        For NaN, ``minimum > maximum`` or a bad ``n``.
    """
    a, b, n = _arr(minimum, "minimum"), _arr(maximum, "maximum"), _size(n)
    _require(a <= b, "the minimum must not exceed the maximum")
    return _out((b - a) / (2 * special.ndtri((n - 0.375) / (n + 0.25))))


def baseline_from_percent_change(followup_mean: ArrayLike, percent_decrease: ArrayLike) -> Number:
    """Baseline mean from "decreased by X% to Y": ``Y / (1 - X / 100)``.

    A negative ``percent_decrease`` is an increase.

    Parameters
    ----------
    followup_mean : array_like
        The follow-up value ``Y``.
    percent_decrease : array_like
        The decrease ``X`` in percent (below 100).

    Returns
    -------
    float or numpy.ndarray
        The baseline mean.

    Raises
    ------
    hlh_meta.InputError
        For NaN or a ``percent_decrease`` of 100 or more.
    """
    y, x = _arr(followup_mean, "followup_mean"), _arr(percent_decrease, "percent_decrease")
    _require(x < 100, f"percent_decrease must be below 100, got {_show(x, x >= 100)}")
    return _out(y / (1 - x / 100))


def log_ratio_paired(mean1: ArrayLike, sd1: ArrayLike, mean2: ArrayLike, sd2: ArrayLike, n: ArrayLike,
                     r: ArrayLike = 0.5) -> Effect:
    """Log ratio of means, follow-up (2) over baseline (1), in a paired design (metafor "ROMC").

    ``yi = log(m2 / m1)`` and
    ``vi = sd1^2 / (n m1^2) + sd2^2 / (n m2^2) - 2 r sd1 sd2 / (n m1 m2)``,
    with ``r`` the correlation between baseline and follow-up values.

    Parameters
    ----------
    mean1 : array_like
        Baseline mean (positive).
    sd1 : array_like
        Baseline SD (non-negative).
    mean2 : array_like
        Follow-up mean (positive).
    sd2 : array_like
        Follow-up SD (non-negative).
    n : array_like
        Number of patients measured at both times (a whole number >= 2).
    r : array_like, default 0.5
        Correlation between baseline and follow-up values, in [-1, 1].

    Returns
    -------
    Effect
        The log ratio ``yi`` and its sampling variance ``vi``.

    Raises
    ------
    hlh_meta.InputError
        For NaN, non-positive means, negative SDs, a bad ``n`` or ``r`` out of [-1, 1].
    """
    m1, m2 = _positive(mean1, "mean1"), _positive(mean2, "mean2")
    s1, s2 = _non_negative(sd1, "sd1"), _non_negative(sd2, "sd2")
    n, r = _size(n), _correlation(r)
    yi = np.log(m2 / m1)
    vi = s1**2 / (n * m1**2) + s2**2 / (n * m2**2) - 2 * r * s1 * s2 / (n * m1 * m2)
    return Effect(_out(yi), _out(vi))


def percent_reduction(log_ratio: ArrayLike) -> Number:
    """Percent reduction implied by a log ratio ``y``: ``100 (1 - exp(y))``.

    Parameters
    ----------
    log_ratio : array_like
        Log ratio of follow-up to baseline.

    Returns
    -------
    float or numpy.ndarray
        The percent reduction (negative for an increase).

    Raises
    ------
    hlh_meta.InputError
        For NaN.
    """
    return _out(100 * (1 - np.exp(_arr(log_ratio, "log_ratio"))))


def percent_interval(value: float, decimals: int) -> tuple[float, float]:
    """The interval ``value +/- 0.5 * 10**-decimals``, clipped to [0, 100], that a rounded percentage stands for.

    Parameters
    ----------
    value : float
        The reported percentage, in [0, 100].
    decimals : int
        Decimal places it was rounded to (a whole number >= 0).

    Returns
    -------
    tuple of float
        The interval's lower and upper ends.

    Raises
    ------
    hlh_meta.InputError
        For NaN, a percentage out of [0, 100] or a bad ``decimals``.
    """
    v = float(_arr(value, "percent"))
    _require(0 <= v <= 100, f"percent must be in [0, 100], got {v:g}")
    d = int(_size(decimals, 0, "decimals"))
    half = 0.5 * 10.0**-d
    return max(v - half, 0.0), min(v + half, 100.0)


def counts_from_percentage(percent: float, n: int, decimals: int = 0) -> list[int]:
    """Every count ``k`` in ``0..n`` whose ``100 k / n`` rounds to ``percent`` at ``decimals`` places.

    Both ends of the rounding interval are included (with a 1e-9 slack), so round-half-up
    and round-half-even reporting are both covered.

    Parameters
    ----------
    percent : float
        The reported percentage, in [0, 100].
    n : int
        The denominator (a whole number >= 1).
    decimals : int, default 0
        Decimal places the percentage was rounded to.

    Returns
    -------
    list of int
        The counts, ascending; empty when none rounds to ``percent``.

    Raises
    ------
    hlh_meta.InputError
        For NaN, a percentage out of [0, 100], a bad ``n`` or a bad ``decimals``.
    """
    lo, hi = percent_interval(percent, decimals)
    n = int(_size(n, 1))
    pct = 100 * np.arange(n + 1) / n
    return [int(k) for k in np.flatnonzero((pct >= lo - _TOL) & (pct <= hi + _TOL))]


def count_pairs_from_percentage(percent: float, decimals: int, n_max: int, n_min: int = 1) -> list[tuple[int, int]]:
    """Every ``(k, n)`` with ``n_min <= n <= n_max`` such that ``100 k / n`` rounds to ``percent``.

    For a stratum whose size was not reported; see :func:`counts_from_percentage`.

    Parameters
    ----------
    percent : float
        The reported percentage, in [0, 100].
    decimals : int
        Decimal places the percentage was rounded to.
    n_max : int
        The largest denominator to try.
    n_min : int, default 1
        The smallest denominator to try (a whole number >= 1).

    Returns
    -------
    list of tuple of int
        The ``(k, n)`` pairs, by ``n`` then ``k``.

    Raises
    ------
    hlh_meta.InputError
        For NaN, a percentage out of [0, 100], a bad ``decimals`` or a bad ``n_min``.
    """
    n_min = int(_size(n_min, 1, "n_min"))
    n_max = int(_arr(n_max, "n_max"))
    return [(k, n) for n in range(n_min, n_max + 1) for k in counts_from_percentage(percent, n, decimals)]
