"""Conditioning with fixed hyperparameters: the growing Cholesky factor and the cases the
shared learner suite (tests/test_learners.py) does not reach."""

from __future__ import annotations

import numpy as np
import pytest

import learners.cholesky as cholesky_module
from learners import DeepEnsemble, ExactGP, GradientGP, Recalibrated, SparseGP
from learners.cholesky import GrowingCholesky


def spd(n: int, seed: int) -> np.ndarray:
    A = np.random.default_rng(seed).standard_normal((n, n))
    return A @ A.T / n + np.eye(n)


@pytest.mark.parametrize("merge", [False, True], ids=["blocks", "merged"])
def test_growing_cholesky_equals_the_full_factor(monkeypatch, merge):
    if merge:  # merge after every second block
        monkeypatch.setattr(cholesky_module, "MAX_BLOCKS", 1)
    K = spd(40, seed=0)
    factor = GrowingCholesky(np.linalg.cholesky(K[:20, :20]))
    for start, stop in [(20, 23), (23, 24), (24, 33), (33, 40)]:
        factor = factor.extend(K[:start, start:stop], K[start:stop, start:stop])
    L = np.linalg.cholesky(K)
    np.testing.assert_allclose(factor.dense(), L, atol=1e-12)
    assert (len(factor.blocks) <= 1) if merge else (len(factor.blocks) == 4)
    R = np.random.default_rng(1).standard_normal((40, 3))
    np.testing.assert_allclose(factor.solve_lower(R), np.linalg.solve(L, R), atol=1e-10)
    np.testing.assert_allclose(factor.solve_upper(R), np.linalg.solve(L.T, R), atol=1e-10)
    np.testing.assert_allclose(factor.cho_solve(R[:, 0]), np.linalg.solve(K, R[:, 0]),
                               atol=1e-10)


def test_growing_cholesky_whitened_targets_and_immutability():
    K = spd(12, seed=2)
    r = np.arange(12.0)
    base = GrowingCholesky(np.linalg.cholesky(K[:8, :8]))
    grown = base.extend(K[:8, 8:], K[8:, 8:])
    whitened = grown.extend_whitened(base.solve_lower(r[:8]), r[8:])
    np.testing.assert_allclose(whitened, np.linalg.solve(np.linalg.cholesky(K), r), atol=1e-10)
    assert base.size == 8 and not base.blocks  # extend returned a new object


def truth(X: np.ndarray) -> np.ndarray:
    return np.sin(3.0 * X[:, 0]) * np.cos(2.0 * X[:, 1])


RNG = np.random.default_rng(7)
X = RNG.uniform(0.0, 1.0, size=(50, 2))
GRID = RNG.uniform(-0.2, 1.2, size=(80, 2))


def test_exact_gp_condition_matches_the_textbook_formula():
    gp = ExactGP(restarts=0, iterations=30).fit(X[:40], truth(X[:40]))
    grown = gp.condition(X[40:], truth(X[40:]))
    state = grown.state_dict()
    scale, offset = state["x_scale"], state["x_offset"]
    kernel = grown._kernel
    Xs, Qs = (X - offset) / scale, (GRID - offset) / scale
    ys = (truth(X) - state["y_offset"][0]) / state["y_scale"][0] - state["constant"][0]
    K = kernel(Xs, Xs) + (state["noise"][0] + grown._jitter) * np.eye(len(X))
    cross = kernel(Qs, Xs)
    mean = state["constant"][0] + cross @ np.linalg.solve(K, ys)
    variance = state["outputscale"][0] - np.einsum("ij,ji->i", cross, np.linalg.solve(K, cross.T))
    posterior = grown.posterior(GRID)
    np.testing.assert_allclose(posterior.mean, state["y_offset"][0] + state["y_scale"][0] * mean,
                               atol=1e-8)
    np.testing.assert_allclose(posterior.variance, state["y_scale"][0] ** 2 * variance, atol=1e-8)
    assert grown.n_conditioned_ == 10 and gp.n_conditioned_ == 0
    refit = grown.fit(X, truth(X))  # a refit after conditioning warm-starts and resets
    assert refit.warm_started_ and refit.n_conditioned_ == 0


def test_two_conditions_from_one_parent_do_not_interfere():
    gp = ExactGP(restarts=0, iterations=30).fit(X[:30], truth(X[:30]))
    a = gp.condition(X[30:35], truth(X[30:35]))
    b = gp.condition(X[40:45], truth(X[40:45]))
    for grown in (a, b):
        fresh = ExactGP().load_state_dict(grown.state_dict())
        np.testing.assert_allclose(grown.posterior(GRID).mean, fresh.posterior(GRID).mean,
                                   atol=1e-8)


def windows(X: np.ndarray) -> np.ndarray:
    gradient = np.stack([np.cos(X[:, 0]), -np.sin(X[:, 1])], axis=1)
    return np.hstack([gradient, np.full((len(X), 2), 0.02), X + 0.01])


@pytest.mark.parametrize("periodic", [True, False])
def test_gradient_gp_conditions_on_gradient_windows(periodic):
    P = np.random.default_rng(3).uniform(-np.pi, np.pi, size=(30, 2))
    gp = GradientGP(periodic=periodic).fit(P[:24], windows(P[:24]))
    grown = gp.condition(P[24:27], windows(P[24:27])).condition(P[27:], windows(P[27:]))
    fresh = GradientGP(periodic=periodic).load_state_dict(grown.state_dict())
    grid = np.random.default_rng(4).uniform(-np.pi, np.pi, size=(60, 2))
    a, b = grown.posterior(grid), fresh.posterior(grid)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-8)
    np.testing.assert_allclose(a.variance, b.variance, atol=1e-8)
    np.testing.assert_array_equal(a.X_train, P)
    assert len(grown.state_dict()["targets"]) == 2 * 30
    with pytest.raises(ValueError, match="gradients only"):
        gp.condition(P[24:], np.zeros(6))


def test_recalibrated_scores_conditioned_rows_prospectively():
    inner = ExactGP(restarts=0, iterations=30)
    learner = Recalibrated(inner, min_points=3).fit(X[:20], truth(X[:20]))
    assert learner.supports_condition and learner.n_scored_ == 0
    grown = learner.condition(X[20:30], truth(X[20:30]))
    assert grown.n_scored_ == 10 and learner.n_scored_ == 0
    # a later fit scores only the rows neither fit nor conditioning saw
    refit = grown.fit(X, truth(X))
    assert refit.n_scored_ == 30
    assert Recalibrated(SparseGP()).supports_condition is True  # the inner learner's
    assert Recalibrated(DeepEnsemble()).supports_condition is False


def test_sparse_gp_condition_needs_no_pass_over_old_data():
    gp = SparseGP(n_inducing=16, batch_size=32, steps=20).fit(X[:40], truth(X[:40]))
    grown = gp.condition(X[40:], truth(X[40:]))
    fresh = SparseGP().load_state_dict(grown.state_dict())
    np.testing.assert_allclose(grown.posterior(GRID).mean, fresh.posterior(GRID).mean,
                               atol=1e-8)
    np.testing.assert_allclose(grown.posterior(GRID).variance,
                               fresh.posterior(GRID).variance, atol=1e-8)


def test_gradient_gp_with_values_and_gradients_conditions_on_both_kinds():
    P = np.random.default_rng(5).uniform(-np.pi, np.pi, size=(30, 2))
    F = np.sin(P[:, 0]) + np.cos(P[:, 1])
    W = windows(P)
    gp = GradientGP().fit_observations(X_value=P[:10], value=F[:10], X_gradient=W[:12, 4:],
                                       gradient=W[:12, :2], gradient_stderr=W[:12, 2:4])
    grown = (gp.condition(P[12:16], W[12:16]).condition(P[20:23], F[20:23])
             .condition(P[16:20], W[16:20]))
    fresh = GradientGP().load_state_dict(grown.state_dict())
    grid = np.random.default_rng(6).uniform(-np.pi, np.pi, size=(40, 2))
    a, b = grown.posterior(grid), fresh.posterior(grid)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-8)
    np.testing.assert_allclose(a.variance, b.variance, atol=1e-8)
    np.testing.assert_allclose(a.augmented_covariance(np.array([0, 45, 90])),
                               b.augmented_covariance(np.array([0, 45, 90])), atol=1e-8)
    np.testing.assert_allclose(a.gradient_mean(), b.gradient_mean(), atol=1e-8)
