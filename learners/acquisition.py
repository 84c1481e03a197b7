"""Acquisition policies: pick which candidates the expensive scale computes next.

A policy sees only a :class:`~learners.posterior.Posterior` (never the model) over the
points ``[candidates..., pending...]`` and the positions of the pending points (submitted,
not yet labelled). Batches are chosen greedily with pending points fantasized, as in
BoTorch, not as a naive top-k.
"""

from __future__ import annotations

import logging
import operator
from typing import Protocol, runtime_checkable

import numpy as np

from learners.posterior import Posterior

__all__ = ["ACQUISITIONS", "Acquisition", "MaxVariance", "Random", "acquisition_by_name"]

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


class MaxVariance:
    """Greedy batch of maximum posterior variance, conditioning on each pick.

    First every pending point is fantasized as an observation with noise
    ``posterior.noise_variance``; then the point of largest conditioned variance is chosen
    and fantasized, k times. Fantasizing needs no label for a Gaussian posterior:

        v_new(x) = v(x) - c(x, p)^2 / (v(p) + noise)

    applied as sequential rank-one updates of the covariance columns (a Cholesky-style
    factor ``U`` of the update, n x (m + k)), so memory is ``O(n (m + k))`` and the
    posterior is asked only for ``variance``, ``covariance(columns)`` and
    ``noise_variance``. Ties go to the lowest position; no randomness is used.

    Attributes:
        chosen_variance_: (k,) float64 conditioned variance of each chosen point at the
            moment it was chosen (y units squared), set by the last ``select``.
    """

    chosen_variance_: np.ndarray

    def select(
        self, posterior: Posterior, k: int, pending: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Greedy conditioned-max-variance batch: up to k int64 positions, in pick order."""
        k, pending = check_request(posterior, k, pending)
        n = posterior.n
        take = min(k, n - pending.size)
        variance = posterior.variance.astype(np.float64, copy=True)
        noise = float(posterior.noise_variance)
        # Below this the point is already determined by earlier fantasies (zero noise).
        tolerance = 1e-12 * (float(variance.max(initial=0.0)) + noise) + 1e-300
        factor = np.empty((n, pending.size + max(take - 1, 0)))
        rank = 0

        def condition(column: np.ndarray, position: int) -> None:
            nonlocal rank
            column = column - factor[:, :rank] @ factor[position, :rank]
            denominator = column[position] + noise
            if denominator <= tolerance:
                return
            update = column / np.sqrt(denominator)
            factor[:, rank] = update
            rank += 1
            np.subtract(variance, update * update, out=variance)
            np.maximum(variance, 0.0, out=variance)

        if pending.size:
            columns = posterior.covariance(pending)
            for j, position in enumerate(pending):
                condition(columns[:, j], int(position))

        blocked = np.zeros(n, dtype=bool)
        blocked[pending] = True
        chosen = np.empty(take, dtype=np.int64)
        chosen_variance = np.empty(take)
        for step in range(take):
            score = np.where(blocked, -np.inf, variance)
            best = int(np.argmax(score))  # first maximum: lowest position wins ties
            chosen[step] = best
            chosen_variance[step] = variance[best]
            blocked[best] = True
            if step + 1 < take:
                condition(posterior.covariance(np.array([best]))[:, 0], best)
        self.chosen_variance_ = chosen_variance
        logger.debug("max-variance batch %s, variances %s", chosen, chosen_variance)
        return chosen

    def __repr__(self) -> str:
        return "MaxVariance()"


#: Acquisition policies by the name a campaign spec uses.
ACQUISITIONS: dict[str, type] = {"random": Random, "max_variance": MaxVariance}


def acquisition_by_name(name: str) -> Acquisition:
    """A new instance of the policy registered as ``name`` in :data:`ACQUISITIONS`.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        policy = ACQUISITIONS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(ACQUISITIONS))
        raise ValueError(f"unknown acquisition {name!r}; known: {known}") from None
    return policy()
