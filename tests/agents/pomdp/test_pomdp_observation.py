"""Observation, token and transition models: normalised, and fitted to what the data say."""

import numpy as np
import pytest

from trim_rl.agents.pomdp.fit import fit_observation_from_records, records_to_samples, tree_labels
from trim_rl.agents.pomdp.observation import ObservationModel
from trim_rl.agents.pomdp.transition import TransitionModel


def _check_normalised(m: ObservationModel):
    assert np.allclose(m.mass.sum(axis=(1, 2)), 1.0)
    assert np.allclose(m.cond.sum(axis=2), 1.0)
    assert (m.cond > 0).all()
    # the likelihood is a density in the score: it integrates to 1 for any min of earlier scores
    x = (np.arange(4000) + 0.5) / 4000
    for mp in (0.03, 0.5, 0.97, 1.0):
        lik = m.likelihood(np.full_like(x, mp), x)
        assert lik.shape == (x.size, 3)
        assert np.allclose(lik.mean(axis=0), 1.0, atol=0.02)


def test_kernel_density_fit_is_normalised_and_recovers_the_samples():
    rng = np.random.default_rng(0)
    n = 20000
    state = rng.integers(0, 3, n)
    m = rng.random(n)
    x = np.where(state == 0, rng.beta(8, 1, n), np.where(state == 2, rng.beta(1, 6, n), rng.beta(2, 2, n)))
    model = ObservationModel.fit(state, m, x, n_bins=20, bandwidth=0.03)
    _check_normalised(model)
    centres = (np.arange(20) + 0.5) / 20
    mean = model.marginal @ centres
    assert mean[0] == pytest.approx(8 / 9, abs=0.03)
    assert mean[1] == pytest.approx(0.5, abs=0.03)
    assert mean[2] == pytest.approx(1 / 7, abs=0.03)
    # reflection at 0 and 1: no mass lost at the edges
    assert model.marginal[2, 0] > model.marginal[2, 5]


def test_measured_table_loads_normalised():
    model = ObservationModel.from_table()
    assert model.n_bins == 20
    _check_normalised(model)
    low = model.marginal[:, :7].sum(axis=1)  # P(score < 0.35)
    assert low[2] > low[1] > low[0]


def test_processbench_records_give_states_and_a_fitted_model():
    recs = [{"steps": ["a", "b", "c", "d"], "label": 2, "prm_scores": [0.9, 0.8, 0.1, 0.4]},
            {"steps": ["a", "b"], "label": -1, "prm_scores": [0.95, 0.7]}]
    s, m, x = records_to_samples(recs)
    assert s.tolist() == [0, 0, 2, 1, 0, 0]
    assert m.tolist() == [1.0, 0.9, 0.8, 0.1, 1.0, 0.95]
    assert x.tolist() == [0.9, 0.8, 0.1, 0.4, 0.95, 0.7]
    rng = np.random.default_rng(1)
    many = []
    for _ in range(300):
        k = int(rng.integers(3, 9))
        label = int(rng.integers(-1, k))
        sc = rng.beta(8, 1, k)
        if label >= 0:
            sc[label] = rng.beta(1, 5)
            sc[label + 1:] = rng.beta(2, 2, k - label - 1)
        many.append({"steps": ["s"] * k, "label": label, "scores": sc.tolist()})
    model = fit_observation_from_records(many)
    _check_normalised(model)
    centres = (np.arange(model.n_bins) + 0.5) / model.n_bins
    assert model.marginal[2] @ centres < 0.3 < model.marginal[0] @ centres
    with pytest.raises(ValueError, match="no 'prm_scores'"):
        records_to_samples([{"steps": ["a"], "label": -1}])


def test_model_fitted_on_the_bundled_trees(bundled_train, fitted):
    lab = tree_labels(bundled_train)
    assert lab.labelled_fraction > 0.99
    assert fitted.info["fitted_from"] == "trees"
    for obs in (fitted.weak_obs, fitted.strong_obs):
        _check_normalised(obs)
    # a wrong step scores low far more often than a correct one
    low = fitted.weak_obs.marginal[:, :4].sum(axis=1)  # P(score < 0.2)
    assert low[2] > 3 * low[0]
    tr = fitted.transition
    assert tr.err_weak.shape == (30,) and tr.err_strong.shape == (30, 2) and tr.end_weak.shape == (30, 3)
    assert ((tr.err_weak > 0) & (tr.err_weak < 1)).all()
    assert (tr.err_strong[:10, 0] < tr.err_weak[:10]).all()  # the strong model errs less
    assert (tr.err_strong[:10, 1] > tr.err_strong[:10, 0]).all()  # ...but more on the steps the weak one got wrong
    assert np.allclose(tr.class_prior.sum(), 1.0) and tr.n_classes == 2
    assert (tr.class_err_weak[1:10, 1] > tr.class_err_weak[1:10, 0]).all()  # classes ordered easy -> hard
    tok = fitted.tokens
    assert np.allclose(tok.p_bin.sum(axis=2), 1.0)
    assert (np.diff(tok.strong_cost) > 0).all()  # longer weak steps cost more to regenerate


def test_transition_from_the_shipped_step_statistics():
    tr = TransitionModel.from_step_stats()
    assert ((tr.err_weak > 0) & (tr.err_weak < 1)).all()
    assert tr.err_weak[:5].mean() > tr.err_strong[:5, 0].mean()
    assert ((tr.end_weak >= 0) & (tr.end_weak <= 1)).all()
