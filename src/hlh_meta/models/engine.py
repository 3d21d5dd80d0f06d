"""A model ready to sample (:class:`ModelInputs`) and fitting it into a complete InferenceData.

Each engine (binomial, normal) turns a user's data frame into ``ModelInputs``: the model's
:class:`~hlh_meta.models.structure.Structure`, a builder of its PyMC graph and the data
swapped into it. :func:`fit_model` samples it (a compiled model is reused for every fit of
the same structure) and adds what every fit carries.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import arviz as az
import numpy as np
import pymc as pm

from ..inference import GateWarning, SamplerSettings, ThinDataWarning, sample_gated
from ..inference.sampling import check_memory, compile_structure, memory_needed
from .coding import level_coords
from .design import Design
from .posterior import complete, prior_sampler
from .shared import shared_model
from .structure import LOG_PRIOR, Structure


def fixed_data(name: str, value, dims=None):
    """``pm.Data`` of a fixed shape: the shape is part of the model's structure (a data swap
    keeps it), and a graph with known shapes compiles to the same function in every process
    (with unknown shapes, PyTensor's shape rewrites pick among equal shapes in an order that
    varies between processes, which defeats the disk cache of compiled functions)."""
    return pm.Data(name, value, dims=dims, shape=np.shape(value))


@dataclass(eq=False)
class ModelInputs:
    """Everything a fit needs, checked; nothing compiled yet.

    ``data``: the values of the model's ``pm.Data`` (swapped into a compiled model of the
    same structure); ``gate``: variables the diagnostics gate checks; ``row_param``: the
    posterior variable holding each row's parameter (``p``, ``theta``); ``observation``:
    the distribution of a row's outcome given that parameter and the constant data
    (replicated data are drawn from it).
    """

    structure: Structure
    build: Callable[["ModelInputs"], pm.Model]
    data: dict[str, np.ndarray]
    gate: list[str]
    design: Design
    priors: dict
    row_labels: list[str]
    studies: list[str]
    weights: np.ndarray
    observed: dict[str, np.ndarray]
    constant: dict[str, np.ndarray]
    row_param: str
    observation: Callable
    study_index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))   # each row's study
    outcome_index: np.ndarray | None = None                                           # each row's outcome
    profiles: list[str] = field(default_factory=list)
    profile_values: dict[str, dict] = field(default_factory=dict)
    coords: dict[str, list] = field(default_factory=dict)
    row_info: dict[str, np.ndarray | tuple] = field(default_factory=dict)
    #: written into the posterior's attributes (e.g. an analysis's reference levels)
    attrs: dict[str, str] = field(default_factory=dict)

    def rows(self) -> dict[str, np.ndarray | tuple]:
        """Per-row facts kept with the constant data: each row's study (and outcome, known
        shares of each composition group: ``(dims, values)`` for a two-dimensional one)."""
        return {"row_study": np.asarray(self.studies, dtype=str)[self.study_index],
                **self.row_info}

    @property
    def outcome(self) -> str:
        return next(iter(self.observed))

    def model(self) -> pm.Model:
        """A new PyMC model of these inputs (their data, labels and coordinates)."""
        return self.build(self)

    def all_coords(self) -> dict[str, list]:
        """The labels of every dimension (a compiled model carries those of its first data)."""
        out = {"row": self.row_labels, "study": self.studies, "covariate": self.design.names,
               **level_coords(self.design), **self.coords}
        if self.profiles:
            out["profile"] = self.profiles
        for g in self.design.groups:
            out[f"{g}_category"] = self.design.categories(g)
        for g, lat in self.design.latent.items():
            if lat.n_units:
                out[f"{g}_unit"] = lat.keys
        return out


def _build_for(inputs: ModelInputs, settings: SamplerSettings) -> Callable[[], pm.Model]:
    """The model builder a fit hands the sampler: nutpie compiles the shared model of the
    structure (:func:`shared_model`); PyMC's sampler gets a model of its own with these
    inputs' data and labels."""
    return partial(shared_model, inputs) if settings.sampler == "nutpie" else inputs.model


def onehot(index: np.ndarray, size: int) -> np.ndarray:
    """(size, len(index)) indicator: column j has a 1 in row index[j]. Kept as model data
    (not graph constants), so compiled kernels do not depend on which row is which."""
    out = np.zeros((size, len(index)))
    out[np.asarray(index, dtype=int), np.arange(len(index))] = 1.0
    return out


def log_prior(variables) -> pm.Deterministic:
    """The log prior density of the top-level parameters (``mu``, ``tau``, ``beta``) at each
    draw, from the graph itself (stored as the ``log_prior`` group for power-scaling
    sensitivity). A parameter fixed by its prior contributes nothing."""
    import pytensor.tensor as pt

    terms = [pm.logp(v, v).sum() for v in variables if v.owner is not None and v in pm.modelcontext(None).free_RVs]
    return pm.Deterministic(LOG_PRIOR, pt.sum(pt.stack(terms)) if terms else pt.constant(0.0))


def profile_values(profiles, labels: list[str]) -> dict[str, dict]:
    """Each prediction profile's covariate values (JSON-friendly), by label."""
    if profiles is None or not labels or profiles.shape[1] == 0:
        return {label: {} for label in labels}
    return {str(k): {c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()}
            for k, row in profiles.to_dict(orient="index").items()}


def values_per_draw(inputs: ModelInputs) -> int:
    """An estimate, before anything is built or compiled, of the values a fit of ``inputs``
    stores per draw: the size of the model's data (each row's data give rise to about as many
    stored values: its parameter, log-likelihood and shares; 217 against the 101 values the
    bundled mortality model stores, 34 against 30 for biomarkers) and 10 for the top-level
    parameters. Where nutpie compiles the model, the exact number is checked again before sampling."""
    return 10 + sum(int(np.size(v)) for v in inputs.data.values())


def check_request(inputs: ModelInputs, settings: SamplerSettings) -> int:
    """Refuse (:class:`~hlh_meta.errors.SettingError`) sampler settings whose draws of this model
    would not fit in half of this machine's memory (:func:`hlh_meta.inference.sampling.memory_needed`);
    returns the bytes the fit needs."""
    values = values_per_draw(inputs)
    check_memory(settings, values)
    return memory_needed(settings, values)


def fit_model(inputs: ModelInputs, settings: SamplerSettings, extras: bool = True) -> az.InferenceData:
    """Sample the model (gated, refitted once if needed) and complete the InferenceData.

    ``extras=False`` (sensitivity variants) keeps posterior, log-likelihood and the gate
    result only: no prior draws and no replicated data.
    """
    studies = len(set(inputs.study_index[inputs.weights > 0]))
    if studies == 1 and inputs.priors["tau"]["dist"] != "Fixed":
        warnings.warn("one study in the fit: the between-study SD tau is not informed by the data; its posterior "
                      "is its prior, and so is the spread of a new study's prediction", ThinDataWarning, stacklevel=3)
    idata, diag = sample_gated(_build_for(inputs, settings), inputs.structure, inputs.data, settings, inputs.gate)
    if not diag.passed:
        warnings.warn(f"the diagnostics gate failed after {diag.attempts} attempt(s): {'; '.join(diag.problems)}; "
                      "the draws may not represent the posterior (hlh_meta.diagnostics(idata) has the details)",
                      GateWarning, stacklevel=3)
    return complete(idata, inputs, settings, diag, extras=extras)


def compile_model(inputs: ModelInputs, settings: SamplerSettings) -> None:
    """Compile what a fit of ``inputs`` needs (nutpie's model, or with PyMC's sampler the
    prior draws' forward sampler) without sampling: run in another process, it leaves the compiled
    functions in the disk cache for this machine's later fits."""
    if settings.sampler == "nutpie":        # its compiled model also draws the prior
        compile_structure(partial(shared_model, inputs), inputs.structure)
    else:
        prior_sampler(inputs.model, inputs.structure)
