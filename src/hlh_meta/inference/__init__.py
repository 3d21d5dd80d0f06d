"""Sampling backends, the compile-once cache and the diagnostics gate."""

from .diagnostics import GATE, Diagnostics, check
from .sampling import SamplerSettings, sample_gated

__all__ = ["GATE", "Diagnostics", "SamplerSettings", "check", "sample_gated"]
