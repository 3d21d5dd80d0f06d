"""Sensitivity analyses: variants declared in a spec, run as data swaps where possible."""

from ..analyses import Variant, analysis_for
from .grid import run_sensitivity
from .robustness import robustness


def expand_variants(ds, spec):
    """The named variants a spec's ``[sensitivity] families`` declare (checked, not run).

    Parameters
    ----------
    ds : Dataset
        The data the variants vary.
    spec : Spec
        The analysis spec (default families: all of its analysis type's).

    Returns
    -------
    list of Variant
        The variants; a declared family with nothing to vary gives one variant whose
        ``skip`` says why.

    Raises
    ------
    hlh_meta.SpecError
        For an empty or unknown ``[sensitivity] families``.
    """
    return analysis_for(spec).expand_variants(ds, spec)


__all__ = ["Variant", "expand_variants", "robustness", "run_sensitivity"]
