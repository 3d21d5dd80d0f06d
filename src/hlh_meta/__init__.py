"""hlh-meta: Bayesian meta-analysis of anakinra in secondary HLH / MAS."""

from .data import Dataset, load_dataset, read_dataset
from .errors import DataError, SpecError
from .models.binomial import fit_binomial

__version__ = "0.1.0"

__all__ = ["DataError", "Dataset", "SpecError", "fit_binomial", "load_dataset", "read_dataset", "__version__"]
