"""Block conditioning (Fantasies.add_many) and the blocked greedy max-variance batch equal
their one-at-a-time forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from learners import ExactGP, GradientGP, SampledPosterior
from learners.acquisition import GreedyAcquisition, IntegratedVariance, MaxVariance
from learners.acquisition.base import Fantasies
from learners.acquisition.blocked import blocked_max_variance
from learners.acquisition.variance import _GradientIntegratedVarianceScorer
from learners.posterior import IndependentPosterior

torch.set_num_threads(1)

RNG = np.random.default_rng(0)
X_TRAIN = RNG.uniform(0.0, 1.0, size=(12, 2))
GP = ExactGP().fit(X_TRAIN, np.sin(3 * X_TRAIN[:, 0]) + X_TRAIN[:, 1])
POINTS = RNG.uniform(-0.2, 1.5, size=(300, 2))


def _sequential(posterior, positions, capacity=4, noise=None, before=()):
    fantasies = Fantasies(posterior, capacity)
    for position in before:
        fantasies.add(int(position))
    for j, position in enumerate(positions):
        fantasies.add(int(position), noise=None if noise is None else noise[j])
    return fantasies


def _block(posterior, positions, capacity=4, noise=None, before=()):
    fantasies = Fantasies(posterior, capacity)
    for position in before:
        fantasies.add(int(position))
    fantasies.add_many(positions, noise=noise)
    return fantasies


def _assert_same_conditioning(a: Fantasies, b: Fantasies) -> None:
    assert a.rank == b.rank
    scale = a.posterior.variance.max() + a.noise
    np.testing.assert_allclose(a.variance, b.variance, rtol=1e-8, atol=1e-10 * scale)
    Ua, Ub = a.factor[:, :a.rank], b.factor[:, :b.rank]
    np.testing.assert_allclose(Ua @ Ua.T, Ub @ Ub.T, rtol=1e-8, atol=1e-10 * scale)
    # Not only the product: the columns themselves (the Cholesky-style factor is unique).
    np.testing.assert_allclose(Ua, Ub, rtol=1e-6, atol=1e-8 * np.sqrt(scale))
    columns = np.array([0, 7, a.posterior.n - 1])
    np.testing.assert_allclose(a.conditioned(columns), b.conditioned(columns),
                               rtol=1e-8, atol=1e-10 * scale)


@pytest.mark.parametrize("before", [(), (5, 250)], ids=["fresh", "after-picks"])
def test_block_equals_sequential_on_a_gp(before):
    posterior = GP.posterior(POINTS)
    positions = np.random.default_rng(1).choice(len(POINTS), size=60, replace=False)
    _assert_same_conditioning(_sequential(posterior, positions, before=before),
                              _block(posterior, positions, before=before))


def test_block_grows_the_factor_and_returns_its_new_columns():
    posterior = GP.posterior(POINTS)
    fantasies = Fantasies(posterior, capacity=1)
    fantasies.add(3)
    update = fantasies.add_many(np.arange(10, 40))
    assert fantasies.rank == 31 and fantasies.factor.shape[1] >= 31
    assert update.shape == (len(POINTS), 30) and not update.flags.writeable
    np.testing.assert_array_equal(update, fantasies.factor[:, 1:31])
    assert fantasies.add_many(np.array([], dtype=np.int64)).shape == (len(POINTS), 0)


def test_repeated_position_is_a_second_noisy_observation():
    posterior = GP.posterior(POINTS)
    positions = np.array([4, 9, 4, 4, 20])
    _assert_same_conditioning(_sequential(posterior, positions), _block(posterior, positions))


def test_duplicates_without_noise_are_skipped_as_sequentially():
    draws = np.random.default_rng(3).normal(size=(8, 30))
    draws[:, 1] = draws[:, 0]  # two copies of one point
    draws[:, 5] = draws[:, 0]
    posterior = SampledPosterior(draws, noise_variance=0.0)  # rank 7: most points determined
    positions = np.array([0, 1, 2, 5, 3, 4, 6, 8, 9, 10, 11, 12, 13, 14])
    sequential = _sequential(posterior, positions)
    block = _block(posterior, positions)
    assert sequential.rank == block.rank <= 7
    _assert_same_conditioning(sequential, block)
    assert np.all(block.variance >= 0) and block.variance[[0, 1, 5]].max() <= 1e-9


def test_per_observation_noise():
    posterior = GP.posterior(POINTS)
    positions = np.arange(0, 120, 3)
    noise = np.linspace(1e-4, 1e-1, positions.size)
    _assert_same_conditioning(_sequential(posterior, positions, noise=noise),
                              _block(posterior, positions, noise=noise))


def test_gradient_scorer_conditions_pending_as_sequentially():
    rng = np.random.default_rng(4)
    X = rng.uniform(-np.pi, np.pi, (30, 2))
    stderr = np.full((30, 2), 0.1)
    gradient = np.stack([np.cos(X[:, 0]), -np.sin(X[:, 1])], axis=1)
    gp = GradientGP().fit(X, np.hstack([gradient, stderr, X]))
    posterior = gp.posterior(rng.uniform(-np.pi, np.pi, (60, 2)))
    pending = np.array([3, 17, 40, 41])
    block = _GradientIntegratedVarianceScorer(posterior, pending, np.random.default_rng(0),
                                              None, "random")
    sequential = _GradientIntegratedVarianceScorer(posterior, np.empty(0, np.int64),
                                                   np.random.default_rng(0), None, "random")
    for position in pending:
        sequential._fantasize(int(position))
    scale = float(np.abs(sequential.block).max())
    np.testing.assert_allclose(block.block, sequential.block, rtol=1e-8, atol=1e-10 * scale)
    _assert_same_conditioning(sequential.fantasies, block.fantasies)
    # And the policy still picks non-pending points.
    chosen = IntegratedVariance(n_reference=None).select(posterior, 3, pending,
                                                         np.random.default_rng(0))
    assert not set(chosen.tolist()) & set(pending.tolist())


# -- blocked greedy max variance ---------------------------------------------------------------


def _rank_one_greedy(posterior, k, pending):
    """The shared rank-one loop with max variance's scorer (the reference)."""
    policy = MaxVariance()
    chosen = GreedyAcquisition.select(policy, posterior, k, pending, np.random.default_rng(0))
    return chosen, policy.chosen_score_


@pytest.mark.parametrize("pending", [np.empty(0, np.int64), np.arange(0, 300, 7)],
                         ids=["no-pending", "pending"])
def test_blocked_max_variance_equals_the_rank_one_greedy(pending):
    # Dense pool around the data: picks shadow each other, blocks are cut short.
    points = np.vstack([POINTS, RNG.uniform(0.3, 0.7, size=(200, 2))])
    posterior = GP.posterior(points)
    expected, expected_values = _rank_one_greedy(posterior, 120, pending)
    chosen, values = blocked_max_variance(posterior, 120, pending, width=8)
    np.testing.assert_array_equal(chosen, expected)
    np.testing.assert_allclose(values, expected_values, rtol=1e-7,
                               atol=1e-12 * posterior.variance.max())


def test_blocked_max_variance_ties_and_duplicates_without_noise():
    draws = np.random.default_rng(5).normal(size=(6, 25))
    draws[:, 7] = draws[:, 3]
    posterior = SampledPosterior(draws, noise_variance=0.0)  # rank 5, duplicates
    expected, expected_values = _rank_one_greedy(posterior, 20, np.array([3]))
    chosen, values = blocked_max_variance(posterior, 20, np.array([3]), width=4)
    # Pending 3 and 4 picks span the draws; later variances are round-off, their order too.
    informative = expected_values > 1e-9 * posterior.variance.max()
    assert informative.sum() == 4 and informative[:4].all()
    np.testing.assert_array_equal(chosen[:4], expected[:4])
    np.testing.assert_allclose(values, expected_values, atol=1e-9 * posterior.variance.max())
    assert len(set(chosen.tolist())) == 20 and 3 not in chosen
    flat = IndependentPosterior(np.zeros(9), np.ones(9), noise_variance=0.1)
    chosen, _ = blocked_max_variance(flat, 5, np.array([2]), width=2)
    np.testing.assert_array_equal(chosen, [0, 1, 3, 4, 5])
