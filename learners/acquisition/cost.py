"""Cost-aware wrapping of any scored policy: value divided by the simulation cost."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from learners.acquisition.base import (
    GreedyAcquisition,
    Scorer,
)
from learners.acquisition.variance import IntegratedVariance
from learners.posterior import Posterior


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
            from learners.acquisition import acquisition_by_name

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


