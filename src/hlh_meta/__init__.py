"""hlh-meta: Bayesian meta-analysis of anakinra in secondary HLH / MAS."""

from .data import Dataset, load_dataset, read_dataset
from .errors import DataError, SpecError

__version__ = "0.1.0"

__all__ = ["DataError", "Dataset", "SpecError", "load_dataset", "read_dataset", "__version__"]
