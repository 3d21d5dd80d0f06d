"""The anakinra analyses: configurations of the generic engines driven by a spec."""
