"""A leaner load of a generated callback from numba's disk cache.

numba keeps a compiled callback as its object code and the LLVM bitcode of its module (for
linking it into later compiles). Loading it parses that bitcode and walks every function and
global of the module to note which symbols are defined: for the bundled mortality model's
callbacks (each holds the whole compiled PyTensor function, some 2,000 symbols) about 80 ms of
the 100 ms a callback takes to load, twice per model structure. The generated callbacks are
never linked into another compile, so here the defined symbols are read from the object
code's own symbol table (ELF) instead, and the bitcode is not parsed: the library is loaded
from the same object code, and numba looks its symbols up as before.

Used only around the load of a generated callback (:func:`lean_loads`), only where numba's
library class is the one written for (:data:`TESTED_NUMBA`, checked attribute by attribute),
and only for an ELF object; anything else is loaded by numba's own code. Where the check
fails, one :class:`LeanLoadWarning` per process says why (same callbacks, slower load).
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

from ..errors import warn_once

#: numba releases whose ``CPUCodeLibrary._unserialize`` this stands in for
TESTED_NUMBA = ("0.65",)

_ELF64_LE = b"\x7fELF\x02\x01"
_SHT_SYMTAB = 2
_SHN_UNDEF = 0
_STT_NOT_SYMBOLS = (3, 4)          # section and file entries name no function or variable


class LeanLoadWarning(UserWarning):
    """numba is not what the leaner load was written for; its own load is used (same callbacks, slower)."""


def defined_symbols(obj: bytes) -> set[str] | None:
    """The names of the functions and variables an ELF64 little-endian object file defines (its
    symbol table's named entries with a section, less section and file entries), or None where
    ``obj`` is not such a file or cannot be read."""
    try:
        if obj[:6] != _ELF64_LE:
            return None
        shoff, = struct.unpack_from("<Q", obj, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
        if shentsize != 64 or shnum == 0:
            return None
        sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * 64) for i in range(shnum)]
        names: set[str] = set()
        found = False
        for _, kind, _, _, offset, size, link, _, _, entsize in sections:
            if kind != _SHT_SYMTAB:
                continue
            found = True
            if entsize != 24:
                return None
            strings = sections[link]
            str_off, str_size = strings[4], strings[5]
            for at in range(offset, offset + size, 24):
                name_at, info, _, shndx = struct.unpack_from("<IBBH", obj, at)
                if name_at == 0 or shndx == _SHN_UNDEF or info & 0xF in _STT_NOT_SYMBOLS:
                    continue
                end = obj.index(b"\0", str_off + name_at, str_off + str_size)
                names.add(obj[str_off + name_at:end].decode())
        return names if found else None
    except (struct.error, ValueError, IndexError, UnicodeDecodeError):
        return None


def _mismatch() -> str | None:
    """Why numba's library class is not what :func:`_lean` was written for, or None."""
    try:
        import numba
        from numba.core import codegen
    except ImportError as exc:  # pragma: no cover - numba is a dependency
        return f"numba cannot be imported ({exc})"
    version = ".".join(numba.__version__.split(".")[:2])
    if version not in TESTED_NUMBA:
        return f"numba {numba.__version__} is not a tested release ({', '.join(TESTED_NUMBA)})"
    library = getattr(codegen, "CPUCodeLibrary", None)
    needed = ("_unserialize", "enable_object_caching", "_set_compiled_object", "_finalize_final_module")
    if library is None or any(not hasattr(library, name) for name in needed):
        return "numba.core.codegen.CPUCodeLibrary lacks a method the leaner load uses"
    return None


def _warn(reason: str) -> None:
    warn_once("cached_load", f"generated callbacks are loaded from numba's cache by numba's own code ({reason}); the "
                      f"callbacks are the same, each load is slower. The leaner load is tested with numba "
              f"{', '.join(TESTED_NUMBA)}.", LeanLoadWarning, stacklevel=3)


def _lean(original, names_of: tuple[str, ...]):
    """``CPUCodeLibrary._unserialize`` for the object code of a library named with one of
    ``names_of`` (an ELF object): the library from its object code, its defined symbols from the
    object's symbol table; anything else (and an engine without numba's symbol set) by numba's
    ``original``."""

    def unserialize(cls, codegen, state):
        name, kind, data = state
        engine = getattr(codegen, "_engine", None)
        known = getattr(engine, "_defined_symbols", None)
        if kind != "object" or not isinstance(known, set) or not str(name).startswith(names_of):
            return original.__func__(cls, codegen, state)
        object_code, _shared_bitcode = data
        names = defined_symbols(object_code)
        if not names:
            return original.__func__(cls, codegen, state)
        self = codegen.create_library(name)
        self.enable_object_caching()
        self._set_compiled_object(object_code)
        self._shared_module = None             # never linked into another compile
        self._finalize_final_module()
        known |= names
        return self

    return classmethod(unserialize)


@contextlib.contextmanager
def lean_loads(*names_of: str) -> Iterator[None]:
    """Within the block, numba loads the cached object code of libraries whose names start with
    one of ``names_of`` with the leaner load (above), others with its own; where numba is not
    what the leaner load was written for, all with its own (one :class:`LeanLoadWarning`)."""
    reason = _mismatch()
    if reason is not None:
        _warn(reason)
        yield
        return
    from numba.core.codegen import CPUCodeLibrary

    original = CPUCodeLibrary.__dict__["_unserialize"]
    CPUCodeLibrary._unserialize = _lean(original, names_of)      # type: ignore[method-assign]
    try:
        yield
    finally:
        CPUCodeLibrary._unserialize = original                   # type: ignore[method-assign]
