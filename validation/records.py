"""Which model a validation record ran against: the SHA-256 of the model's source files.

Each record in validation/results (sbc.md, coverage.md, reweighting.md, reweighting_biomarkers.md) carries, per engine it validated, a
line

    Model sources (binomial): sha256 <64 hex digits> over src/hlh_meta/models/{binomial,...}.py

written by the script that produced it from :func:`model_source_digest`. The fast test
tests/test_validation_records.py recomputes the digest from the current sources and fails,
naming the record and the command that reruns it, when the shipped model has changed since.

The digest covers the files that define an engine's model (its likelihood, the priors and
their coding, the design and the unknown shares, the building of the inputs), not
``engine.py`` (sampling and storage only): for each file
in the order of :data:`MODEL_SOURCES`, its path relative to the repository, a NUL byte, its
bytes and a NUL byte. Changing any of them, even a comment, asks for the record to be rerun.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = "src/hlh_meta/models"

#: engine -> the modules of src/hlh_meta/models that define the model it fits
#: (``engine.py`` is not among them: it holds how a model is sampled and what a fit stores —
#: ``ModelInputs``, ``fit_model``, the memory bound of a request — and no term of any density)
MODEL_SOURCES: dict[str, tuple[str, ...]] = {
    "binomial": ("binomial", "coding", "design", "shares", "priors"),
    "normal": ("normal", "coding", "design", "priors"),
}

#: record (file name in validation/results) -> engine -> the command that reruns that part
RERUN: dict[str, dict[str, str]] = {
    "sbc.md": {
        "binomial": "PYTHONPATH=src .venv/bin/python validation/sbc.py --engines binomial --reps 200",
        "normal": "PYTHONPATH=src .venv/bin/python validation/sbc.py --engines normal --reps 200",
    },
    "coverage.md": {
        "binomial": "PYTHONPATH=src .venv/bin/python validation/interval_coverage.py --sims 500 --cache DIR",
    },
    "reweighting.md": {
        "binomial": "PYTHONPATH=src .venv/bin/python validation/reweighting.py --draws 5000",
    },
    "reweighting_biomarkers.md": {
        "normal": "PYTHONPATH=src .venv/bin/python validation/reweighting.py --draws 5000 --spec models/biomarkers.toml",
    },
}

DIGEST_LINE = re.compile(r"^Model sources \((?P<engine>\w+)\): sha256 (?P<digest>[0-9a-f]{64})\b", re.M)
#: written by validation/equivalence.py: sources whose log density and gradient equal those of sources
#: a record ran against (or that are themselves equivalent to them)
EQUIVALENT_LINE = re.compile(r"^Equivalent model sources \((?P<engine>\w+)\): sha256 (?P<digest>[0-9a-f]{64}) "
                             r"= sha256 (?P<to>[0-9a-f]{64})\b", re.M)


def model_sources(engine: str, root: Path = ROOT) -> list[Path]:
    """The source files of ``engine``'s model, in digest order."""
    if engine not in MODEL_SOURCES:
        raise KeyError(f"unknown engine {engine!r}; choose from {', '.join(MODEL_SOURCES)}")
    return [root / MODELS / f"{name}.py" for name in MODEL_SOURCES[engine]]


def model_source_digest(engine: str, root: Path = ROOT) -> str:
    """SHA-256 (hex) of ``engine``'s model source files."""
    h = hashlib.sha256()
    for path in model_sources(engine, root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def digest_line(engine: str, root: Path = ROOT) -> str:
    """The line a record carries for ``engine`` (see the module docstring)."""
    return (f"Model sources ({engine}): sha256 {model_source_digest(engine, root)} over "
            f"{MODELS}/{{{','.join(MODEL_SOURCES[engine])}}}.py")


def equivalence_line(engine: str, now: str, was: str, worst: float, points: int, models: int, draws: str) -> str:
    """The line validation/equivalence.py adds to a record."""
    return (f"Equivalent model sources ({engine}): sha256 {now} = sha256 {was}: log density and gradient "
            f"within {worst:.1e} (relative) at {points} points of each of {models} models; "
            f"the bundled model's draws with one seed: {draws} (validation/equivalence.py)")


def accepted_digests(text: str) -> dict[str, set[str]]:
    """engine -> the digests a record validates: the one it ran against and those shown
    equivalent to it (in a chain of equivalences)."""
    out = {engine: {digest} for engine, digest in recorded_digests(text).items()}
    pending = [(m["engine"], m["digest"], m["to"]) for m in EQUIVALENT_LINE.finditer(text)]
    grew = True
    while grew:
        grew = False
        for engine, digest, to in pending:
            if to in out.get(engine, set()) and digest not in out[engine]:
                out[engine].add(digest)
                grew = True
    return out


def recorded_digests(text: str) -> dict[str, str]:
    """engine -> digest, from the ``Model sources`` lines of a record's text."""
    out: dict[str, str] = {}
    for m in DIGEST_LINE.finditer(text):
        if out.get(m["engine"], m["digest"]) != m["digest"]:
            raise ValueError(f"the record names two digests for engine {m['engine']}")
        out[m["engine"]] = m["digest"]
    return out
