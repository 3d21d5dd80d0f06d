"""The anakinra analyses: registered analysis types, each a configuration of the generic engines."""

from . import biomarkers, comparison, mortality  # noqa: F401  (registers the analysis types)
from .base import Analysed, AnalysisType, FigureSpec, Quantity, Variant
from .registry import analysis_for, as_spec, kinds, load_spec, register

__all__ = ["Analysed", "AnalysisType", "FigureSpec", "Quantity", "Variant", "analysis_for", "as_spec", "kinds", "load_spec",
           "register"]
