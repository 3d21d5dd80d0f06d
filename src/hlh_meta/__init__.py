"""hlh-meta: Bayesian meta-analysis of anakinra in secondary HLH / MAS.

The public API is re-exported here and loaded on first use, so that importing the
package (or its command line) does not import PyMC until a model is needed.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "AnalysisResult": ("result", "AnalysisResult"),
    "DataError": ("errors", "DataError"),
    "Dataset": ("data", "Dataset"),
    "GateWarning": ("inference", "GateWarning"),
    "ThinDataWarning": ("inference", "ThinDataWarning"),
    "InputError": ("errors", "InputError"),
    "RunOutcome": ("orchestrate", "RunOutcome"),
    "SamplerSettings": ("inference", "SamplerSettings"),
    "SpecError": ("errors", "SpecError"),
    "diagnostics": ("models.posterior", "diagnostics_of"),
    "exact_normal_posterior": ("models.normal_exact", "exact_normal_posterior"),
    "fit_binomial": ("models.binomial", "fit_binomial"),
    "fit_normal": ("models.normal", "fit_normal"),
    "fit_normal_exact": ("models.normal_exact", "fit_normal_exact"),
    "load_dataset": ("data", "load_dataset"),
    "load_spec": ("analyses", "load_spec"),
    "read_dataset": ("data", "read_dataset"),
    "run_all": ("orchestrate", "run_all"),
    "compare_saved": ("orchestrate", "compare_saved"),
    "run_analysis": ("pipeline", "run_analysis"),
}
_MODULES = ("effects", "sensitivity")

__all__ = sorted([*_EXPORTS, *_MODULES, "__version__"])


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        value = getattr(import_module(f".{module}", __name__), attr)
    elif name in _MODULES:
        value = import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'hlh_meta' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__():
    return __all__
