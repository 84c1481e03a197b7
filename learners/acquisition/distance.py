"""MuMMI-style farthest-point sampling in feature space."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from learners.acquisition.base import (
    GreedyAcquisition,
    Scorer,
)
from learners.posterior import Posterior


def _features(posterior: Posterior, policy: str) -> tuple[np.ndarray, np.ndarray]:
    """(points, training points) z-scored by the spread of all of them together."""
    if posterior.X is None:
        raise ValueError(
            f"{policy} needs feature vectors: the posterior has no X (set Posterior.X)"
        )
    X = posterior.X
    train = posterior.X_train if posterior.X_train is not None else np.empty((0, X.shape[1]))
    both = np.vstack([X, train])
    scale = both.std(axis=0)
    scale[scale <= 1e-12] = 1.0
    offset = both.mean(axis=0)
    return (X - offset) / scale, (train - offset) / scale


class _DistanceScorer:
    def __init__(self, posterior: Posterior, pending: np.ndarray, chunk: int = 4096):
        X, train = _features(posterior, "FarthestPoint")
        self.X = X
        n = len(X)
        self.distance = np.full(n, np.inf)
        known = np.vstack([train, X[pending]])
        for start in range(0, len(known), chunk):
            block = known[start : start + chunk]
            self.distance = np.minimum(self.distance, cdist(X, block).min(axis=1))
        if not np.isfinite(self.distance).any():
            # Nothing known yet: start from the point farthest from the centre.
            self.distance = np.linalg.norm(X - X.mean(axis=0), axis=1)
            self.fresh = True
        else:
            self.fresh = False

    def scores(self) -> np.ndarray:
        return self.distance

    def add(self, position: int) -> None:
        to_new = np.linalg.norm(self.X - self.X[position], axis=1)
        self.distance = to_new if self.fresh else np.minimum(self.distance, to_new)
        self.fresh = False


class FarthestPoint(GreedyAcquisition):
    """MuMMI-style farthest-point sampling in feature space.

    Each pick is the point whose Euclidean distance to the nearest known point (training
    inputs ``posterior.X_train``, pending and already chosen points) is largest. Features
    (``posterior.X``) are z-scored per column over points and training inputs together,
    so no column dominates by its units. Uses no model output at all: the anchor rule.
    Memory ``O(n)`` besides the features; each pick costs ``O(n d)``.

    Raises:
        ValueError: the posterior has no ``X``.
    """

    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """Distance to the nearest known point (z-scored feature units)."""
        return _DistanceScorer(posterior, pending)


