"""The acquisition protocol, the greedy batch loop every scored policy shares, fantasized
observations, and uniform random choice."""

from __future__ import annotations

import logging
import operator
from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.linalg import solve_triangular

from learners.posterior import Posterior

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

    kept as a Cholesky-style factor ``U`` (n x rank) with ``Cov_new = Cov - U U^T``, so
    memory is ``O(n (m + k))``. :meth:`add` appends one column (a rank-one update, for the
    greedy picks); :meth:`add_many` appends a block at once (the pending points): one
    covariance call, a Cholesky of the block's conditioned covariance plus noise and a
    triangular solve, the same columns as sequential :meth:`add` calls up to round-off.
    Only ``variance``, ``covariance(columns)`` and ``noise_variance`` of the posterior are
    used (a sampled posterior is treated as Gaussian with its sample covariance).

    A point already determined by earlier fantasies (conditioned variance plus noise at most
    :attr:`tolerance`: a duplicate observed without noise) adds nothing, in both methods.

    Attributes:
        variance: (n,) conditioned marginal variance (y units squared).
        noise: the observation noise variance used for every fantasy.
        tolerance: conditioned variance plus noise at or below which a point counts as
            already determined.
        rank: number of factor columns (fantasies that added information).
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

    def _reserve(self, extra: int) -> None:
        """Grow the factor (doubling) so ``extra`` more columns fit."""
        needed = self.rank + extra
        if needed > self.factor.shape[1]:
            grown = np.empty((self.factor.shape[0], max(needed, 2 * self.factor.shape[1])))
            grown[:, : self.rank] = self.factor[:, : self.rank]
            self.factor = grown

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
        self._reserve(1)
        update = column / np.sqrt(denominator)
        self.factor[:, self.rank] = update
        self.rank += 1
        np.subtract(self.variance, update * update, out=self.variance)
        np.maximum(self.variance, 0.0, out=self.variance)
        return update

    def add_many(self, positions: np.ndarray, noise: np.ndarray | float | None = None
                 ) -> np.ndarray:
        """Fantasize observations at every position, in order, as one block.

        Equal (up to round-off) to ``add`` called on each position in turn: with ``C``
        the conditioned covariance columns of the positions (n, p) and ``L`` the Cholesky
        factor of ``C[positions] + diag(noise)``, the new factor columns are
        ``C L^-T``. If that block is numerically singular (a point already determined,
        e.g. a duplicate without noise) the pivots are taken one by one on the p x p block
        instead, skipping determined points as :meth:`add` does; then the cost has an
        ``O(p^3)`` Python-level term. Cost otherwise: one covariance call plus
        ``O(n p (rank + p))`` in matrix-matrix products.

        Args:
            positions: (p,) integer positions; repeats are separate observations.
            noise: (p,) or scalar noise variance of each observation (default
                :attr:`noise`).

        Returns:
            (n, r) read-only update columns ``V`` (``Cov_new = Cov - V V^T``), one per
            position that added information (r <= p), in order.
        """
        positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        if positions.size == 0:
            return np.empty((self.factor.shape[0], 0))
        return self.add_conditioned(positions, self.conditioned(positions), noise)

    def add_conditioned(self, positions: np.ndarray, columns: np.ndarray,
                        noise: np.ndarray | float | None = None) -> np.ndarray:
        """:meth:`add_many` given ``columns = self.conditioned(positions)`` (n, p), e.g.
        computed once for more positions than end up fantasized."""
        p = positions.size
        noises = np.broadcast_to(
            np.asarray(self.noise if noise is None else noise, dtype=np.float64), (p,))
        block = columns[positions]
        block = 0.5 * (block + block.T)
        block[np.diag_indices(p)] += noises
        kept, lower = _skipping_cholesky(block, self.tolerance)
        if kept is not None:
            columns = columns[:, kept]
        update = solve_triangular(lower, columns.T, lower=True, check_finite=False).T
        self._reserve(update.shape[1])
        start, self.rank = self.rank, self.rank + update.shape[1]
        self.factor[:, start:self.rank] = update
        np.subtract(self.variance, np.einsum("ij,ij->i", update, update), out=self.variance)
        np.maximum(self.variance, 0.0, out=self.variance)
        view = self.factor[:, start:self.rank].view()
        view.flags.writeable = False
        return view


def _skipping_cholesky(block: np.ndarray, tolerance: float
                       ) -> tuple[np.ndarray | None, np.ndarray]:
    """Lower Cholesky factor of the symmetric ``block`` (p x p), skipping pivots at or
    below ``tolerance`` as sequential rank-one conditioning does.

    Returns ``(None, L)`` when no pivot is skipped (LAPACK), else ``(kept, L)`` with
    ``kept`` the positions kept, in order, and ``L`` the factor of ``block[kept][:, kept]``.
    """
    try:
        lower = np.linalg.cholesky(block)
        if np.all(np.diagonal(lower) ** 2 > tolerance):
            return None, lower
    except np.linalg.LinAlgError:
        pass
    p = len(block)
    factor = np.zeros((p, p))  # rows: the block's points; columns: kept pivots
    kept: list[int] = []
    for j in range(p):
        r = len(kept)
        column = block[:, j] - factor[:, :r] @ factor[j, :r]
        if column[j] <= tolerance:
            continue
        factor[:, r] = column / np.sqrt(column[j])
        kept.append(j)
    rows = np.asarray(kept, dtype=np.int64)
    return rows, factor[np.ix_(rows, np.arange(rows.size))]
