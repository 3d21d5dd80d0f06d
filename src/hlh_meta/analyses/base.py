"""What every analysis type provides, and the records it produces.

An analysis type (one module per kind, registered in :mod:`.registry`) owns: building its
analysis frame from a Dataset and a Spec, the model inputs of a fit (for the primary
analysis and for each sensitivity variant), its derived quantities, its tables, its
figures (declared as :class:`FigureSpec`, drawn by the report), its report sections and its
sensitivity families. Derived quantities are :class:`Quantity` records: consumers select
them by their id (:class:`~.quantity_id.QuantityId`: outcome, kind, profile, contrast),
never by their labels, which are worded for display.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import arviz as az
import numpy as np
import pandas as pd

from ..data import Dataset
from ..data.schema import AGE_GROUPS
from ..effects.biomarkers import MISSING_DISPERSION
from ..effects.mortality import ATTRIBUTIONS
from ..errors import PriorError, SettingError, plain
from ..inference import SamplerSettings, gate_summary
from ..models.engine import ModelInputs, check_request, fit_model
from ..models.priors import BINOMIAL_DEFAULTS, resolve_priors
from ..spec import Spec
from .frames import kept, kept_list
from .quantity_id import Contrast, QuantityId
from .registry import check_keys


@dataclass(frozen=True, eq=False, kw_only=True)
class Quantity:
    """One derived quantity with its posterior (and prior) draws.

    ``key``: what it is (e.g. ``mortality_typical``, ``odds_ratio``, ``tau``); ``outcome``:
    the outcome it belongs to (``mortality``, ``crp``, ...); ``label``: the profile,
    covariate or outcome it is about, as shown (for display only); ``profile``: the
    covariate values it refers to, by design column; ``levels``: the covariate levels it
    fixes, covariate -> level; ``contrast``: the two levels it compares; ``scale``: the unit
    of the draws; ``description``: the quantity in words. :attr:`id` is what it is, apart
    from its wording. Every field is given by keyword.
    """

    key: str
    outcome: str
    label: str
    description: str
    scale: str
    draws: np.ndarray
    prior: np.ndarray | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)
    #: the covariate levels it fixes, covariate -> level (every other covariate as in the included strata)
    levels: Mapping[str, str] = field(default_factory=dict)
    #: the two levels of a covariate it compares (an odds ratio, a ratio of means)
    contrast: Contrast | None = None
    thresholds: tuple[float, ...] = ()
    n_studies: int | None = None
    #: the posterior variable (and selection) the draws come from
    source: tuple[str, dict] | None = None
    studies_informing: int | None = None
    patients_informing: int | None = None
    extrapolation: bool = False
    #: the ids of the quantities it is built from: its support is no stronger than theirs
    #: (a new study's prediction rests on the pooled estimate and tau)
    rests_on: tuple[QuantityId, ...] = ()
    #: filled by :func:`.support.support`: label and the measures behind it
    support: Mapping[str, Any] = field(default_factory=dict)
    #: what a reader must know about the data behind it (e.g. imputed standard errors), in words
    caveats: tuple[str, ...] = ()
    #: what the estimate is, in words, where that matters (e.g. ``one study (...)``: one study's
    #: estimate, not a pooled one); written in the ``basis`` column when given
    basis: str = ""

    @property
    def id(self) -> QuantityId:
        """What the quantity is (outcome, kind, levels, contrast), apart from its label."""
        return QuantityId.of(self.outcome, self.key, self.levels, self.contrast)

    @property
    def label_support(self) -> str:
        return self.support.get("support", "")

    @property
    def conflict(self) -> bool:
        """Whether prior and data pull it different ways (see :mod:`.support`)."""
        return bool(self.support.get("conflict", False))

    def summary(self) -> dict:
        d = np.asarray(self.draws, dtype=float)
        ok = np.isfinite(d).all() and d.size > 0
        q = np.quantile(d, [0.025, 0.5, 0.975]) if ok else [np.nan] * 3
        row = {"id": str(self.id), "quantity": self.description, "key": self.key, "outcome": self.outcome, "label": self.label,
               "scale": self.scale, "mean": float(d.mean()) if ok else np.nan, "median": q[1], "q2.5": q[0],
               "q97.5": q[2]}
        for t in self.thresholds:
            row[f"P(<{t:g}%)"] = float((d < t).mean()) if ok else np.nan
        if self.n_studies is not None:
            row["n_studies"] = self.n_studies
        row["profile"] = json.dumps(dict(self.profile), sort_keys=True) if self.profile else ""
        row["contrast"] = json.dumps(asdict(self.contrast)) if self.contrast is not None else ""
        row.update(self.support)
        row["caveats"] = "; ".join(self.caveats)
        if self.basis:
            row["basis"] = self.basis
        return row


def quantity_table(quantities: list[Quantity]) -> pd.DataFrame:
    frame = pd.DataFrame([q.summary() for q in quantities])
    for col in ("n_studies", "studies_informing", "patients_informing"):
        if col in frame:
            frame[col] = frame[col].astype("Int64")
    return frame


def with_support(idata: az.InferenceData, quantities: list[Quantity]) -> list[Quantity]:
    """The quantities with their support (label and measures) filled in."""
    from dataclasses import replace

    from .support import conflict_caveat, support

    return [replace(q, support=s, caveats=q.caveats + ((conflict_caveat(s),) if s.get("conflict") else ()))
            for q, s in zip(quantities, support(idata, quantities))]


def correlation_ends(spec: Spec) -> list[float]:
    """The ends of ``[data] correlation_range``: the assumed pre/post correlation is a judgement
    (a row estimates it only where it prints both SDs and an exact p-value), and these are its
    alternative readings."""
    ends = spec.get("data", "correlation_range")
    if (len(ends) != 2 or not all(isinstance(r, (int, float)) and not isinstance(r, bool) and -1 <= r <= 1
                                  for r in ends) or ends[0] >= ends[1]):
        raise spec.error("data.correlation_range", f"must be two numbers in [-1, 1], low then high, got {ends!r}")
    return [float(r) for r in ends if float(r) != spec.get("data", "correlation")]


def check_data_keys(spec: Spec) -> None:
    """``[data]`` values checked alike wherever they are read: the death attribution, the
    pre/post correlation and its range, the handling of a missing dispersion (a kind that does
    not read one has refused it before, and its default passes). Checked with the rest of the
    spec, before any work, naming the spec file and key (the same values are refused again,
    without the file, where the tables are resolved)."""
    attribution = spec.get("data", "attribution")
    if attribution not in ATTRIBUTIONS:
        raise spec.error("data.attribution", f"must be one of {', '.join(ATTRIBUTIONS)}, got {plain(attribution)}")
    r = spec.get("data", "correlation")
    if not (math.isfinite(r) and -1 <= r <= 1):
        raise spec.error("data.correlation", f"must be a number in [-1, 1], got {plain(r)}")
    correlation_ends(spec)
    dispersion = spec.get("data", "missing_dispersion")
    if dispersion not in MISSING_DISPERSION:
        raise spec.error("data.missing_dispersion", f"must be one of {', '.join(MISSING_DISPERSION)}, "
                                                   f"got {plain(dispersion)}")


#: the spec keys every analysis type reads, by section (the selection of studies, the
#: judgements, priors, sampler settings, summary of findings and sensitivity variants)
SHARED_KEYS: dict[str, frozenset[str]] = {
    "analysis": frozenset({"name", "kind", "title", "description"}),
    "data": frozenset({"exclude_studies", "primary_only", "overlap", "covid19", "judgements"}),
    "priors": frozenset({"mu", "tau", "beta"}),
    "sampling": frozenset({"draws", "tune", "chains", "seed", "sampler", "target_accept"}),
    "report": frozenset({"threshold", "population"}),
    "sensitivity": frozenset({"families", "draws", "tune"}),
}


def keys_read(**own: set[str]) -> dict[str, frozenset[str]]:
    """The shared keys and an analysis type's own (``section={keys}``): its ``spec_keys``."""
    return {s: SHARED_KEYS.get(s, frozenset()) | frozenset(own.get(s, ())) for s in {**SHARED_KEYS, **own}}


@dataclass(frozen=True)
class Variant:
    """One change to the primary analysis: a spec patch, studies given weight 0, or the counts of one stratum.

    Parameters
    ----------
    name : str
        The variant's name, unique within an analysis.
    family : str
        The family it belongs to (a key of the spec's ``[sensitivity] families``).
    patch : dict, optional
        Spec sections and keys that replace the primary spec's.
    soft_exclude : frozenset of str, optional
        Studies given weight 0.
    counts : dict, optional
        Counts that replace the extracted ones, ``{(study_id, stratum): (deaths, n)}``
        (mortality analyses).
    skip : str, optional
        Why a declared family has nothing to vary (empty for a variant that is fitted).
    """

    name: str
    family: str
    patch: dict = field(default_factory=dict)
    soft_exclude: frozenset[str] = frozenset()
    counts: dict = field(default_factory=dict)
    skip: str = ""


PRIMARY = Variant("primary", "primary")


@dataclass(frozen=True)
class FigureSpec:
    """A figure an analysis type shows: ``kind`` names the drawing (``forest``,
    ``densities``, ``intervals``, ``shrinkage``, ``trace``, ``prior_posterior``, ``ppc``,
    ``sensitivity``); ``select`` the quantity keys it draws."""

    name: str
    kind: str
    caption: str
    select: tuple[str, ...] = ()
    title: str = ""
    xlabel: str = ""
    log_x: bool = False
    reference_line: float | None = None


@dataclass
class Analysed:
    """What an analysis produced: the fit, its derived quantities and its tables."""

    analysis: "AnalysisType"
    spec: Spec
    idata: az.InferenceData
    quantities: list[Quantity]
    tables: dict[str, pd.DataFrame]


class AnalysisType:
    """Base of the registered analysis types; subclasses fill in the hooks."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "frame" in cls.__dict__:              # computed once per dataset and spec within a run (.frames)
            cls.frame = kept(cls.__dict__["frame"])

    kind: ClassVar[str]
    #: the spec keys this type reads, by section (:func:`keys_read`); the spec check refuses any other
    spec_keys: ClassVar[Mapping[str, frozenset[str]]] = SHARED_KEYS
    families: ClassVar[dict[str, Callable[["AnalysisType", Dataset, Spec, pd.DataFrame], list[Variant]]]] = {}
    figures: ClassVar[tuple[FigureSpec, ...]] = ()
    #: column of ``data_used`` that groups the forest plot's rows unless ``[report] group_by`` says otherwise,
    #: and the columns that key may name (none: the type groups its rows itself and refuses the key)
    group_by: ClassVar[str | None] = None
    group_columns: ClassVar[tuple[str, ...]] = ()
    #: quantity keys the sensitivity analysis compares across variants
    robustness_keys: ClassVar[tuple[str, ...]] = ()
    #: how long this type's models take to compile, relative to the others: ``hlh-meta run`` runs
    #: the analyses of the heaviest first, so that the model compiled while nothing else is
    #: compiled yet is the longest one (the others compile meanwhile in a background process)
    compile_weight: ClassVar[int] = 1
    #: tables whose row labels are their index
    indexed_tables: ClassVar[tuple[str, ...]] = ("summary",)
    #: the open interval ``[report] threshold`` must lie in (None: unbounded on that side), and
    #: the outcome's reported unit in words: the threshold is compared with that scale
    threshold_range: ClassVar[tuple[float | None, float | None, str]] = (None, None, "the outcome's reported unit")

    # ---- hooks
    def frame(self, ds: Dataset, spec: Spec) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rows entering the model, and every other row with why it does not."""
        raise NotImplementedError

    def inputs(self, ds: Dataset, spec: Spec, used: pd.DataFrame, variant: Variant = PRIMARY,
               covariates: list[str] | None = None) -> ModelInputs:
        """The model inputs of a fit of ``used`` (with a variant's weights and counts)."""
        raise NotImplementedError

    def quantities(self, idata: az.InferenceData) -> list[Quantity]:
        """Derived quantities, from the InferenceData alone (so a saved result gives the same)."""
        raise NotImplementedError

    def tables(self, ds: Dataset, spec: Spec, used: pd.DataFrame, excluded: pd.DataFrame,
               idata: az.InferenceData, quantities: list[Quantity], progress: bool = False) -> dict[str, pd.DataFrame]:
        raise NotImplementedError

    def statements(self, quantities: list[Quantity]) -> list[tuple[Quantity, str]]:
        """Plain-language statements of the reported quantities, each with the quantity it
        is about (the report sorts them by that quantity's support)."""
        raise NotImplementedError

    def methods(self, idata: az.InferenceData) -> str:
        """The model in words, for the report's methods section."""
        raise NotImplementedError

    def forest(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> dict[str, pd.DataFrame]:
        """Rows of the forest plot (``rows``) and its summary rows (``summaries``)."""
        raise NotImplementedError

    def findings_rows(self, tables: Mapping[str, pd.DataFrame], quantities: list[Quantity]) -> list[dict]:
        """Each outcome's headline for the summary of findings (see :mod:`.findings`)."""
        return []

    # ---- shared machinery
    def summary_of_findings(self, spec: Spec, tables: Mapping[str, pd.DataFrame],
                            quantities: list[Quantity]) -> pd.DataFrame:
        """The GRADE summary-of-findings table of the result (one row per outcome)."""
        from .findings import summary_of_findings

        rows = self.findings_rows(tables, quantities)
        studies = tables.get("studies", pd.DataFrame(columns=["study_id"]))
        return summary_of_findings(rows, studies, spec.get("report", "threshold"),
                                   population=spec.get("report", "population")) if rows else pd.DataFrame()

    def summary(self, idata: az.InferenceData, quantities: list[Quantity], var_names: list[str]) -> pd.DataFrame:
        """ArviZ's summary of the model parameters with the support of each: a parameter
        behind a derived quantity (e.g. beta behind an odds ratio) shares its support, and
        column ``quantity_id`` names that quantity (empty for a parameter behind none)."""
        import itertools

        from .support import support

        with warnings.catch_warnings():     # a constant element (Omega's diagonal) has no R-hat or MCSE
            warnings.simplefilter("ignore", RuntimeWarning)
            table = az.summary(idata, var_names=var_names, hdi_prob=0.95)
        table.index.name = "parameter"
        post, prior = idata.posterior, getattr(idata, "prior", None)
        by_source = {(q.source[0], json.dumps(q.source[1], sort_keys=True)): q for q in quantities if q.source}
        cd = idata.constant_data
        keep = cd["weight"].values > 0
        studies = len(set(cd["row_study"].values[keep]))
        size = cd["total"] if "total" in cd else cd["row_n"] if "row_n" in cd else None
        patients = int(size.values[keep].sum()) if size is not None else None
        params, ids = [], []
        outcome = next((q.outcome for q in quantities), "model")
        for var in var_names:
            dims = [d for d in post[var].dims if d not in ("chain", "draw")]
            for combo in itertools.product(*[list(post[var][d].values) for d in dims]):
                sel = {d: str(c) for d, c in zip(dims, combo)}
                q = by_source.get((var, json.dumps(sel, sort_keys=True)))
                ids.append(str(q.id) if q is not None else "")
                if q is not None and q.support:
                    params.append(q.support)
                    continue
                same = next((q for q in quantities if "outcome" in sel and q.outcome == sel["outcome"]), None)
                k, n = (same.studies_informing, same.patients_informing) if same is not None else (studies, patients)
                draws = post[var].sel(**sel).values.reshape(-1)
                pr = prior[var].sel(**sel).values.reshape(-1) if prior is not None and var in prior else None
                param = Quantity(key="parameter", outcome=str(sel.get("outcome", outcome)), label=var, description=var,
                                 scale="SD" if var == "tau" else "raw", draws=draws, prior=pr, n_studies=k,
                                 source=(var, sel), studies_informing=k, patients_informing=n,
                                 extrapolation=var == "tau" and k < 2)
                params.append(support(idata, [param])[0])
        if len(params) != len(table):
            raise AssertionError("summary rows and parameter elements differ")
        extra = pd.DataFrame(params, index=table.index)
        for col in ("studies_informing", "patients_informing"):
            if col in extra:
                extra[col] = extra[col].astype("Int64")
        return pd.concat([table, extra], axis=1).assign(quantity_id=ids)

    #: the engine's default priors, against which a spec's ``[priors]`` are checked
    prior_defaults: ClassVar[Mapping[str, Mapping]] = BINOMIAL_DEFAULTS

    def check_spec(self, spec: Spec) -> None:
        """What the spec file's keys can only be checked against the analysis type for, before
        any work: keys this type does not read (:attr:`spec_keys`), ``[priors]`` as every engine
        checks them, ``[report] group_by`` and ``population``; a problem names the spec file and key."""
        check_keys(spec)
        column = spec.section("report").get("group_by")
        if column is not None and column not in (*self.group_columns, "none"):
            raise spec.error("report.group_by", f"choose from {', '.join((*self.group_columns, 'none'))}, got '{column}'"
                             if self.group_columns else f"the {self.kind} analysis groups its forest plot itself")
        population = spec.get("report", "population")
        unknown = [g for g in population if g not in AGE_GROUPS] if isinstance(population, list) else [population]
        if unknown or not population:
            raise spec.error("report.population", f"list one or more of {', '.join(AGE_GROUPS)}, got {population!r}")
        try:
            resolve_priors(spec.section("priors"), self.prior_defaults)
        except PriorError as exc:
            raise spec.error("priors" if exc.param is None else f"priors.{exc.param}", exc.detail) from None
        self._check_threshold(spec)
        check_data_keys(spec)

    def _check_threshold(self, spec: Spec) -> None:
        """``[report] threshold`` on the scale of the outcome it is compared with (a mortality
        percentage within (0, 100), a percent reduction below 100, an odds ratio above 0)."""
        threshold = spec.get("report", "threshold")
        if threshold is None:
            return
        lo, hi, unit = self.threshold_range
        inside = math.isfinite(threshold) and (lo is None or threshold > lo) and (hi is None or threshold < hi)
        if not inside:
            bounds = " and ".join(b for b in (f"above {lo:g}" if lo is not None else "",
                                               f"below {hi:g}" if hi is not None else "") if b) or "finite"
            raise spec.error("report.threshold", f"is compared with {unit}, so it must be {bounds}; got {plain(threshold)}")

    @staticmethod
    def settings(spec: Spec, overrides_from: str = "sampling", **overrides) -> SamplerSettings:
        """The spec's ``[sampling]`` settings; a bad value names the spec file and key (a value
        given in ``overrides`` is named as a key of the section ``overrides_from``)."""
        try:
            return SamplerSettings.of(spec.section("sampling"), **overrides)
        except SettingError as exc:
            section = overrides_from if exc.key in overrides else "sampling"
            raise spec.error(f"{section}.{exc.key}", exc.message) from None

    def check_request(self, ds: Dataset, spec: Spec, sensitivity: bool = False) -> int:
        """Refuse, before any sampling, ``[sampling]`` (and with ``sensitivity`` the variants'
        ``[sensitivity] draws`` and ``tune``) that ask for more memory than half of this
        machine's, estimated from the size of the primary model (:func:`~hlh_meta.models.engine.
        values_per_draw`); names the spec file and key with the estimate. Returns the bytes a
        variant's fit needs (the primary's without ``sensitivity``)."""
        inputs = self.variant_inputs(ds, spec, PRIMARY)
        asks = [("sampling", self.settings(spec))]
        if sensitivity:
            asks.append(("sensitivity", self.settings(spec, overrides_from="sensitivity",
                                                      draws=spec.get("sensitivity", "draws"),
                                                      tune=spec.get("sensitivity", "tune"))))
        need = 0
        for section, settings in asks:
            try:
                need = check_request(inputs, settings)
            except SettingError as exc:
                where = section if exc.key in ("draws", "tune") else "sampling"     # the variants set only these
                raise spec.error(f"{where}.{exc.key}", exc.message) from None
        return need

    def fit(self, ds: Dataset, spec: Spec, used: pd.DataFrame, variant: Variant = PRIMARY,
            covariates: list[str] | None = None, progress: bool = False, extras: bool = True) -> az.InferenceData:
        inputs = self.inputs(ds, spec, used, variant, covariates)
        return fit_model(inputs, self.settings(spec, progress=progress), extras=extras)

    def variant_inputs(self, ds: Dataset, spec: Spec, variant: Variant) -> ModelInputs:
        """The model inputs of a sensitivity variant (its spec patch applied)."""
        vspec = spec.patched(variant.patch)
        used, _ = self.frame(ds, vspec)
        return self.inputs(ds, vspec, used, variant)

    def resolve(self, ds: Dataset, spec: Spec) -> Spec:
        """The spec with what the data decide filled in (e.g. reference levels), so that the
        primary analysis and every sensitivity variant use the same; default: as given."""
        return spec

    def supported_quantities(self, idata: az.InferenceData) -> list[Quantity]:
        """Derived quantities with their support, from the InferenceData alone."""
        return with_support(idata, self.quantities(idata))

    def compare(self, ds: Dataset, spec: Spec, used: pd.DataFrame, progress: bool = False,
                primary: az.InferenceData | None = None,
                step: Callable[[str], None] | None = None) -> pd.DataFrame:
        """The comparison of the spec's covariate sets by leave-one-study-out cross-validation
        (``comparison.csv``); ``primary`` is the analysis's own fit, ``step(text)`` is told
        what is being fitted. Default: nothing to compare (an empty frame)."""
        return pd.DataFrame()

    def predict(self, ds: Dataset, spec: Spec, idata: az.InferenceData, profiles: pd.DataFrame) -> pd.DataFrame:
        """Estimates for new covariate profiles from a fit's draws; an analysis type without
        covariate profiles refuses (:class:`~hlh_meta.errors.InputError`)."""
        from ..errors import InputError

        raise InputError(f"a {self.kind} analysis has no covariate profiles to predict; prediction for new profiles "
                         "is for mortality analyses")

    def comparison_step(self, ds: Dataset, spec: Spec, used: pd.DataFrame, primary: az.InferenceData,
                        step: Callable[[str], None] | None = None, progress: bool = False) -> dict[str, pd.DataFrame]:
        """The comparison of covariate sets as a step after the fit ``primary`` (its own draws
        serve the set that is the model's covariates): ``{"comparison": table}``, or nothing
        where the spec compares no sets. Gate warnings of its fits are summed up in one line."""
        if step is not None:
            step("comparing covariate sets")
        with gate_summary("the cross-validation of covariate sets"):   # one line, not one per fit
            comparison = self.compare(ds, spec, used, progress=progress, primary=primary, step=step)
        return {} if comparison.empty else {"comparison": comparison}

    def run(self, ds: Dataset, spec: Spec, progress: bool = False, compare: bool = False,
            step: Callable[[str], None] | None = None) -> Analysed:
        """The primary analysis: frame, fit, quantities, tables and, with ``compare``, the
        comparison of covariate sets (:meth:`compare`), a step of its own. ``step(text)``
        is told each phase as it starts."""
        say = step or (lambda text: None)
        used, excluded = self.frame(ds, spec)
        say("sampling")
        idata = self.fit(ds, spec, used, progress=progress)
        quantities = self.supported_quantities(idata)
        tables = self.tables(ds, spec, used, excluded, idata, quantities, progress=progress)
        if compare:
            tables.update(self.comparison_step(ds, spec, used, idata, step=step, progress=progress))
        findings = self.summary_of_findings(spec, tables, quantities)
        if not findings.empty:
            tables = {"summary_of_findings": findings, **tables}
        return Analysed(self, spec, idata, quantities, tables)

    @kept_list
    def expand_variants(self, ds: Dataset, spec: Spec) -> list[Variant]:
        """The variants the spec's ``[sensitivity] families`` declare (default: all of this type's);
        within :func:`~.frames.frames_kept` worked out once per dataset and spec."""
        families = spec.get("sensitivity", "families")
        families = list(self.families) if families is None else families
        if not families or not all(isinstance(f, str) for f in families):
            raise spec.error("sensitivity.families", "must be a non-empty list of variant families")
        for fam in families:
            if fam not in self.families:
                raise spec.error("sensitivity.families",
                                 f"unknown family '{fam}'; for {self.kind} choose from {', '.join(self.families)}")
        used, _ = self.frame(ds, spec)
        variants = []
        for fam in families:
            found = self.families[fam](self, ds, spec, used)
            variants += found or [Variant(f"{fam}: nothing to vary", fam, skip="no study or stratum of this kind in the model")]
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise AssertionError("variant names must be unique")
        return variants
