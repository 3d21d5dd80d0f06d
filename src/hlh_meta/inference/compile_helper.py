"""A second process that compiles a new model's "expand" callback while this process compiles
its log density, so that the first compile of a model structure on a machine uses two cores.

nutpie's compile of a model builds two numba callbacks one after the other (:mod:`.callbacks`):
the log density with its gradient, then the "expand" function of the stored variables. On an
empty compile cache each takes tens of seconds for the bundled mortality model (40 and 19 s on
2 cores), in one thread. The structure's rewritten PyTensor functions are written to the
function cache (:mod:`.function_cache`) before either is compiled; from that file a helper
process builds the same expand callback, under the same cache key, and compiles it into
numba's disk cache while this process compiles the log density. This process then loads
the expand callback from the cache instead of compiling it. The draws do not change: a
callback loaded from the cache is the one a later process loads.

One helper is started per process, on its first use, and serves one file at a time over its
standard input and output (one line each way). It is used only for a structure this process
compiles first on the machine (its function file was just written), only with two or more
cores, and not where :data:`OFF` is set to 0. Where it cannot start, fails or exits, this
process compiles the expand callback itself (one :class:`CompileHelperWarning` per process
says why); the helper exits when this process does.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..errors import warn_once

#: set to 0 (or false, no) to compile both callbacks in this process
OFF = "HLH_META_COMPILE_HELPER"

#: the helper's program; it serves :func:`hlh_meta.inference.callbacks.compile_expand_from`
ENTRY = "from hlh_meta.inference.callbacks import serve_expand_compiles; serve_expand_compiles()"

_OK = "ok"


class CompileHelperWarning(UserWarning):
    """The helper process could not compile a model's expand callback; this process compiled it (same draws, slower)."""


def _warn(reason: str) -> None:
    warn_once("compile_helper", f"the helper process did not compile the model's expand callback ({reason}); it was "
              "compiled in this process (same draws, slower first compile)", CompileHelperWarning, stacklevel=3)


def enabled() -> bool:
    """Whether a helper may be used: two or more cores and :data:`OFF` not set to 0."""
    if os.environ.get(OFF, "").strip().lower() in ("0", "false", "no"):
        return False
    return (os.cpu_count() or 1) >= 2


class Job:
    """One file sent to the helper; :meth:`wait` returns once the helper answered for it."""

    def __init__(self, helper: "_Helper") -> None:
        self._helper = helper
        self.reason: str | None = None
        self.done = False

    def wait(self) -> bool:
        """Whether the helper compiled the callback (False: compile it here; warned once)."""
        self._helper.collect(self)
        if self.reason is not None:
            _warn(self.reason)
        return self.reason is None


class _Helper:
    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self.process = subprocess.Popen([sys.executable, "-c", ENTRY, str(os.getpid())], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                        env=env)
        self._pending: deque[Job] = deque()                # sent and not yet answered, in order
        self._lock = threading.Lock()
        atexit.register(self.stop)

    def alive(self) -> bool:
        return self.process.poll() is None

    def send(self, path: str) -> Job:
        with self._lock:
            job = Job(self)
            assert self.process.stdin is not None
            self.process.stdin.write(path + "\n")
            self.process.stdin.flush()
            self._pending.append(job)
            return job

    def collect(self, job: Job) -> None:
        """Read the helper's answers, in order, up to ``job``'s."""
        with self._lock:
            while not job.done:
                assert self.process.stdout is not None
                line = self.process.stdout.readline()
                if not line:                                   # the helper exited: every job left fails
                    code = self.process.wait()
                    for waiting in self._pending:
                        waiting.done, waiting.reason = True, f"the helper process exited with status {code}"
                    self._pending.clear()
                    return
                answered = self._pending.popleft()
                answer = line.rstrip("\n")
                answered.done, answered.reason = True, None if answer == _OK else answer

    def stop(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


_HELPER: list[_Helper] = []


def start(path: str | Path) -> Job | None:
    """Send the function file ``path`` to this process's helper (started on first use); None
    where no helper is used (:func:`enabled`) or it could not be started (warned once)."""
    if not enabled():
        return None
    try:
        if not _HELPER or not _HELPER[0].alive():
            _HELPER[:] = [_Helper()]
        return _HELPER[0].send(str(path))
    except Exception as exc:  # noqa: BLE001 - without a helper this process compiles both callbacks
        _warn(f"it could not be started: {type(exc).__name__}: {exc}")
        return None


def _exit_with(parent: int) -> None:
    """Exit this helper as soon as the process that started it is gone."""
    import time

    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def serve(work: Callable[[str], None]) -> None:
    """The helper's loop: for each line (a file path) read, ``work(path)`` and one line back:
    ``ok``, or why it failed. Ends at the end of its input or when its parent process exits."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)          # Ctrl-C is for the process that started it
    warnings.simplefilter("ignore")
    parent = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else os.getppid()
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    for line in sys.stdin:
        try:
            work(line.rstrip("\n"))
            answer = _OK
        except BaseException as exc:  # noqa: BLE001 - every failure is an answer; the caller compiles instead
            answer = f"{type(exc).__name__}: {exc}".replace("\n", " ") or "failed"
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()
    os._exit(0)
