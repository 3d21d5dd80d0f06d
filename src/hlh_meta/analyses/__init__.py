"""The anakinra analyses: registered analysis types, each a configuration of the generic engines."""

from . import biomarkers, comparison, mortality  # noqa: F401  (registers the analysis types)
from .base import Analysed, AnalysisType, FigureSpec, Quantity, Variant
from .quantity_id import Contrast, QuantityId
from .registry import analysis_for, as_spec, kinds, load_spec, register

__all__ = ["Analysed", "AnalysisType", "Contrast", "FigureSpec", "Quantity", "QuantityId", "Variant", "analysis_for",
           "as_spec", "kinds", "load_spec", "register"]
