"""The registered analysis types, by kind.

Adding an analysis kind means writing one module with an :class:`~.base.AnalysisType`
subclass decorated with :func:`register`, and importing it in ``analyses/__init__.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SpecError
from ..spec import SECTIONS, Spec, read_spec, refuse_unread

if TYPE_CHECKING:
    from .base import AnalysisType

_TYPES: dict[str, "AnalysisType"] = {}


def register(cls):
    """Class decorator: make an analysis type available under its ``kind``."""
    unknown = [f"{s}.{k}" for s, keys in cls.spec_keys.items() for k in keys if k not in SECTIONS.get(s, {})]
    if unknown:
        raise TypeError(f"{cls.__name__}.spec_keys names keys spec.SECTIONS does not declare: {', '.join(unknown)}")
    _TYPES[cls.kind] = cls()
    return cls


def kinds() -> tuple[str, ...]:
    return tuple(_TYPES)


def analysis_for(kind: str | Spec) -> "AnalysisType":
    """The analysis type of a kind (or of a spec's kind)."""
    name = kind.kind if isinstance(kind, Spec) else kind
    if name not in _TYPES:
        where = str(kind.path) if isinstance(kind, Spec) else "-"
        raise SpecError(where, "analysis.kind", f"unknown kind '{name}'; expected one of {', '.join(_TYPES)}")
    return _TYPES[name]


def check_keys(spec: Spec) -> None:
    """Refuse a key the spec's kind does not read, naming the kinds that read it."""
    refuse_unread(spec, {kind: t.spec_keys for kind, t in _TYPES.items()})


def load_spec(path: str | Path) -> Spec:
    """Read and check a spec file (its kind must be a registered analysis type that reads
    every key the file gives).

    Parameters
    ----------
    path : str or pathlib.Path
        The spec file (TOML, such as ``models/mortality.toml``).

    Returns
    -------
    Spec
        The spec, its keys checked.

    Raises
    ------
    hlh_meta.SpecError
        For a missing or unreadable file, invalid TOML, unknown sections or keys, wrong
        types, missing keys, an unknown kind or a key the kind does not read, naming the
        file and the key.
    """
    spec = read_spec(path, kinds())
    check_keys(spec)
    return spec


def as_spec(spec: object) -> Spec:
    """``spec`` as a Spec: a Spec as it is, a path (``str`` or ``Path``) read with :func:`load_spec`;
    anything else raises TypeError saying what it must be."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, (str, Path)):
        return load_spec(spec)
    raise TypeError(f"spec must be the path of an analysis spec (a TOML file such as models/mortality.toml) or a "
                    f"Spec (hlh_meta.analyses.load_spec(path)); got {type(spec).__name__}")
