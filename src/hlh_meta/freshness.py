"""Whether a results folder is up to date: written from the same spec file, the same tables,
the same hlh-meta code and the same libraries.

A results folder's ``manifest.json`` records the SHA-256 of its spec file, of each table
file, of the package's own source (:func:`code_digest`) and the library versions. ``hlh-meta
run`` skips an analysis whose folder matches on all four (``--force`` refits). Nothing here
imports the modelling stack, so the check costs a fraction of a second.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
#: the libraries whose versions a results folder records (and that decide its numbers)
PACKAGES = ("hlh-meta", "pymc", "pytensor", "nutpie", "arviz", "numpy", "pandas", "scipy", "xarray")


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def code_digest() -> str:
    """SHA-256 over the package's source files (Python and report templates), by relative path."""
    h = hashlib.sha256()
    for f in sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".j2") and "__pycache__" not in p.parts):
        h.update(str(f.relative_to(PACKAGE)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def library_versions(packages=PACKAGES) -> dict[str, str]:
    """The installed version of each package ("not installed" where absent)."""
    out = {}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def fingerprint(spec_file: Path, data_digests: dict[str, str]) -> dict:
    """What a results folder records to be recognised as up to date."""
    return {"spec_sha256": file_digest(spec_file), "data_sha256": dict(data_digests), "code_sha256": code_digest(),
            "libraries": library_versions()}


#: beside the results folders: the analyses a run skipped for having no usable rows, with their fingerprints
SKIPPED = ".hlh-meta-skipped.json"


def _skipped(out: Path) -> dict:
    try:
        data = json.loads((Path(out) / SKIPPED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_skip(out: Path, name: str, spec_file: Path, data_digests: dict[str, str]) -> None:
    """Remember that analysis ``name`` had no usable rows in these tables (so a later run with
    nothing changed skips it without reading the tables again). Best effort: a folder that
    cannot be written only loses the shortcut."""
    entries = _skipped(out)
    entries[name] = fingerprint(spec_file, data_digests)
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / SKIPPED).write_text(json.dumps(entries, indent=1, sort_keys=True), encoding="utf-8")
    except OSError:
        pass


def skipped_before(out: Path, name: str, spec_file: Path, data_digests: dict[str, str]) -> bool:
    """Whether a run with the same spec, tables, code and libraries skipped ``name`` for having no usable rows."""
    return _skipped(out).get(name) == fingerprint(spec_file, data_digests)


def _manifest(folder: Path) -> dict | None:
    """The results folder's manifest, or None where it is missing, unreadable or not a mapping."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def compared_already(folder: Path) -> bool:
    """Whether the results folder's manifest says it holds the comparison of covariate sets."""
    manifest = _manifest(folder)
    return manifest is not None and manifest.get("compared") is True


def up_to_date(folder: Path, spec_file: Path, data_digests: dict[str, str], compare: bool = False) -> bool:
    """Whether ``folder`` holds complete results of this spec file on these tables with this
    code and these libraries (a folder without a readable manifest is not); with
    ``compare``, only if they hold the comparison of covariate sets too."""
    manifest = _manifest(folder)
    if manifest is None or not (Path(folder) / "posterior.nc").is_file():
        return False
    mine = fingerprint(spec_file, data_digests)
    if compare and manifest.get("compared") is not True:     # written without the comparison of covariate sets
        return False
    return all(manifest.get(k) == v for k, v in mine.items())
