"""DeepDriveMD-style local-outlier-factor novelty, incremental or refitted per pick."""

from __future__ import annotations

import logging

import numpy as np
from scipy.spatial.distance import cdist

from learners.acquisition.base import (
    GreedyAcquisition,
    Scorer,
)
from learners.acquisition.distance import _features
from learners.posterior import Posterior

logger = logging.getLogger(__name__)


class _RefitOutlierScorer:
    """Reference LOF scorer: scikit-learn's ``LocalOutlierFactor`` refitted after every pick."""

    def __init__(self, posterior: Posterior, pending: np.ndarray, n_neighbors: int):
        X, train = _features(posterior, "LocalOutlier")
        self.X = X
        self.known = np.vstack([train, X[pending]])
        self.n_neighbors = n_neighbors
        self._scores: np.ndarray | None = None

    def scores(self) -> np.ndarray:
        if self._scores is None:
            self._scores = self._novelty()
        return self._scores

    def _novelty(self) -> np.ndarray:
        from sklearn.neighbors import LocalOutlierFactor

        known = np.unique(self.known, axis=0)
        if len(known) < 3:  # LOF needs a few neighbours: fall back to distance
            if len(known) == 0:
                return np.linalg.norm(self.X - self.X.mean(axis=0), axis=1)
            return cdist(self.X, known).min(axis=1)
        lof = LocalOutlierFactor(n_neighbors=min(self.n_neighbors, len(known) - 1), novelty=True)
        lof.fit(known)
        return -lof.score_samples(self.X)  # the LOF itself: ~1 inlier, >> 1 outlier

    def add(self, position: int) -> None:
        self.known = np.vstack([self.known, self.X[position]])
        self._scores = None


def _nearest(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest entries of each row of D: (distances, columns), both (rows, k),
    sorted by distance, ties broken by the lower column."""
    columns = np.argpartition(D, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(D, columns, axis=1).max(axis=1)
    # Where the k-th distance is tied with a column left out, the lowest columns win.
    tied = np.flatnonzero((D <= kth[:, None]).sum(axis=1) > k)
    if tied.size:
        columns[tied] = np.argsort(D[tied], axis=1, kind="stable")[:, :k]
    distances = np.take_along_axis(D, columns, axis=1)
    order = np.lexsort((columns, distances), axis=-1)
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(columns, order, axis=1)


def _by_column(distances: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour lists in column order: means then sum in one order for equal neighbour
    sets, so mathematically tied scores are equal to the bit (and the lowest position wins)."""
    order = np.argsort(columns, axis=1)
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(columns, order, axis=1)


def _insert(distances: np.ndarray, columns: np.ndarray, new_distance: np.ndarray,
            new_column: int) -> tuple[np.ndarray, np.ndarray]:
    """Insert one neighbour into sorted rows whose k-th distance it beats (ties: after)."""
    place = (distances <= new_distance[:, None]).sum(axis=1)[:, None]
    slot = np.arange(distances.shape[1])[None, :]
    shifted_d = np.concatenate([distances[:, :1], distances[:, :-1]], axis=1)
    shifted_c = np.concatenate([columns[:, :1], columns[:, :-1]], axis=1)
    return (np.where(slot < place, distances, np.where(slot == place, new_distance[:, None],
                                                        shifted_d)),
            np.where(slot < place, columns, np.where(slot == place, new_column, shifted_c)))


class _OutlierScorer:
    """scikit-learn's novelty LOF of every point against the distinct known points,
    updated exactly when one point becomes known instead of refitted.

    With k = min(n_neighbors, m - 1) for m distinct known points: the reachability
    distance of a point to a known neighbour j is ``max(d, k_distance(j))``; ``lrd`` is
    ``1 / (mean reachability distance over its k nearest + 1e-10)``, and a point's LOF
    the mean of its neighbours' lrd over its own (the formulas of
    ``LocalOutlierFactor(novelty=True).score_samples``). A new known point p changes only
    the k-neighbour lists it enters (rows with ``d(., p) < k-distance``), the lrd of p,
    of those known rows and of known rows with such a neighbour whose k-distance moved,
    and the LOF of points whose list p entered or that have a neighbour with a new lrd or
    k-distance: those are recomputed, nothing else. Distance ties go to the earlier known
    point (training rows, then pending, then chosen, in order); a point equal to a known
    one adds nothing (LOF is over distinct points). While k still grows (m <= n_neighbors)
    everything is recomputed.
    """

    def __init__(self, posterior: Posterior, pending: np.ndarray, n_neighbors: int,
                 chunk: int = 4096):
        X, train = _features(posterior, "LocalOutlier")
        self.X = X + 0.0  # -0.0 -> 0.0: equal values, equal bytes
        self.n_neighbors = n_neighbors
        self.chunk = chunk
        known = np.vstack([train + 0.0, self.X[pending]])
        _, first = np.unique(known, axis=0, return_index=True)
        self.known = known[np.sort(first)]
        self._keys = {row.tobytes() for row in self.known}
        self._rebuild()

    def scores(self) -> np.ndarray:
        return self._scores

    def _rebuild(self) -> None:
        m = len(self.known)
        self.n_updated = len(self.X)  # scores recomputed by the last rebuild or add
        self.k = min(self.n_neighbors, m - 1)
        if m < 3:  # LOF needs a few neighbours: fall back to distance
            self._scores = (np.linalg.norm(self.X - self.X.mean(axis=0), axis=1) if m == 0
                            else cdist(self.X, self.known).min(axis=1))
            return
        known_d, known_c = [], []
        for start in range(0, m, self.chunk):
            D = cdist(self.known[start:start + self.chunk], self.known)
            D[np.arange(len(D)), np.arange(start, start + len(D))] = np.inf  # not itself
            d, c = _nearest(D, self.k)
            known_d.append(d)
            known_c.append(c)
        self.known_d, self.known_c = np.vstack(known_d), np.vstack(known_c)
        self.lrd = self._density(self.known_d, self.known_c)
        point_d, point_c = [], []
        for start in range(0, len(self.X), self.chunk):
            d, c = _nearest(cdist(self.X[start:start + self.chunk], self.known), self.k)
            point_d.append(d)
            point_c.append(c)
        self.point_d, self.point_c = np.vstack(point_d), np.vstack(point_c)
        self._scores = self._factor(self.point_d, self.point_c)

    def _density(self, distances: np.ndarray, columns: np.ndarray) -> np.ndarray:
        distances, columns = _by_column(distances, columns)
        reach = np.maximum(distances, self.known_d[columns, -1])
        return 1.0 / (np.mean(reach, axis=1) + 1e-10)

    def _factor(self, distances: np.ndarray, columns: np.ndarray) -> np.ndarray:
        density = self._density(distances, columns)
        _, columns = _by_column(distances, columns)
        return np.mean(self.lrd[columns] / density[:, None], axis=1)

    def add(self, position: int) -> None:
        point = self.X[position]
        key = point.tobytes()
        if key in self._keys:  # already known: the distinct known points do not change
            self.n_updated = 0
            return
        self._keys.add(key)
        m = len(self.known)
        self.known = np.vstack([self.known, point])
        if m < 3 or m <= self.n_neighbors:  # fallback or a growing k: start over
            self._rebuild()
            return
        k = self.k
        # cdist, as in _rebuild: the same distances to the bit, so updates equal a rebuild.
        to_known = cdist(self.known[:m], point[None, :])[:, 0]
        own_d, own_c = _nearest(to_known[None, :], k)
        old_kdist = self.known_d[:, -1].copy()
        enters = np.flatnonzero(to_known < old_kdist)
        self.known_d[enters], self.known_c[enters] = _insert(
            self.known_d[enters], self.known_c[enters], to_known[enters], m)
        self.known_d = np.vstack([self.known_d, own_d])
        self.known_c = np.vstack([self.known_c, own_c])
        moved = np.zeros(m + 1, dtype=bool)
        moved[enters[self.known_d[enters, -1] != old_kdist[enters]]] = True
        stale = moved[self.known_c].any(axis=1)  # a neighbour's k-distance moved
        stale[enters] = True
        stale[m] = True
        self.lrd = np.append(self.lrd, 0.0)
        rows = np.flatnonzero(stale)
        self.lrd[rows] = self._density(self.known_d[rows], self.known_c[rows])
        to_point = cdist(self.X, point[None, :])[:, 0]
        gains = to_point < self.point_d[:, -1]
        entering = np.flatnonzero(gains)
        self.point_d[entering], self.point_c[entering] = _insert(
            self.point_d[entering], self.point_c[entering], to_point[entering], m)
        # moved and the lists p entered are within stale.
        update = np.flatnonzero(gains | stale[self.point_c].any(axis=1))
        self._scores = self._scores.copy()
        self._scores[update] = self._factor(self.point_d[update], self.point_c[update])
        self.n_updated = int(update.size)
        logger.debug("LocalOutlier add: %d known lists, %d lrd, %d scores updated",
                     enters.size, rows.size, update.size)


class LocalOutlier(GreedyAcquisition):
    """DeepDriveMD-style novelty: largest local outlier factor in feature space.

    The local outlier factor of scikit-learn's ``LocalOutlierFactor(novelty=True)``
    relative to the distinct known points (training inputs ``posterior.X_train``, pending
    and already chosen points) scores every point; the most outlying is picked and becomes
    known before the next pick, so a batch does not pile up in one novel region (diversity
    by conditioning on pending and chosen points). Features are z-scored as in
    :class:`FarthestPoint`. With fewer than 3 distinct known points the score is the
    distance to the nearest one.

    By default (``incremental=True``) the LOF is updated after each pick, recomputing only
    the neighbour lists, densities and scores the new known point changes (see
    ``_OutlierScorer``): the first pick costs one k-neighbour search of the n points among
    the m known ones (brute force, ``O(n m d)``), each later pick ``O(n (d + k))``. The
    same picks as refitting, except that distance ties go to the earlier known point where
    scikit-learn's tree decides them its own way. ``incremental=False`` refits
    scikit-learn's LOF on m + k points and queries the n points at every pick (the
    reference, kept for comparison).

    Args:
        n_neighbors: LOF neighbourhood size (capped at the known points minus one).
        incremental: update the LOF per pick (True) or refit scikit-learn's (False).

    Raises:
        ValueError: the posterior has no ``X``.
    """

    def __init__(self, n_neighbors: int = 20, incremental: bool = True):
        if int(n_neighbors) != n_neighbors or n_neighbors < 1:
            raise ValueError(f"n_neighbors must be an integer >= 1, got {n_neighbors!r}")
        if not isinstance(incremental, (bool, np.bool_)):
            raise ValueError(f"incremental must be True or False, got {incremental!r}")
        self.n_neighbors = int(n_neighbors)
        self.incremental = bool(incremental)
        self._params = {"n_neighbors": self.n_neighbors}
        if not self.incremental:
            self._params["incremental"] = False

    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """Local outlier factor relative to known points (~1 inlier, larger = novel)."""
        if self.incremental:
            return _OutlierScorer(posterior, pending, self.n_neighbors)
        return _RefitOutlierScorer(posterior, pending, self.n_neighbors)


