"""A disk cache of a model structure's rewritten PyTensor functions, so that a later process
skips building, differentiating and rewriting the graph.

nutpie's compile of a PyMC model builds the log density, its gradient and the "expand"
function of the stored variables, and PyTensor rewrites each graph before numba compiles it
(about 2.5 of the 4 s a bundled mortality model takes to compile from a warm numba cache).
The rewritten functions are PyTensor ``Function`` objects, which pickle (PyTensor supports
it) with their rewritten graphs: unpickled, they are linked again (numba loads the compiled
code from its own disk cache) but not rewritten again. This module keeps them in
``<PyTensor compiledir>/hlh_meta_functions/``, one file per model structure, under a key
naming everything the graph depends on: the structure, the shapes and types of the model's
data, the source of :mod:`hlh_meta.models`, and the versions of PyTensor, PyMC, nutpie,
numba, NumPy and Python.

It replaces nutpie's private ``_make_functions`` for the duration of one compile
(:func:`cached_make_functions`, inside :mod:`.callbacks`' guarded compile): the process that
compiles a structure first writes the functions and then uses their unpickled copies, so
that the numba code it compiles is the code a later process loads (numba keys a function
by its graph's node order, which unpickling sets). A file that cannot be read is compiled
again and replaced, with one :class:`FunctionCacheWarning` per process.

PyMC's initial point function, which nutpie's compile builds first (half a second a
structure), is kept beside them (:func:`cached_initial_point_fn`): a PyTensor function too,
it pickles with the values of the model data it reads, so a loaded copy takes the current
values of the model's data and dimension lengths, by name, before every call, as the
function built from the model reads them.
Once numba holds a structure's two callbacks, an outline is kept beside its functions
(:func:`write_outline`): a later process builds the callbacks from it and numba loads them
from its cache, without unpickling and linking the functions (:func:`outlined_make_functions`;
about 1 s a structure).
``tests/test_function_cache.py`` holds log density, gradient, initial points and draws of a
loaded model equal, bit for bit, to those of a fresh compile.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import pickle
import sys
import tempfile
from pathlib import Path

from ..errors import warn_once

#: the parameters of nutpie's ``_make_functions`` this cache stands in for
PARAMETERS = ("model", "mode", "compute_grad", "join_expanded", "pymc_initial_point_fn", "var_names")

#: set to a folder to keep the cached functions there instead of PyTensor's compile directory
DIRECTORY = "HLH_META_FUNCTION_CACHE"

_FORMAT = 1


class FunctionCacheWarning(UserWarning):
    """A cached file of compiled functions could not be used; the model was compiled again."""


def directory() -> Path:
    """Where the functions are kept: :data:`DIRECTORY` if set, else PyTensor's compile directory."""
    given = os.environ.get(DIRECTORY, "").strip()
    if given:
        return Path(given)
    import pytensor

    return Path(pytensor.config.compiledir) / "hlh_meta_functions"


@functools.cache
def _sources() -> str:
    """A digest of :mod:`hlh_meta.models`' source, which builds every graph."""
    folder = Path(__file__).resolve().parent.parent / "models"
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _versions() -> list[str]:
    import numba
    import numpy
    import nutpie
    import pymc
    import pytensor

    return [pytensor.__version__, pymc.__version__, str(nutpie.__version__), numba.__version__, numpy.__version__,
            sys.version, str(pytensor.config.floatX), str(pytensor.config.numba__fastmath)]


def key_of(structure, model) -> str | None:
    """The file name of a structure's functions, or None where the structure cannot name a
    file (its ``repr`` is not stable across processes)."""
    text = repr(structure)
    if " at 0x" in text:
        return None
    data = sorted((v.name, tuple(v.get_value(borrow=True).shape), str(v.dtype)) for v in model.data_vars)
    payload = repr([_FORMAT, text, data, _sources(), _versions()])
    return hashlib.sha256(payload.encode()).hexdigest()


def _warn(path: Path, exc: BaseException) -> None:
    warn_once("function_cache", f"the cached functions {path} could not be used ({type(exc).__name__}: {exc}); the "
              "model was compiled again and the file replaced", FunctionCacheWarning, stacklevel=4)


def _write(path: Path, blob: bytes) -> None:
    """``blob`` into ``path`` whole or not at all (another process may read or write it meanwhile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _free_values(model, shape_info) -> tuple[list[str], list[tuple]]:
    names = [model.rvs_to_values[v].name for v in model.free_RVs]
    shapes = dict(zip(shape_info[0], shape_info[2]))
    return names, [tuple(shapes[n]) for n in names]


def _arguments(signature: inspect.Signature, args: tuple, kwargs: dict) -> dict:
    """A call's arguments by parameter name, defaults included."""
    given = signature.bind(*args, **kwargs)
    given.apply_defaults()
    return dict(given.arguments)


def read_functions(path: str | Path) -> tuple:
    """``(n_dim, n_expanded, logp_fn, expand_fn, shape_info)`` from a structure's function
    file; raises ValueError for a file of another format (and what unpickling raises)."""
    fmt, n_dim, n_expanded, logp_fn, expand_fn, shape_info = pickle.loads(Path(path).read_bytes())
    if fmt != _FORMAT:
        raise ValueError(f"format {fmt}, expected {_FORMAT}")
    return n_dim, n_expanded, logp_fn, expand_fn, shape_info


def _kept_call(a: dict) -> bool:
    """Whether nutpie's ``_make_functions`` was called (arguments ``a`` by name) for what the
    kept files describe: numba code, a gradient, the stored variables joined, all of them."""
    return a["mode"] == "NUMBA" and bool(a["compute_grad"]) and bool(a["join_expanded"]) and a["var_names"] is None


def cached_make_functions(make, key: str | None, flat_initial_point, on_written=None):
    """nutpie's ``make`` (``_make_functions``) with its functions kept on disk under ``key``
    (None: not kept). ``flat_initial_point``: nutpie's wrapper that turns PyMC's initial
    point function into one of flat arrays (``_rv_dict_to_flat_array_wrapper``); the
    initial point function is kept by :func:`cached_initial_point_fn`. ``on_written``: called
    with the file's path when this call wrote it (the structure's first compile here)."""
    import cloudpickle

    signature = inspect.signature(make)

    @functools.wraps(make)
    def cached(*args, **kwargs):
        a = _arguments(signature, args, kwargs)
        model = a["model"]
        if key is None or not _kept_call(a):
            return make(*args, **kwargs)
        path = directory() / f"{key}.pkl"
        if path.exists():
            try:
                n_dim, n_expanded, logp_fn, expand_fn, shape_info = read_functions(path)
                names, shapes = _free_values(model, shape_info)
                initial = flat_initial_point(a["pymc_initial_point_fn"], names=names, shapes=shapes)
                return n_dim, n_expanded, logp_fn, expand_fn, initial, shape_info
            except Exception as exc:  # noqa: BLE001 - a file that cannot be used is compiled again
                _warn(path, exc)
        n_dim, n_expanded, logp_fn, expand_fn, initial, shape_info = make(*args, **kwargs)
        try:     # cloudpickle (PyMC's dependency): a graph may hold a local function (OpFromGraph's gradient)
            blob = cloudpickle.dumps((_FORMAT, n_dim, n_expanded, logp_fn, expand_fn, shape_info),
                                     protocol=pickle.HIGHEST_PROTOCOL)
            _write(path, blob)
        except Exception:  # noqa: BLE001 - not kept (a graph that does not pickle, a read-only disk): as before
            return n_dim, n_expanded, logp_fn, expand_fn, initial, shape_info
        _, _, _, logp_fn, expand_fn, _ = pickle.loads(blob)     # the copies a later process will load
        if on_written is not None:
            on_written(path)
        return n_dim, n_expanded, logp_fn, expand_fn, initial, shape_info

    return cached


#: the format of an outline file (:func:`write_outline`)
_OUTLINE_FORMAT = 1


def _outline_path(key: str) -> Path:
    return directory() / f"{key}.outline"


def write_outline(key: str | None, n_dim: int, n_expanded: int, shape_info, logp_fn, expand_fn) -> None:
    """Beside a structure's functions, what a later process needs to load the callbacks
    numba compiled from them without unpickling and linking the functions again (about 1 s
    a structure): the sizes, nutpie's ``shape_info``, the names of each function's shared
    inputs in order, and PyTensor's cache keys of the two functions' compiled code. Written
    after a compile whose callbacks numba keeps on disk; nothing is written where a function
    has no cache key or the disk refuses (the next process then loads the functions)."""
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    if key is None:
        return
    inner = []
    for fn in (logp_fn, expand_fn):
        py_func = getattr(getattr(getattr(fn, "vm", None), "jit_fn", None), "py_func", None)
        if py_func is None or py_func not in CACHED_SRC_FUNCTIONS:
            return
        inner.append(CACHED_SRC_FUNCTIONS[py_func])
    shared = [[v.name for v in fn.get_shared()] for fn in (logp_fn, expand_fn)]
    try:
        _write(_outline_path(key), pickle.dumps((_OUTLINE_FORMAT, int(n_dim), int(n_expanded), shape_info, shared,
                                                 inner), protocol=pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - not kept (a read-only disk): later processes load the functions
        pass


def drop_outline(key: str | None) -> None:
    """Remove a structure's outline (its callbacks were not in numba's cache after all)."""
    if key is not None:
        _outline_path(key).unlink(missing_ok=True)


class _Unlinked:
    """Stands in for one of a structure's PyTensor functions where numba loads the callback
    compiled from it from its disk cache: its shared inputs (the model's own, by name) and a
    compiled function that is only a name for PyTensor's cache key. Calling it, or numba
    compiling a callback around it on a cache miss, fails: the caller then loads the real
    functions."""

    def __init__(self, shared: list, inner_key: str):
        from types import SimpleNamespace

        from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

        def unlinked(*args):
            raise RuntimeError("a structure's function loaded from its outline was called")

        unlinked.py_func = unlinked                  # type: ignore[attr-defined]  # as a numba dispatcher has
        CACHED_SRC_FUNCTIONS[unlinked] = inner_key
        self._shared = shared
        self.vm = SimpleNamespace(jit_fn=unlinked)

    def get_shared(self) -> list:
        return list(self._shared)


def outlined_make_functions(make, key: str | None, flat_initial_point):
    """nutpie's ``make`` (``_make_functions``) from the structure's outline
    (:func:`write_outline`) where there is one: the sizes and ``shape_info`` as written, and
    in place of the two PyTensor functions stand-ins (:class:`_Unlinked`) that give the
    model's shared variables of the names the functions read; None where there is no
    outline or it cannot be used (the caller loads the functions). ``flat_initial_point``: as
    for :func:`cached_make_functions`."""
    if key is None:
        return None
    try:
        fmt, n_dim, n_expanded, shape_info, shared, inner = pickle.loads(_outline_path(key).read_bytes())
    except Exception:  # noqa: BLE001 - none, or one that cannot be read: the functions are loaded
        return None
    if fmt != _OUTLINE_FORMAT:
        return None
    signature = inspect.signature(make)

    @functools.wraps(make)
    def outlined(*args, **kwargs):
        a = _arguments(signature, args, kwargs)
        model = a["model"]
        if not _kept_call(a):
            raise ValueError("nutpie asked for functions the outline does not describe")
        by_name = _model_shared(model)
        missing = [n for names in shared for n in names if by_name.get(n) is None]
        if missing:
            raise ValueError(f"the model holds no shared variable {missing[0]!r} the outline names")
        stand_ins = [_Unlinked([by_name[n] for n in names], k) for names, k in zip(shared, inner)]
        names, shapes = _free_values(model, shape_info)
        initial = flat_initial_point(a["pymc_initial_point_fn"], names=names, shapes=shapes)
        return n_dim, n_expanded, stand_ins[0], stand_ins[1], initial, shape_info

    return outlined


#: the parameters of PyMC's ``make_initial_point_fn`` that :func:`cached_initial_point_fn` stands in for
INITIAL_PARAMETERS = ("model", "overrides", "jitter_rvs", "default_strategy", "return_transformed")

#: the names of the variables the function made by PyMC's ``make_initial_point_fn`` closes over,
#: which a kept copy is built from: the compiled PyTensor function (also its ``__wrapped__``),
#: its random generators and the names of its outputs
_INITIAL_CLOSURE = ("func", "rngs", "varnames")


def _closure(fn) -> dict:
    code = getattr(fn, "__code__", None)
    cells = getattr(fn, "__closure__", None) or ()
    if code is None or tuple(code.co_freevars) != _INITIAL_CLOSURE or len(cells) != len(code.co_freevars):
        return {}
    return {name: cell.cell_contents for name, cell in zip(code.co_freevars, cells)}


def _model_shared(model) -> dict:
    """The model's data and mutable dimension lengths by name (None for a name held twice)."""
    from pytensor.compile.sharedvalue import SharedVariable

    found: dict = {}
    for var in [*model.data_vars, *model.dim_lengths.values()]:
        if isinstance(var, SharedVariable) and var.name:
            found[var.name] = var if found.get(var.name, var) is var else None
    return found


def _data_pairs(func, model) -> list | None:
    """Each shared input of ``func`` that is not a random generator, with the model's shared
    variable of its name; None where one has no such variable (the copy could not follow the
    model's data)."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.tensor.random.var import RandomGeneratorSharedVariable

    shared = _model_shared(model)
    pairs = []
    for item in func.maker.inputs:
        var = item.variable
        if not isinstance(var, SharedVariable) or isinstance(var, RandomGeneratorSharedVariable):
            continue
        theirs = shared.get(var.name)
        if theirs is None:
            return None
        pairs.append((var, theirs))
    return pairs


def _seeded(func, varnames: list[str], pairs: list):
    """A kept initial point function as PyMC's own: the model's current data into the copy's
    shared inputs, the random generators seeded, the values by name."""
    from pymc.pytensorf import find_rng_nodes, reseed_rngs

    rngs = find_rng_nodes(func.maker.fgraph.outputs)

    @functools.wraps(func)
    def inner(seed, *args, **kwargs):
        for mine, theirs in pairs:
            mine.set_value(theirs.get_value())
        reseed_rngs(rngs, seed)
        return dict(zip(varnames, func(*args, **kwargs)))

    return inner


def _initial_mismatch_warning(what: str) -> None:
    warn_once("function_cache.initial_point", f"pymc.initial_point.make_initial_point_fn {what} is not what hlh_meta's "
              "cache of compiled functions was written for; each process builds the initial point function again "
              "(same draws, slower)", FunctionCacheWarning, stacklevel=4)


def cached_initial_point_fn(make, key: str | None):
    """PyMC's ``make_initial_point_fn`` (``make``) with the function it builds kept on disk
    under ``key`` (None: not kept): the jittered one that gives the chains' starting points
    (other calls during a compile, such as ``Model.initial_point``, build theirs). A ``make``
    with other parameters than :data:`INITIAL_PARAMETERS`, a function of another form than
    PyMC's (its closure), or one reading shared variables that are not the model's named
    data, is used as it is, not kept (the first two with one :class:`FunctionCacheWarning`
    per process)."""
    import cloudpickle

    try:
        signature = inspect.signature(make)
    except (TypeError, ValueError):
        signature = None
    if signature is None or tuple(signature.parameters) != INITIAL_PARAMETERS:
        _initial_mismatch_warning("(its parameters)")
        return make

    @functools.wraps(make)
    def cached(*args, **kwargs):
        a = _arguments(signature, args, kwargs)
        model = a["model"]
        if key is None or a["overrides"] or not a["jitter_rvs"]:
            return make(*args, **kwargs)
        jitter = sorted(v.name for v in a["jitter_rvs"])
        name = hashlib.sha256(repr([key, jitter, a["default_strategy"], a["return_transformed"]]).encode()).hexdigest()
        path = directory() / f"{name}.initial.pkl"
        if path.exists():
            try:
                fmt, func, varnames = pickle.loads(path.read_bytes())
                if fmt != _FORMAT:
                    raise ValueError(f"format {fmt}, expected {_FORMAT}")
                pairs = _data_pairs(func, model)
                if pairs is None:
                    raise ValueError("the function reads shared variables the model does not hold")
                return _seeded(func, varnames, pairs)
            except Exception as exc:  # noqa: BLE001 - a file that cannot be used is built again
                _warn(path, exc)
        fn = make(*args, **kwargs)
        parts = _closure(fn)
        func = parts.get("func")
        if getattr(fn, "__wrapped__", None) is not func or not hasattr(func, "maker") \
                or not isinstance(parts.get("varnames"), list):
            _initial_mismatch_warning("(the function it returns)")
            return fn
        if _data_pairs(func, model) is None:
            return fn
        try:
            _write(path, cloudpickle.dumps((_FORMAT, func, list(parts["varnames"])), protocol=pickle.HIGHEST_PROTOCOL))
        except Exception:  # noqa: BLE001 - not kept (a graph that does not pickle, a read-only disk): as before
            pass
        return fn

    return cached
