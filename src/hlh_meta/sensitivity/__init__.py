"""Sensitivity analyses: variants declared in a spec, run as data swaps where possible."""

from ..analyses import Variant, analysis_for
from .grid import run_sensitivity
from .robustness import robustness


def expand_variants(ds, spec):
    """The named variants a spec's ``[sensitivity] families`` declare (checked, not run)."""
    return analysis_for(spec).expand_variants(ds, spec)


__all__ = ["Variant", "expand_variants", "robustness", "run_sensitivity"]
