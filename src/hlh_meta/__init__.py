"""hlh-meta: Bayesian meta-analysis of anakinra in secondary HLH / MAS."""

from . import effects, sensitivity
from .analyses import load_spec
from .data import Dataset, load_dataset, read_dataset
from .errors import DataError, InputError, SpecError
from .inference import SamplerSettings
from .models.binomial import fit_binomial
from .models.normal import fit_normal
from .models.normal_exact import exact_normal_posterior, fit_normal_exact
from .models.posterior import diagnostics_of as diagnostics
from .pipeline import run_analysis
from .result import AnalysisResult

__version__ = "0.1.0"

__all__ = [
    "AnalysisResult", "DataError", "Dataset", "InputError", "SamplerSettings", "SpecError", "diagnostics", "effects",
    "exact_normal_posterior", "fit_binomial", "fit_normal", "fit_normal_exact", "load_dataset", "load_spec",
    "read_dataset", "run_analysis", "sensitivity", "__version__",
]
