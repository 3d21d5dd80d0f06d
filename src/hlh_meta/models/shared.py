"""The PyMC model of each compiled structure, built once in a process and shared."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from ..inference.sampling import is_compiled

if TYPE_CHECKING:
    import pymc as pm

    from .engine import ModelInputs

_SHARED: OrderedDict = OrderedDict()     # structure -> the PyMC model built for it in this process
_SHARED_SIZE = 32


def shared_model(inputs: "ModelInputs") -> "pm.Model":
    """The PyMC model of ``inputs``' structure, built once per compiled structure in this
    process and shared by everything that reads the graph rather than the data: nutpie's
    compile, the sampler's transforms (:mod:`.points`) and the prior draws through the
    compiled model (:mod:`.posterior`). It is the model the structure was compiled from, so
    its ``pm.Data`` hold the values of the inputs that compiled it (which the compiled
    model's initial points read); a user of other data swaps them in (a compiled model's
    ``with_data``) or sets and restores them, as a sampling run does with its own data, so
    that its chains start where its own inputs put them
    (:func:`hlh_meta.inference.sampling.own_initial_points`). A structure not compiled in this process gets
    a model of ``inputs``, as a compile of these inputs would."""
    model = _SHARED.get(inputs.structure)
    if model is None or not is_compiled(inputs.structure):
        model = _SHARED[inputs.structure] = inputs.model()
        while len(_SHARED) > _SHARED_SIZE:
            _SHARED.popitem(last=False)
    else:
        _SHARED.move_to_end(inputs.structure)
    return model
