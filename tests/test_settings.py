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
    assert diag.kept == [settings.retry().public()]            # the draws are the refit's, at its settings
    # no refit when it is switched off
    tried.clear()
    once = SamplerSettings.of(seed=1, refit=False, **given)
    _, diag = sampling.sample_gated(None, "key", {}, once, ["mu"])
    assert len(tried) == 1 and diag.kept == [once.public()]


def _gate(problems_by_attempt):
    """A stand-in diagnostics check that fails with the listed problems, attempt by attempt
    (an empty list passes)."""
    from hlh_meta.inference.diagnostics import Diagnostics

    calls = iter(problems_by_attempt)

    def check(idata, names, attempts=1):
        problems = list(next(calls))
        ess = [float(p.split()[2]) for p in problems if "ESS" in p]
        return Diagnostics(1.0, min(ess, default=500.0), min(ess, default=500.0), 0, attempts, problems)

    return check


@pytest.mark.parametrize("second, tries, attempts", [
    ([], 2, 2),                                   # the added chains are enough: no refit
    (["tail ESS 390 < 400"], 3, 3),               # still too few together: the refit follows
])
def test_too_few_effective_draws_get_as_many_chains_again_before_a_refit(monkeypatch, second, tries, attempts):
    from hlh_meta.inference import sampling

    tried, combined = [], []
    monkeypatch.setattr(sampling, "_sample_once", lambda build, key, data, s: tried.append(s) or s)
    monkeypatch.setattr(sampling, "with_chains_of", lambda a, b: combined.append((a, b)) or "together")
    monkeypatch.setattr(sampling, "check", _gate([["tail ESS 379 < 400", "bulk ESS 390 < 400"], second, ["R-hat"]]))
    settings = SamplerSettings.of(seed=3, draws=500, tune=300)
    idata, diag = sampling.sample_gated(None, "key", {}, settings, ["mu"])
    assert len(tried) == tries and diag.attempts == attempts
    more = tried[1]
    assert (more.draws, more.tune, more.chains, more.target_accept) == (500, 300, 4, 0.9)
    assert more.seed not in (None, settings.seed) and more.seed == sampling.another_seed(3)
    assert combined == [(settings, more)]
    if second:
        assert tried[2] == settings.retry() and idata == settings.retry()
        assert diag.kept == [settings.retry().public()]
    else:
        assert idata == "together" and diag.kept == [settings.public(), more.public()]


@pytest.mark.parametrize("problems", [["2 divergent transitions", "tail ESS 300 < 400"], ["R-hat 1.03 > 1.01"],
                                      ["bulk ESS 150 < 400"],           # too few for twice as many to pass
                                      ["1 divergent transitions", "R-hat 1.02 > 1.01"]])
def test_divergences_with_another_problem_disagreeing_chains_or_far_too_few_draws_go_straight_to_the_refit(monkeypatch, problems):
    from hlh_meta.inference import sampling

    tried = []
    monkeypatch.setattr(sampling, "_sample_once", lambda build, key, data, s: tried.append(s) or s)
    monkeypatch.setattr(sampling, "check", _gate([problems, []]))
    settings = SamplerSettings.of(seed=3)
    _, diag = sampling.sample_gated(None, "key", {}, settings, ["mu"])
    assert tried == [settings, settings.retry()] and diag.attempts == 2 and diag.kept == [settings.retry().public()]


@pytest.mark.parametrize("after, tries, attempts", [
    ([[]], 2, 2),                                                  # smaller steps are enough
    ([["tail ESS 300 < 400"], []], 3, 3),                          # then too few effective draws: chains added
    ([["R-hat 1.02 > 1.01"], []], 3, 3),                           # then disagreeing chains: the refit
    ([["tail ESS 300 < 400"], ["tail ESS 390 < 400"], []], 4, 4),  # added chains not enough: the refit
])
def test_divergences_alone_are_sampled_again_at_the_refits_target_acceptance_before_a_refit(monkeypatch, after, tries,
                                                                                            attempts):
    """Divergent transitions and nothing else: the same draws and tuning steps again at
    target acceptance 0.95 with another seed, in place of the first run; that run fails only
    on ESS: chains added to it; anything else: the refit of twice the draws and tuning."""
    from hlh_meta.inference import sampling

    tried, combined = [], []
    monkeypatch.setattr(sampling, "_sample_once", lambda build, key, data, s: tried.append(s) or s)
    monkeypatch.setattr(sampling, "with_chains_of", lambda a, b: combined.append((a, b)) or "together")
    monkeypatch.setattr(sampling, "check", _gate([["1 divergent transitions"], *after]))
    settings = SamplerSettings.of(seed=3, draws=500, tune=300)
    idata, diag = sampling.sample_gated(None, "key", {}, settings, ["mu"])
    assert len(tried) == tries and diag.attempts == attempts and not diag.problems
    smaller = tried[1]
    assert (smaller.draws, smaller.tune, smaller.chains, smaller.target_accept) == (500, 300, 4, 0.95)
    assert smaller.seed == sampling.another_seed(3)
    if after[0] == []:
        assert idata == smaller and diag.kept == [smaller.public()]     # made at 0.95, not the 0.9 asked for
    elif "ESS" in after[0][0]:
        more = tried[2]
        assert more == SamplerSettings.of(seed=sampling.another_seed(smaller.seed), draws=500, tune=300, target_accept=0.95)
        assert combined == [(smaller, more)]
        assert idata == ("together" if tries == 3 else settings.retry())
        assert diag.kept == ([smaller.public(), more.public()] if tries == 3 else [settings.retry().public()])
    else:
        assert tried[2] == settings.retry() and idata == settings.retry() and not combined
        assert diag.kept == [settings.retry().public()]


def test_divergences_at_the_refits_target_acceptance_already_go_straight_to_the_refit(monkeypatch):
    from hlh_meta.inference import sampling

    tried = []
    monkeypatch.setattr(sampling, "_sample_once", lambda build, key, data, s: tried.append(s) or s)
    monkeypatch.setattr(sampling, "check", _gate([["1 divergent transitions"], []]))
    settings = SamplerSettings.of(seed=3, target_accept=0.95)
    _, diag = sampling.sample_gated(None, "key", {}, settings, ["mu"])
    assert tried == [settings, settings.retry()] and diag.attempts == 2 and diag.kept == [settings.retry().public()]


def test_another_seed_is_fixed_by_the_seed_and_valid():
    from hlh_meta.inference.sampling import another_seed

    seeds = {another_seed(s) for s in (0, 1, 2**63 - 1, 20260301)}
    assert len(seeds) == 4 and all(0 <= s < 2**63 for s in seeds)
    assert another_seed(5) == another_seed(5) and another_seed(None) is None
    SamplerSettings.of(seed=another_seed(2**63 - 1)).validate()


@pytest.mark.filterwarnings("ignore::hlh_meta.GateWarning")
def test_chains_added_are_independent_and_kept_whole():
    """Two real runs of a small model with the first seed and the seed drawn from it: the
    combined InferenceData holds all eight chains in order, numbered 0-7, each run's values
    unchanged, and no chain of the second run repeats one of the first."""
    import pandas as pd

    from hlh_meta.inference import sampling
    from hlh_meta.models.binomial import prepare_binomial
    from hlh_meta.models.engine import _build_for

    inp = prepare_binomial(pd.DataFrame({"study": ["a", "b", "c"], "events": [2, 9, 4], "total": [10, 12, 15]}))
    settings = SamplerSettings.of(seed=11, draws=60, tune=60)
    build = _build_for(inp, settings)
    first = sampling._sample_once(build, inp.structure, inp.data, settings)
    more = sampling._sample_once(build, inp.structure, inp.data,
                                 SamplerSettings.of(seed=sampling.another_seed(11), draws=60, tune=60))
    both = sampling.with_chains_of(first, more)
    for group in ("posterior", "sample_stats"):
        assert list(both[group].chain.values) == list(range(8))
    mu = both.posterior["mu"].values
    np.testing.assert_array_equal(mu[:4], first.posterior["mu"].values)
    np.testing.assert_array_equal(mu[4:], more.posterior["mu"].values)
    assert not any(np.array_equal(mu[i], mu[j]) for i in range(4) for j in range(4, 8))
