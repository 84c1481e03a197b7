"""The fixed-pool loop, and the default learner and policy a spec falls back on."""

import numpy as np
import pytest

from campaign import Promotion
from learners import ExactGP, PoolCurve, ScalableGP, default_learner, pool_loop
from learners.acquisition import (
    Acquisition,
    Explore,
    IntegratedVariance,
    MaxVariance,
    Random,
    default_acquisition,
)
from learners.base import Learner


def smooth(X: np.ndarray) -> np.ndarray:
    return np.sin(3.0 * X[:, 0]) * np.cos(2.0 * X[:, 1])


def pool(n: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, 2))


def small_gp() -> ExactGP:
    return ExactGP(restarts=0, iterations=40)


TEST_X = pool(200, seed=1)
TEST = (TEST_X, smooth(TEST_X))


class CountingLabels:
    """label_fn that records every row it is asked to label."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def __call__(self, X: np.ndarray) -> np.ndarray:
        self.rows.append(X.copy())
        return smooth(X)


# -- pool_loop -------------------------------------------------------------------------


@pytest.mark.parametrize("acquisition", [Random(), MaxVariance()], ids=["random", "max_variance"])
def test_labels_exactly_budget_distinct_points(acquisition):
    X = pool()
    labels = CountingLabels()
    curve = pool_loop(X, labels, small_gp(), acquisition, batch_size=5, budget=23, rng=3)
    assert isinstance(curve, PoolCurve)
    assert curve.labelled.shape == (23,)
    assert np.unique(curve.labelled).size == 23
    assert sum(len(rows) for rows in labels.rows) == 23  # label_fn never asked twice
    np.testing.assert_array_equal(np.concatenate(labels.rows), X[curve.labelled])
    np.testing.assert_array_equal(curve.y, smooth(X[curve.labelled]))
    # 5 random, then batches of 5, 5, 5 and a last one of 3; one fit per round
    assert curve.n_labels == [5, 10, 15, 20, 23]
    assert [c.size for c in curve.chosen] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(curve.chosen), curve.labelled)
    assert len(curve.fit_seconds) == 5 and all(s >= 0 for s in curve.fit_seconds)
    assert curve.rmse == [] and curve.coverage_90 == []


def test_rmse_goes_down_on_a_smooth_function():
    curve = pool_loop(pool(120), smooth, small_gp(), MaxVariance(), batch_size=4, budget=24,
                      test=TEST, rng=0)
    assert len(curve.rmse) == len(curve.n_labels) == len(curve.coverage_90)
    assert curve.rmse[-1] < 0.5 * curve.rmse[0]
    assert curve.rmse[-1] < 0.05  # amplitude 1: the surrogate has learned the function
    assert all(0.0 <= c <= 1.0 for c in curve.coverage_90)


def test_initial_design_size_and_seed_determinism():
    first = pool_loop(pool(), smooth, small_gp(), Random(), batch_size=3, budget=12,
                      initial=6, test=TEST, rng=7)
    again = pool_loop(pool(), smooth, small_gp(), Random(), batch_size=3, budget=12,
                      initial=6, test=TEST, rng=np.random.default_rng(7))
    other = pool_loop(pool(), smooth, small_gp(), Random(), batch_size=3, budget=12,
                      initial=6, rng=8)
    assert first.n_labels == [6, 9, 12]
    np.testing.assert_array_equal(first.labelled, again.labelled)
    assert first.rmse == again.rmse
    assert not np.array_equal(np.sort(first.labelled), np.sort(other.labelled))


def test_on_round_sees_each_fit():
    seen = []
    pool_loop(pool(), smooth, small_gp(), Random(), batch_size=4, budget=12, rng=0,
              on_round=lambda index, curve: seen.append((index, curve.n_labels[-1])))
    assert seen == [(0, 4), (1, 8), (2, 12)]


def test_budget_equal_to_initial_fits_once():
    curve = pool_loop(pool(), smooth, small_gp(), MaxVariance(), batch_size=8, budget=8, rng=0)
    assert curve.n_labels == [8] and len(curve.chosen) == 1


@pytest.mark.parametrize(
    ("changes", "argument"),
    [
        ({"budget": 81}, "budget"),
        ({"budget": 0}, "budget"),
        ({"batch_size": 0}, "batch_size"),
        ({"initial": 30}, "initial"),
        ({"test": (np.zeros((3, 2)), np.zeros(4))}, "test"),
        ({"label_fn": lambda X: np.zeros(len(X) + 1)}, "label_fn"),
        ({"label_fn": lambda X: np.full(len(X), np.nan)}, "label_fn"),
    ],
)
def test_bad_arguments_name_the_argument(changes, argument):
    arguments = dict(X_pool=pool(), label_fn=smooth, learner=small_gp(), acquisition=Random(),
                     batch_size=4, budget=20)
    arguments.update(changes)
    with pytest.raises(ValueError, match=argument):
        pool_loop(**arguments)


def test_an_acquisition_choosing_a_labelled_point_is_refused():
    class Repeats:
        def select(self, posterior, k, pending, rng):
            return np.zeros(k, dtype=np.int64)

    with pytest.raises(ValueError, match="acquisition"):
        pool_loop(pool(), smooth, small_gp(), Repeats(), batch_size=3, budget=9, rng=0)


# -- defaults -------------------------------------------------------------------------


def test_default_learner_is_a_fresh_default_scalable_gp():
    first, second = default_learner(), default_learner()
    assert isinstance(first, Learner) and isinstance(first, ScalableGP)
    assert first.get_params() == ScalableGP().get_params()
    assert first is not second


def test_default_acquisition_is_a_fresh_explore_over_integrated_variance():
    first, second = default_acquisition(), default_acquisition()
    assert isinstance(first, Acquisition) and isinstance(first, Explore)
    assert isinstance(first.base, IntegratedVariance) and first.fraction == 0.3
    assert first is not second and first.base is not second.base
    assert "Explore" in (default_acquisition.__doc__ or "")


def promotion(**changes):
    fields = dict(source="coarse", target="fine", features=lambda x: x, batch_size=4)
    fields.update(changes)
    return Promotion(**fields)


def test_a_promotion_without_learner_or_acquisition_uses_the_defaults():
    bare = promotion()
    assert isinstance(bare.learner, ScalableGP)
    assert bare.learner.get_params() == ScalableGP().get_params()
    assert isinstance(bare.acquisition, Explore)
    explicit_none = promotion(learner=None, acquisition=None)
    assert isinstance(explicit_none.learner, ScalableGP)
    assert isinstance(explicit_none.acquisition, Explore)
    assert promotion().learner is not bare.learner  # never shared between promotions


def test_a_promotion_that_names_them_keeps_them():
    learner, policy = ExactGP(kernel="rbf"), MaxVariance()
    named = promotion(learner=learner, acquisition=policy)
    assert named.learner is learner and named.acquisition is policy
    by_name = promotion(learner="exact_gp", acquisition="random")
    assert isinstance(by_name.acquisition, Random)
    assert repr(named.learner) == "ExactGP(kernel='rbf')"
