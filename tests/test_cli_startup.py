"""The command line answers quickly: `hlh-meta --help` and `hlh-meta data check` import
none of the modelling libraries; a first compile of a model shows a status line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parents[1]
MODELLING = ("pymc", "pytensor", "arviz", "numba", "nutpie", "matplotlib", "xarray")
PROBE = ("import atexit, json, sys\n"
         "atexit.register(lambda: sys.__stderr__.write('\\nMODULES ' + json.dumps(sorted({m.split('.')[0] for m in "
         "sys.modules})) + '\\n'))\n"
         "from hlh_meta.cli import main\nsys.argv[0] = 'hlh-meta'\nsys.exit(main())\n")


@pytest.mark.parametrize("args", [["--help"], ["data", "check"], ["data", "check", str(ROOT / "data")],
                                  ["fit", "--help"], ["sensitivity", "--help"]])
def test_help_and_data_check_import_no_modelling_library(args):
    res = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    modules = json.loads(next(x for x in res.stderr.splitlines() if x.startswith("MODULES "))[len("MODULES "):])
    assert not set(modules) & set(MODELLING), sorted(set(modules) & set(MODELLING))
    assert "Warning" not in res.stderr                 # no library chatter either


class _Status:
    def __init__(self):
        self.shown = []

    def update(self, text):
        self.shown.append(text)


def test_compile_notice_shows_while_a_structure_compiles_and_puts_back_the_line(monkeypatch):
    """run_all tells a compile in this process as events; the command's status line shows it
    and then puts back the line it replaced."""
    from contextlib import nullcontext

    from hlh_meta import cli, orchestrate
    from hlh_meta.inference import sampling

    compiled = []

    class Compiled:
        shared_data = {"x": np.asarray(0)}

        def with_data(self, **data):
            return ("compiled", data)

    def fake_compile(model, structure=None):
        compiled.append(model)
        return Compiled()

    monkeypatch.setattr(sampling, "compile_pymc_model", fake_compile)
    monkeypatch.setattr(sampling, "_CACHE", type(sampling._CACHE)())
    status = _Status()
    with cli._Progress(quiet=False, shown=set(), status=lambda text: nullcontext(status)) as progress:
        with orchestrate._compile_events(progress, "m"):
            progress("variant", "m", "variant 2/5: leave out a")
            assert sampling._nutpie_compiled(lambda: "model", "key", {"x": 1}) == ("compiled", {"x": 1})
            assert sampling._nutpie_compiled(lambda: "model", "key", {"x": 2}) == ("compiled", {"x": 2})   # cached
    assert compiled == ["model"]
    assert status.shown == ["m: variant 2/5: leave out a", f"m: {orchestrate.COMPILING}", "m: variant 2/5: leave out a"]
    assert sampling._ON_COMPILE == []                       # the notice ends with the block


def test_compile_notice_needs_a_terminal(monkeypatch):
    from hlh_meta import cli, orchestrate
    from hlh_meta.inference import sampling

    import io

    monkeypatch.setattr(cli.sys, "stderr", io.StringIO())
    assert cli._Progress(quiet=False, shown=set()).status is None    # no terminal: no status line
    assert cli._Progress(quiet=True, shown=set()).status is None
    with orchestrate._compile_events(None, "m"):
        assert sampling._ON_COMPILE == []                   # no notice without a listener


CYCLE = ("import gc, sys\n"
         "class Cycle:\n"
         "    def __del__(self):\n"
         "        sys.__stderr__.write('COLLECTED\\n')\n"
         "c = Cycle(); c.me = c; del c\n"
         "gc.disable()\n")


@pytest.mark.parametrize("then, collected", [
    ("sys.exit(0)\n", True),                                                     # the control: CPython collects it
    ("from hlh_meta.cli import main\nsys.argv[0] = 'hlh-meta'\nsys.exit(main())\n", False),
    ("from hlh_meta.sensitivity.executors import _quiet_worker\n_quiet_worker()\n", False),
], ids=["plain interpreter", "command line", "worker process"])
def test_the_command_line_and_its_workers_leave_what_is_alive_at_exit_to_the_system(then, collected):
    """CPython's last garbage collection at exit goes through every graph and compiled function
    a process built (seconds, on the critical path where a pool waits for its workers to exit);
    hlh-meta's own processes skip it (errors.skip_final_collection)."""
    res = subprocess.run([sys.executable, "-c", CYCLE + then, "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert ("COLLECTED" in res.stderr) == collected, res.stderr


LEVEL = ("import os, sys\n{before}from hlh_meta.cli import _numba_level\n_numba_level()\nimport numba\n"
         "print(os.environ.get('NUMBA_OPT'), int(numba.config.OPT))\n")


@pytest.mark.parametrize("before, env, expected", [
    ("", None, "1 1"),                       # the command's level where nothing asks for another
    ("", "3", "3 3"),                        # the user's NUMBA_OPT wins
    ("import numba\n", None, "None 3"),      # numba already imported: it has read its level, nothing is set
])
def test_the_command_compiles_at_numba_level_1_unless_told_otherwise(before, env, expected):
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_OPT"}
    if env is not None:
        environ["NUMBA_OPT"] = env
    res = subprocess.run([sys.executable, "-c", LEVEL.format(before=before)], capture_output=True, text=True,
                         timeout=120, env=environ)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split("\n")[-2] == expected
