"""Sampler settings: bad values are bad input naming the setting, shown plainly; numpy
integers are accepted and stored as int."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hlh_meta.errors import InputError, SettingError
from hlh_meta.inference import SamplerSettings


@pytest.mark.parametrize("options, key, shown", [
    ({"seed": -1}, "seed", "got -1"),
    ({"seed": np.int64(-1)}, "seed", "got -1"),
    ({"seed": 2**64}, "seed", "got 18446744073709551616"),
    ({"seed": True}, "seed", "got true"),
    ({"draws": np.int64(0)}, "draws", "got 0"),
    ({"chains": 2.5}, "chains", "got 2.5"),
    ({"tune": -1}, "tune", "got -1"),
    ({"target_accept": np.float64(1.0)}, "target_accept", "got 1"),
    ({"sampler": "stan"}, "sampler", "unknown sampler 'stan'"),
    ({"sed": 1}, "sed", "did you mean 'seed'"),
])
def test_bad_setting_is_bad_input_naming_the_setting(options, key, shown):
    with pytest.raises(SettingError) as info:
        SamplerSettings.of(**options)
    assert isinstance(info.value, InputError)
    assert info.value.key == key and shown in str(info.value)
    assert "np." not in str(info.value)


@pytest.mark.parametrize("make", [lambda: SamplerSettings(seed=np.int64(7), draws=np.int32(50)),
                                  lambda: SamplerSettings.of(seed=np.uint64(7), draws=np.int64(50))],
                         ids=["constructed", "of"])
def test_numpy_integers_are_stored_as_int(make):
    settings = make()
    assert type(settings.seed) is int and type(settings.draws) is int
    assert json.loads(json.dumps(settings.public()))["seed"] == 7
