"""hlh-meta: Bayesian meta-analysis of anakinra in secondary HLH / MAS."""

from . import effects, sensitivity
from .analyses.result import AnalysisResult, run_analysis
from .data import Dataset, load_dataset, read_dataset
from .errors import DataError, SpecError
from .models.binomial import fit_binomial
from .models.normal import fit_normal
from .models.normal_exact import fit_normal_exact

__version__ = "0.1.0"

__all__ = [
    "AnalysisResult", "DataError", "Dataset", "SpecError", "effects", "fit_binomial", "fit_normal",
    "fit_normal_exact", "load_dataset", "read_dataset", "run_analysis", "sensitivity", "__version__",
]
