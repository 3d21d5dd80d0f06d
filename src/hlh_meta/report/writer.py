"""Writing a results folder atomically: everything goes to a temporary sibling folder that
is renamed into place only when complete, so a crash or Ctrl-C leaves the previous
results untouched.

- The commit never replaces a folder without ``force``: one that appeared while the
  analysis ran (another run with the same ``--out``) is refused with
  :class:`~hlh_meta.errors.ResultsExistError`, and the finished results are discarded.
  On Linux the final rename is itself no-replace (``renameat2``), so two runs cannot both
  succeed.
- With ``force``, the existing folder is renamed aside and the new one renamed in, retried
  when another writer moves things at the same moment; every folder moved aside is removed,
  so racing writers leave exactly one complete folder (the last to commit) and no other.
- Folders are created with mode 0o777 less the umask, like any folder, not 0o700.
- The temporary folders are named ``.NAME.HOST-PID-TOKEN.partial`` and
  ``.NAME.old-HOST-PID-TOKEN``. A run removes those that a killed run on this host left
  behind (their process no longer exists, or started after the folder was last written, so
  the id was reused); it leaves alone those of a process still running, of another host, or
  in an older naming, and reports the last two with a :class:`LeftoverWarning`
  (:func:`leftovers` lists them).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import secrets
import shutil
import socket
import stat
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..errors import Interrupts, OutputLocationError, ResultsExistError

__all__ = ["INDEXED_TABLES", "LeftoverWarning", "OutputLocationError", "ResultsExistError", "atomic_dir",
           "check_output_location", "leftover_note", "leftovers", "safe_child"]

#: tables whose row labels (parameter names, covariate sets) are their index
INDEXED_TABLES = ("summary", "comparison")

_ATTEMPTS = 50
_OWNER = re.compile(r"^(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-(?P<token>[0-9a-f]+)$")
_LEGACY = (re.compile(r"^[A-Za-z0-9_]{8}\.partial$"), re.compile(r"^old-\d+$"))


class LeftoverWarning(UserWarning):
    """A hidden temporary folder of another run that is not removed automatically."""


def safe_child(root: Path, name: str) -> Path:
    """``root / name``, refusing names that would leave ``root``."""
    target = (root / name).resolve()
    if target.parent != root.resolve():
        raise OutputLocationError(f"results name '{name}' would write outside {root}")
    return target


# --- checking the location before any work -------------------------------------------

def check_output_location(target: Path, force: bool) -> None:
    """Refuse, before any sampling, an output folder that cannot be written.

    Raises :class:`~hlh_meta.errors.OutputLocationError` when ``target`` is a file, a part
    of its path is a file (or a broken link), or the folder it would be created in is not
    writable; :class:`~hlh_meta.errors.ResultsExistError` when it exists and ``force`` is off.
    Creates nothing.
    """
    target = Path(os.path.abspath(target))
    kind = _kind(target)
    if kind == "link":
        raise OutputLocationError(f"output folder {target} is a symbolic link; give the folder it points to")
    if kind == "file":
        raise OutputLocationError(f"output folder {target} is a file, not a folder; choose another --out")
    if kind == "dir":
        if not force:
            raise ResultsExistError(f"{target} already exists; use --force to replace it or --out for another folder")
        _writable(target.parent, target)
        return
    for parent in target.parents:         # nearest existing ancestor, from the target up
        kind = _kind(parent, follow=True)
        if kind == "link":
            raise OutputLocationError(f"cannot create output folder {target}: {parent} is a broken symbolic link")
        if kind == "file":
            raise OutputLocationError(f"cannot create output folder {target}: {parent} is a file, not a folder")
        if kind == "dir":
            _writable(parent, target)
            return


def _kind(path: Path, follow: bool = False) -> str | None:
    """'dir', 'file' (anything not a folder), 'link' (a symbolic link; with ``follow``, only
    a broken one) or None (nothing there), from one look at the file system."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(st.st_mode):
        if not follow:
            return "link"
        try:
            st = os.stat(path)
        except OSError:
            return "link"
    return "dir" if stat.S_ISDIR(st.st_mode) else "file"


def _writable(folder: Path, target: Path) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputLocationError(f"cannot write output folder {target}: no permission to write in {folder}")
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        raise OutputLocationError(f"cannot write output folder {target}: {folder} is on a read-only file system")


# --- temporary folders and leftovers -------------------------------------------------

def _host() -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname())[:40] or "host"


def _owner() -> str:
    return f"{_host()}-{os.getpid()}-{secrets.token_hex(4)}"


def _make_partial(target: Path) -> Path:
    for _ in range(_ATTEMPTS):
        tmp = target.with_name(f".{target.name}.{_owner()}.partial")
        try:
            os.mkdir(tmp, 0o777)          # the umask applies, as for any folder
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"could not create a temporary folder beside {target}")


def _process_started(pid: int) -> float | None:
    """Start time of a process (seconds since the epoch) where /proc tells it, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _is_stale(pid: int, folder: Path) -> bool:
    """The process that made ``folder`` is gone: no such process, or the process with that
    id started after the folder was last written (the id was reused)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass                               # exists, owned by another user
    except OSError:
        return False
    started = _process_started(pid)
    try:
        written = folder.lstat().st_mtime
    except OSError:
        return False
    return started is not None and started > written + 2.0


def _candidates(target: Path) -> list[tuple[Path, re.Match | None]]:
    """Hidden temporary folders of ``target``: (path, owner match or None for old names)."""
    prefix = f".{target.name}."
    out = []
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        rest = entry.name[len(prefix):]
        if rest.endswith(".partial"):
            owner = _OWNER.match(rest[: -len(".partial")])
        elif rest.startswith("old-"):
            owner = _OWNER.match(rest[len("old-"):])
        else:
            continue
        if owner is None and not any(p.match(rest) for p in _LEGACY):
            continue
        out.append((Path(entry.path), owner))
    return out


def leftovers(target: Path, remove: bool = False) -> list[Path]:
    """Hidden temporary folders beside ``target`` that belong to no running process of this
    host, or whose owner cannot be told (another host, an older naming).

    With ``remove``, those of this host whose process is gone are deleted; the list then
    holds only what was left alone (for the caller to report)."""
    target = Path(target)
    host, kept = _host(), []
    for path, owner in _candidates(target):
        if owner is not None and owner["host"] == host:
            if not _is_stale(int(owner["pid"]), path):
                continue                   # a run in progress
            if remove:
                shutil.rmtree(path, ignore_errors=True)
                continue
        kept.append(path)
    return kept


def leftover_note(path: Path) -> str:
    """The one line that reports a leftover :func:`leftovers` keeps."""
    return (f"{path} is left from an earlier run that could not be identified as finished "
            "(another host, or an older version); remove it if no run is writing there")


# --- committing ----------------------------------------------------------------------

def _renameat2():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except Exception:                     # no C library to load, or one without renameat2
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists; False when it does."""
    global _RENAMEAT2
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return True
        code = ctypes.get_errno()
        if code == errno.EEXIST:
            return False
        if code not in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
            raise OSError(code, os.strerror(code), str(dst))
        _RENAMEAT2 = None                  # file system without no-replace renames
    if os.path.lexists(dst):
        return False
    try:
        os.rename(src, dst)                # fails on a non-empty folder that appeared meanwhile
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return False
        raise
    return True


def _commit(tmp: Path, target: Path, force: bool) -> None:
    moved: list[Path] = []
    try:
        for _ in range(_ATTEMPTS):
            if _rename_noreplace(tmp, target):
                return
            if not force:
                raise ResultsExistError(f"{target} appeared while this analysis ran (another run writing the "
                                        "same folder?); it was left as it is and these results were not "
                                        "written. Use --force to replace it or --out for another folder")
            if _kind(target) not in ("dir", None):
                raise OutputLocationError(f"output folder {target} is not a folder; choose another --out")
            old = target.with_name(f".{target.name}.old-{_owner()}")
            try:
                os.rename(target, old)
            except FileNotFoundError:      # another writer moved it first: try again
                continue
            moved.append(old)
        raise RuntimeError(f"could not put the results in place at {target}: other runs kept replacing it")
    finally:
        for old in moved:
            shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(target: Path, force: bool = False):
    """Yield a temporary folder; on success it becomes ``target``.

    Raises :class:`~hlh_meta.errors.ResultsExistError` if ``target`` exists without
    ``force``, on entry or (having appeared meanwhile) at the commit, and
    :class:`~hlh_meta.errors.OutputLocationError` if it cannot be written there.
    """
    target = Path(os.path.abspath(target))
    check_output_location(target, force)
    created = [d for d in target.parents if not d.exists()]      # folders this call creates, deepest first
    committed = False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for path in leftovers(target, remove=True):
            warnings.warn(leftover_note(path), LeftoverWarning, stacklevel=3)
        tmp = _make_partial(target)
        try:
            yield tmp
            Interrupts.check()             # an interrupt a callback swallowed still stops the folder going in place
            _commit(tmp, target, force)
            committed = True
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if not committed:                  # nothing written: the folders made for it go too (when still empty)
            for folder in created:
                try:
                    folder.rmdir()
                except OSError:
                    break
