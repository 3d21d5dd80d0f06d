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


@pytest.mark.parametrize("given, draws, tune, accept", [
    ({}, 2000, 2000, 0.95),                                     # the defaults: 1000 + 1000 at 0.9
    ({"draws": 500, "tune": 500}, 1000, 1000, 0.95),            # a sensitivity variant
    ({"draws": 50, "tune": 20, "target_accept": 0.99}, 100, 1000, 0.99),
])
def test_a_fit_failing_the_gate_is_refitted_once_with_the_retry_settings(monkeypatch, given, draws, tune, accept):
    from hlh_meta.inference import sampling
    from hlh_meta.inference.diagnostics import Diagnostics

    tried = []
    monkeypatch.setattr(sampling, "_sample_once", lambda build, key, data, s: tried.append(s) or s)
    monkeypatch.setattr(sampling, "check", lambda idata, names, attempts=1: Diagnostics(
        1.2, 10.0, 10.0, 0, attempts, ["R-hat 1.2 > 1.01"]))
    settings = SamplerSettings.of(seed=1, **given)
    _, diag = sampling.sample_gated(None, "key", {}, settings, ["mu"])
    assert tried == [settings, settings.retry()] and diag.attempts == 2
    assert (tried[1].draws, tried[1].tune, tried[1].target_accept) == (draws, tune, accept)
    assert tried[1].seed == settings.seed and tried[1].chains == settings.chains
    # no refit when it is switched off
    tried.clear()
    sampling.sample_gated(None, "key", {}, SamplerSettings.of(seed=1, refit=False, **given), ["mu"])
    assert len(tried) == 1
