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
    CostAware,
    ExpectedImprovement,
    FarthestPoint,
    GreedyAcquisition,
    IntegratedVariance,
    LocalOutlier,
    MaxVariance,
    Random,
    TrustWindow,
    UpperConfidenceBound,
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
    X = np.random.default_rng(2).uniform(size=(40, 3))
    return SampledPosterior(draws, noise_variance=0.05, X=X, X_train=X[:5] + 0.01)


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
        return np.eye(self.n)[:, columns] * self.variance[columns]


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
    assert set(ACQUISITIONS) == {
        "random", "max_variance", "integrated_variance", "ucb", "expected_improvement",
        "trust_window", "farthest_point", "local_outlier", "cost_aware", "explore"}
    assert isinstance(acquisition_by_name("random"), Random)
    assert isinstance(acquisition_by_name("max_variance"), MaxVariance)
    assert acquisition_by_name("ucb", beta=3.0).beta == 3.0
    for name in ACQUISITIONS:
        assert isinstance(acquisition_by_name(name), Acquisition)
    with pytest.raises(ValueError, match="max_variance") as info:
        acquisition_by_name("thompson")
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


# -- greedy policies: shared properties -------------------------------------------------------

DETERMINISTIC = [
    pytest.param(MaxVariance, id="max_variance"),
    pytest.param(lambda: IntegratedVariance(n_reference=None), id="integrated_variance"),
    pytest.param(UpperConfidenceBound, id="ucb"),
    pytest.param(ExpectedImprovement, id="ei"),
    pytest.param(FarthestPoint, id="farthest_point"),
    pytest.param(LocalOutlier, id="local_outlier"),
    pytest.param(lambda: CostAware(MaxVariance(), cost=np.linspace(1, 2, len(POOL))),
                 id="cost_aware"),
]


@pytest.mark.parametrize("make", DETERMINISTIC)
def test_pending_acts_like_earlier_picks(make):
    # Diversity comes from conditioning: the first picks, submitted as pending, give the rest.
    posterior = gp_posterior()
    batch = make().select(posterior, 4, np.array([], dtype=np.int64), np.random.default_rng(0))
    rest = make().select(posterior, 2, batch[:2], np.random.default_rng(0))
    np.testing.assert_array_equal(rest, batch[2:])


# EI exploits (neighbours of the best point keep their value) and LOF is relative density
# (one new point barely changes the LOF of its neighbour): neither promises spread.
@pytest.mark.parametrize("make", [p for p in DETERMINISTIC if p.id not in ("ei", "local_outlier")])
def test_greedy_batch_is_spread_out(make):
    chosen = make().select(gp_posterior(), 5, np.array([], dtype=np.int64),
                           np.random.default_rng(0))
    assert pdist(POOL[chosen]).min() > 0.1  # grid spacing is 0.071


# -- integrated variance ----------------------------------------------------------------------


def test_integrated_variance_value_matches_brute_force():
    policy = IntegratedVariance(n_reference=None)
    pending = np.array([200])
    chosen = policy.select(gp_posterior(), 2, pending, np.random.default_rng(0))
    free = np.setdiff1d(np.arange(len(POOL)), pending)
    for step in range(2):
        known = np.concatenate([pending, chosen[:step]])
        before = _conditioned_variance(POOL[free], POOL[known]).sum()
        values = [before - _conditioned_variance(POOL[free], POOL[np.append(known, j)]).sum()
                  for j in range(len(POOL))]
        values = np.array(values)
        values[known] = -np.inf
        assert policy.chosen_score_[step] == pytest.approx(values[chosen[step]], rel=1e-5)
        assert values[chosen[step]] == pytest.approx(values.max(), rel=1e-6)


def test_integrated_variance_prefers_the_middle_of_the_pool():
    # Max variance goes to the far corner; the pool-integrated value favours points whose
    # neighbourhood is large and uncertain, not the edge.
    posterior = gp_posterior()
    none = np.array([], dtype=np.int64)
    edge = MaxVariance().select(posterior, 1, none, np.random.default_rng(0))[0]
    middle = IntegratedVariance().select(posterior, 1, none, np.random.default_rng(0))[0]
    assert np.abs(POOL[middle] - 0.5).max() < np.abs(POOL[edge] - 0.5).max()


def test_integrated_variance_spread_reference_covers_the_pool():
    policy = IntegratedVariance(n_reference=30, reference="spread")
    chosen = policy.select(gp_posterior(), 4, np.array([], dtype=np.int64),
                           np.random.default_rng(0))
    assert len(set(chosen.tolist())) == 4 and pdist(POOL[chosen]).min() > 0.1
    with pytest.raises(ValueError, match="reference"):
        IntegratedVariance(reference="grid")


def test_integrated_variance_subsample_is_bounded():
    policy = IntegratedVariance(n_reference=10)
    chosen = policy.select(gp_posterior(), 3, np.array([], dtype=np.int64),
                           np.random.default_rng(0))
    assert len(set(chosen.tolist())) == 3
    with pytest.raises(ValueError, match="n_reference"):
        IntegratedVariance(n_reference=0)


# -- extremes ------------------------------------------------------------------------------


def test_ucb_and_ei_find_maxima_and_minima():
    mean = np.array([0.0, 5.0, -5.0, 1.0])
    posterior = _Independent(mean, np.full(4, 0.01))
    none = np.array([], dtype=np.int64)
    rng = np.random.default_rng(0)
    assert UpperConfidenceBound().select(posterior, 1, none, rng)[0] == 1
    assert UpperConfidenceBound(maximize=False).select(posterior, 1, none, rng)[0] == 2
    assert ExpectedImprovement().select(posterior, 1, none, rng)[0] == 1
    assert ExpectedImprovement(maximize=False).select(posterior, 1, none, rng)[0] == 2
    # A very uncertain point beats a slightly better but certain one.
    posterior = _Independent(np.array([1.0, 0.9]), np.array([1e-6, 4.0]))
    assert UpperConfidenceBound().select(posterior, 1, none, rng)[0] == 1
    ei = ExpectedImprovement()
    assert ei.select(posterior, 1, none, rng)[0] == 1
    assert np.all(ei.chosen_score_ >= 0)
    with pytest.raises(ValueError, match="beta"):
        UpperConfidenceBound(beta=-1.0)
    with pytest.raises(ValueError, match="maximize"):
        ExpectedImprovement(maximize="yes")


# -- trust window ----------------------------------------------------------------------------


def test_trust_window_picks_inside_the_bounds():
    sd = np.linspace(0.1, 2.0, 20)
    posterior = _Independent(np.zeros(20), sd**2)
    policy = TrustWindow(lower=0.5, upper=1.0)
    chosen = policy.select(posterior, 4, np.array([], dtype=np.int64), np.random.default_rng(0))
    assert np.all((sd[chosen] >= 0.5) & (sd[chosen] <= 1.0))
    # Default bounds: quantiles of the pool's sd (no hand-picked threshold needed).
    lower, upper = TrustWindow().bounds(posterior, np.array([], dtype=np.int64))
    assert lower == pytest.approx(np.median(sd)) and upper == pytest.approx(np.quantile(sd, 0.95))
    # Empty window: the largest sd below the upper bound.
    empty = TrustWindow(lower=5.0, upper=6.0).select(posterior, 1, np.array([], dtype=np.int64),
                                                     np.random.default_rng(0))
    assert empty[0] == 19
    with pytest.raises(ValueError, match="lower"):
        TrustWindow(lower=2.0, upper=1.0)


def test_trust_window_conditions_on_chosen_points():
    # Two tight clusters in the window: conditioning pushes the second pick to the other one.
    X = np.vstack([np.zeros((5, 1)), np.ones((5, 1)) * 10])
    X = X + 1e-3 * np.arange(10)[:, None]
    posterior = ExactGP().fit(np.array([[5.0]]), np.array([0.0])).posterior(X)
    policy = TrustWindow(lower=0.0, upper=1e9)
    chosen = policy.select(posterior, 2, np.array([], dtype=np.int64), np.random.default_rng(3))
    assert {int(c) // 5 for c in chosen} == {0, 1}


# -- feature-space anchors ---------------------------------------------------------------------


def test_farthest_point_matches_brute_force():
    posterior = gp_posterior()
    chosen = FarthestPoint().select(posterior, 3, np.array([0]), np.random.default_rng(0))
    both = np.vstack([POOL, X_TRAIN])
    Z = (POOL - both.mean(0)) / both.std(0)
    T = (X_TRAIN - both.mean(0)) / both.std(0)
    known = np.vstack([T, Z[[0]]])
    for position in chosen:
        distance = np.min(np.linalg.norm(Z[:, None] - known[None], axis=2), axis=1)
        assert distance[position] == pytest.approx(distance.max())
        known = np.vstack([known, Z[[position]]])


def test_local_outlier_picks_novel_points():
    posterior = gp_posterior()  # training data in the [0, 0.5]^2 corner
    chosen = LocalOutlier().select(posterior, 3, np.array([], dtype=np.int64),
                                   np.random.default_rng(0))
    assert np.all(POOL[chosen].max(axis=1) > 0.6)
    with pytest.raises(ValueError, match="n_neighbors"):
        LocalOutlier(n_neighbors=0)


@pytest.mark.parametrize("policy", [FarthestPoint, LocalOutlier])
def test_feature_policies_need_features(policy):
    with pytest.raises(ValueError, match="X"):
        policy().select(_Independent(np.zeros(3), np.ones(3)), 1, np.array([], dtype=np.int64),
                        np.random.default_rng(0))


# -- cost-aware --------------------------------------------------------------------------------


def test_cost_aware_divides_value_by_cost():
    posterior = _Independent(np.zeros(4), np.array([1.0, 2.0, 3.0, 4.0]))
    none = np.array([], dtype=np.int64)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(CostAware(MaxVariance()).select(posterior, 2, none, rng), [3, 2])
    cheap_first = CostAware(MaxVariance(), cost=np.array([1.0, 1.0, 1.0, 8.0]))
    assert cheap_first.select(posterior, 1, none, rng)[0] == 2
    assert cheap_first.chosen_score_[0] == pytest.approx(3.0)
    by_feature = CostAware("max_variance", cost=lambda X: 1.0 + X[:, 0] ** 2)
    posterior_x = gp_posterior()
    chosen = by_feature.select(posterior_x, 3, none, rng)
    assert np.all(posterior_x.X[chosen, 0] < 1.0) and isinstance(by_feature.base, MaxVariance)
    assert isinstance(CostAware().base, IntegratedVariance)


def test_cost_aware_rejects_bad_costs():
    posterior = _Independent(np.zeros(4), np.ones(4))
    none = np.array([], dtype=np.int64)
    for cost in (np.ones(3), np.array([1.0, 0.0, 1.0, 1.0]), lambda X: np.ones(4)):
        with pytest.raises(ValueError, match="cost"):
            CostAware(MaxVariance(), cost=cost).select(posterior, 1, none, np.random.default_rng(0))
    with pytest.raises(ValueError, match="base"):
        CostAware(Random())


def test_greedy_policies_share_the_loop():
    for name, cls in ACQUISITIONS.items():
        if name not in ("random", "explore"):  # explore mixes a greedy base with random picks
            assert issubclass(cls, GreedyAcquisition), name


# -- max variance over large pools -------------------------------------------------------------


def test_variance_upper_bound_bounds_the_variance():
    posterior = gp_posterior()
    bound = posterior.variance_upper_bound()
    assert np.all(bound >= posterior.variance - 1e-12)
    assert np.corrcoef(bound, posterior.variance)[0, 1] > 0.5
    # Conditioned on fantasies, column j bounds the variance given the first j of them.
    given = np.array([224, 0, 112])
    rows = np.arange(0, 225, 7)
    tight = posterior.variance_upper_bound(rows, given=given)
    np.testing.assert_allclose(tight[:, 0], bound[rows])
    for j in range(1, 4):
        exact = _conditioned_variance(POOL[rows], POOL[given[:j]])
        assert np.all(tight[:, j] >= exact - 1e-12)
        assert np.all(tight[:, j] <= tight[:, j - 1] + 1e-15)


@pytest.mark.parametrize("prefilter", [5, 40])
def test_prefiltered_batch_equals_the_exact_greedy_batch(prefilter):
    points = np.random.default_rng(4).uniform(-0.5, 1.5, size=(600, 2))
    pending = np.array([3, 77])
    exact = MaxVariance().select(GP.posterior(points), 8, pending, np.random.default_rng(0))
    policy = MaxVariance(prefilter=prefilter, exact_limit=100, max_growth=None)
    fast = policy.select(GP.posterior(points), 8, pending, np.random.default_rng(0))
    assert policy.certified_
    np.testing.assert_array_equal(fast, exact)
    assert policy.n_scored_ <= 600


def test_prefilter_without_growth_keeps_the_variance_reduction():
    points = np.random.default_rng(5).uniform(-0.5, 1.5, size=(3000, 2))
    none = np.array([], dtype=np.int64)
    exact = MaxVariance()
    exact.select(GP.posterior(points), 10, none, np.random.default_rng(0))
    fast = MaxVariance(prefilter=300, exact_limit=1000, max_growth=2)
    chosen = fast.select(GP.posterior(points), 10, none, np.random.default_rng(0))
    assert fast.n_scored_ <= 900 and len(set(chosen.tolist())) == 10
    # Each pick's conditioned variance is that of the exact greedy batch within 2%.
    np.testing.assert_allclose(fast.chosen_variance_, exact.chosen_variance_, rtol=0.02)


def test_certificate_over_its_limit_is_reported_not_checked():
    points = np.random.default_rng(4).uniform(-0.5, 1.5, size=(600, 2))
    none = np.array([], dtype=np.int64)
    checked = MaxVariance(prefilter=20, exact_limit=100)
    skipped = MaxVariance(prefilter=20, exact_limit=100, certify_limit=0)
    batch = checked.select(GP.posterior(points), 8, none, np.random.default_rng(0))
    same = skipped.select(GP.posterior(points), 8, none, np.random.default_rng(0))
    np.testing.assert_array_equal(same, batch)  # the limit changes the report, not the picks
    assert skipped.certified_ is False
    grown = MaxVariance(prefilter=20, exact_limit=100, max_growth=None, certify_limit=0)
    grown.select(GP.posterior(points), 8, none, np.random.default_rng(0))
    assert grown.certified_  # growing until certified ignores the limit
    with pytest.raises(ValueError, match="certify_limit"):
        MaxVariance(certify_limit=-1)


# -- explore mixture ---------------------------------------------------------------------------


def test_explore_mixes_base_picks_and_uniform_ones():
    from learners.acquisition import Explore

    posterior = gp_posterior()
    empty = np.array([], dtype=np.int64)
    assert np.array_equal(Explore(MaxVariance(), fraction=0.0).select(
        posterior, 5, empty, np.random.default_rng(0)),
        MaxVariance().select(posterior, 5, empty, np.random.default_rng(0)))
    everything = Explore(MaxVariance(), fraction=1.0)
    chosen = everything.select(posterior, 5, np.array([0, 1]), np.random.default_rng(3))
    assert everything.n_random_ == 5 and everything.n_base_ == 0
    assert not set(chosen.tolist()) & {0, 1}
    # over many single-point requests, the uniform share is the fraction
    policy = Explore(MaxVariance(), fraction=0.3)
    rng = np.random.default_rng(1)
    shares = []
    for _ in range(400):
        policy.select(posterior, 1, empty, rng)
        shares.append(policy.n_random_)
    assert 0.24 < np.mean(shares) < 0.36
    half = Explore(MaxVariance(), fraction=0.5)
    batch = half.select(posterior, 8, empty, np.random.default_rng(2))
    base = MaxVariance().select(posterior, half.n_base_, empty, np.random.default_rng(2))
    np.testing.assert_array_equal(batch[:half.n_base_], base)  # the base picks come first
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fraction"):
            Explore(fraction=bad)
