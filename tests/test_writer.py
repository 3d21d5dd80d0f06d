"""Atomic results folders: no silent replacement, racing writers, permissions, leftovers of
killed runs, and the output-location check made before any sampling."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from hlh_meta.errors import InputError, OutputLocationError, ResultsExistError
from hlh_meta.report import writer


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _write(target: Path, label: str, force: bool = False) -> None:
    with writer.atomic_dir(target, force=force) as tmp:
        (tmp / "who.txt").write_text(label)


# --- no silent replacement -------------------------------------------------------------

def test_writes_and_leaves_nothing_hidden(tmp_path):
    _write(tmp_path / "res", "a")
    assert (tmp_path / "res" / "who.txt").read_text() == "a"
    assert _hidden(tmp_path) == []


def test_existing_folder_refused_without_force(tmp_path):
    _write(tmp_path / "res", "a")
    with pytest.raises(ResultsExistError):
        _write(tmp_path / "res", "b")
    assert (tmp_path / "res" / "who.txt").read_text() == "a"


@pytest.mark.parametrize("empty", [False, True])
def test_folder_that_appeared_while_running_is_not_replaced(tmp_path, empty):
    target = tmp_path / "res"
    with pytest.raises(ResultsExistError, match="appeared while this analysis ran"):
        with writer.atomic_dir(target) as tmp:
            (tmp / "who.txt").write_text("late")
            target.mkdir()                        # another run committed meanwhile
            if not empty:
                (target / "who.txt").write_text("first")
    assert sorted(p.name for p in target.iterdir()) == ([] if empty else ["who.txt"])
    if not empty:
        assert (target / "who.txt").read_text() == "first"
    assert _hidden(tmp_path) == []


def test_force_replaces_a_folder_that_appeared_while_running(tmp_path):
    target = tmp_path / "res"
    with writer.atomic_dir(target, force=True) as tmp:
        (tmp / "who.txt").write_text("second")
        target.mkdir()
        (target / "who.txt").write_text("first")
    assert (target / "who.txt").read_text() == "second"
    assert _hidden(tmp_path) == []


def test_error_inside_leaves_previous_results_and_no_partial(tmp_path):
    _write(tmp_path / "res", "a")
    with pytest.raises(KeyboardInterrupt):
        with writer.atomic_dir(tmp_path / "res", force=True) as tmp:
            (tmp / "who.txt").write_text("b")
            raise KeyboardInterrupt
    assert (tmp_path / "res" / "who.txt").read_text() == "a"
    assert _hidden(tmp_path) == []


def test_force_retries_when_another_writer_commits_in_between(tmp_path, monkeypatch):
    """Between moving the old folder aside and renaming the new one in, another writer puts
    its folder in place: the swap is retried and nothing is left behind."""
    target = tmp_path / "res"
    _write(target, "old")
    real_rename = os.rename
    interfered = []

    def rename(src, dst):
        real_rename(src, dst)
        if Path(src) == target and not interfered:
            interfered.append(dst)
            target.mkdir()
            (target / "who.txt").write_text("other writer")

    monkeypatch.setattr(writer.os, "rename", rename)
    _write(target, "mine", force=True)
    assert interfered
    assert (target / "who.txt").read_text() == "mine"
    assert _hidden(tmp_path) == []


def _race(target: str, label: str, barrier, rounds: int, errors) -> None:
    for i in range(rounds):
        barrier.wait()
        try:
            _write(Path(target), f"{label}-{i}", force=True)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            errors.put(f"{label}: {type(exc).__name__}: {exc}")


def test_racing_force_writers_leave_one_folder_and_no_leftovers(tmp_path):
    ctx = multiprocessing.get_context("fork")
    n, rounds = 6, 15
    barrier, errors = ctx.Barrier(n), ctx.Queue()
    target = tmp_path / "res"
    procs = [ctx.Process(target=_race, args=(str(target), f"w{k}", barrier, rounds, errors)) for k in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    assert problems == []
    assert all(p.exitcode == 0 for p in procs)
    assert [p.name for p in target.iterdir()] == ["who.txt"]
    assert (target / "who.txt").read_text().endswith(f"-{rounds - 1}")
    assert _hidden(tmp_path) == []


# --- permissions -------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o027, 0o750), (0o002, 0o775)])
def test_results_folder_respects_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        _write(tmp_path / "out" / "res", "a")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out" / "res").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == mode


# --- leftovers of killed runs ----------------------------------------------------------

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(parent: Path, name: str, age_s: float = 0.0) -> Path:
    path = parent / name
    path.mkdir(parents=True)
    (path / "posterior.nc").write_text("half written")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
    return path


def test_partial_folders_of_a_killed_run_are_removed(tmp_path):
    pid = _dead_pid()
    host = writer._host()
    dead = [_leftover(tmp_path, f".res.{host}-{pid}-0badc0de.partial"),
            _leftover(tmp_path, f".res.old-{host}-{pid}-0badc0de")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _write(tmp_path / "res", "a")
    assert not any(p.exists() for p in dead)
    assert _hidden(tmp_path) == []


def test_partial_folder_of_a_running_process_is_kept(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        live = _leftover(tmp_path, f".res.{writer._host()}-{proc.pid}-0badc0de.partial")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            _write(tmp_path / "res", "a")
        assert live.exists()
    finally:
        proc.kill()
        proc.wait()


def test_partial_folder_whose_process_id_was_reused_is_removed(tmp_path):
    """The folder was last written before the process with its id started: not its owner."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        if writer._process_started(proc.pid) is None:
            pytest.skip("process start times are not available here (no /proc)")
        reused = _leftover(tmp_path, f".res.{writer._host()}-{proc.pid}-0badc0de.partial", age_s=3600)
        _write(tmp_path / "res", "a")
        assert not reused.exists()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("name", [".res.abc_1234.partial", ".res.old-4242", ".res.otherhost-1-0badc0de.partial"])
def test_leftovers_of_unknown_owner_are_reported_not_removed(tmp_path, name):
    path = _leftover(tmp_path, name)
    with pytest.warns(writer.LeftoverWarning, match=name.replace(".", r"\.")):
        _write(tmp_path / "res", "a")
    assert path.exists()
    assert writer.leftovers(tmp_path / "res") == [path]


def test_folders_of_other_targets_are_not_touched(tmp_path):
    pid = _dead_pid()
    other = _leftover(tmp_path, f".res2.{writer._host()}-{pid}-0badc0de.partial")
    similar = _leftover(tmp_path, ".res.notes")
    _write(tmp_path / "res", "a")
    assert other.exists() and similar.exists()


# --- the output location, checked before any sampling ------------------------------------

def test_location_fine(tmp_path):
    writer.check_output_location(tmp_path / "new" / "deeper" / "res", force=False)
    assert list(tmp_path.iterdir()) == []          # creates nothing


def test_location_existing_folder_needs_force(tmp_path):
    (tmp_path / "res").mkdir()
    with pytest.raises(ResultsExistError, match="--force"):
        writer.check_output_location(tmp_path / "res", force=False)
    writer.check_output_location(tmp_path / "res", force=True)


@pytest.mark.parametrize("force", [False, True])
def test_location_is_a_file(tmp_path, force):
    (tmp_path / "res").write_text("not a folder")
    with pytest.raises(OutputLocationError, match="is a file"):
        writer.check_output_location(tmp_path / "res", force=force)


def test_location_under_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputLocationError, match=r"notes\.txt is a file"):
        writer.check_output_location(tmp_path / "notes.txt" / "results" / "res", force=True)


def test_location_not_writable(tmp_path, monkeypatch):
    monkeypatch.setattr(writer.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(OutputLocationError, match="no permission"):
        writer.check_output_location(tmp_path / "out" / "res", force=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_location_not_writable_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        with pytest.raises(OutputLocationError, match="no permission"):
            writer.check_output_location(locked / "res", force=False)
    finally:
        locked.chmod(0o755)


def test_location_is_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "res").symlink_to(tmp_path / "real")
    with pytest.raises(OutputLocationError, match="symbolic link"):
        writer.check_output_location(tmp_path / "res", force=True)


def test_location_errors_are_bad_input():
    assert issubclass(OutputLocationError, InputError) and issubclass(ResultsExistError, InputError)
    assert issubclass(ResultsExistError, FileExistsError)


@pytest.mark.parametrize("name", ["../outside", "a/../../outside", "/etc"])
def test_results_name_leaving_the_output_folder_is_bad_input(tmp_path, name):
    with pytest.raises(OutputLocationError, match="outside"):
        writer.safe_child(tmp_path / "results", name)


def test_atomic_dir_under_a_file_is_a_location_error(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OutputLocationError):
        _write(tmp_path / "notes.txt" / "res", "a")
