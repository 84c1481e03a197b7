"""Variance policies: :class:`MaxVariance` and :class:`IntegratedVariance` (also for
posteriors observed through gradients)."""

from __future__ import annotations

import logging
import math

import numpy as np

from learners.acquisition.base import (
    Fantasies,
    GreedyAcquisition,
    Scorer,
    check_request,
)
from learners.acquisition.blocked import blocked_max_variance
from learners.posterior import Posterior

logger = logging.getLogger(__name__)


class _VarianceScorer:
    def __init__(self, posterior: Posterior, pending: np.ndarray, capacity: int):
        self.fantasies = Fantasies(posterior, pending.size + capacity)
        self.fantasies.add_many(pending)

    def scores(self) -> np.ndarray:
        return self.fantasies.variance

    def add(self, position: int) -> None:
        self.fantasies.add(position)


class MaxVariance(GreedyAcquisition):
    """Greedy batch of maximum posterior variance, conditioning on each pick.

    First every pending point is fantasized as an observation with noise
    ``posterior.noise_variance`` (see :class:`Fantasies`); then the point of largest
    conditioned variance is chosen and fantasized, k times. Ties go to the lowest
    position; no randomness is used.

    Large pools: when ``posterior.n > exact_limit`` and the posterior offers
    ``variance_upper_bound()`` and ``subset(rows)`` (as
    :class:`~learners.posterior.GaussianProcessPosterior` does), the exact greedy runs on
    the ``prefilter`` non-pending points of largest variance *bound* (for a GP: nearest
    training point far away in length-scale units) plus the pending ones. Conditioned
    variances never exceed the unconditioned ones, so a pick whose conditioned variance is
    at least the largest bound left outside the prefilter (bounds tightened by the pending
    and earlier picks) is the exact greedy pick over the whole pool: ``certified_``
    reports whether every pick had that certificate. Memory of the prefiltered path:
    ``O(prefilter * (m + k))`` for m training points plus ``O(n)``.

    The greedy itself takes several picks per conditioning step
    (:func:`~learners.acquisition.blocked.blocked_max_variance`): the same picks as one
    rank-one update per pick, in matrix-matrix products.

    Args:
        prefilter: number of candidates first kept by the bound (at least ``2 k``).
        exact_limit: pools up to this size are scored exactly without a prefilter.
        max_growth: if a pick is not certified, up to this many times add the
            ``prefilter`` left-out points of largest bound (tightened by the batch so far,
            so they come from other regions) and recompute; None grows until certified
            (exact, time then unbounded). The default 0 keeps time and memory bounded;
            ``certified_`` then says whether the batch is provably exact.
        certify_limit: largest number of (left-out point, pending or chosen point) kernel
            values spent on the certificate; above it the batch is reported not certified
            without checking (large k over a large pool). None: no limit (always so when
            ``max_growth`` is None).

    Attributes:
        chosen_variance_: (k,) float64 conditioned variance of each chosen point at the
            moment it was chosen (y units squared), set by the last ``select``.
        certified_: True when the last batch is provably the exact greedy batch (always
            True without the prefilter).
        n_scored_: number of points whose exact variance the last ``select`` computed.
    """

    def __init__(self, prefilter: int = 10_000, exact_limit: int = 20_000,
                 max_growth: int | None = 0, certify_limit: int | None = 10**8):
        for name, value in (("prefilter", prefilter), ("exact_limit", exact_limit)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if max_growth is not None and (int(max_growth) != max_growth or max_growth < 0):
            raise ValueError(f"max_growth must be an integer >= 0 or None, got {max_growth!r}")
        self.prefilter = int(prefilter)
        self.exact_limit = int(exact_limit)
        self.max_growth = 10**9 if max_growth is None else int(max_growth)
        if certify_limit is not None and (int(certify_limit) != certify_limit
                                          or certify_limit < 0):
            raise ValueError(f"certify_limit must be an integer >= 0 or None, "
                             f"got {certify_limit!r}")
        self.certify_limit = (None if certify_limit is None or max_growth is None
                              else int(certify_limit))

    def __repr__(self) -> str:
        return "MaxVariance()"

    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """Conditioned variance (y units squared)."""
        return _VarianceScorer(posterior, pending, capacity=16)

    @property
    def chosen_variance_(self) -> np.ndarray:
        """Alias of ``chosen_score_``: the conditioned variance of each pick."""
        return self.chosen_score_

    def _greedy(self, posterior: Posterior, k: int, pending: np.ndarray) -> np.ndarray:
        """The greedy batch over all of ``posterior`` (sets ``chosen_score_``): the picks
        of the shared rank-one loop, taken several per step
        (:func:`~learners.acquisition.blocked.blocked_max_variance`)."""
        take = min(k, posterior.n - pending.size)
        chosen, self.chosen_score_ = blocked_max_variance(posterior, take, pending)
        return chosen

    def select(
        self, posterior: Posterior, k: int, pending: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Greedy conditioned-max-variance batch: up to k int64 positions, in pick order."""
        k, pending = check_request(posterior, k, pending)
        large = posterior.n > self.exact_limit
        if not (large and hasattr(posterior, "variance_upper_bound")
                and hasattr(posterior, "subset")):
            chosen = self._greedy(posterior, k, pending)
            self.certified_, self.n_scored_ = True, posterior.n
            return chosen
        bound = np.asarray(posterior.variance_upper_bound(), dtype=np.float64)
        bound[pending] = -np.inf
        free = posterior.n - pending.size
        size = min(max(self.prefilter, 2 * k), free)
        kept = np.zeros(posterior.n, dtype=bool)
        kept[np.argpartition(-bound, size - 1)[:size] if size < free
             else np.flatnonzero(np.isfinite(bound))] = True
        for attempt in range(1 + self.max_growth):
            rows = np.concatenate([np.flatnonzero(kept), pending])
            local = self._greedy(posterior.subset(rows), k, np.arange(kept.sum(), rows.size))
            chosen, scores = rows[local], self.chosen_score_
            # Points left out that might beat a pick: tighten their bounds with the
            # fantasized pending and chosen points, step by step.
            outside = np.flatnonzero(~kept & np.isfinite(bound)
                                     & (bound > float(scores.min(initial=np.inf))))
            if outside.size == 0:
                certified = True
                break
            given = np.concatenate([pending, chosen])
            if self.certify_limit is not None and outside.size * given.size > (
                    self.certify_limit):
                logger.info("max-variance certificate skipped: %d left-out points x %d "
                            "given ones", outside.size, given.size)
                certified = False
                break
            steps = np.full(len(chosen), -np.inf)
            final = np.empty(outside.size)
            for start in range(0, outside.size, 20_000):  # bounded memory: 20,000 x (m + k)
                block = outside[start:start + 20_000]
                tight = posterior.variance_upper_bound(block, given=given, base=bound[block])
                picks = tight[:, pending.size:pending.size + len(chosen)]
                np.maximum(steps, picks.max(axis=0, initial=-np.inf), out=steps)
                final[start:start + 20_000] = tight[:, -1]
            certified = bool(np.all(scores >= steps))
            if certified or kept.sum() >= free or attempt == self.max_growth:
                break
            logger.info("max-variance prefilter of %d not certified; growing it", kept.sum())
            extra = min(self.prefilter, outside.size)
            order = np.argpartition(-final, extra - 1)[:extra]
            kept[outside[order]] = True
        self.certified_, self.n_scored_ = certified, int(rows.size)
        return chosen


def _spread_subset(X: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of ``size`` rows of X chosen by farthest-point thinning (z-scored columns),
    starting from a random row: a space-filling sample of the rows' support."""
    scale = X.std(axis=0)
    scale[scale <= 1e-12] = 1.0
    Z = X / scale
    chosen = [int(rng.integers(len(Z)))]
    distance = np.linalg.norm(Z - Z[chosen[0]], axis=1)
    for _ in range(size - 1):
        chosen.append(int(np.argmax(distance)))
        np.minimum(distance, np.linalg.norm(Z - Z[chosen[-1]], axis=1), out=distance)
    return np.array(chosen, dtype=np.int64)


def _reference_points(posterior: Posterior, pending: np.ndarray, rng: np.random.Generator,
                      n_reference: int | None, reference: str, below: float | None
                      ) -> tuple[np.ndarray, float]:
    """Pool points the variance is integrated over, and the weight that scales their sum
    to the whole (non-pending, and with ``below`` low-mean) pool."""
    free = np.setdiff1d(np.arange(posterior.n, dtype=np.int64), pending)
    if below is not None and free.size:
        mean = posterior.mean[free]
        low = free[mean - mean.min() <= below]
        free = low if low.size >= 2 else free
    total = free.size
    if reference == "spread" and posterior.X is not None:
        size = free.size if n_reference is None else min(n_reference, free.size)
        free = np.sort(free[_spread_subset(posterior.X[free], size, rng)])
    elif n_reference is not None and free.size > n_reference:
        free = np.sort(rng.choice(free, size=n_reference, replace=False))
    # Summed over the reference sample, scaled to an estimate over the whole pool.
    return free, total / max(free.size, 1)


class _IntegratedVarianceScorer:
    def __init__(self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator,
                 n_reference: int | None, reference: str, below: float | None = None):
        self.fantasies = Fantasies(posterior, pending.size + 16)
        self.fantasies.add_many(pending)
        free, self.weight = _reference_points(posterior, pending, rng, n_reference,
                                              reference, below)
        self.reference = free
        self.cross = self.fantasies.conditioned(free)  # (n, s)

    def scores(self) -> np.ndarray:
        f = self.fantasies
        denominator = f.variance + f.noise
        total = np.einsum("ij,ij->i", self.cross, self.cross)
        out = np.zeros_like(total)
        ok = denominator > f.tolerance
        out[ok] = self.weight * total[ok] / denominator[ok]
        return out

    def add(self, position: int) -> None:
        update = self.fantasies.add(position)
        if update is not None:
            self.cross -= np.outer(update, update[self.reference])


class _AugmentedView:
    """The augmented functionals of a gradient posterior (F and dF/dx_j at every point,
    ``learners.gradient_gp.GradientGPPosterior``) seen as a posterior by :class:`Fantasies`."""

    def __init__(self, posterior: Posterior) -> None:
        self.base = posterior
        self.n = posterior.n_augmented
        self.variance = posterior.augmented_variance()
        self.noise_variance = float(np.mean(posterior.gradient_noise))

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        return self.base.augmented_covariance(np.asarray(columns, dtype=np.int64))


class _GradientIntegratedVarianceScorer:
    """Integrated variance of F when a point is observed through its gradient (an umbrella
    window measures dF/dx, d numbers, not F): the value of point x is the summed reduction
    ``trace(C_x S_x^-1 C_x^T)`` over the reference points, with ``C_x`` the conditioned
    covariances of F there with x's gradient components and ``S_x`` their conditioned
    covariance plus the window noise."""

    def __init__(self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator,
                 n_reference: int | None, reference: str, below: float | None = None):
        self.n, self.d = posterior.n, posterior.d
        self.noise = np.asarray(posterior.gradient_noise, dtype=np.float64)
        view = _AugmentedView(posterior)
        self.fantasies = Fantasies(view, self.d * (pending.size + 16))
        # Observed components of every point: (n, d) augmented positions.
        self.observed = self.n * (1 + np.arange(self.d))[None, :] + np.arange(self.n)[:, None]
        # Conditioned d x d covariance of each point's gradient components: (n, d, d).
        self.block = posterior.gradient_blocks()
        # Pending points at once: every gradient component of each, position-major.
        update = self.fantasies.add_many(self.observed[pending].reshape(-1),
                                         noise=np.tile(self.noise, pending.size))
        self._shrink_blocks(update)
        free, self.weight = _reference_points(posterior, pending, rng, n_reference,
                                              reference, below)
        self.reference = free
        self.cross = self.fantasies.conditioned(free)  # (N, s)

    def _shrink_blocks(self, update: np.ndarray, chunk: int = 4096) -> None:
        """Condition the per-point gradient blocks on the update columns (N, r)."""
        if update.shape[1] == 0:
            return
        for start in range(0, self.n, chunk):  # bounded memory: chunk x d x r
            u = update[self.observed[start:start + chunk]]  # (c, d, r)
            self.block[start:start + chunk] -= np.einsum("cir,cjr->cij", u, u)

    def _fantasize(self, position: int) -> list[np.ndarray]:
        updates = []
        for j, column in enumerate(self.observed[position]):
            update = self.fantasies.add(int(column), noise=self.noise[j])
            if update is not None:
                u = update[self.observed]  # (n, d)
                self.block -= u[:, :, None] * u[:, None, :]
                updates.append(update)
        return updates

    def scores(self) -> np.ndarray:
        C = self.cross[self.observed]  # (n, d, s)
        M = np.einsum("nis,njs->nij", C, C)
        S = self.block + np.diag(self.noise)[None]
        try:
            solved = np.linalg.solve(S, M)
        except np.linalg.LinAlgError:
            solved = np.linalg.lstsq(S.reshape(-1, self.d), M.reshape(-1, self.d))[0]
        return self.weight * np.maximum(np.trace(solved, axis1=1, axis2=2), 0.0)

    def add(self, position: int) -> None:
        for update in self._fantasize(position):
            self.cross -= np.outer(update, update[self.reference])


class IntegratedVariance(GreedyAcquisition):
    """Greedy integrated variance reduction over the candidate pool (the qNIPV idea).

    The value of a point x is how much observing it would reduce the summed posterior
    variance over the pool, given the pending and already chosen points (fantasized):

        value(x) = sum_j Cov(f_j, f_x)^2 / (v(x) + noise)

    with j over the non-pending points (the candidates, which lie where the coarse scale
    goes, so the reduction is weighted by the candidate density). If there are more than
    ``n_reference`` of them, j runs over a uniform subsample drawn with ``rng`` and the sum
    is scaled by the sampling fraction. Memory: one (n, n_reference) float64 matrix of
    conditioned covariances plus the rank-(m + k) factor; each pick costs
    ``O(n n_reference)``.

    With ``reference="spread"`` the sum runs instead over a space-filling subset of the
    pool (farthest-point thinning of ``posterior.X``, which must be set, else the random
    subsample is used): the variance is then integrated uniformly over the region the
    pool covers rather than weighted by the pool's density, which targets a uniform error
    metric instead of a pool-weighted one.

    Gradient observations: when the posterior says ``observes_gradients`` (a
    ``learners.GradientGP`` of a free energy learned from umbrella windows), observing a
    point measures the d components of dF/dx there with the windows' typical noise, not F;
    pending and chosen points are fantasized as such, and the value of a point is the
    summed reduction of F's variance over the reference points, ``trace(C S^-1 C^T)``
    with C the covariances of F there with the point's gradient components and S their
    covariance plus noise. Memory: ``(1 + d) n x n_reference`` floats.

    Args:
        n_reference: largest number of pool points the reduction is summed over, or None
            for all of them.
        reference: ``"random"`` (pool-weighted) or ``"spread"`` (uniform over the pool's
            support).
        below: if given (y units), integrate only over pool points whose posterior mean is
            within ``below`` of the pool's lowest mean: error matters where the quantity
            is low, e.g. the basins of a free-energy surface (kJ/mol).
    """

    def __init__(self, n_reference: int | None = 512, reference: str = "random",
                 below: float | None = None):
        if n_reference is not None and (int(n_reference) != n_reference or n_reference < 1):
            raise ValueError(f"n_reference must be an integer >= 1 or None, got {n_reference!r}")
        if reference not in ("random", "spread"):
            raise ValueError(f"reference must be 'random' or 'spread', got {reference!r}")
        if below is not None and not (math.isfinite(below) and below > 0):
            raise ValueError(f"below must be > 0 or None, got {below!r}")
        self.n_reference = n_reference
        self.reference = reference
        self.below = None if below is None else float(below)
        self._params = {"n_reference": n_reference, "reference": reference}
        if below is not None:
            self._params["below"] = self.below

    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """Estimated reduction of the pool's summed variance (y units squared)."""
        if getattr(posterior, "observes_gradients", False):
            return _GradientIntegratedVarianceScorer(posterior, pending, rng,
                                                     self.n_reference, self.reference,
                                                     self.below)
        return _IntegratedVarianceScorer(posterior, pending, rng, self.n_reference,
                                         self.reference, self.below)


