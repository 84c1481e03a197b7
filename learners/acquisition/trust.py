"""DP-GEN's trust window: model deviation between a lower and an upper bound."""

from __future__ import annotations

import numpy as np

from learners.acquisition.base import (
    Fantasies,
    GreedyAcquisition,
    Scorer,
)
from learners.posterior import Posterior


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


