"""NUTS through nutpie (default) or PyMC, with a compile-once cache and one gated refit.

A compiled nutpie model is kept per model *structure* (:class:`hlh_meta.models.Structure`:
shapes, priors, covariates); a fit of new data with the same structure swaps the
``pm.Data`` values into the compiled model instead of compiling again. The model's C
callbacks come from :mod:`.callbacks`, which a later process loads from numba's disk cache.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace

import arviz as az
import numpy as np
import pymc as pm
import xarray as xr

from ..errors import Interrupts, SamplingInterrupted, SettingError, plain
from .callbacks import compile_pymc_model
from .diagnostics import GATE, Diagnostics, check, check_name
from .trace import sample_to_inference_data

SAMPLERS = ("nutpie", "pymc")
_CACHE: "OrderedDict[Hashable, object]" = OrderedDict()
_CACHE_SIZE = 32
#: the PyMC model each compiled structure of :data:`_CACHE` was compiled from, whose data its
#: initial points read (:func:`own_initial_points`)
_COMPILED_FROM: dict[Hashable, pm.Model] = {}
_ON_COMPILE: list[Callable[[bool], None]] = []


@contextmanager
def on_compile(notice: Callable[[bool], None]):
    """Within the block, ``notice(True)`` is called before a model structure compiles in this
    process and ``notice(False)`` after (a fit that reuses a compiled model calls nothing)."""
    _ON_COMPILE.append(notice)
    try:
        yield
    finally:
        _ON_COMPILE.remove(notice)


@dataclass(frozen=True)
class SamplerSettings:
    """How a model is sampled; the one place that holds the defaults.

    A fit that fails the diagnostics gate is refitted once (``refit``) with the settings of
    :meth:`retry`: target acceptance :attr:`REFIT_TARGET_ACCEPT`, twice the draws and twice
    the tuning steps (at least 1000); one that fails only for too few effective draws first
    gets as many chains again, which are added to its own, and one that fails only on
    divergent transitions is first sampled again at :attr:`REFIT_TARGET_ACCEPT` with the
    same draws and tuning steps (:func:`sample_gated`). Frozen;
    build one from a mapping or options, checked, with :meth:`of`.

    Parameters
    ----------
    draws : int, default 1000
        Posterior draws per chain.
    tune : int, default 1000
        Warm-up (tuning) steps per chain; at least 1 with the nutpie sampler.
    chains : int, default 4
        Number of chains.
    seed : int or None, default None
        Random seed, from 0 to 2^63 - 1; None for a fresh one.
    sampler : {"nutpie", "pymc"}, default "nutpie"
        The NUTS implementation.
    target_accept : float, default 0.9
        NUTS's target acceptance rate, in [0.5, 1).
    progress : bool, default False
        Show the sampler's progress bar.
    refit : bool, default True
        Refit once, as above, when the fit fails the diagnostics gate.

    Attributes
    ----------
    REFIT_TARGET_ACCEPT : float
        The target acceptance of the refit (0.95; the fit's own where higher).
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int | None = None
    sampler: str = "nutpie"
    target_accept: float = 0.9
    progress: bool = False
    refit: bool = True

    REFIT_TARGET_ACCEPT = 0.95

    def __post_init__(self) -> None:
        # numpy integers (a seed drawn with numpy, a count from an array) are stored as int,
        # so the settings can be written to JSON
        for name in ("draws", "tune", "chains", "seed"):
            value = getattr(self, name)
            if isinstance(value, np.integer):
                object.__setattr__(self, name, int(value))
        if isinstance(self.target_accept, np.floating):
            object.__setattr__(self, "target_accept", float(self.target_accept))

    def retry(self) -> "SamplerSettings":
        """The settings of the one refit after a failed diagnostics gate.

        Returns
        -------
        SamplerSettings
            These settings with target acceptance :attr:`REFIT_TARGET_ACCEPT` (the fit's own
            where higher), twice the draws and twice the tuning steps, at least 1000 (a fit of
            the default 1000 is refitted with 2000, a sensitivity variant's 500 with 1000).
        """
        return replace(self, target_accept=max(self.REFIT_TARGET_ACCEPT, self.target_accept),
                       draws=self.draws * 2, tune=max(self.tune * 2, 1000))

    @classmethod
    def of(cls, sampling: "SamplerSettings | Mapping | None" = None, **options) -> "SamplerSettings":
        """Settings from an instance, a mapping (e.g. a spec's ``[sampling]`` table) and/or options.

        Parameters
        ----------
        sampling : SamplerSettings, mapping or None, optional
            The settings to start from; None for the defaults.
        **options
            Settings that override those of ``sampling``.

        Returns
        -------
        SamplerSettings
            The settings, checked with :meth:`validate` (a whole-number float seed is
            stored as an int).

        Raises
        ------
        hlh_meta.errors.SettingError
            For an unknown setting name (suggesting the closest one) or a bad value,
            naming the setting.
        """
        base = {} if sampling is None else asdict(sampling) if isinstance(sampling, SamplerSettings) else dict(sampling)
        merged = {**base, **options}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(merged) - known)
        if unknown:
            import difflib

            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise SettingError(unknown[0], f"is not a sampler setting{hint}; settings are {', '.join(sorted(known))}")
        settings = cls(**merged)
        if isinstance(settings.seed, (np.integer, float)) and not isinstance(settings.seed, bool) \
                and float(settings.seed).is_integer():
            settings = replace(settings, seed=int(settings.seed))
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check every setting's value.

        Also refuses settings whose draws could not fit in half of this machine's memory
        even at one value per draw.

        Raises
        ------
        hlh_meta.errors.SettingError
            For a bad value (bad input), naming the setting.
        """
        if self.sampler not in SAMPLERS:
            raise SettingError("sampler", f"names an unknown sampler {plain(self.sampler)}; choose {' or '.join(SAMPLERS)}")
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            least = 1 if name != "tune" else 0
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
                what = "a positive whole number" if least else "a whole number >= 0"
                raise SettingError(name, f"must be {what}, got {repr(value) if isinstance(value, float) else plain(value)}")
        if self.seed is not None and (not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool)
                                      or not 0 <= self.seed < 2**63):
            raise SettingError("seed", f"must be a whole number from 0 to 2^63 - 1, got {plain(self.seed)}")
        if self.sampler == "nutpie" and self.tune < 1:
            raise SettingError("tune", "must be at least 1 with the nutpie sampler (it cannot sample without a "
                                       "warm-up); use sampler='pymc' for tune=0")
        if isinstance(self.target_accept, bool) or not isinstance(self.target_accept, (int, float)) \
                or not 0.5 <= self.target_accept < 1:
            raise SettingError("target_accept", f"must be in [0.5, 1), got {plain(self.target_accept)}")

        need = memory_needed(self, 1)
        if need > memory_budget():          # too large whatever the model: refused before any model is built
            raise SettingError(_largest(self), _too_large(self, 1, need))

    def public(self) -> dict:
        """The settings a results folder records.

        Returns
        -------
        dict
            ``sampler``, ``draws``, ``tune``, ``chains``, ``seed`` and ``target_accept``.
        """
        return {k: getattr(self, k) for k in ("sampler", "draws", "tune", "chains", "seed", "target_accept")}


# --- how much memory a fit asks for -------------------------------------------------------

#: bytes of one stored value (float64)
_BYTES = 8
#: copies of the draws a fit holds at its peak: nutpie's trace, the InferenceData made of it and
#: the completed InferenceData (posterior predictive and log-likelihood groups of the same order)
_COPIES = 3
#: sample statistics nutpie stores with each draw (step size, tree depth, energy, ...)
_STATS = 20
#: a chain's own state (sampler, adaptation, thread) beside its draws
_PER_CHAIN = 1 << 20


def memory_needed(settings: SamplerSettings, values_per_draw: int) -> int:
    """Bytes a fit with ``settings`` may hold at its peak, for a model that stores
    ``values_per_draw`` values (parameters and derived quantities) per draw::

        chains x slots x (values_per_draw + 20 statistics) x 8 bytes x 3 copies + 1 MiB per chain

    ``slots`` is draws + tune (nutpie reserves room for the warm-up too), and for a fit that
    may be refitted by the diagnostics gate that of the refit (:meth:`SamplerSettings.retry`).
    """
    slots = settings.draws + settings.tune
    if settings.refit:
        retry = settings.retry()
        slots = max(slots, retry.draws + retry.tune)
    return settings.chains * (slots * (int(values_per_draw) + _STATS) * _BYTES * _COPIES + _PER_CHAIN)


def machine_memory() -> int:
    """Bytes of memory this process may use: the machine's, or its control group's limit when lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30                                   # not told: assume a small machine
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit, encoding="ascii").read().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return total


def memory_budget() -> int:
    """What one request may take: half of :func:`machine_memory`, leaving the rest to the
    system, the libraries and other programs."""
    return machine_memory() // 2


def gib(n: float) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.3g} MiB"


def _largest(s: SamplerSettings) -> str:
    """The setting furthest above its default: the one a refusal names."""
    default = SamplerSettings()
    return max(("chains", "draws", "tune"), key=lambda k: getattr(s, k) / max(getattr(default, k), 1))


def _too_large(s: SamplerSettings, values_per_draw: int, need: int) -> str:
    per = "even at one value per draw" if values_per_draw == 1 else f"at {values_per_draw} values per draw"
    return (f"asks for more memory than this machine can give: {s.chains} chains x ({s.draws} draws + {s.tune} tuning "
            f"steps) {per} need about {gib(need)} (estimate: hlh_meta.inference.sampling.memory_needed), over half "
            f"of this machine's {gib(machine_memory())}; ask for fewer chains, draws or tuning steps")


def check_memory(settings: SamplerSettings, values_per_draw: int) -> None:
    """Refuse (:class:`~hlh_meta.errors.SettingError` naming the setting furthest above its
    default, with the estimate) a fit whose draws would not fit in half of this machine's memory."""
    need = memory_needed(settings, values_per_draw)
    if need > memory_budget():
        raise SettingError(_largest(settings), _too_large(settings, values_per_draw, need))


def compile_structure(build: Callable[[], pm.Model], key: Hashable):
    """nutpie's compiled model of the structure ``key`` (built by ``build`` and compiled on
    its first use in this process; numba then keeps its functions in the disk cache, so
    another process that compiles the same structure loads them)."""
    compiled = _CACHE.get(key)
    if compiled is None:
        for notice in _ON_COMPILE:
            notice(True)
        try:
            model = build()
            compiled = compile_pymc_model(model, key)
        finally:
            for notice in _ON_COMPILE:
                notice(False)
        _CACHE[key] = compiled
        _COMPILED_FROM[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            _COMPILED_FROM.pop(_CACHE.popitem(last=False)[0], None)
    else:
        _CACHE.move_to_end(key)
    return compiled


def compiled_model(key: Hashable):
    """The compiled model of the structure ``key`` in this process's cache, or None (nothing is compiled)."""
    return _CACHE.get(key)


def is_compiled(key: Hashable) -> bool:
    """Whether the structure ``key`` has a compiled model in this process's cache."""
    return key in _CACHE


def _nutpie_compiled(build: Callable[[], pm.Model], key: Hashable, data: Mapping[str, np.ndarray]):
    compiled = compile_structure(build, key)
    # the model's data have fixed shapes (compiled in): a swap of another shape would read
    # past the arrays, so it is refused (it means two structures share a key)
    for name, value in data.items():
        compiled_shape = np.shape(compiled.shared_data.get(name, value))
        if np.shape(value) != compiled_shape:
            raise ValueError(f"data {name!r} of shape {np.shape(value)} swapped into a model compiled for "
                             f"shape {compiled_shape}: the model structure key {key!r} does not fix its shapes")
    return compiled.with_data(**data)


def compiled_for(build: Callable[[], pm.Model], key: Hashable, data: Mapping[str, np.ndarray]):
    """nutpie's compiled model of the structure ``key`` with ``data`` swapped in (compiled
    on first use in this process, as for a fit)."""
    return _nutpie_compiled(build, key, data)


@contextmanager
def model_data(model: pm.Model | None, data: Mapping[str, np.ndarray]) -> Iterator[None]:
    """Within the block the ``pm.Data`` of ``model`` named in ``data`` hold those values; their
    own are put back afterwards (nothing is done for a ``model`` of None)."""
    shared = {} if model is None else {name: model[name] for name in data}
    kept = {name: var.get_value() for name, var in shared.items()}
    try:
        for name, var in shared.items():
            var.set_value(np.asarray(data[name], dtype=var.dtype))
        yield
    finally:
        for name, value in kept.items():
            shared[name].set_value(value)


def own_initial_points(key: Hashable, data: Mapping[str, np.ndarray]):
    """A context within which the compiled model of ``key`` starts its chains where ``data``
    put them: its initial points (PyMC's, jittered; tau's at its prior's scale) are computed
    from the data of the PyMC model it was compiled from, which ``with_data`` leaves alone, so
    ``data`` are set into that model for the block (:func:`model_data`). Without it a fit's
    draws would depend on which inputs compiled its structure in this process: in a
    sensitivity run, on which variant a process fitted first, and so on timing."""
    return model_data(_COMPILED_FROM.get(key), data)


def _pymc(build, data, s: SamplerSettings) -> az.InferenceData:
    """PyMC's NUTS; a run that Ctrl-C cut short (PyMC keeps what it has, or finds nothing to
    keep) raises SamplingInterrupted."""
    model = build()
    with model:
        pm.set_data(dict(data))
        try:
            idata = pm.sample(draws=s.draws, tune=s.tune, chains=s.chains, cores=1, random_seed=s.seed,
                              target_accept=s.target_accept, progressbar=s.progress, compute_convergence_checks=False)
        except ValueError as exc:
            if "Not enough samples" in str(exc):     # interrupted before the first posterior draw
                raise SamplingInterrupted([0] * s.chains, s.draws) from None
            raise
    post = idata.posterior
    chains, draws = int(post.sizes.get("chain", 0)), int(post.sizes.get("draw", 0))
    if chains < s.chains or draws < s.draws:
        raise SamplingInterrupted([draws] * chains + [0] * (s.chains - chains), s.draws)
    return idata


def _sample_once(build, key, data, s: SamplerSettings) -> az.InferenceData:
    Interrupts.check()                                # an interrupt lost in a compiler callback stops here
    if s.sampler == "nutpie":
        compiled = _nutpie_compiled(build, key, data)
        check_memory(s, int(compiled.n_expanded))     # the exact size per draw, before nutpie allocates
        Interrupts.check()
        with own_initial_points(key, data):
            return sample_to_inference_data(compiled, draws=s.draws, tune=s.tune, chains=s.chains, seed=s.seed,
                                            target_accept=s.target_accept, progress_bar=s.progress)
    return _pymc(build, data, s)


def sample_gated(build: Callable[[], pm.Model], key: Hashable, data: Mapping[str, np.ndarray],
                 settings: SamplerSettings, gate_vars: list[str]) -> tuple[az.InferenceData, Diagnostics]:
    """Sample; where the diagnostics gate fails, sample again, the cheapest remedy for the
    failure first, and the refit of :meth:`SamplerSettings.retry` (a higher target acceptance,
    twice the draws and tuning steps) where it fails otherwise or still fails:

    - only too few effective draws (bulk or tail ESS: no divergence, R-hat within the gate),
      at least :data:`ADDED_CHAINS_ESS` of the gate's minimum: as many chains again with
      another seed (:func:`another_seed`), added to the first run's (:func:`with_chains_of`);
    - only divergent transitions (R-hat and ESS within the gate), at a target acceptance below
      :attr:`SamplerSettings.REFIT_TARGET_ACCEPT`: the same draws and tuning steps again at that
      target acceptance (smaller steps) with another seed, in place of the first run; where
      that run fails only on ESS it gets the added chains above.

    ``key`` names the model structure (models of equal keys share one compiled model).
    The returned diagnostics say what still fails, how many sampling runs were made
    (``attempts``) and the settings of the runs whose draws are returned (``kept``: the
    target acceptance, draws and tuning steps those draws were made with, which after a
    remedy are not the settings asked for); nothing is hidden.
    """
    settings.validate()
    idata = _sample_once(build, key, data, settings)
    diag = check(idata, gate_vars)
    if diag.passed or not settings.refit:
        return idata, _kept(diag, settings)
    ran = settings
    if _only(diag, "divergences") and settings.target_accept < settings.REFIT_TARGET_ACCEPT:
        # the chains agree and have enough effective draws, but a trajectory diverged: smaller
        # steps, the same length of run, instead of a refit of twice the draws and tuning
        ran = replace(settings, seed=another_seed(settings.seed), target_accept=settings.REFIT_TARGET_ACCEPT)
        idata = _sample_once(build, key, data, ran)
        diag = check(idata, gate_vars, attempts=diag.attempts + 1)
        if diag.passed:
            return idata, _kept(diag, ran)
    if _only(diag, "bulk ESS", "tail ESS") and min(diag.ess_bulk_min, diag.ess_tail_min) >= ADDED_CHAINS_ESS * GATE["ess_bulk_min"]:
        # the chains agree and nothing diverged: only too few effective draws, and not so few
        # that twice as many would still fail. As many chains again (other seeds) and the runs
        # together give about twice the ESS, for the cost of one more run of these settings
        # instead of a refit of twice the draws and tuning
        added = replace(ran, seed=another_seed(ran.seed))
        more = _sample_once(build, key, data, added)
        together = with_chains_of(idata, more)
        diag = check(together, gate_vars, attempts=diag.attempts + 1)
        if diag.passed:
            return together, _kept(diag, ran, added)
    retry = settings.retry()
    idata = _sample_once(build, key, data, retry)
    return idata, _kept(check(idata, gate_vars, attempts=diag.attempts + 1), retry)


def _kept(diag: Diagnostics, *runs: SamplerSettings) -> Diagnostics:
    """``diag`` with the settings of the runs whose draws are returned (``Diagnostics.kept``)."""
    return replace(diag, kept=[run.public() for run in runs])


def _only(diag: Diagnostics, *checks: str) -> bool:
    """Whether every problem of ``diag`` is one of ``checks`` (:func:`check_name`)."""
    return all(check_name(p) in checks for p in diag.problems)


#: the least ESS, as a share of the gate's minimum, at which a fit failing only on ESS gets
#: as many chains again (about twice the ESS) rather than the refit straight away
ADDED_CHAINS_ESS = 0.5


def another_seed(seed: int | None) -> int | None:
    """A seed for chains run beside those of ``seed`` (None: a fresh one), drawn from it, so
    that the chains of the two runs are independent and the same seed gives the same runs."""
    if seed is None:
        return None
    return int(np.random.SeedSequence([seed, 1]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def with_chains_of(idata: az.InferenceData, more: az.InferenceData) -> az.InferenceData:
    """The chains of ``more`` after those of ``idata``, as one InferenceData (numbered 0, 1,
    ...); groups without chains are ``idata``'s."""
    groups = {}
    for name in idata.groups():
        first = idata[name]
        if "chain" in first.dims and name in more.groups():
            both = xr.concat([first, more[name]], dim="chain", combine_attrs="override")
            groups[name] = both.assign_coords(chain=np.arange(both.sizes["chain"]))
        else:
            groups[name] = first
    return az.InferenceData(**groups)


def clear_cache() -> None:
    _CACHE.clear()
    _COMPILED_FROM.clear()
