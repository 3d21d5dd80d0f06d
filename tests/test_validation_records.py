"""The validation records (validation/results/sbc.md, coverage.md) name the model they ran
against, and that is still the model that ships; the simulator they use is that model.

A record names, per engine, the SHA-256 of the engine's model sources
(validation/records.py), and any sources validation/equivalence.py showed to have the same
log density and gradient. When a model source changes otherwise, the test below fails and
says which record to rerun and how: the record no longer validates the model as shipped."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "validation"))

import records  # noqa: E402
import simulate  # noqa: E402

RESULTS = ROOT / "validation" / "results"


@pytest.mark.parametrize("record", sorted(records.RERUN))
def test_record_names_the_model_that_ships(record):
    path = RESULTS / record
    assert path.is_file(), f"validation/results/{record} is missing; produce it with " + \
        " and ".join(f"`{c}`" for c in records.RERUN[record].values())
    text = path.read_text(encoding="utf-8")
    named, accepted = records.recorded_digests(text), records.accepted_digests(text)
    stale = []
    for engine, command in records.RERUN[record].items():
        now = records.model_source_digest(engine)
        if now not in accepted.get(engine, set()):
            was = f"sha256 {named[engine][:12]}..." if engine in named else "no digest"
            stale.append(f"validation/results/{record} was recorded against the {engine} model sources with {was}; "
                         f"they are now sha256 {now[:12]}... ({', '.join(records.MODEL_SOURCES[engine])} in "
                         f"{records.MODELS}). Rerun it: `{command}` and commit validation/results.")
    assert not stale, "\n".join(stale)


def test_digest_follows_every_model_source(tmp_path):
    """A change to any listed source changes the digest; the digest does not depend on where the tree is."""
    for engine, names in records.MODEL_SOURCES.items():
        copy = tmp_path / engine / records.MODELS
        copy.mkdir(parents=True)
        for name in names:
            (copy / f"{name}.py").write_bytes((ROOT / records.MODELS / f"{name}.py").read_bytes())
        base = records.model_source_digest(engine, tmp_path / engine)
        assert base == records.model_source_digest(engine)
        for name in names:
            f = copy / f"{name}.py"
            original = f.read_bytes()
            f.write_bytes(original + b"\n")
            assert records.model_source_digest(engine, tmp_path / engine) != base, name
            f.write_bytes(original)


def test_recorded_digests_reads_the_lines_the_scripts_write():
    text = "x\n" + records.digest_line("binomial") + "\n\n" + records.digest_line("normal") + "\n"
    assert records.recorded_digests(text) == {e: records.model_source_digest(e) for e in ("binomial", "normal")}
    with pytest.raises(ValueError):
        records.recorded_digests(text + f"Model sources (normal): sha256 {'0' * 64} over x\n")


def _sticks(shares: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The stick-breaking values (models/shares.py) that give ``shares`` over each part's allowed categories."""
    out = np.full((len(shares), allowed.shape[1] - 1), 0.5)
    for i, (s, ok) in enumerate(zip(shares, allowed)):
        slots, left = s[ok], 1.0
        for j in range(len(slots) - 1):
            out[i, j] = slots[j] / left
            left -= slots[j]
    return out


def test_simulator_is_the_shipped_likelihood():
    """At the simulated parameters and shares, the shipped model's row probabilities, mu, beta
    and the level-mortality profile equal the simulator's (validation/simulate.py)."""
    import pymc as pm

    from hlh_meta.models.binomial import prepare_binomial
    from hlh_meta.models.coding import sum_to_zero_basis

    df, truth = simulate.draw(np.random.default_rng(11))
    inp = prepare_binomial(df, **simulate.FIT_ARGS, profiles=simulate.PROFILE)
    assert inp.structure.coding == "exchangeable" and inp.structure.likelihood == "mixture"
    model = inp.model()
    values = {"mu_levels": truth["m"], "tau": truth["tau"], "z_new": 0.0,
              "z": np.array([truth["z"][s] for s in inp.studies]),
              # the sampled free values of each covariate's sum-to-zero effects (orthonormal basis: B.T e)
              **{f"level_effect_{g}_free": sum_to_zero_basis(len(e)).T @ np.asarray(e)
                 for g, e in truth["effects"].items()}}
    for g, lat in inp.design.latent.items():
        if lat.n_units:
            assert len(lat.weight) == lat.n_units          # one part per unknown: no 'parts' rules here
            first = [lat.rows[list(lat.units).index(u)] for u in range(lat.n_units)]
            values[f"{g}_share_stick"] = _sticks(truth["shares"][g][first], lat.allowed)
    assert set(values) == {v.name for v in model.free_RVs}
    fixed = pm.do(model, {model[k]: v for k, v in values.items()})
    p, typical, mu, beta = pm.draw([fixed["p"], fixed["p_typical"], fixed["mu"], fixed["beta"]])
    np.testing.assert_allclose(p, [truth["p"][r] for r in inp.row_labels], rtol=1e-10)
    np.testing.assert_allclose(typical, [truth["profile"]], rtol=1e-10)
    np.testing.assert_allclose(mu, truth["mu"], rtol=1e-10)
    np.testing.assert_allclose(beta, [truth["beta"][c] for c in inp.design.names], rtol=1e-10, atol=1e-12)


def test_simulator_draws_the_shipped_prior():
    """The simulator's prior of mu, the contrasts and tau is the shipped model's prior (KS tests
    against the model's own forward draws, 4000 each)."""
    import pymc as pm

    from hlh_meta.models.binomial import prepare_binomial

    rng = np.random.default_rng(12)
    df, _ = simulate.draw(rng)
    model = prepare_binomial(df, **simulate.FIT_ARGS).model()
    n = 4000
    mu, beta, tau = pm.draw([model["mu"], model["beta"], model["tau"]], draws=n, random_seed=13)
    sims = [simulate.draw(rng)[1] for _ in range(n)]
    names = list(model.coords["covariate"])
    ours = {"mu": [s["mu"] for s in sims], "tau": [s["tau"] for s in sims],
            **{c: [s["beta"][c] for s in sims] for c in names}}
    theirs = {"mu": mu, "tau": tau, **{c: beta[:, j] for j, c in enumerate(names)}}
    for key in ours:
        assert stats.ks_2samp(ours[key], theirs[key]).pvalue > 1e-3, key
    # two contrasts of one group share the reference's effect: correlation 1/2 in both
    j, k = names.index("trigger[infection]"), names.index("trigger[malignancy]")
    r_sim = np.corrcoef(ours["trigger[infection]"], ours["trigger[malignancy]"])[0, 1]
    r_model = np.corrcoef(beta[:, j], beta[:, k])[0, 1]
    assert abs(r_sim - r_model) < 0.1


def test_an_equivalence_line_carries_a_record_over_only_from_a_digest_it_accepts():
    a, b, c, d = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    text = "\n".join([f"Model sources (binomial): sha256 {a} over x",
                      records.equivalence_line("binomial", b, a, 1e-15, 10, 4, "identical"),
                      records.equivalence_line("binomial", c, b, 1e-15, 10, 4, "identical"),
                      records.equivalence_line("binomial", d, "e" * 64, 1e-15, 10, 4, "identical"),
                      records.equivalence_line("normal", b, a, 1e-15, 10, 4, "identical")])
    assert records.accepted_digests(text) == {"binomial": {a, b, c}}


def test_equivalence_is_judged_per_engine():
    """validation/equivalence.py: each engine's largest difference over its own models, and a
    model whose values changed shape is not equivalent."""
    import equivalence

    point = {"logp": [1.0, 2.0], "grad": [[0.5], [0.25]]}
    old = {"a": {**point, "engine": "binomial"}, "b": {**point, "engine": "binomial"},
           "c": {**point, "engine": "normal"}, "draws": {"mu": [[0.0]]}}
    new = {"a": {**point, "engine": "binomial"}, "b": {**point, "logp": [1.0, 2.0 + 1e-6], "engine": "binomial"},
           "c": {**point, "engine": "normal"}, "draws": {"mu": [[0.0]]}}
    worst, lines = equivalence.compare(old, new)
    assert worst["binomial"][1] == 2 and worst["normal"] == (0.0, 1)
    assert worst["binomial"][0] == pytest.approx(1e-6 / 2.0)
    assert lines[-1].endswith("identical")
    new["c"] = {**point, "grad": [[0.5, 1.0], [0.25, 1.0]], "engine": "normal"}
    assert equivalence.compare(old, new)[0]["normal"][0] == float("inf")
