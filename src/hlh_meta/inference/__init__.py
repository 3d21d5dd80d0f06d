"""Sampling backends, the compile-once cache and the diagnostics gate."""

from ..errors import GateWarning, ThinDataWarning
from .diagnostics import GATE, Diagnostics, check, gate_summary
from .sampling import SamplerSettings, sample_gated

__all__ = ["GATE", "Diagnostics", "GateWarning", "SamplerSettings", "ThinDataWarning", "check", "gate_summary", "sample_gated"]
