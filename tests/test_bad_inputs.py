"""The bad-input corpus (tests/bad_inputs.toml): every broken table set is refused with a
message naming file, row and column, exit status 2, no traceback and nothing written."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hlh_meta.cli import app

HERE = Path(__file__).parent
CASES = tomllib.loads((HERE / "bad_inputs.toml").read_text(encoding="utf-8"))["case"]


def materialise(case: dict, folder: Path) -> Path:
    for edit in case["edits"]:
        path = folder / edit["table"]
        if edit.get("delete"):
            path.unlink()
            continue
        if "content" in edit:
            path.write_text(edit["content"], encoding="utf-8")
            continue
        text = path.read_text(encoding="utf-8")
        assert edit["old"] in text, f"{case['name']}: {edit['old']!r} not in {edit['table']}"
        path.write_bytes(text.replace(edit["old"], edit["new"], 1).encode(edit.get("encoding", "utf-8")))
    return folder


def test_corpus_is_large_enough():
    assert len(CASES) >= 25
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_data_check_refuses(case, data_copy):
    res = CliRunner().invoke(app, ["data", "check", str(materialise(case, data_copy))])
    exp = case["expect"]
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    where = exp["file"] + (f", row {exp['row']}" if "row" in exp else "")
    where += f", column '{exp['column']}'" if "column" in exp else ""
    lines = [line for line in res.output.splitlines() if where in line]
    assert lines, f"no line naming {where!r}:\n{res.output}"
    assert any(exp["fragment"] in line for line in lines), res.output
    if "count" in exp:
        problems = [line for line in res.output.splitlines() if line.startswith("  - ")]
        assert len(problems) == exp["count"], res.output


@pytest.mark.parametrize("case", CASES[:3], ids=[c["name"] for c in CASES[:3]])
def test_fit_refuses_before_writing(case, data_copy, tmp_path):
    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["fit", str(HERE / "specs" / "mortality_small.toml"), "--data",
                                   str(materialise(case, data_copy)), "--out", str(out)])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(
    "spec, fragment",
    [("[analysis]\nname='m'\nkind='mortality'\n[model]\ncovariate=['trigger']\n", "unknown key"),
     ("[analysis]\nname='../../outside'\nkind='mortality'\n", "analysis.name")],
    ids=["unknown-key", "path-outside-results"],
)
def test_bad_spec_refused_before_writing(tmp_path, spec, fragment):
    path = tmp_path / "spec.toml"
    path.write_text(spec)
    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["fit", str(path), "--out", str(out)])
    assert res.exit_code == 2 and fragment in res.output and "Traceback" not in res.output
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "outside").exists()
