"""Column definitions and vocabularies of the extraction tables.

Each table is declared once here; validation (``validate.py``) and the data dictionary
read from these declarations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.pandas as pa

TRIGGERS = ("infection", "rheumatological", "malignancy", "other")
TRIGGER_VALUES = TRIGGERS + ("unknown",)
AGE_GROUPS = ("paediatric", "adult")
AGE_GROUP_VALUES = AGE_GROUPS + ("mixed", "unknown")
ROUTES = ("iv", "sc", "mixed", "unknown")
BIOMARKERS = ("crp", "ferritin", "fibrinogen")
PARTITIONS = ("overall", "trigger", "underlying_diagnosis", "age")
COUNT_METHODS = ("reported", "matched", "from_percentage", "remainder", "not_reported")
PERCENT_OUTCOMES = ("death", "survival")
RISK_OF_BIAS = ("low", "moderate", "high", "critical")
P_OPERATORS = ("=", "<", "<=")
BOOLEAN_TEXT = ("true", "false")
#: what could be read of a source, best first (peer-reviewed full paper, only its abstract,
#: a conference abstract, anything else such as a web page without an index entry)
GRADES = ("peer_reviewed_full", "peer_reviewed_abstract", "conference_abstract", "other")
ARMS = ("anakinra", "control")
ARM_DESIGNS = ("randomised", "randomised_post_hoc_subgroup", "observational")
ARM_COUNT_METHODS = ("reported", "not_reported")
#: what of a source was read: its abstract (or summary) only, part of the full text, all of it
READ = ("abstract", "partial_full_text", "full_text")
#: the tables a judgement may point into (judgements.csv, column ``table``)
JUDGED_TABLES = ("studies", "mortality", "biomarkers", "arms")


@dataclass(frozen=True)
class Col:
    """One column: its kind (str, int, float, bool), whether it must be filled and checks."""

    kind: str
    required: bool = False
    checks: tuple[pa.Check, ...] = field(default_factory=tuple)
    doc: str = ""


def _isin(values: tuple[str, ...]) -> pa.Check:
    return pa.Check.isin(values, error=f"must be one of: {', '.join(values)}")


def _ge(x: float, what: str = "") -> pa.Check:
    return pa.Check.ge(x, error=what or f"must be >= {x}")


def _between(lo: float, hi: float) -> pa.Check:
    return pa.Check.in_range(lo, hi, error=f"must be between {lo} and {hi}")


_positive = pa.Check.gt(0, error="must be > 0")
_id_pattern = pa.Check.str_matches(r"^[a-z][a-z0-9_]*$", error="must be lower-case letters, digits and _, starting with a letter")
_plausible_n = pa.Check.le(1_000_000, error="is implausibly large (more than 1,000,000)")

STUDIES: dict[str, Col] = {
    "study_id": Col("str", True, (_id_pattern,), "identifier used by the other tables"),
    "citation": Col("str", True, (), "short citation"),
    "year": Col("int", False, (_between(1950, 2100),), "publication year (empty: the source does not print it)"),
    "doi": Col("str", False, (), "DOI without the https://doi.org/ prefix"),
    "pmid": Col("int", False, (_positive,), "PubMed identifier"),
    "design": Col("str", True, (), "study design"),
    "setting": Col("str", False, (), "where patients were treated"),
    "country": Col("str", False, (), "country or 'international'"),
    "n_patients": Col("int", True, (_positive, _plausible_n), "patients given anakinra"),
    "age_group": Col("str", True, (_isin(AGE_GROUP_VALUES),), "age group of the cohort"),
    "median_age": Col("float", False, (_between(0, 120),), "median age, years"),
    "route": Col("str", True, (_isin(ROUTES),), "route of anakinra"),
    "n_iv": Col("int", False, (_ge(0),), "patients given intravenous anakinra (empty: not reported)"),
    "trigger_mix": Col("str", False, (), "trigger mix as the source words it"),
    "overlaps_with": Col("str", False, (), "study ids (;-separated) that may share patients"),
    "risk_of_bias": Col("str", True, (_isin(RISK_OF_BIAS),), "overall risk of bias"),
    "risk_of_bias_reason": Col("str", True, (), "why"),
    "include_primary": Col("bool", True, (), "true/false: used by the primary analyses"),
    "source_locator": Col("str", True, (), "where in the source the facts are"),
    "grade": Col("str", True, (_isin(GRADES),), "grade of source: what of it could be read"),
    "covid19": Col("bool", True, (), "true/false: COVID-19-triggered sHLH"),
    "read": Col("str", False, (_isin(READ),), "what of the source was read for the extraction (empty: not recorded)"),
    "followup": Col("str", False, (), "the time within which deaths are counted, as the source states it (e.g. "
                                      "'28 days', 'hospital stay'); 'unknown' when what was read states none"),
}

MORTALITY: dict[str, Col] = {
    "study_id": Col("str", True, (), "study of studies.csv"),
    "partition": Col("str", True, (_isin(PARTITIONS),), "how the study's patients are split"),
    "stratum": Col("str", True, (_id_pattern,), "the stratum within the partition"),
    "trigger": Col("str", True, (_isin(TRIGGER_VALUES),), "trigger of the stratum (unknown: mixed or not reported)"),
    "age_group": Col("str", True, (_isin(AGE_GROUP_VALUES),), "age group of the stratum"),
    "deaths": Col("int", False, (_ge(0, "must not be negative"), _plausible_n), "reported deaths"),
    "n": Col("int", False, (_positive, _plausible_n), "patients in the stratum"),
    "percent": Col("float", False, (_between(0, 100),), "reported percentage (of deaths or survivors)"),
    "percent_outcome": Col("str", False, (_isin(PERCENT_OUTCOMES),), "what the percentage counts"),
    "percent_decimals": Col("int", False, (_between(0, 3),), "decimals the percentage was printed with"),
    "share_percent": Col("float", False, (_between(0, 100),), "stratum's reported share of the study's patients"),
    "count_method": Col("str", True, (_isin(COUNT_METHODS),), "how deaths and n are obtained"),
    "deaths_alternative": Col("int", False, (_ge(0, "must not be negative"),), "deaths under an alternative attribution"),
    "source_locator": Col("str", True, (), "where in the source"),
    "notes": Col("str", False, (), "free text"),
    "trigger_excluded": Col("str", False, (), "triggers the stratum's unknown mix cannot hold, as the source says "
                                               "(;-separated, e.g. malignancy)"),
    "trigger_known": Col("str", False, (), "patients of the stratum known to lie within some triggers: "
                                            "count:trigger|trigger, ;-separated (e.g. 4:infection|other)"),
}

BIOMARKERS_TABLE: dict[str, Col] = {
    "study_id": Col("str", True, (), "study of studies.csv"),
    "biomarker": Col("str", True, (_isin(BIOMARKERS),), "biomarker"),
    "unit": Col("str", False, (), "unit of the means"),
    "n": Col("int", True, (_positive, _plausible_n), "patients measured"),
    "baseline_mean": Col("float", False, (_positive,), "mean at the start of anakinra"),
    "baseline_sd": Col("float", False, (_ge(0, "must not be negative"),), "SD at baseline"),
    "baseline_sem": Col("float", False, (_ge(0, "must not be negative"),), "SEM at baseline"),
    "followup_mean": Col("float", False, (_positive,), "mean at follow-up"),
    "followup_sd": Col("float", False, (_ge(0, "must not be negative"),), "SD at follow-up"),
    "followup_sem": Col("float", False, (_ge(0, "must not be negative"),), "SEM at follow-up"),
    "followup_day": Col("float", False, (_ge(0, "must not be negative"),), "day of follow-up"),
    "percent_decrease": Col("float", False, (pa.Check.lt(100, error="must be < 100"),), "reported percent decrease (negative: increase)"),
    "p_value": Col("float", False, (pa.Check.in_range(0, 1, include_min=False, error="must be in (0, 1]"),), "reported p-value of the paired change"),
    "p_operator": Col("str", False, (_isin(P_OPERATORS),), "=, < or <= as printed"),
    "test": Col("str", False, (), "statistical test named by the source"),
    "source_locator": Col("str", True, (), "where in the source"),
    "notes": Col("str", False, (), "free text"),
}

ARMS_TABLE: dict[str, Col] = {
    "study_id": Col("str", True, (), "study of studies.csv"),
    "arm": Col("str", True, (_isin(ARMS),), "treatment arm"),
    "design": Col("str", True, (_isin(ARM_DESIGNS),), "how the arms were formed"),
    "deaths": Col("int", False, (_ge(0, "must not be negative"), _plausible_n), "reported deaths in the arm"),
    "n": Col("int", False, (_positive, _plausible_n), "patients in the arm"),
    "count_method": Col("str", True, (_isin(ARM_COUNT_METHODS),), "how deaths and n are obtained"),
    "source_locator": Col("str", True, (), "where in the source"),
    "notes": Col("str", False, (), "free text"),
}

JUDGEMENTS_TABLE: dict[str, Col] = {
    "judgement_id": Col("str", True, (_id_pattern,), "names the judgement; rows sharing it are the cells of one judgement"),
    "study_id": Col("str", True, (), "study of studies.csv"),
    "table": Col("str", True, (_isin(JUDGED_TABLES),), "table holding the judged cell"),
    "row_key": Col("str", False, (), "the row within the study: partition/stratum (mortality), biomarker "
                                     "(biomarkers), arm (arms); empty for studies"),
    "column": Col("str", True, (), "column of the judged cell"),
    "value": Col("str", True, (), "the cell as entered, in the table's syntax (the word empty: an empty cell)"),
    "reading": Col("str", True, (_id_pattern,), "names an alternative reading; the cells of one reading change together"),
    "alternative": Col("str", True, (), "the cell under the alternative reading, in the table's syntax (the word "
                                        "empty: an empty cell, e.g. no information)"),
    "reason": Col("str", False, (), "why the value is a judgement and not printed (given once per judgement, on "
                                    "any of its rows)"),
}

TABLES: dict[str, dict[str, Col]] = {
    "studies.csv": STUDIES,
    "mortality.csv": MORTALITY,
    "biomarkers.csv": BIOMARKERS_TABLE,
    "arms.csv": ARMS_TABLE,
    "judgements.csv": JUDGEMENTS_TABLE,
}

#: tables a folder may leave out (read as empty) and that may hold a header and no rows
OPTIONAL_TABLES: tuple[str, ...] = ("arms.csv", "judgements.csv")

UNIQUE_KEYS: dict[str, list[str]] = {
    "studies.csv": ["study_id"],
    "mortality.csv": ["study_id", "partition", "stratum"],
    "biomarkers.csv": ["study_id", "biomarker"],
    "arms.csv": ["study_id", "arm"],
    "judgements.csv": ["judgement_id", "reading", "table", "row_key", "column"],
}

#: the columns that key a row of a table within its study (``row_key`` of judgements.csv)
ROW_KEYS: dict[str, tuple[str, ...]] = {
    "studies.csv": (),
    "mortality.csv": ("partition", "stratum"),
    "biomarkers.csv": ("biomarker",),
    "arms.csv": ("arm",),
}
