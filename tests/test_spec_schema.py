"""Per-kind spec schema: each analysis type reads its own keys, and a spec giving a key its
kind does not read is refused before any work, naming the file, the key, the kind and the
kinds that read it."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hlh_meta.analyses import analysis_for, kinds, load_spec, register
from hlh_meta.analyses.base import SHARED_KEYS, AnalysisType, keys_read
from hlh_meta.analyses.registry import _TYPES
from hlh_meta.cli import app
from hlh_meta.errors import SpecError
from hlh_meta.spec import SECTIONS, bundled_specs_dir, read_spec

BUNDLED = bundled_specs_dir()


def _with_line(kind: str, section: str, line: str, tmp_path):
    """The bundled spec of ``kind`` with ``line`` added to ``[section]``, written to a file."""
    lines = (BUNDLED / f"{kind}.toml").read_text(encoding="utf-8").splitlines()
    header = f"[{section}]"
    at = next((i for i, text in enumerate(lines) if text.strip() == header), None)
    if at is None:
        lines += [header, line]
    else:
        lines.insert(at + 1, line)
    path = tmp_path / f"{kind}_{section}.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", ["mortality", "biomarkers", "comparison"])
def test_each_kind_accepts_its_bundled_spec(kind):
    spec = load_spec(BUNDLED / f"{kind}.toml")
    assert spec.kind == kind
    analysis_for(spec).check_spec(spec)


BIOMARKERS_REFUSED = [
    ("model", 'likelihood = "linear"', "model.likelihood"),
    ("data", 'attribution = "alternative"', "data.attribution"),
    ("data", 'partitions = { Foo = "bar" }', "data.partitions"),
    ("comparison", 'covariate_sets = [[], ["trigger"]]', "comparison.covariate_sets"),
]


@pytest.mark.parametrize("section, line, key", BIOMARKERS_REFUSED, ids=[c[2] for c in BIOMARKERS_REFUSED])
def test_a_mortality_key_in_a_biomarkers_spec_is_refused(tmp_path, section, line, key):
    path = _with_line("biomarkers", section, line, tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.key == key
    assert str(info.value) == f"{path}: [{key}] not read by a biomarkers analysis; it applies to mortality"


@pytest.mark.parametrize("section, line, key", BIOMARKERS_REFUSED, ids=[c[2] for c in BIOMARKERS_REFUSED])
def test_check_spec_refuses_it_too(tmp_path, section, line, key):
    """A Spec read without the registry's check (``read_spec``) is refused by ``check_spec``,
    which ``run_analysis`` and the command line run before any work."""
    path = _with_line("biomarkers", section, line, tmp_path)
    spec = read_spec(path, kinds())
    with pytest.raises(SpecError, match="not read by a biomarkers analysis") as info:
        analysis_for(spec).check_spec(spec)
    assert info.value.key == key and str(path) in str(info.value)


def test_fit_refuses_it_before_writing(tmp_path):
    path = _with_line("biomarkers", "data", 'attribution = "alternative"', tmp_path)
    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["fit", str(path), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert f"{path}: [data.attribution] not read by a biomarkers analysis; it applies to mortality" in res.output
    assert "Traceback" not in res.output and not out.exists()


@pytest.mark.parametrize("section, line, key", [("data", 'partitions = { x = "trigger" }', "data.partitions"),
                                                ("model", 'coding = "treatment"', "model.coding"),
                                                ("report", 'group_by = "none"', "report.group_by")])
def test_a_mortality_only_key_in_a_comparison_spec_is_refused(tmp_path, section, line, key):
    path = _with_line("comparison", section, line, tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: [{key}] not read by a comparison analysis; it applies to mortality"


def test_the_message_names_every_kind_that_reads_the_key(tmp_path):
    path = _with_line("comparison", "model", 'reference = { trigger = "infection" }', tmp_path)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value).endswith("[model.reference] not read by a comparison analysis; "
                                    "it applies to biomarkers and mortality")


@pytest.mark.parametrize("kind", ["mortality", "biomarkers", "comparison"])
@pytest.mark.parametrize("section, line", [("data", "judgements = {}"), ("sensitivity", "tune = 400"),
                                           ("report", 'population = ["adult"]')])
def test_a_key_every_kind_reads_is_accepted(tmp_path, kind, section, line):
    spec = load_spec(_with_line(kind, section, line, tmp_path))
    analysis_for(spec).check_spec(spec)
    key = line.split("=")[0].strip()
    assert key in spec.section(section)


def test_an_unknown_key_is_still_refused_as_unknown(tmp_path):
    path = _with_line("biomarkers", "model", "likelyhood = 'linear'", tmp_path)
    with pytest.raises(SpecError, match=r"\[model.likelyhood\] unknown key"):
        load_spec(path)


def test_every_declared_key_is_read_by_some_kind():
    declared = {(s, k) for s, keys in SECTIONS.items() for k in keys}
    read = {(s, k) for t in _TYPES.values() for s, keys in t.spec_keys.items() for k in keys}
    assert read == declared
    for t in _TYPES.values():
        for section, keys in SHARED_KEYS.items():
            assert keys <= t.spec_keys[section], (t.kind, section)


def test_a_type_declaring_an_undeclared_key_is_not_registered():
    class Odd(AnalysisType):
        kind = "odd"
        spec_keys = keys_read(model={"covariates", "weather"})

    with pytest.raises(TypeError, match="model.weather"):
        register(Odd)
    assert "odd" not in kinds()
