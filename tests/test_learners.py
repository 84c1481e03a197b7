"""Learner conformance suite (every learner in LEARNER_FACTORIES) plus GP-specific checks."""

from __future__ import annotations

from collections.abc import Callable

import gpytorch
import numpy as np
import pytest
import torch

import learners.posterior as posterior_module
from learners import (
    LEARNERS,
    DeepEnsemble,
    DeepKernelGP,
    ExactGP,
    GradientGP,
    Learner,
    NotFittedError,
    Posterior,
    RandomForest,
    Recalibrated,
    SampledPosterior,
    ScalableGP,
    SklearnLearner,
    SparseGP,
    learner_by_name,
)
from learners.kernels import Kernel, additive_kernel

torch.set_num_threads(1)

# New learners join the shared protocol suite by adding a factory here.
def exact_gp() -> ExactGP:
    return ExactGP()


def exact_gp_additive() -> ExactGP:
    return ExactGP(kernel=additive_kernel(2))


def sparse_gp() -> SparseGP:
    return SparseGP(n_inducing=64, batch_size=64, steps=50)


def deep_ensemble() -> DeepEnsemble:
    return DeepEnsemble()


def sklearn_gp() -> SklearnLearner:
    return SklearnLearner("gaussian_process")


def random_forest() -> RandomForest:
    return RandomForest()



def deep_kernel_gp() -> DeepKernelGP:
    return DeepKernelGP()


def recalibrated_gp() -> Recalibrated:
    return Recalibrated(ExactGP())


def scalable_gp() -> ScalableGP:
    return ScalableGP()


def gradient_gp() -> GradientGP:
    return GradientGP(periodic=False)


def gradient_gp_periodic() -> GradientGP:
    return GradientGP(periodic=True)


LEARNER_FACTORIES: list = [
    pytest.param(exact_gp, id="exact_gp"),
    pytest.param(exact_gp_additive, id="exact_gp_additive"),
    pytest.param(sparse_gp, id="sparse_gp"),
    pytest.param(deep_ensemble, id="deep_ensemble"),
    pytest.param(sklearn_gp, id="sklearn_gp"),
    pytest.param(random_forest, id="random_forest"),
    pytest.param(recalibrated_gp, id="recalibrated_gp"),
    pytest.param(deep_kernel_gp, id="deep_kernel_gp"),
    pytest.param(gradient_gp, id="gradient_gp"),
    pytest.param(gradient_gp_periodic, id="gradient_gp_periodic"),
    pytest.param(scalable_gp, id="scalable_gp"),
]
# Trees are piecewise constant: they fit a smooth function only roughly, and their spread
# does not grow away from the data (the distance checks are skipped for them).
TREES = {random_forest}


# A periodic kernel (period 2 pi) is uncertain again only up to half a period away.
PERIODIC = {gradient_gp_periodic}


def skip_for_trees(factory: Callable[[], Learner]) -> None:
    if factory in TREES:
        pytest.skip("tree ensembles predict a constant outside the data")
    if factory in PERIODIC:
        pytest.skip("a periodic kernel's variance is periodic, not growing with distance")


def truth(X: np.ndarray) -> np.ndarray:
    """A smooth 2-D landscape with amplitude 1 on the unit square."""
    return np.sin(3.0 * X[:, 0]) * np.cos(2.0 * X[:, 1])


def design(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, 2))


GRID = np.stack(np.meshgrid(np.linspace(0, 1, 15), np.linspace(0, 1, 15)), -1).reshape(-1, 2)
X_TRAIN = design(60, seed=1)
Y_TRAIN = truth(X_TRAIN)
X_NEW = design(7, seed=5)  # observations conditioned into a fitted learner
Y_NEW = truth(X_NEW)

_fitted: dict[int, Learner] = {}


def fitted(factory: Callable[[], Learner]) -> Learner:
    """One learner fitted on (X_TRAIN, Y_TRAIN) per factory, shared read-only across tests."""
    if id(factory) not in _fitted:
        _fitted[id(factory)] = factory().fit(X_TRAIN, Y_TRAIN)
    return _fitted[id(factory)]


# -- protocol suite -------------------------------------------------------------------------


@pytest.mark.parametrize("factory", LEARNER_FACTORIES)
class TestLearnerProtocol:
    def test_is_a_learner_and_fit_returns_self(self, factory):
        learner = factory()
        assert isinstance(learner, Learner)
        assert learner.fit(X_TRAIN[:10], Y_TRAIN[:10]) is learner

    def test_fits_a_smooth_function(self, factory):
        posterior = fitted(factory).posterior(GRID)
        assert isinstance(posterior, Posterior)
        assert posterior.mean.shape == posterior.variance.shape == (len(GRID),)
        assert posterior.mean.dtype == posterior.variance.dtype == np.float64
        assert np.all(posterior.variance >= 0)
        rmse = np.sqrt(np.mean((posterior.mean - truth(GRID)) ** 2))
        assert rmse < (0.25 if factory in TREES else 0.03)  # amplitude 1, 60 points

    def test_posterior_carries_its_inputs(self, factory):
        posterior = fitted(factory).posterior(GRID[:7])
        np.testing.assert_array_equal(posterior.X, GRID[:7])
        np.testing.assert_array_equal(posterior.X_train, X_TRAIN)

    def test_fit_restores_torch_threads(self, factory):
        before = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            factory().fit(X_TRAIN[:8], Y_TRAIN[:8])
            assert torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(before)

    def test_variance_small_at_data_and_large_far_away(self, factory):
        skip_for_trees(factory)
        learner = fitted(factory)
        at_data = learner.posterior(X_TRAIN[:10]).variance
        far = learner.posterior(np.array([[3.0, 3.0], [-2.0, 0.5]])).variance
        assert at_data.max() < 0.01 * far.min()

    def test_variance_grows_outside_the_data(self, factory):
        skip_for_trees(factory)
        ray = np.array([[0.5, 0.5]]) + np.linspace(0.8, 4.0, 9)[:, None] * np.array([[1.0, 0.6]])
        variance = fitted(factory).posterior(ray).variance
        assert np.all(np.diff(variance) >= -1e-12)
        assert variance[-1] > 10 * variance[0]

    def test_no_collapse_on_small_data(self, factory):
        X = design(9, seed=3)
        posterior = factory().fit(X, truth(X)).posterior(GRID)
        assert np.std(posterior.mean) > 0.2  # not flat at the mean
        assert np.corrcoef(posterior.mean, truth(GRID))[0, 1] > (0.7 if factory in TREES else 0.9)

    def test_deterministic_under_seed(self, factory):
        X = design(30, seed=4)
        a = factory().fit(X, truth(X)).posterior(GRID)
        b = factory().fit(X, truth(X)).posterior(GRID)
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.variance, b.variance)

    def test_state_dict_round_trip(self, factory):
        learner = fitted(factory)
        state = learner.state_dict()
        assert state and all(isinstance(key, str) for key in state)
        for value in state.values():
            assert type(value) is np.ndarray
            assert value.dtype in (np.float64, np.int64)
        restored = factory().load_state_dict(state)
        assert isinstance(restored, Learner)
        a, b = learner.posterior(GRID), restored.posterior(GRID)
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.variance, b.variance)
        assert a.noise_variance == b.noise_variance

    def test_state_dict_is_a_copy(self, factory):
        learner = fitted(factory)
        before = learner.posterior(GRID[:5]).mean
        for value in learner.state_dict().values():
            value[...] = 0
        np.testing.assert_array_equal(learner.posterior(GRID[:5]).mean, before)

    def test_covariance_columns_are_consistent(self, factory):
        posterior = fitted(factory).posterior(GRID[:40])
        full = posterior.covariance(np.arange(40))
        assert full.shape == (40, 40)
        np.testing.assert_allclose(full, full.T, atol=1e-10)
        np.testing.assert_allclose(np.diag(full), posterior.variance, atol=1e-10)
        assert np.linalg.eigvalsh(full).min() > -1e-8
        columns = np.array([7, 3, 7])
        np.testing.assert_allclose(posterior.covariance(columns), full[:, columns], atol=1e-12)

    def test_sample_matches_mean_and_variance(self, factory):
        posterior = fitted(factory).posterior(np.vstack([GRID[:20], [[1.5, 1.5], [2.0, -1.0]]]))
        draws = posterior.sample(4000, np.random.default_rng(0))
        assert draws.shape == (4000, 22) and draws.dtype == np.float64
        sd = np.sqrt(posterior.variance)
        assert np.all(np.abs(draws.mean(0) - posterior.mean) <= 5 * sd / np.sqrt(4000) + 1e-9)
        np.testing.assert_allclose(draws.var(0), posterior.variance, rtol=0.15, atol=1e-9)

    def test_before_fit_raises(self, factory):
        learner = factory()
        with pytest.raises(NotFittedError, match="fit"):
            learner.posterior(GRID)
        with pytest.raises(NotFittedError):
            learner.state_dict()
        assert issubclass(NotFittedError, RuntimeError)

    def test_says_whether_it_can_condition(self, factory):
        learner = fitted(factory)
        assert isinstance(learner.supports_condition, bool)
        if learner.supports_condition:
            return
        with pytest.raises(NotImplementedError, match="cannot condition") as error:
            learner.condition(X_NEW[:2], Y_NEW[:2])
        assert "\n" not in str(error.value)  # one line

    def test_condition_equals_a_fresh_posterior_with_the_same_hyperparameters(self, factory):
        learner = fitted(factory)
        if not learner.supports_condition:
            pytest.skip(f"{type(learner).__name__} does not condition")
        before = learner.posterior(GRID)
        grown = learner.condition(X_NEW[:3], Y_NEW[:3]).condition(X_NEW[3:], Y_NEW[3:])
        np.testing.assert_array_equal(grown.posterior(GRID[:1]).X_train,
                                      np.vstack([X_TRAIN, X_NEW]))
        # self unchanged
        after = learner.posterior(GRID)
        np.testing.assert_array_equal(after.mean, before.mean)
        np.testing.assert_array_equal(after.variance, before.variance)
        np.testing.assert_array_equal(learner.posterior(GRID[:1]).X_train, X_TRAIN)
        # the same hyperparameters and data, factorized from scratch
        fresh = factory().load_state_dict(grown.state_dict())
        a, b = grown.posterior(GRID), fresh.posterior(GRID)
        np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-8)
        np.testing.assert_allclose(a.variance, b.variance, rtol=0, atol=1e-8)
        columns = np.array([0, 100, 224])
        np.testing.assert_allclose(a.covariance(columns), b.covariance(columns), rtol=0,
                                   atol=1e-8)
        # and the new points are taken in: the variance there drops
        assert np.all(grown.posterior(X_NEW).variance < learner.posterior(X_NEW).variance)

    @pytest.mark.parametrize(
        ("X", "y", "argument"),
        [
            (np.zeros(5), np.zeros(5), "X"),
            (np.zeros((5, 2, 1)), np.zeros(5), "X"),
            (np.zeros((5, 2)), np.zeros(4), "y"),
            (np.zeros((5, 2)), np.zeros((5, 1)), "y"),
            (np.array([[0.0, np.nan], [1.0, 1.0]]), np.zeros(2), "X"),
            (np.array([[0.0, 1.0], [1.0, 1.0]]), np.array([0.0, np.inf]), "y"),
            (np.array([["a", "b"]]), np.zeros(1), "X"),
        ],
    )
    def test_bad_fit_input_names_the_argument(self, factory, X, y, argument):
        with pytest.raises(ValueError, match=rf"^{argument} "):
            factory().fit(X, y)

    @pytest.mark.parametrize(
        "X", [np.zeros(2), np.zeros((3, 3)), np.array([[0.0, np.inf]])], ids=["1d", "cols", "inf"]
    )
    def test_bad_posterior_input_names_the_argument(self, factory, X):
        with pytest.raises(ValueError, match=r"^X "):
            fitted(factory).posterior(X)


# -- exact GP specifics ----------------------------------------------------------------------


def _brute_force_posterior(gp: ExactGP, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Full mean and covariance in y units, straight from the state and the textbook formula."""
    s = gp.state_dict()
    kernel = Kernel("matern52", s["lengthscale"], s["outputscale"][0])
    A = (s["x_train"] - s["x_offset"]) / s["x_scale"]
    B = (Xq - s["x_offset"]) / s["x_scale"]
    ys = (s["y_train"] - s["y_offset"][0]) / s["y_scale"][0]
    K = kernel(A, A) + s["noise"][0] * np.eye(len(A))
    cross = kernel(B, A)
    mean = s["constant"][0] + cross @ np.linalg.solve(K, ys - s["constant"][0])
    cov = kernel(B, B) - cross @ np.linalg.solve(K, cross.T)
    return s["y_offset"][0] + s["y_scale"][0] * mean, s["y_scale"][0] ** 2 * cov


def test_gp_matches_brute_force_full_covariance():
    gp = fitted(exact_gp)
    Xq = np.vstack([GRID[::9], [[1.3, -0.2]]])
    mean, cov = _brute_force_posterior(gp, Xq)
    posterior = gp.posterior(Xq)
    np.testing.assert_allclose(posterior.mean, mean, atol=1e-8)
    np.testing.assert_allclose(posterior.variance, np.diag(cov), atol=1e-9)
    columns = np.array([0, 5, len(Xq) - 1])
    np.testing.assert_allclose(posterior.covariance(columns), cov[:, columns], atol=1e-9)
    assert posterior.noise_variance == pytest.approx(gp.noise_ * gp.state_dict()["y_scale"][0] ** 2)


def test_gp_chunking_and_uncached_covariance_agree(monkeypatch):
    gp = fitted(exact_gp)
    reference = gp.posterior(GRID)
    monkeypatch.setattr(posterior_module, "DEFAULT_CHUNK_SIZE", 7)
    monkeypatch.setattr(posterior_module, "DEFAULT_CACHE_BYTES", 0)
    chunked = gp.posterior(GRID)
    assert chunked._whitened is None
    np.testing.assert_allclose(chunked.mean, reference.mean, atol=1e-12)
    np.testing.assert_allclose(chunked.variance, reference.variance, atol=1e-12)
    columns = np.array([3, 100, 224])
    np.testing.assert_allclose(
        chunked.covariance(columns), reference.covariance(columns), atol=1e-10
    )


def test_gp_sample_falls_back_to_marginals_for_large_n(monkeypatch):
    monkeypatch.setattr(posterior_module, "DEFAULT_JOINT_SAMPLE_LIMIT", 10)
    posterior = fitted(exact_gp).posterior(GRID)
    draws = posterior.sample(3, np.random.default_rng(1))
    assert draws.shape == (3, len(GRID))


def test_gp_joint_samples_are_correlated():
    # Two nearby points far from the data: strongly correlated under the joint draw.
    posterior = fitted(exact_gp).posterior(np.array([[2.0, 2.0], [2.05, 2.0]]))
    draws = posterior.sample(2000, np.random.default_rng(2))
    expected = posterior.covariance(np.array([1]))[0, 0] / np.sqrt(np.prod(posterior.variance))
    assert np.corrcoef(draws.T)[0, 1] == pytest.approx(expected, abs=0.05)
    assert expected > 0.9


def test_gp_kernel_matches_gpytorch():
    gp = fitted(exact_gp)
    A, B = design(6, seed=7), design(4, seed=8)
    for name, base in [
        ("matern52", gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=2)),
        ("rbf", gpytorch.kernels.RBFKernel(ard_num_dims=2)),
    ]:
        reference = gpytorch.kernels.ScaleKernel(base).to(torch.float64)
        reference.base_kernel.lengthscale = torch.tensor(gp.lengthscale_ / 5.0)
        reference.outputscale = gp.outputscale_
        with torch.no_grad():
            expected = reference(torch.tensor(A), torch.tensor(B)).to_dense().numpy()
        ours = Kernel(name, gp.lengthscale_ / 5.0, gp.outputscale_)(A, B)
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-9)


def test_gp_fitted_attributes():
    gp = fitted(exact_gp)
    assert gp.n_train_ == len(X_TRAIN) and gp.n_features_in_ == 2
    assert gp.lengthscale_.shape == (2,) and np.all(gp.lengthscale_ > 0.1)
    assert gp.outputscale_ > 0 and gp.noise_ >= 1e-6
    with pytest.raises(AttributeError):
        gp.noise_ = 1.0
    assert not hasattr(ExactGP(), "lengthscale_")


def test_gp_warm_start_refit_is_stable():
    gp = ExactGP().fit(X_TRAIN[:40], Y_TRAIN[:40])
    before = (gp.lengthscale_, gp.outputscale_)
    gp.fit(X_TRAIN[:44], Y_TRAIN[:44])
    np.testing.assert_allclose(gp.lengthscale_, before[0], rtol=0.3)
    assert gp.outputscale_ == pytest.approx(before[1], rel=0.5)
    # Refitting the same data from the previous optimum alone stays at that optimum.
    again = ExactGP(restarts=0).load_state_dict(gp.state_dict()).fit(X_TRAIN[:44], Y_TRAIN[:44])
    np.testing.assert_allclose(again.lengthscale_, gp.lengthscale_, rtol=1e-3)


def test_gp_rbf_kernel_and_constant_column():
    X = np.column_stack([design(20, seed=9)[:, 0], np.full(20, 3.0)])
    gp = ExactGP(kernel="rbf").fit(X, np.sin(3 * X[:, 0]))
    posterior = gp.posterior(X)
    np.testing.assert_allclose(posterior.mean, np.sin(3 * X[:, 0]), atol=0.02)
    with pytest.raises(ValueError, match="kernel"):
        ExactGP().load_state_dict(gp.state_dict())


def test_gp_single_point_and_duplicates():
    gp = ExactGP().fit(np.array([[0.5, 0.5]]), np.array([2.0]))
    assert gp.posterior(np.array([[0.5, 0.5]])).mean[0] == pytest.approx(2.0)
    X = np.vstack([X_TRAIN[:10], X_TRAIN[:10]])
    posterior = ExactGP().fit(X, truth(X)).posterior(GRID)
    assert np.all(np.isfinite(posterior.mean)) and np.all(posterior.variance >= 0)


@pytest.mark.parametrize(
    ("params", "argument"),
    [
        ({"kernel": "cosine"}, "kernel"),
        ({"restarts": -1}, "restarts"),
        ({"iterations": 0}, "iterations"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"threads": 0}, "threads"),
        ({"noise_floor": 0.0}, "noise_floor"),
    ],
)
def test_gp_bad_parameters_raise_at_fit(params, argument):
    gp = ExactGP(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=argument):
        gp.fit(X_TRAIN[:5], Y_TRAIN[:5])


def test_gp_load_state_dict_validates():
    state = fitted(exact_gp).state_dict()
    with pytest.raises(ValueError, match="noise"):
        ExactGP().load_state_dict({k: v for k, v in state.items() if k != "noise"})
    with pytest.raises(ValueError, match="lengthscale"):
        ExactGP().load_state_dict({**state, "lengthscale": np.ones(3)})
    with pytest.raises(ValueError, match="float64"):
        ExactGP().load_state_dict({**state, "x_train": state["x_train"].astype(np.float32)})


def test_gp_fit_restores_torch_threads():
    before = torch.get_num_threads()
    ExactGP(threads=2, restarts=0, iterations=5).fit(X_TRAIN[:8], Y_TRAIN[:8])
    assert torch.get_num_threads() == before


def test_gp_repr_shows_changed_parameters():
    assert repr(ExactGP()) == "ExactGP()"
    assert repr(ExactGP(kernel="rbf", seed=3)) == "ExactGP(kernel='rbf', seed=3)"


# -- registry and posteriors -----------------------------------------------------------------


def test_learner_registry():
    assert isinstance(learner_by_name("exact_gp", seed=2), ExactGP)
    assert set(LEARNERS) == {"exact_gp", "sparse_gp", "deep_ensemble", "sklearn",
                             "random_forest", "gradient_gp", "recalibrated",
                             "deep_kernel_gp", "scalable_gp"}
    for name in LEARNERS:
        assert isinstance(learner_by_name(name), Learner)
    with pytest.raises(ValueError, match="exact_gp"):
        learner_by_name("forest")


def test_sampled_posterior_moments():
    draws = np.random.default_rng(0).normal(size=(50, 6)) @ np.triu(np.ones((6, 6)))
    posterior = SampledPosterior(draws, noise_variance=0.1)
    np.testing.assert_allclose(posterior.mean, draws.mean(0))
    np.testing.assert_allclose(posterior.variance, draws.var(0, ddof=1))
    np.testing.assert_allclose(posterior.covariance(np.array([1, 4])), np.cov(draws.T)[:, [1, 4]])
    picks = posterior.sample(7, np.random.default_rng(1))
    assert picks.shape == (7, 6)
    assert all(any(np.array_equal(p, d) for d in draws) for p in picks)
    with pytest.raises(ValueError, match="members"):
        SampledPosterior(draws[:1])
    with pytest.raises(ValueError, match="columns"):
        posterior.covariance(np.array([6]))
    with pytest.raises(ValueError, match="n_samples"):
        posterior.sample(0, np.random.default_rng(0))


class _Marginals(Posterior):
    """The smallest concrete Posterior, to test the base-class checks."""

    def sample(self, n_samples, rng):
        return self.mean + rng.standard_normal((n_samples, self.n)) * np.sqrt(self.variance)

    def covariance(self, columns):
        columns = self._check_columns(columns)
        return np.eye(self.n)[:, columns] * self.variance


def test_posterior_validates_marginals():
    assert _Marginals(np.zeros(3), np.ones(3)).n == 3
    with pytest.raises(ValueError, match="variance"):
        _Marginals(np.zeros(3), -np.ones(3))
    with pytest.raises(ValueError, match="variance"):
        _Marginals(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="mean"):
        _Marginals(np.zeros((3, 1)), np.ones(3))
    with pytest.raises(ValueError, match="noise_variance"):
        _Marginals(np.zeros(3), np.ones(3), noise_variance=-1.0)


@pytest.mark.parametrize("restarts", [0, 2])
def test_gp_recovers_from_a_collapsed_start(restarts):
    # A start at tiny length scales is a flat likelihood region: unguarded, L-BFGS stays
    # there and the model predicts the mean everywhere. The length-scale prior (restarts=0)
    # and the random restarts each get it out.
    X = design(9, seed=3)
    state = ExactGP().fit(X, truth(X)).state_dict()
    state["lengthscale"] = np.full(2, 0.03)
    state["noise"] = np.array([1e-5])
    gp = ExactGP(restarts=restarts).load_state_dict(state).fit(X, truth(X))
    assert np.all(gp.lengthscale_ > 0.3)
    posterior = gp.posterior(GRID)
    assert np.std(posterior.mean) > 0.2
    assert np.corrcoef(posterior.mean, truth(GRID))[0, 1] > 0.9


# -- sparse GP, deep ensemble, scikit-learn specifics ------------------------------------------


def test_sparse_gp_posterior_matches_the_dense_formula():
    noisy = Y_TRAIN + 0.1 * np.random.default_rng(6).standard_normal(len(Y_TRAIN))
    gp = SparseGP(n_inducing=20, steps=30).fit(X_TRAIN, noisy)  # noise keeps it conditioned
    s = gp.state_dict()
    assert gp.n_inducing_ == 20 and gp.noise_ > 1e-3
    # Rebuild the SGPR predictive from the state with dense textbook algebra.
    kernel = Kernel("matern52", s["lengthscale"], s["outputscale"][0])
    Z = (s["inducing"] - s["x_offset"]) / s["x_scale"]
    A = (s["x_train"] - s["x_offset"]) / s["x_scale"]
    B = (GRID[:30] - s["x_offset"]) / s["x_scale"]
    ys = (s["y_train"] - s["y_offset"][0]) / s["y_scale"][0] - s["constant"][0]
    Kzz = kernel(Z, Z) + 1e-8 * s["outputscale"][0] * np.eye(len(Z))
    Sigma = np.linalg.inv(Kzz + kernel(Z, A) @ kernel(A, Z) / s["noise"][0])
    Kbz = kernel(B, Z)
    mean = s["constant"][0] + Kbz @ Sigma @ kernel(Z, A) @ ys / s["noise"][0]
    cov = kernel(B, B) - Kbz @ np.linalg.solve(Kzz, Kbz.T) + Kbz @ Sigma @ Kbz.T
    posterior = gp.posterior(GRID[:30])
    np.testing.assert_allclose(posterior.mean, s["y_offset"][0] + s["y_scale"][0] * mean,
                               atol=1e-6)
    np.testing.assert_allclose(posterior.covariance(np.array([0, 29])),
                               s["y_scale"][0] ** 2 * cov[:, [0, 29]], atol=1e-7)


def test_sparse_gp_minibatches_and_warm_starts():
    rng = np.random.default_rng(5)
    X = rng.uniform(size=(400, 2))
    gp = SparseGP(n_inducing=30, batch_size=100, steps=30).fit(X, truth(X))
    assert gp.n_inducing_ == 30
    assert np.sqrt(np.mean((gp.posterior(GRID).mean - truth(GRID)) ** 2)) < 0.1
    before = gp.lengthscale_
    gp.fit(X[:380], truth(X[:380]))  # warm start: no exact-GP start, close to before
    np.testing.assert_allclose(gp.lengthscale_, before, rtol=0.5)
    with pytest.raises(ValueError, match="n_inducing"):
        SparseGP(n_inducing=0).fit(X, truth(X))


def test_deep_ensemble_members_and_bootstrap():
    ensemble = DeepEnsemble(members=3, hidden=(16,), steps=200, bootstrap=True)
    ensemble.fit(X_TRAIN, Y_TRAIN)
    posterior = ensemble.posterior(GRID)
    assert isinstance(posterior, SampledPosterior) and posterior.draws.shape == (3, len(GRID))
    assert posterior.noise_variance > 0
    assert set(ensemble.state_dict()) >= {"weight_0", "bias_0", "weight_1", "bias_1"}
    with pytest.raises(ValueError, match="members"):
        DeepEnsemble(members=1).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="hidden"):
        DeepEnsemble(hidden=()).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="missing"):
        DeepEnsemble().load_state_dict({"x_train": X_TRAIN})


def test_sklearn_wrapper_accepts_estimators_with_return_std():
    from sklearn.linear_model import BayesianRidge, LinearRegression

    learner = SklearnLearner(BayesianRidge()).fit(X_TRAIN, Y_TRAIN)
    posterior = learner.posterior(GRID[:5])
    assert posterior.variance.shape == (5,) and np.all(posterior.variance > 0)
    np.testing.assert_array_equal(posterior.covariance(np.array([2]))[:, 0],
                                  np.eye(5)[2] * posterior.variance[2])
    restored = SklearnLearner(BayesianRidge()).load_state_dict(learner.state_dict())
    np.testing.assert_array_equal(restored.posterior(GRID[:5]).mean, posterior.mean)
    with pytest.raises(ValueError, match="uncertainty"):
        SklearnLearner(LinearRegression()).fit(X_TRAIN, Y_TRAIN)
    with pytest.raises(ValueError, match="estimator"):
        SklearnLearner("svm").fit(X_TRAIN, Y_TRAIN)


def test_sampled_posterior_gaussian_draws_match_moments():
    draws = np.random.default_rng(0).normal(size=(5, 4)) * np.arange(1, 5)
    posterior = SampledPosterior(draws, gaussian=True)
    samples = posterior.sample(20000, np.random.default_rng(1))
    np.testing.assert_allclose(np.cov(samples.T), np.cov(draws.T), atol=0.15 * draws.var())


def test_deep_kernel_resolves_a_sharp_ridge_along_a_diagonal():
    """A step only along x0 + x1: the learned feature finds the direction; an ARD GP on the
    inputs has to shrink both length scales."""
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (60, 2))

    def step(A):
        return np.tanh(20 * (A[:, 0] + A[:, 1] - 1))

    test = rng.uniform(0, 1, (2000, 2))
    deep = DeepKernelGP().fit(X, step(X))
    exact = ExactGP().fit(X, step(X))
    deep_rmse = np.sqrt(np.mean((deep.posterior(test).mean - step(test)) ** 2))
    exact_rmse = np.sqrt(np.mean((exact.posterior(test).mean - step(test)) ** 2))
    assert deep_rmse < 0.3 * exact_rmse
    refit = DeepKernelGP().load_state_dict(deep.state_dict()).fit(X[:50], step(X[:50]))
    assert refit.n_train_ == 50  # warm refit from the loaded weights
