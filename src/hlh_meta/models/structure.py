"""What a compiled model depends on: its structure.

Two fits whose inputs have equal :class:`Structure` run on one compiled model (the data,
weights, covariate mask and prior hyperparameters are swapped in); every cache of compiled
functions and the sensitivity grouping use this one key.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the graph's variable holding the log prior density of the top-level parameters
LOG_PRIOR = "log_prior"


@dataclass(frozen=True)
class Structure:
    """The parts of a model that its compiled functions bake in.

    ``study_index`` / ``outcome_index``: each row's study (and outcome) position;
    ``covariates``: design column names; ``groups``: composition groups and their columns;
    ``latent``: per group, the rows whose shares are unknown, the unknown each uses and the
    parts of the unknowns' priors (allowed categories, owner, weight); ``priors``:
    (parameter, family) pairs; ``profiles``: number of prediction profiles;
    ``likelihood``: how a stratum that mixes categories enters; ``coding``: the prior coding
    of categorical covariates (:mod:`hlh_meta.models.coding`); ``mixture_slots``: how many
    combinations of categories the row that can hold the most holds (the mixture's width;
    which ones each row holds is data). These are constants of the
    graph, folded in at compile time; everything else (counts, weights, covariate values
    and mask, prior hyperparameters) is data swapped into a compiled model.
    """

    engine: str
    study_index: tuple[int, ...]
    covariates: tuple[str, ...]
    groups: tuple[tuple[str, tuple[int, ...]], ...]
    latent: tuple
    priors: tuple[tuple[str, str], ...]
    profiles: int = 0
    outcome_index: tuple[int, ...] = ()
    likelihood: str = "linear"
    coding: str = "treatment"
    mixture_slots: int = 0

    @property
    def rows(self) -> int:
        return len(self.study_index)
