"""The default's regimes: the hyperparameter-fit subset, and the switch to a sparse GP."""

from __future__ import annotations

import logging

import numpy as np

from learners import ExactGP, ScalableGP, SparseGP, default_learner
from learners.subset import fit_subset


def truth(X: np.ndarray) -> np.ndarray:
    return np.sin(3.0 * X[:, 0]) * np.cos(2.0 * X[:, 1])


RNG = np.random.default_rng(21)
X = RNG.uniform(0.0, 1.0, size=(90, 2))
Y = truth(X)
GRID = RNG.uniform(0.0, 1.0, size=(50, 2))


def test_fit_subset_keeps_the_newest_half_and_spreads_the_rest():
    assert fit_subset(X, None) is None and fit_subset(X, 90) is None
    rows = fit_subset(X, 20)
    assert len(rows) == 20 == len(set(rows.tolist())) and np.all(np.diff(rows) > 0)
    assert set(range(80, 90)) <= set(rows.tolist())  # the 10 newest
    np.testing.assert_array_equal(rows, fit_subset(X, 20))  # deterministic
    older = rows[rows < 80]
    # space filling: the older picks are farther apart than random rows typically are
    spread = np.min([np.linalg.norm(X[a] - X[b]) for a in older for b in older if a < b])
    random = np.random.default_rng(0).choice(80, size=10, replace=False)
    typical = np.min([np.linalg.norm(X[a] - X[b]) for a in random for b in random if a < b])
    assert spread > typical


def test_exact_gp_fits_hyperparameters_on_the_subset_and_conditions_on_all():
    gp = ExactGP(restarts=0, iterations=30, max_fit_points=30).fit(X, Y)
    assert gp.n_fit_points_ == 30 and gp.n_train_ == 90
    fresh = ExactGP().load_state_dict(gp.state_dict())
    np.testing.assert_allclose(gp.posterior(GRID).mean, fresh.posterior(GRID).mean, atol=1e-10)
    assert np.sqrt(np.mean((gp.posterior(GRID).mean - truth(GRID)) ** 2)) < 0.03


def test_below_max_fit_points_nothing_changes():
    a = ExactGP(max_fit_points=90).fit(X, Y)
    b = ExactGP(max_fit_points=None).fit(X, Y)
    assert a.n_fit_points_ == b.n_fit_points_ == 90
    np.testing.assert_array_equal(a.posterior(GRID).mean, b.posterior(GRID).mean)
    np.testing.assert_array_equal(a.posterior(GRID).variance, b.posterior(GRID).variance)


def test_default_learner_below_512_rows_is_the_default_exact_gp():
    a = default_learner().fit(X, Y)
    b = ExactGP().fit(X, Y)
    assert a.regime_["regime"] == "exact" and a.regime_["n_fit_points"] == 90
    np.testing.assert_array_equal(a.posterior(GRID).mean, b.posterior(GRID).mean)
    assert a.warm_started_ is False and a.fit_seconds_ > 0  # the inner learner's attributes


def test_scalable_gp_switches_to_the_sparse_gp_with_a_log_line(caplog):
    gp = ScalableGP(max_fit_points=30, max_exact_points=60, n_inducing=16)
    gp.fit(X[:50], Y[:50])
    assert gp.regime_["regime"] == "exact" and isinstance(gp.learner_, ExactGP)
    assert gp.regime_["n_fit_points"] == 30
    with caplog.at_level(logging.INFO, logger="learners.scalable_gp"):
        gp.fit(X, Y)
    assert "switching from the exact GP to the sparse GP" in caplog.text
    assert gp.regime_["regime"] == "sparse" and gp.regime_["switched"]
    assert isinstance(gp.learner_, SparseGP) and gp.regime_["n_inducing"] == 16
    grown = gp.condition(GRID[:8], truth(GRID[:8]))
    assert grown.regime_["n_train"] == 98 and gp.regime_["n_train"] == 90
    restored = ScalableGP(max_exact_points=60, n_inducing=16).load_state_dict(grown.state_dict())
    assert restored.regime_["regime"] == "sparse"
    np.testing.assert_allclose(restored.posterior(GRID).mean, grown.posterior(GRID).mean,
                               atol=1e-8)
    gp.fit(X, Y)  # the same regime again: a warm refit, no switch
    assert not gp.regime_["switched"]


def test_sparse_gp_without_training_takes_the_exact_start_at_every_fit():
    gp = SparseGP(n_inducing=40, steps=0, init_subset=40).fit(X[:60], Y[:60])
    assert np.sqrt(np.mean((gp.posterior(GRID).mean - truth(GRID)) ** 2)) < 0.1
    refit = gp.fit(X, Y)  # no warm start: the same as a fresh object on these rows
    fresh = SparseGP(n_inducing=40, steps=0, init_subset=40).fit(X, Y)
    np.testing.assert_array_equal(refit.posterior(GRID).mean, fresh.posterior(GRID).mean)
