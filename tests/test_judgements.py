"""Judgements: values inferred by the extractor, with their reasons and alternative readings."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

import hlh_meta as hm
from hlh_meta.analyses import analysis_for, load_spec
from hlh_meta.cli import app
from hlh_meta.data import bundled_data_dir
from hlh_meta.data.judgements import readings, with_readings
from hlh_meta.effects.biomarkers import resolve_biomarkers
from hlh_meta.effects.check import check_dataset
from hlh_meta.effects.mortality import resolve_mortality
from hlh_meta.errors import DataError, SpecError
from hlh_meta.spec import bundled_specs_dir

from conftest import edit

BUNDLED = {"alabdulla_cmv_death", "alabdulla_ptld", "alabdulla_strep", "rajasekaran_previously_healthy",
           "eloseily_no_other_malignancy", "ejh_rheumatological_size"}


@pytest.fixture
def judged_copy(data_copy):
    shutil.copy(bundled_data_dir() / "judgements.csv", data_copy / "judgements.csv")
    return data_copy


def _problems(folder):
    with pytest.raises(DataError) as exc:
        hm.read_dataset(folder)
    return exc.value.problems


def _spec(name: str):
    ds = hm.load_dataset()
    spec = load_spec(bundled_specs_dir() / f"{name}.toml")
    analysis = analysis_for(spec)
    return ds, analysis, analysis.resolve(ds, spec)


def test_data_check_lists_every_judgement_and_reading():
    result = CliRunner().invoke(app, ["data", "check"])
    assert result.exit_code == 0, result.output
    judged = hm.load_dataset().judgements
    assert set(judged["judgement_id"]) == BUNDLED
    for jid, reading in readings(judged):
        assert jid in result.output and f"[{reading}]" in result.output
    # the correlation is estimated where a row allows it, an assumption (a judgement) elsewhere
    assert "rajasekaran2014 crp: r = 0.34 estimated" in result.output
    assert "assumed (judgement" in result.output and "eloseily2020 ferritin" in result.output


def test_every_bundled_judgement_has_a_reason_and_an_alternative():
    judged = hm.load_dataset().judgements
    assert judged["alternative"].notna().all()
    firsts = judged.drop_duplicates("judgement_id")
    assert firsts["reason"].str.len().gt(40).all()


def test_a_judgement_that_loses_its_alternative_is_refused(judged_copy):
    edit(judged_copy / "judgements.csv", "4:infection|other,no_information,empty,", "4:infection|other,no_information,,")
    problems = _problems(judged_copy)
    assert [(p.file, p.column) for p in problems] == [("judgements.csv", "alternative")]
    assert "empty but required" in problems[0].message


def test_an_alternative_that_does_not_parse_names_row_and_column(judged_copy):
    edit(judged_copy / "judgements.csv", "deaths,4,sarcoidosis_slip,5,", "deaths,4,sarcoidosis_slip,five,")
    problems = _problems(judged_copy)
    assert [(p.file, p.row, p.column) for p in problems] == [("judgements.csv", 2, "alternative")]
    assert "a whole number" in problems[0].message


def test_a_judgement_pointing_at_no_row_is_refused(judged_copy):
    edit(judged_copy / "judgements.csv", "trigger/infection,deaths,1", "trigger/infections,deaths,1")
    problems = _problems(judged_copy)
    assert [(p.row, p.column) for p in problems] == [(3, "row_key")]
    assert "no row 'trigger/infections'" in problems[0].message


def test_a_value_that_is_not_what_the_table_holds_is_refused(judged_copy):
    edit(judged_copy / "judgements.csv", "deaths,4,sarcoidosis_slip", "deaths,3,sarcoidosis_slip")
    problems = _problems(judged_copy)
    assert [(p.row, p.column) for p in problems] == [(2, "value")]
    assert "holds '4'" in problems[0].message


def test_a_reading_that_breaks_a_rule_of_the_tables_is_refused(judged_copy):
    # 9 patients known within malignancy in a stratum of 6
    edit(judged_copy / "judgements.csv", "trigger_known,empty,open,5:malignancy", "trigger_known,empty,open,9:malignancy")
    problems = _problems(judged_copy)
    assert [(p.file, p.column) for p in problems] == [("judgements.csv", "alternative")]
    assert "reading 'open' of judgement 'alabdulla_ptld'" in problems[0].message
    assert "more than n" in problems[0].message


def test_a_reading_that_resolves_to_no_count_is_found_by_data_check(judged_copy):
    # under this reading the review's rheumatological stratum of 7 cannot give 83.3% survival
    edit(judged_copy / "judgements.csv", "n,empty,n6,6,", "n,empty,n6,7,")
    problems = check_dataset(hm.read_dataset(judged_copy))
    assert [(p.file, p.column) for p in problems] == [("judgements.csv", "alternative")]
    assert "reading 'n6'" in problems[0].message and "no whole number of 7" in problems[0].message


def test_a_folder_without_judgements_has_none(data_copy):
    ds = hm.read_dataset(data_copy)
    assert ds.judgements.empty and "judgements.csv" not in ds.sha256
    assert "judgements (judgements.csv): none" in ds.summary()


def test_a_reading_changes_only_its_cells():
    ds = hm.load_dataset()
    alt = with_readings(ds, {"alabdulla_cmv_death": "sarcoidosis_slip"})
    a, b = resolve_mortality(ds), resolve_mortality(alt)
    trig = (b["study_id"] == "alabdulla_imperial") & (b["partition"] == "trigger")
    assert dict(zip(b.loc[trig, "stratum"], b.loc[trig, "deaths"])) == {"malignancy": 5, "infection": 0, "other": 0,
                                                                        "unknown": 1}
    assert dict(zip(a.loc[trig, "stratum"], a.loc[trig, "deaths"])) == {"malignancy": 4, "infection": 1, "other": 0,
                                                                        "unknown": 1}
    assert b.loc[trig, "deaths"].sum() == a.loc[trig, "deaths"].sum() == 6     # the 55% of 11
    assert a.drop(index=a.index[trig]).astype(str).equals(b.drop(index=b.index[trig]).astype(str))


def test_data_used_names_the_judgements_on_each_row():
    ds, analysis, spec = _spec("mortality")
    used, _ = analysis.frame(ds, spec)
    on = dict(zip(used["label"], used["judgements"]))
    assert "alabdulla_cmv_death" in on["alabdulla_imperial: malignancy"]
    assert "rajasekaran_previously_healthy" in on["rajasekaran2014: all"]
    assert on["henry2019: all"] == ""


def test_the_mortality_analysis_uses_the_imperial_trigger_partition():
    ds, analysis, spec = _spec("mortality")
    used, _ = analysis.frame(ds, spec)
    imperial = used[used["study_id"] == "alabdulla_imperial"]
    assert set(imperial["partition"]) == {"trigger"}
    assert dict(zip(imperial["stratum"], zip(imperial["deaths"], imperial["n"]))) == {
        "malignancy": (4, 6), "infection": (1, 3), "other": (0, 1), "unknown": (1, 1)}


def test_each_alternative_reading_is_a_variant_that_builds_model_inputs():
    ds, analysis, spec = _spec("mortality")
    variants = [v for v in analysis.expand_variants(ds, spec) if v.family == "judgements"]
    names = {v.name for v in variants}
    assert names == {f"judgement {jid}: {reading}" for jid, reading in readings(ds.judgements)}
    run = [v for v in variants if not v.skip]
    assert {next(iter(v.patch["data"]["judgements"])) for v in run} == BUNDLED - {"ejh_rheumatological_size"}
    # the review is left out by the overlap rule: its readings are listed, with why they are not run
    assert all("do not enter" in v.skip for v in variants if "ejh_" in v.name)
    primary = analysis.inputs(ds, spec, analysis.frame(ds, spec)[0])
    for v in variants:
        if v.skip:
            continue
        inputs = analysis.variant_inputs(ds, spec, v)
        assert np.isfinite(inputs.weights).all() and len(inputs.row_labels) == len(primary.row_labels)
        same = inputs.structure == primary.structure and all(
            a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in b)
            for a, b in ((inputs.data, primary.data), (inputs.observed, primary.observed)))
        assert not same, f"{v.name} changes nothing in the model inputs"


def test_a_spec_naming_an_unknown_reading_is_refused():
    ds, analysis, spec = _spec("mortality")
    bad = spec.patched({"data": {"judgements": {"alabdulla_cmv_death": "nonsense"}}})
    with pytest.raises(SpecError, match="no reading 'nonsense' of judgement 'alabdulla_cmv_death'"):
        analysis.frame(ds, bad)


def test_correlation_is_estimated_where_a_row_allows_it():
    rows = resolve_biomarkers(hm.load_dataset()).set_index(["study_id", "biomarker"])
    crp = rows.loc[("rajasekaran2014", "crp")]
    assert crp["correlation_source"] == "estimated"
    assert crp["correlation"] == pytest.approx(0.34, abs=0.005)      # 206 ± 50 -> 68 ± 36 (SEM), n = 8, p = 0.03
    others = rows.drop(index=[("rajasekaran2014", "crp")])
    assert (others.loc[others["usable"].astype(bool), "correlation_source"] == "assumed").all()
    assert (others.loc[others["usable"].astype(bool), "correlation"] == 0.5).all()


def test_the_correlation_variants_are_the_ends_of_the_declared_range():
    ds, analysis, spec = _spec("biomarkers")
    variants = [v for v in analysis.expand_variants(ds, spec) if v.family == "correlation"]
    assert [v.patch["data"]["correlation"] for v in variants] == [0.3, 0.7]
    narrow = spec.patched({"data": {"correlation_range": [0.4, 0.6]}})
    assert [v.patch["data"]["correlation"] for v in analysis.expand_variants(ds, narrow)
            if v.family == "correlation"] == [0.4, 0.6]
    with pytest.raises(SpecError, match="correlation_range"):
        analysis.expand_variants(ds, spec.patched({"data": {"correlation_range": [0.7, 0.3]}}))
