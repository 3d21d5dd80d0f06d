"""Exceptions raised by hlh-meta: one module so callers can catch them in one place."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


def plain(value: object) -> str:
    """A value as a message shows it: ``8``, ``27.5``, ``'text'``, never ``np.int64(8)``."""
    if value is None or type(value).__name__ == "NAType":      # pandas.NA
        return "empty"
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_"):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isfinite(x) and x.is_integer() and abs(x) < 1e15:
            return str(int(x))
        return repr(x)
    if isinstance(value, str):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where it is and what is wrong."""

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


class InputError(ValueError):
    """Bad input given to the Python API (an argument, a column, a prior).

    The caller's mistake, reported in one line. A ``ValueError``; :class:`DataError` and
    :class:`SpecError` are kinds of it.
    """


class DataError(InputError):
    """Bad input data. Collects every problem found, each with file, row and column.

    Row numbers count lines of the file as a spreadsheet shows them: the header is
    row 1, the first data row is row 2. The message lists every problem, one a line.

    Parameters
    ----------
    problems : list of Problem, Problem or str
        The problems found; a string is one problem of ``<input>`` with no row or column.

    Attributes
    ----------
    problems : list of Problem
        The problems found, each with ``file``, ``row``, ``column`` and ``message``.
    """

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("<input>", None, None, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the input:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in self.problems]))


class SpecError(InputError):
    """A bad analysis specification (TOML): names the file and the key.

    The message reads ``<file>: [<key>] <message>``.

    Parameters
    ----------
    file : str
        The spec file.
    key : str
        The key that is wrong, dotted (e.g. ``"analysis.kind"``).
    message : str
        What is wrong with it.

    Attributes
    ----------
    file : str
        The spec file.
    key : str
        The key that is wrong.
    """

    def __init__(self, file: str, key: str, message: str):
        self.file, self.key = file, key
        super().__init__(f"{file}: [{key}] {message}")


class SettingError(InputError):
    """A bad sampler setting (``SamplerSettings``): ``key`` names it (``seed``, ``draws``, ...),
    so a caller reading a spec can name the spec file and ``[sampling]`` key."""

    def __init__(self, key: str, message: str):
        self.key, self.message = key, message
        super().__init__(f"sampling setting '{key}' {message}")


class PriorError(InputError):
    """A bad prior: ``param`` names the parameter (``tau``, ...; None when the mapping itself
    is wrong) and ``detail`` the problem, so a caller reading a spec can name the spec file
    and ``[priors]`` key."""

    def __init__(self, param: str | None, detail: str, attribute: str | None = None):
        self.param, self.detail = param, (f"{attribute} {detail}" if attribute else detail)
        where = "priors" if param is None else f"priors['{param}']"
        super().__init__(f"{where}.{attribute} {detail}" if attribute else f"{where}: {detail}")


class OutputLocationError(InputError):
    """The results folder cannot be written where asked (a file in the way, no permission)."""


class ResultsDamagedError(InputError):
    """A results folder that cannot be read back as written: a file missing, unreadable or
    changed since it was written (its SHA-256 differs from the manifest's)."""

    def __init__(self, folder: object, what: str):
        self.folder, self.what = folder, what
        super().__init__(f"results folder damaged: {folder}: {what}")


class ResultsExistError(InputError, FileExistsError):
    """The results folder exists (or appeared while the analysis ran) and ``force`` is off."""


class SamplingInterrupted(Exception):
    """Sampling stopped before every chain had all its draws (Ctrl-C): nothing is written.

    ``completed`` holds the posterior draws each chain finished, ``expected`` the draws
    asked for (None when not known)."""

    def __init__(self, completed: list[int], expected: int | None = None):
        self.completed, self.expected = list(completed), expected
        of = f" of {expected}" if expected is not None else ""
        done = ", ".join(str(n) for n in self.completed) or "none"
        super().__init__(f"sampling was interrupted before it finished (posterior draws per chain: {done}{of}); "
                         "no results were written")


class Interrupts:
    """An interrupt (Ctrl-C, SIGTERM) seen by the program, kept until it is acted on.

    A KeyboardInterrupt raised where Python cannot pass it on (a ctypes callback of the compiler,
    a weakref callback, a destructor) is printed as "Exception ignored" and lost, and the run would
    go on to write its results. The command line records every interrupt here
    (:meth:`note`); work that must not go on after one (sampling, putting a results folder in
    place) calls :meth:`check` first, which raises KeyboardInterrupt again."""

    pending: str | None = None          # "SIGINT" or "SIGTERM" once one arrived

    @classmethod
    def note(cls, name: str = "SIGINT") -> None:
        cls.pending = cls.pending or name

    @classmethod
    def check(cls) -> None:
        if cls.pending:
            raise KeyboardInterrupt(cls.pending)


def skip_final_collection() -> None:
    """In a process that hlh-meta runs itself (the command line and its worker processes): at
    exit, leave the objects still alive to the operating system instead of CPython's last
    garbage collection, which goes through every PyTensor graph and numba function the process
    built (1.4 s after `hlh-meta fit`). Registers :func:`gc.freeze` to run at exit, after the
    results are written and closed; it is not called for a library user's own interpreter."""
    import atexit
    import gc

    atexit.register(gc.freeze)


#: the keys :func:`warn_once` has warned under in this process
_WARNED_ONCE: set[str] = set()


def warn_once(key: str, message: str, category: type[Warning], stacklevel: int = 2) -> None:
    """``warnings.warn(message, category)`` the first time this process asks under ``key``
    (a fallback said once per process, not at every fit); ``stacklevel`` as for the caller's
    own ``warnings.warn``."""
    if key not in _WARNED_ONCE:
        _WARNED_ONCE.add(key)
        import warnings

        warnings.warn(message, category, stacklevel=stacklevel + 1)


class GateWarning(UserWarning):
    """A fit that still fails the diagnostics gate after its refit."""


class ThinDataWarning(UserWarning):
    """A fit whose data cannot inform a parameter (e.g. tau from one study)."""
