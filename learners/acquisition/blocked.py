"""Exact greedy max-variance batches, several picks per conditioning step.

The shared greedy loop (:class:`~learners.acquisition.base.GreedyAcquisition`) conditions
every point on each pick by a rank-one update: k matrix-vector passes over the n points,
each ``O(n (m + rank))``. :func:`blocked_max_variance` returns the same picks (up to
round-off) in a few matrix-matrix passes. Each step

1. takes the ``t`` free points of largest conditioned variance (the *block*) and their
   conditioned covariance columns, one covariance call;
2. runs the greedy inside the block on its ``t x t`` covariance, keeping each pick only
   while it provably is the pick over the whole pool: its conditioned variance exceeds the
   largest variance outside the block at the start of the step (ties: lower position
   first). Conditioning never raises a Gaussian variance, so that value bounds every
   outside point for the rest of the step;
3. conditions every point on the kept picks at once (:meth:`Fantasies.add_conditioned`).

The first point of each block is always kept, so every step makes progress. The block
width adapts: it doubles while at least three quarters of the block are kept (picks far
apart: nearly independent) and halves when fewer than a quarter are (picks that shadow each other),
so the covariance columns computed and not used stay a small share.
"""

from __future__ import annotations

import numpy as np

from learners.acquisition.base import Fantasies
from learners.posterior import Posterior


def blocked_max_variance(posterior: Posterior, k: int, pending: np.ndarray,
                         width: int = 32, max_width: int = 1024
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Greedy conditioned-max-variance batch of ``k`` (see the module docstring).

    Args:
        posterior: over n points.
        k: number of picks (at most the number of non-pending points).
        pending: sorted unique int64 positions fantasized first.
        width: first block width; ``max_width`` its largest (lowered so that the block's
            covariance columns, n x width floats, stay within 256 MB).

    Returns:
        ``(chosen, values)``: (k,) int64 positions in pick order and (k,) float64 the
        conditioned variance of each when picked, as the rank-one greedy loop gives them.
    """
    fantasies = Fantasies(posterior, pending.size + k)
    fantasies.add_many(pending)
    n = posterior.n
    # Bounded memory: the block's n x t covariance columns stay within 2^25 floats (256 MB).
    max_width = max(8, min(max_width, 2**25 // max(n, 1)))
    width = min(width, max_width)
    free = np.ones(n, dtype=bool)
    free[pending] = False
    chosen = np.empty(k, dtype=np.int64)
    values = np.empty(k)
    done = 0
    while done < k:
        t = min(width, int(free.sum()), k - done)
        score = np.where(free, fantasies.variance, -np.inf)
        # The t best by (variance, then lowest position): a tie at the cut goes low.
        cut = float(score[np.argpartition(-score, t - 1)[:t]].min())
        above = np.flatnonzero(score > cut)
        block = np.sort(np.concatenate(
            [above, np.flatnonzero(score == cut)[:t - above.size]]))
        outside = free.copy()
        outside[block] = False
        best_outside, first_outside = -np.inf, n
        if outside.any():
            best_outside = float(score[outside].max())
            first_outside = int(np.flatnonzero(outside & (score == best_outside))[0])
        columns = fantasies.conditioned(block)  # (n, t)
        kept = _greedy_in_block(columns[block], fantasies.variance[block], fantasies.noise,
                                fantasies.tolerance, block, best_outside, first_outside,
                                k - done)
        if not kept:  # the block's best is the pool's best: cannot happen
            raise RuntimeError("blocked greedy made no progress")
        picks = block[[j for j, _ in kept]]
        chosen[done:done + len(kept)] = picks
        values[done:done + len(kept)] = [value for _, value in kept]
        done += len(kept)
        free[picks] = False
        if done < k:
            fantasies.add_conditioned(picks, columns[:, [j for j, _ in kept]])
        if 4 * len(kept) >= 3 * t:
            width = min(2 * width, max_width)
        elif 4 * len(kept) < t:
            width = max(width // 2, 8)
    return chosen, values


def _greedy_in_block(covariance: np.ndarray, variance: np.ndarray, noise: float,
                     tolerance: float, positions: np.ndarray, best_outside: float,
                     first_outside: int, limit: int) -> list[tuple[int, float]]:
    """Greedy picks inside a block (indices into it, with their conditioned variances)
    while each beats ``best_outside`` (ties: a position below ``first_outside``)."""
    covariance = covariance.copy()
    variance = variance.copy()
    available = np.ones(len(positions), dtype=bool)
    kept: list[tuple[int, float]] = []
    while len(kept) < limit and available.any():
        score = np.where(available, variance, -np.inf)
        j = int(np.argmax(score))
        value = float(score[j])
        if value < best_outside or (value == best_outside and positions[j] > first_outside):
            break
        kept.append((j, value))
        available[j] = False
        denominator = covariance[j, j] + noise
        if denominator > tolerance:
            column = covariance[:, j].copy()
            covariance -= np.outer(column, column) / denominator
            np.subtract(variance, column * column / denominator, out=variance)
            np.maximum(variance, 0.0, out=variance)
    return kept
