"""LocalOutlier's incremental LOF: the same picks and scores as refitting scikit-learn's
LocalOutlierFactor after every pick, ties decided by position, and less work per pick."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import LocalOutlierFactor

from learners.acquisition import LocalOutlier, acquisition_by_name
from learners.acquisition.distance import _features
from learners.acquisition.outlier import _OutlierScorer, _RefitOutlierScorer
from learners.posterior import SampledPosterior

NONE = np.empty(0, dtype=np.int64)


def posterior(X: np.ndarray, train: np.ndarray) -> SampledPosterior:
    """A posterior that carries only what LocalOutlier reads: the points and training inputs."""
    return SampledPosterior(np.zeros((2, len(X))), 0.0, X=X, X_train=train, gaussian=True)


def with_duplicates(rng: np.random.Generator, n: int, m: int, d: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Random points and training inputs with repeated points, points equal to training
    inputs and repeated training rows."""
    X = rng.standard_normal((n, d))
    train = rng.standard_normal((m, d))
    X[40:60] = X[:20]
    X[60:60 + min(m, 10)] = train[:10]
    return X, np.vstack([train, train[:5]])


@pytest.mark.parametrize("seed", range(8))
def test_same_picks_as_refitting_every_pick(seed):
    # k fixed at n_neighbors (more known points than neighbours), 2-6 features: no exact
    # LOF ties between the most outlying points (in 1-D, points between the same
    # neighbours often tie exactly; the next test covers ties).
    rng = np.random.default_rng(seed)
    d = 2 + seed % 5
    X, train = with_duplicates(rng, 1500, int(rng.integers(40, 200)), d)
    pending = np.unique(rng.choice(len(X), size=seed, replace=False))
    n_neighbors = int(rng.integers(2, 25))
    post = posterior(X, train)
    new = LocalOutlier(n_neighbors).select(post, 32, pending, np.random.default_rng(0))
    new_scores = LocalOutlier(n_neighbors)
    new_scores.select(post, 32, pending, np.random.default_rng(0))
    old = LocalOutlier(n_neighbors, incremental=False)
    np.testing.assert_array_equal(new, old.select(post, 32, pending, np.random.default_rng(0)))
    np.testing.assert_allclose(new_scores.chosen_score_, old.chosen_score_, rtol=1e-12)
    assert len(set(new.tolist())) == 32 and not set(new.tolist()) & set(pending.tolist())


@pytest.mark.parametrize("seed", range(12))
def test_scores_match_refit_while_the_known_set_grows(seed):
    # From 0-40 known points: the distance fallback (< 3), a growing k, then a fixed k.
    # Both scorers are driven by the reference's picks; every score agrees to round-off,
    # and where the argmax differs the reference's two scores tie to round-off (with
    # k = m - 1 interior points have exactly the same LOF, and the refit decides by
    # rounding where the incremental scorer takes the lowest position).
    rng = np.random.default_rng(100 + seed)
    d = 1 + seed % 4
    X, train = with_duplicates(rng, 300, int(rng.integers(0, 40)), d)
    if seed % 3 == 0:
        train = train[:0]
    n_neighbors = int(rng.integers(1, 25))
    post = posterior(X, train)
    new, old = _OutlierScorer(post, NONE, n_neighbors), _RefitOutlierScorer(post, NONE,
                                                                             n_neighbors)
    blocked = np.zeros(len(X), dtype=bool)
    for _ in range(40):
        a, b = new.scores(), old.scores()
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        pick_new = int(np.argmax(np.where(blocked, -np.inf, a)))
        pick_old = int(np.argmax(np.where(blocked, -np.inf, b)))
        if pick_new != pick_old:
            assert b[pick_new] == pytest.approx(b[pick_old], rel=1e-12)
            assert pick_new < pick_old or a[pick_new] > a[pick_old]
        blocked[pick_old] = True
        new.add(pick_old)
        old.add(pick_old)


def test_scores_are_scikit_learns_lof():
    rng = np.random.default_rng(7)
    X, train = rng.standard_normal((500, 3)), rng.standard_normal((80, 3))
    post = posterior(X, train)
    points, known = _features(post, "LocalOutlier")
    lof = LocalOutlierFactor(n_neighbors=15, novelty=True).fit(known)
    np.testing.assert_allclose(_OutlierScorer(post, NONE, 15).scores(),
                               -lof.score_samples(points), rtol=1e-12)


def test_updates_equal_a_rebuild_on_a_lattice_with_ties():
    # Integer lattice: many equal distances. The incremental lists follow the rule
    # "earlier known point first", so after each pick they equal a scorer built from
    # scratch with the chosen points as pending ones, to the bit.
    grid = np.stack(np.meshgrid(np.arange(12.0), np.arange(12.0)), -1).reshape(-1, 2)
    train = grid[(grid[:, 0] < 5) & (grid[:, 1] < 5)]
    post = posterior(grid, train)
    scorer = _OutlierScorer(post, NONE, 8)
    chosen: list[int] = []
    for _ in range(20):
        scores = scorer.scores()
        free = np.ones(len(grid), dtype=bool)
        free[chosen] = False
        pick = int(np.argmax(np.where(free, scores, -np.inf)))
        chosen.append(pick)
        scorer.add(pick)
        rebuilt = _OutlierScorer(post, np.array(chosen), 8)  # pending in pick order
        np.testing.assert_array_equal(scorer.scores(), rebuilt.scores())
    assert len(set(chosen)) == 20


def test_a_duplicate_pick_changes_nothing_and_a_new_one_updates_a_few_scores():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20_000, 4))
    train = rng.standard_normal((300, 4))
    X[5] = train[0]
    scorer = _OutlierScorer(posterior(X, train), NONE, 20)
    before = scorer.scores().copy()
    scorer.add(5)  # equal to a training input: the distinct known points are the same
    assert scorer.n_updated == 0
    np.testing.assert_array_equal(scorer.scores(), before)
    scorer.add(int(np.argmax(before)))
    assert 0 < scorer.n_updated < len(X) // 10  # only the affected points are rescored


def test_few_known_points_fall_back_to_distance():
    X = np.array([[0.0], [1.0], [5.0], [5.5]])
    chosen = LocalOutlier().select(posterior(X, np.array([[0.0]])), 3, NONE,
                                   np.random.default_rng(0))
    reference = LocalOutlier(incremental=False).select(posterior(X, np.array([[0.0]])), 3,
                                                       NONE, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, reference)
    assert chosen[0] == 3  # farthest from the only known point


def test_parameters_and_repr():
    assert repr(LocalOutlier()) == "LocalOutlier(n_neighbors=20)"
    assert repr(LocalOutlier(5, incremental=False)) == (
        "LocalOutlier(n_neighbors=5, incremental=False)")
    assert not acquisition_by_name("local_outlier", incremental=False).incremental
    with pytest.raises(ValueError, match="incremental"):
        LocalOutlier(incremental="yes")
    with pytest.raises(ValueError, match="n_neighbors"):
        LocalOutlier(n_neighbors=0)
