"""Sensitivity analyses: variants declared in a spec, run as data swaps where possible."""

from .runner import run_sensitivity, robustness
from .variants import Variant, expand_variants

__all__ = ["Variant", "expand_variants", "robustness", "run_sensitivity"]
