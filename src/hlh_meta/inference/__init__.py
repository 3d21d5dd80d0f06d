"""Sampling backends, the compile-once cache and the diagnostics gate."""

from .diagnostics import GATE, Diagnostics, GateWarning, ThinDataWarning, check
from .sampling import SamplerSettings, sample_gated

__all__ = ["GATE", "Diagnostics", "GateWarning", "SamplerSettings", "ThinDataWarning", "check", "sample_gated"]
