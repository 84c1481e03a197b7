"""Acquisition policies: pick which candidates the expensive scale computes next.

A policy sees only a :class:`~learners.posterior.Posterior` (never the model) over the
points ``[candidates..., pending...]`` and the positions of the pending points (submitted,
not yet labelled). Batches are chosen greedily with pending points fantasized, as in
BoTorch, not as a naive top-k.

Every policy except :class:`Random` is a :class:`GreedyAcquisition`: its
:meth:`~GreedyAcquisition.scorer` returns a :class:`Scorer` that is first conditioned on
the pending points, then asked for ``scores()`` (one value per point, higher is better)
and told ``add(position)`` after each pick. The shared greedy loop takes the argmax among
points not pending and not yet chosen (ties: lowest position). Wrappers such as
:class:`CostAware` compose by wrapping another policy's scorer.

Policies and where they come from:

- :class:`MaxVariance`: largest posterior variance, conditioned on pending and chosen.
- :class:`IntegratedVariance`: largest reduction of the summed posterior variance over
  the candidate pool (the qNIPV idea).
- :class:`UpperConfidenceBound`, :class:`ExpectedImprovement`: extremes (rare events).
- :class:`TrustWindow`: DP-GEN, model deviation between a lower and an upper bound.
- :class:`FarthestPoint`: MuMMI-style farthest-point sampling in feature space.
- :class:`LocalOutlier`: DeepDriveMD-style local-outlier-factor novelty.
- :class:`CostAware`: any of the above, value divided by the simulation cost.

Candidates 0-4 at 0.1, 0.5, 2.0, 2.1 and 4.0 of a GP trained on [0, 0.6]: max variance
takes the farthest first, and a pending candidate is never chosen again:

    >>> import numpy as np
    >>> from learners import ExactGP
    >>> X = np.array([[0.0], [0.2], [0.4], [0.6]])
    >>> posterior = ExactGP().fit(X, np.sin(3 * X[:, 0])).posterior(
    ...     np.array([[0.1], [0.5], [2.0], [2.1], [4.0]]))
    >>> rng = np.random.default_rng(0)
    >>> MaxVariance().select(posterior, 2, np.array([], dtype=int), rng).tolist()
    [4, 3]
    >>> MaxVariance().select(posterior, 2, np.array([4]), rng).tolist()  # 4 is pending
    [3, 2]
"""

from __future__ import annotations

import logging
import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import ndtr

from learners.posterior import Posterior

__all__ = [
    "ACQUISITIONS",
    "Acquisition",
    "CostAware",
    "ExpectedImprovement",
    "FarthestPoint",
    "GreedyAcquisition",
    "IntegratedVariance",
    "LocalOutlier",
    "MaxVariance",
    "Random",
    "Scorer",
    "TrustWindow",
    "UpperConfidenceBound",
    "acquisition_by_name",
    "default_acquisition",
]

logger = logging.getLogger(__name__)


@runtime_checkable
class Acquisition(Protocol):
    """A batch selection policy.

    Contract of ``select(posterior, k, pending, rng)``:
        ``posterior`` is over n points; ``pending`` (m,) integer positions in ``[0, n)``
        already submitted but not labelled (may be empty, repeats ignored); ``k >= 1``.
        Returns up to k distinct int64 positions not in ``pending``, in selection order;
        fewer only when fewer than k non-pending points exist.
        Raises ``ValueError`` for ``k < 1`` or bad ``pending``.
    """

    def select(
        self, posterior: Posterior, k: int, pending: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray: ...


def check_request(posterior: Posterior, k: int, pending: np.ndarray) -> tuple[int, np.ndarray]:
    """Validate a ``select`` call; returns ``(k, sorted unique int64 pending)``.

    Raises:
        ValueError: ``k`` not an integer >= 1; ``pending`` not 1-D integers in ``[0, n)``.
    """
    try:
        k = operator.index(k)
    except TypeError as error:
        raise ValueError(f"k must be an integer >= 1, got {k!r}") from error
    if k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k}")
    pending = np.asarray(pending)
    if pending.ndim != 1:
        raise ValueError(f"pending must be a 1-D array of positions, got shape {pending.shape}")
    if pending.size == 0:
        return k, np.empty(0, dtype=np.int64)
    if not np.issubdtype(pending.dtype, np.integer):
        raise ValueError(f"pending must hold integer positions, got dtype {pending.dtype}")
    if pending.min() < 0 or pending.max() >= posterior.n:
        raise ValueError(
            f"pending positions must lie in [0, {posterior.n}), "
            f"got range [{pending.min()}, {pending.max()}]"
        )
    return k, np.unique(pending).astype(np.int64)


class Random:
    """Uniform choice without replacement among the non-pending points (the baseline)."""

    def select(
        self, posterior: Posterior, k: int, pending: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Up to k distinct non-pending positions drawn uniformly with ``rng``: (k,) int64."""
        k, pending = check_request(posterior, k, pending)
        available = np.setdiff1d(np.arange(posterior.n, dtype=np.int64), pending)
        take = min(k, available.size)
        return rng.choice(available, size=take, replace=False).astype(np.int64)

    def __repr__(self) -> str:
        return "Random()"


class Scorer(Protocol):
    """The state of one greedy batch selection (made by :meth:`GreedyAcquisition.scorer`).

    ``scores()``: (n,) float64 value of adding each point next, higher is better, already
    conditioned on pending and chosen points; entries of pending/chosen points are ignored.
    ``add(position)``: condition on a newly chosen point.
    """

    def scores(self) -> np.ndarray: ...

    def add(self, position: int) -> None: ...


class GreedyAcquisition(ABC):
    """Greedy batch selection from a :class:`Scorer`: argmax, condition, repeat.

    Subclasses implement :meth:`scorer`. The loop blocks pending and chosen positions,
    takes the first maximum (lowest position wins ties; NaN scores count as -inf) and
    calls ``scorer.add`` before the next pick, so diversity within a batch comes from
    conditioning, not from chance.

    Attributes:
        chosen_score_: (k,) float64 score of each chosen point at the moment it was
            chosen, set by the last ``select``.
    """

    chosen_score_: np.ndarray

    @abstractmethod
    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """A scorer over ``posterior``'s n points, conditioned on the sorted unique
        ``pending`` positions."""

    def select(
        self, posterior: Posterior, k: int, pending: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Greedy batch: up to k distinct int64 positions not in ``pending``, in pick order."""
        k, pending = check_request(posterior, k, pending)
        n = posterior.n
        take = min(k, n - pending.size)
        chosen = np.empty(take, dtype=np.int64)
        chosen_score = np.empty(take)
        if take == 0:
            self.chosen_score_ = chosen_score
            return chosen
        scorer = self.scorer(posterior, pending, rng)
        blocked = np.zeros(n, dtype=bool)
        blocked[pending] = True
        for step in range(take):
            scores = np.asarray(scorer.scores(), dtype=np.float64)
            score = np.where(blocked | np.isnan(scores), -np.inf, scores)
            best = int(np.argmax(score))
            if blocked[best]:  # every free score is -inf: first free position
                best = int(np.flatnonzero(~blocked)[0])
            chosen[step] = best
            chosen_score[step] = score[best]
            blocked[best] = True
            if step + 1 < take:
                scorer.add(best)
        self.chosen_score_ = chosen_score
        logger.debug("%r batch %s, scores %s", self, chosen, chosen_score)
        return chosen

    def __repr__(self) -> str:
        params = getattr(self, "_params", {})
        text = ", ".join(f"{key}={value!r}" for key, value in params.items())
        return f"{type(self).__name__}({text})"


class Fantasies:
    """Conditioning of a posterior on fantasized observations at chosen points.

    For a Gaussian posterior an observation's value is not needed to update variances and
    covariances: observing point p with noise ``posterior.noise_variance`` gives

        Cov_new(a, b) = Cov(a, b) - c(a, p) c(b, p) / (v(p) + noise)

    applied as sequential rank-one updates with a Cholesky-style factor ``U`` (n x rank),
    so memory is ``O(n (m + k))``. Only ``variance``, ``covariance(columns)`` and
    ``noise_variance`` of the posterior are used (a sampled posterior is treated as
    Gaussian with its sample covariance).

    Attributes:
        variance: (n,) conditioned marginal variance (y units squared).
        noise: the observation noise variance used for every fantasy.
    """

    def __init__(self, posterior: Posterior, capacity: int):
        self.posterior = posterior
        self.variance = posterior.variance.astype(np.float64, copy=True)
        self.noise = float(posterior.noise_variance)
        # Below this the point is already determined by earlier fantasies (zero noise).
        self.tolerance = 1e-12 * (float(self.variance.max(initial=0.0)) + self.noise) + 1e-300
        self.factor = np.empty((posterior.n, max(int(capacity), 1)))
        self.rank = 0

    def conditioned(self, columns: np.ndarray) -> np.ndarray:
        """Conditioned covariance of every point with ``columns``: (n, c)."""
        out = self.posterior.covariance(np.asarray(columns, dtype=np.int64))
        if self.rank:
            U = self.factor[:, : self.rank]
            out -= U @ U[columns].T
        return out

    def add(self, position: int, column: np.ndarray | None = None,
            noise: float | None = None) -> np.ndarray | None:
        """Fantasize an observation at ``position``; returns the rank-one update vector
        ``u`` (``Cov_new = Cov - u u^T``), or None if the point was already determined.

        Args:
            column: the *unconditioned* covariance column of ``position`` if known.
            noise: this observation's noise variance (default: :attr:`noise`).
        """
        if column is None:
            column = self.posterior.covariance(np.array([position]))[:, 0]
        if self.rank:
            column = column - self.factor[:, : self.rank] @ self.factor[position, : self.rank]
        denominator = column[position] + (self.noise if noise is None else float(noise))
        if denominator <= self.tolerance:
            return None
        if self.rank == self.factor.shape[1]:
            grown = np.empty((self.factor.shape[0], 2 * self.factor.shape[1]))
            grown[:, : self.rank] = self.factor
            self.factor = grown
        update = column / np.sqrt(denominator)
        self.factor[:, self.rank] = update
        self.rank += 1
        np.subtract(self.variance, update * update, out=self.variance)
        np.maximum(self.variance, 0.0, out=self.variance)
        return update

    def add_many(self, positions: np.ndarray) -> None:
        """Fantasize observations at every position (one covariance call)."""
        if len(positions):
            columns = self.posterior.covariance(np.asarray(positions, dtype=np.int64))
            for j, position in enumerate(positions):
                self.add(int(position), columns[:, j])


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
    ``O(prefilter * m)`` for m training points plus ``O(n)``.

    Args:
        prefilter: number of candidates first kept by the bound.
        exact_limit: pools up to this size are scored exactly without a prefilter.
        max_growth: if a pick is not certified, up to this many times add the
            ``prefilter`` left-out points of largest bound (tightened by the batch so far,
            so they come from other regions) and recompute; None grows until certified
            (exact, time then unbounded). The default 0 keeps time and memory bounded;
            ``certified_`` then says whether the batch is provably exact.

    Attributes:
        chosen_variance_: (k,) float64 conditioned variance of each chosen point at the
            moment it was chosen (y units squared), set by the last ``select``.
        certified_: True when the last batch is provably the exact greedy batch (always
            True without the prefilter).
        n_scored_: number of points whose exact variance the last ``select`` computed.
    """

    def __init__(self, prefilter: int = 10_000, exact_limit: int = 20_000,
                 max_growth: int | None = 0):
        for name, value in (("prefilter", prefilter), ("exact_limit", exact_limit)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if max_growth is not None and (int(max_growth) != max_growth or max_growth < 0):
            raise ValueError(f"max_growth must be an integer >= 0 or None, got {max_growth!r}")
        self.prefilter = int(prefilter)
        self.exact_limit = int(exact_limit)
        self.max_growth = 10**9 if max_growth is None else int(max_growth)

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

    def select(
        self, posterior: Posterior, k: int, pending: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Greedy conditioned-max-variance batch: up to k int64 positions, in pick order."""
        k, pending = check_request(posterior, k, pending)
        large = posterior.n > self.exact_limit
        if not (large and hasattr(posterior, "variance_upper_bound")
                and hasattr(posterior, "subset")):
            chosen = super().select(posterior, k, pending, rng)
            self.certified_, self.n_scored_ = True, posterior.n
            return chosen
        bound = np.asarray(posterior.variance_upper_bound(), dtype=np.float64)
        bound[pending] = -np.inf
        free = posterior.n - pending.size
        size = min(self.prefilter, free)
        kept = np.zeros(posterior.n, dtype=bool)
        kept[np.argpartition(-bound, size - 1)[:size] if size < free
             else np.flatnonzero(np.isfinite(bound))] = True
        for attempt in range(1 + self.max_growth):
            rows = np.concatenate([np.flatnonzero(kept), pending])
            local = super().select(posterior.subset(rows), k, np.arange(kept.sum(), rows.size),
                                   rng)
            chosen, scores = rows[local], self.chosen_score_
            # Points left out that might beat a pick: tighten their bounds with the
            # fantasized pending and chosen points, step by step.
            outside = np.flatnonzero(~kept & np.isfinite(bound)
                                     & (bound > float(scores.min(initial=np.inf))))
            if outside.size == 0:
                certified = True
                break
            given = np.concatenate([pending, chosen])
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
        for position in pending:
            self._fantasize(int(position))
        free, self.weight = _reference_points(posterior, pending, rng, n_reference,
                                              reference, below)
        self.reference = free
        self.cross = self.fantasies.conditioned(free)  # (N, s)

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


class _OptimisticScorer:
    """Mean fixed (kriging believer), variance conditioned on pending and chosen."""

    def __init__(self, posterior: Posterior, pending: np.ndarray, value: Callable[..., Any]):
        self.fantasies = Fantasies(posterior, pending.size + 16)
        self.fantasies.add_many(pending)
        self.mean = posterior.mean
        self.value = value

    def scores(self) -> np.ndarray:
        return self.value(self.mean, np.sqrt(self.fantasies.variance))

    def add(self, position: int) -> None:
        self.fantasies.add(position)


def _check_direction(maximize: bool) -> float:
    if not isinstance(maximize, bool | np.bool_):
        raise ValueError(f"maximize must be True or False, got {maximize!r}")
    return 1.0 if maximize else -1.0


class UpperConfidenceBound(GreedyAcquisition):
    """Optimistic search for extremes: ``s * mean + beta * sd`` (``s = +1`` to find maxima,
    ``-1`` for minima, e.g. the lowest energies of a rare basin).

    Batches use the kriging believer: the mean is left as is (a fantasy observed at its
    mean does not move it) and ``sd`` is the conditioned one, so picks near pending or
    chosen points lose their exploration bonus.

    Args:
        beta: exploration weight (> 0), in standard deviations.
        maximize: look for maxima (True) or minima (False).
    """

    def __init__(self, beta: float = 2.0, maximize: bool = True):
        if not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be > 0, got {beta!r}")
        self.beta = float(beta)
        self.maximize = maximize
        self._sign = _check_direction(maximize)
        self._params = {"beta": self.beta, "maximize": maximize}

    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """Upper confidence bound in y units (sign-flipped for minima)."""
        sign, beta = self._sign, self.beta
        return _OptimisticScorer(posterior, pending, lambda mean, sd: sign * mean + beta * sd)


class ExpectedImprovement(GreedyAcquisition):
    """Expected improvement over the best predicted value, for extremes.

    The incumbent is the best posterior mean over all n points (candidates and pending;
    the noisy-observation variant of EI, which does not need the training labels);
    ``EI = sd * (z Phi(z) + phi(z))`` with ``z = (s * mean - best - xi) / sd``. Batches use
    the kriging believer as :class:`UpperConfidenceBound` does (conditioned ``sd``).

    Args:
        xi: required improvement margin (y units, >= 0).
        maximize: improve towards maxima (True) or minima (False).
    """

    def __init__(self, xi: float = 0.0, maximize: bool = True):
        if not (math.isfinite(xi) and xi >= 0):
            raise ValueError(f"xi must be >= 0, got {xi!r}")
        self.xi = float(xi)
        self.maximize = maximize
        self._sign = _check_direction(maximize)
        self._params = {"xi": self.xi, "maximize": maximize}

    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """Expected improvement (y units, >= 0)."""
        sign = self._sign
        best = float(np.max(sign * posterior.mean)) + self.xi

        def value(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
            gain = sign * mean - best
            safe = np.maximum(sd, 1e-300)
            z = gain / safe
            ei = safe * (z * ndtr(z) + np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi))
            return np.where(sd > 0, np.maximum(ei, 0.0), np.maximum(gain, 0.0))

        return _OptimisticScorer(posterior, pending, value)


class _TrustWindowScorer:
    def __init__(self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator,
                 lower: float, upper: float):
        self.fantasies = Fantasies(posterior, pending.size + 16)
        self.fantasies.add_many(pending)
        self.lower, self.upper = lower, upper
        self.rng = rng

    def scores(self) -> np.ndarray:
        sd = np.sqrt(self.fantasies.variance)
        inside = (sd >= self.lower) & (sd <= self.upper)
        scale = max(float(sd.max(initial=0.0)), 1e-300)
        # In the window: a uniform draw in (2, 3) (DP-GEN picks at random among them).
        # Outside (only when the window is empty): the largest sd below the upper bound,
        # then the smallest sd above it.
        return np.where(
            inside,
            2.0 + self.rng.random(sd.shape),
            np.where(sd < self.lower, sd / scale, 1.0 - sd / (2.0 * scale) - 0.5),
        )

    def add(self, position: int) -> None:
        self.fantasies.add(position)


class TrustWindow(GreedyAcquisition):
    """DP-GEN's trust window: candidates whose model deviation lies between two bounds.

    DP-GEN labels a configuration only if the ensemble's deviation ``sd`` is above
    ``lower`` (the model is not yet accurate there) and below ``upper`` (the
    configuration is not unphysical), and picks at random among those. Here ``sd`` is the
    posterior standard deviation conditioned on pending and chosen points, recomputed
    after each pick (so neighbours of a pick drop below ``lower``), and the random draw
    uses ``rng``. If no point is in the window, the largest ``sd`` below ``upper`` is
    taken, then the smallest above it.

    Args:
        lower, upper: bounds on ``sd`` in y units, or None for the defaults: the
            ``lower_quantile`` and ``upper_quantile`` of the unconditioned ``sd`` over the
            non-pending points (so the policy needs no hand-picked threshold: by default it
            skips the better-known half and the wildest 5%).
        lower_quantile, upper_quantile: see above, 0 <= lower < upper <= 1.
    """

    def __init__(
        self,
        lower: float | None = None,
        upper: float | None = None,
        lower_quantile: float = 0.5,
        upper_quantile: float = 0.95,
    ):
        if not 0.0 <= lower_quantile < upper_quantile <= 1.0:
            raise ValueError(
                "need 0 <= lower_quantile < upper_quantile <= 1, "
                f"got {lower_quantile!r}, {upper_quantile!r}"
            )
        if lower is not None and upper is not None and not 0 <= lower < upper:
            raise ValueError(f"need 0 <= lower < upper, got {lower!r}, {upper!r}")
        self.lower, self.upper = lower, upper
        self.lower_quantile, self.upper_quantile = lower_quantile, upper_quantile
        self._params = {"lower": lower, "upper": upper}

    def bounds(self, posterior: Posterior, pending: np.ndarray) -> tuple[float, float]:
        """The (lower, upper) sd bounds used for ``posterior`` (y units)."""
        free = np.setdiff1d(np.arange(posterior.n), pending)
        sd = np.sqrt(posterior.variance[free]) if free.size else np.zeros(1)
        lower = float(np.quantile(sd, self.lower_quantile)) if self.lower is None else self.lower
        upper = float(np.quantile(sd, self.upper_quantile)) if self.upper is None else self.upper
        return lower, max(upper, lower)

    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """Random ranks inside the window, fall-back order outside it."""
        lower, upper = self.bounds(posterior, pending)
        return _TrustWindowScorer(posterior, pending, rng, lower, upper)


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


class _CostScorer:
    def __init__(self, base: Scorer, cost: np.ndarray):
        self.base = base
        self.cost = cost

    def scores(self) -> np.ndarray:
        value = np.asarray(self.base.scores(), dtype=np.float64)
        finite = value[np.isfinite(value)]
        low = float(finite.min(initial=0.0))
        if low < 0:  # e.g. a UCB in y units: shift so the worst point is worth 0
            value = value - low
        return value / self.cost

    def add(self, position: int) -> None:
        self.base.add(position)


class CostAware(GreedyAcquisition):
    """Value per unit cost: a greedy policy's scores divided by the simulation cost.

    Multi-fidelity selection: where the finer scale costs more for some candidates (larger
    systems, longer runs), value per cost decides. Composes through the scorer: the base
    policy's conditioned ``scores()`` (shifted to be >= 0 over the points if any is
    negative) are divided by ``cost`` at every greedy step, and picks condition the base.

    Args:
        base: a :class:`GreedyAcquisition` (or a registry name); default
            :class:`IntegratedVariance`.
        cost: per-point cost of the finer scale, > 0: a callable ``cost(X) -> (n,)`` of the
            posterior's features ``posterior.X``, an (n,) array aligned with the
            posterior's points, or None for unit cost (then it equals ``base``).

    Raises:
        ValueError: at ``select``: cost of the wrong shape, not positive and finite, or a
            callable cost with a posterior that has no ``X``.
    """

    def __init__(
        self,
        base: GreedyAcquisition | str | None = None,
        cost: Callable[[np.ndarray], np.ndarray] | np.ndarray | None = None,
    ):
        if base is None:
            base = IntegratedVariance()
        elif isinstance(base, str):
            base = acquisition_by_name(base)  # type: ignore[assignment]
        if not isinstance(base, GreedyAcquisition):
            raise ValueError(f"base must be a GreedyAcquisition, got {type(base).__name__}")
        self.base = base
        self.cost = cost
        self._params = {"base": base}

    def costs(self, posterior: Posterior) -> np.ndarray:
        """(n,) float64 cost of each point, validated."""
        if self.cost is None:
            return np.ones(posterior.n)
        if callable(self.cost):
            if posterior.X is None:
                raise ValueError("a callable cost needs the posterior's features (Posterior.X)")
            cost = np.asarray(self.cost(posterior.X), dtype=np.float64)
        else:
            cost = np.asarray(self.cost, dtype=np.float64)
        if cost.shape != (posterior.n,):
            raise ValueError(f"cost must have shape ({posterior.n},), got {cost.shape}")
        if not np.all(np.isfinite(cost) & (cost > 0)):
            raise ValueError("cost must be finite and > 0 everywhere")
        return cost

    def scorer(
        self, posterior: Posterior, pending: np.ndarray, rng: np.random.Generator
    ) -> Scorer:
        """The base scorer's value divided by cost."""
        cost = self.costs(posterior)
        return _CostScorer(self.base.scorer(posterior, pending, rng), cost)


#: Acquisition policies by the name a campaign spec uses.
ACQUISITIONS: dict[str, type] = {
    "random": Random,
    "max_variance": MaxVariance,
    "integrated_variance": IntegratedVariance,
    "ucb": UpperConfidenceBound,
    "expected_improvement": ExpectedImprovement,
    "trust_window": TrustWindow,
    "farthest_point": FarthestPoint,
    "local_outlier": LocalOutlier,
    "cost_aware": CostAware,
}


def acquisition_by_name(name: str, **params: Any) -> Acquisition:
    """A new instance of the policy registered as ``name`` in :data:`ACQUISITIONS`,
    built with ``params``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        policy = ACQUISITIONS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ACQUISITIONS))
        raise ValueError(f"unknown acquisition {name!r}; known: {known}") from None
    return policy(**params)


def default_acquisition() -> Acquisition:
    """A new instance of the policy a campaign uses when its spec names none.

    :class:`IntegratedVariance` with its defaults (pool-weighted reference, 512 reference
    points). Chosen from the full-mode runs in docs/benchmarks.md ("Learners and policies
    on three problems", 5 seeds, ExactGP): it is the policy that did best against random
    across the three problems, while :class:`MaxVariance` won on one and failed on another.

    - Muller-Brown (target RMSE 2.0, budget 200): 72 median simulations to target, 2.89x
      fewer than random (208, not reached in 4 of 5 seeds); final RMSE 0.165 vs 2.21.
      MaxVariance was slightly better here (64, 3.25x, final RMSE 0.108).
    - Channel (2-D, final RMSE at the budget, median of 5): 0.181, the best of all
      policies, vs random 0.359 and MaxVariance 0.326.
    - wells6d (6-D, same metric): 0.592, worse than random (0.365, the best there) but far
      better than MaxVariance (1.29), which chases the pool's high-energy walls.
    """
    return IntegratedVariance()
