"""A scored policy with an explicit exploration fraction: some picks are uniform random.

Model-driven policies go where the model says it is uncertain, which on a narrow or rare
feature it often does not know about; uniform picks over the candidates follow where the
coarse scale goes (the density random selection matches) and sample a rare region at its
own rate. :class:`Explore` makes each pick of a batch a uniform one with probability
``fraction`` and takes the others from the base policy, so the mixture keeps a floor of
density-following samples whatever the model believes (the "explore fraction" of
epsilon-greedy bandits, applied per batch).

>>> import numpy as np
>>> from learners import ExactGP
>>> X = np.linspace(0.0, 1.0, 40)[:, None]
>>> posterior = ExactGP(restarts=0, iterations=30).fit(X[::8], np.sin(6 * X[::8, 0])).posterior(X)
>>> policy = Explore(fraction=0.5)
>>> batch = policy.select(posterior, 6, np.array([], dtype=np.int64), np.random.default_rng(0))
>>> len(set(batch.tolist())) == 6, policy.n_random_ + policy.n_base_ == 6
(True, True)
"""

from __future__ import annotations

import math

import numpy as np

from learners.acquisition.base import Acquisition, check_request
from learners.posterior import Posterior

__all__ = ["Explore"]


class Explore:
    """``base`` (default :class:`~learners.acquisition.IntegratedVariance`) with each pick
    uniform random over the non-pending candidates with probability ``fraction``.

    The number of uniform picks in a batch of k is drawn from Binomial(k, fraction) with the
    ``rng`` of ``select`` (so single-point selections explore too, and a batch is
    deterministic given the rng). The base picks come first, conditioned on the pending
    points; the uniform picks are drawn among the points neither pending nor just chosen.

    Attributes:
        n_base_, n_random_: picks of the last ``select`` from the base policy and uniform.
    """

    def __init__(self, base: Acquisition | None = None, fraction: float = 0.3) -> None:
        if not (isinstance(fraction, int | float) and math.isfinite(fraction)
                and 0.0 <= fraction <= 1.0):
            raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}")
        if base is None:
            from learners.acquisition.variance import IntegratedVariance

            base = IntegratedVariance()
        self.base = base
        self.fraction = float(fraction)
        self.n_base_ = 0
        self.n_random_ = 0

    def select(
        self, posterior: Posterior, k: int, pending: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Up to k distinct int64 positions not in ``pending``: base picks, then uniform."""
        k, pending = check_request(posterior, k, pending)
        take = min(k, posterior.n - pending.size)
        n_random = int(rng.binomial(take, self.fraction)) if take else 0
        chosen = np.empty(0, dtype=np.int64)
        if take - n_random > 0:
            chosen = np.asarray(self.base.select(posterior, take - n_random, pending, rng),
                                dtype=np.int64)
        blocked = np.union1d(pending, chosen)
        available = np.setdiff1d(np.arange(posterior.n, dtype=np.int64), blocked)
        uniform = rng.choice(available, size=min(take - chosen.size, available.size),
                             replace=False).astype(np.int64)
        self.n_base_, self.n_random_ = int(chosen.size), int(uniform.size)
        return np.concatenate([chosen, uniform])

    def __repr__(self) -> str:
        return f"Explore({self.base!r}, fraction={self.fraction})"
