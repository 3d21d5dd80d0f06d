"""Shared fixtures: the bundled tables, the synthetic tables (tests/data/synthetic: five
fictional studies for tests of general behaviour), and writable copies to break on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hlh_meta.data import bundled_data_dir, load_dataset, read_dataset

#: fictional extraction tables, valid under `hlh-meta data check` (tests/data/synthetic/README.md)
SYNTHETIC = Path(__file__).parent / "data" / "synthetic"


@pytest.fixture(scope="session")
def ds():
    """The bundled dataset (read once per test session)."""
    return load_dataset()


@pytest.fixture(scope="session")
def synthetic():
    """The synthetic dataset: five fictional studies (ids syn_a to syn_e), read once per session."""
    return read_dataset(SYNTHETIC)


@pytest.fixture
def synthetic_copy(tmp_path: Path) -> Path:
    """A writable copy of the synthetic tables."""
    return Path(shutil.copytree(SYNTHETIC, tmp_path / "synthetic"))


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    target = tmp_path / "tables"
    target.mkdir()
    for name in ("studies.csv", "mortality.csv", "biomarkers.csv"):
        shutil.copy(bundled_data_dir() / name, target / name)
    return target


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace text in a table, failing loudly if the text is not there."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")
