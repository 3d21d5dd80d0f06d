"""Shared fixtures: a writable copy of the bundled tables to break on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hlh_meta.data import bundled_data_dir, load_dataset


@pytest.fixture(scope="session")
def ds():
    """The bundled dataset (read once per test session)."""
    return load_dataset()


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
