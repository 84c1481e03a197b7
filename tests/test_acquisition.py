"""Acquisition conformance suite (every policy in ACQUISITIONS) plus greedy max-variance checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from learners import ExactGP, Posterior, SampledPosterior
from learners.acquisition import (
    ACQUISITIONS,
    Acquisition,
    MaxVariance,
    Random,
    acquisition_by_name,
)
from learners.kernels import KERNELS, Kernel

torch.set_num_threads(1)

POOL = np.stack(np.meshgrid(np.linspace(0, 1, 15), np.linspace(0, 1, 15)), -1).reshape(-1, 2)
X_TRAIN = np.random.default_rng(0).uniform(0.0, 0.5, size=(8, 2))  # data in one corner
GP = ExactGP().fit(X_TRAIN, np.sin(3 * X_TRAIN[:, 0]) + np.cos(4 * X_TRAIN[:, 1]))


def gp_posterior(points: np.ndarray = POOL) -> Posterior:
    return GP.posterior(points)


def sampled_posterior() -> Posterior:
    draws = np.random.default_rng(1).normal(size=(30, 40)) * np.linspace(0.5, 2.0, 40)
    return SampledPosterior(draws, noise_variance=0.05)


POSTERIORS = [
    pytest.param(gp_posterior, id="gp"),
    pytest.param(sampled_posterior, id="sampled"),
]
POLICIES = [pytest.param(cls, id=name) for name, cls in ACQUISITIONS.items()]


class _Independent(Posterior):
    """Independent points (diagonal covariance): the simplest non-learner posterior."""

    def sample(self, n_samples, rng):
        return self.mean + rng.standard_normal((n_samples, self.n)) * np.sqrt(self.variance)

    def covariance(self, columns):
        columns = self._check_columns(columns)
        return np.eye(self.n)[:, columns] * self.variance


# -- protocol suite -------------------------------------------------------------------------


@pytest.mark.parametrize("make_posterior", POSTERIORS)
@pytest.mark.parametrize("policy", POLICIES)
class TestAcquisitionProtocol:
    def test_batch_is_distinct_in_range_and_not_pending(self, policy, make_posterior):
        posterior = make_posterior()
        acquisition = policy()
        assert isinstance(acquisition, Acquisition)
        pending = np.array([3, 0, 17, 3])
        chosen = acquisition.select(posterior, 6, pending, np.random.default_rng(0))
        assert chosen.dtype == np.int64 and chosen.shape == (6,)
        assert len(set(chosen.tolist())) == 6
        assert np.all((chosen >= 0) & (chosen < posterior.n))
        assert not set(chosen.tolist()) & set(pending.tolist())

    def test_empty_pending(self, policy, make_posterior):
        chosen = policy().select(make_posterior(), 3, np.array([], dtype=np.int64),
                                 np.random.default_rng(0))
        assert chosen.shape == (3,)
        chosen = policy().select(make_posterior(), 2, [], np.random.default_rng(0))
        assert chosen.shape == (2,)

    def test_k_larger_than_available(self, policy, make_posterior):
        posterior = make_posterior()
        pending = np.arange(4, posterior.n)
        chosen = policy().select(posterior, 10, pending, np.random.default_rng(0))
        assert sorted(chosen.tolist()) == [0, 1, 2, 3]
        none_left = policy().select(posterior, 2, np.arange(posterior.n), np.random.default_rng(0))
        assert none_left.shape == (0,) and none_left.dtype == np.int64

    def test_deterministic_given_rng(self, policy, make_posterior):
        posterior = make_posterior()
        a = policy().select(posterior, 5, np.array([1]), np.random.default_rng(7))
        b = policy().select(posterior, 5, np.array([1]), np.random.default_rng(7))
        np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize("k", [0, -1, 2.5, None])
    def test_bad_k_raises(self, policy, make_posterior, k):
        with pytest.raises(ValueError, match="k must"):
            policy().select(make_posterior(), k, np.array([], dtype=np.int64),
                            np.random.default_rng(0))

    @pytest.mark.parametrize(
        "pending", [np.array([-1]), np.array([10**6]), np.array([0.5]), np.zeros((1, 1), int)]
    )
    def test_bad_pending_raises(self, policy, make_posterior, pending):
        with pytest.raises(ValueError, match="pending"):
            policy().select(make_posterior(), 2, pending, np.random.default_rng(0))


def test_registry():
    assert set(ACQUISITIONS) == {"random", "max_variance"}
    assert isinstance(acquisition_by_name("random"), Random)
    assert isinstance(acquisition_by_name("max_variance"), MaxVariance)
    with pytest.raises(ValueError, match="max_variance") as info:
        acquisition_by_name("ucb")
    assert "random" in str(info.value)


# -- greedy max variance ---------------------------------------------------------------------


def _conditioned_variance(points: np.ndarray, fantasies: np.ndarray) -> np.ndarray:
    """Brute force: GP variance (y units) with ``fantasies`` added as noisy observations.

    Rebuilds the GP from its state with the same kernel and noise; no rank-one updates.
    """
    s = GP.state_dict()
    kernel = Kernel(KERNELS[int(s["kernel"][0])], s["lengthscale"], s["outputscale"][0])
    A = (np.vstack([s["x_train"], fantasies]) - s["x_offset"]) / s["x_scale"]
    B = (points - s["x_offset"]) / s["x_scale"]
    K = kernel(A, A) + s["noise"][0] * np.eye(len(A))
    cross = kernel(B, A)
    variance = kernel.diag(B) - np.einsum("ij,ji->i", cross, np.linalg.solve(K, cross.T))
    return s["y_scale"][0] ** 2 * variance


def test_greedy_batch_is_more_spread_than_top_k():
    posterior = gp_posterior()
    chosen = MaxVariance().select(posterior, 6, np.array([], dtype=np.int64),
                                  np.random.default_rng(0))
    top_k = np.argsort(-posterior.variance, kind="stable")[:6]
    assert chosen[0] == top_k[0]
    assert set(chosen.tolist()) != set(top_k.tolist())
    assert pdist(POOL[chosen]).min() > 2 * pdist(POOL[top_k]).min()


def test_conditioned_variance_matches_brute_force():
    points = np.vstack([POOL, [[0.95, 0.95], [0.0, 1.0]]])  # candidates..., pending...
    pending = np.array([len(POOL), len(POOL) + 1])
    policy = MaxVariance()
    chosen = policy.select(gp_posterior(points), 5, pending, np.random.default_rng(0))
    for step, position in enumerate(chosen):
        fantasies = points[np.concatenate([pending, chosen[:step]])]
        expected = _conditioned_variance(points[[position]], fantasies)[0]
        assert policy.chosen_variance_[step] == pytest.approx(expected, rel=1e-6, abs=1e-12)
        # The greedy pick is the argmax of the brute-force conditioned variance.
        brute = _conditioned_variance(POOL, fantasies)
        brute[np.isin(np.arange(len(POOL)), chosen[:step])] = -np.inf
        assert brute[position] == pytest.approx(brute.max(), rel=1e-6)


def test_pending_points_push_the_choice_away():
    posterior = gp_posterior()
    first = MaxVariance().select(posterior, 1, np.array([], dtype=np.int64),
                                 np.random.default_rng(0))[0]
    # The same location, already submitted, appended after the candidates.
    points = np.vstack([POOL, POOL[[first]]])
    again = MaxVariance().select(gp_posterior(points), 1, np.array([len(POOL)]),
                                 np.random.default_rng(0))[0]
    assert again != first
    assert np.linalg.norm(POOL[again] - POOL[first]) > 0.3


def test_pending_equals_the_first_greedy_picks():
    posterior = gp_posterior()
    batch = MaxVariance().select(posterior, 5, np.array([], dtype=np.int64),
                                 np.random.default_rng(0))
    rest = MaxVariance().select(posterior, 3, batch[:2], np.random.default_rng(0))
    np.testing.assert_array_equal(rest, batch[2:])


def test_ties_go_to_the_lowest_position():
    posterior = _Independent(np.zeros(6), np.ones(6), noise_variance=0.1)
    chosen = MaxVariance().select(posterior, 3, np.array([1]), np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, [0, 2, 3])


def test_duplicate_noise_free_points_do_not_break_the_update():
    draws = np.random.default_rng(3).normal(size=(20, 5))
    draws[:, 1] = draws[:, 0]  # two copies of one point, no observation noise
    posterior = SampledPosterior(draws, noise_variance=0.0)
    policy = MaxVariance()
    chosen = policy.select(posterior, 3, np.array([0, 1]), np.random.default_rng(0))
    assert set(chosen.tolist()) <= {2, 3, 4} and len(chosen) == 3
    assert np.all(np.isfinite(policy.chosen_variance_)) and np.all(policy.chosen_variance_ >= 0)
