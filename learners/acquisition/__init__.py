"""Acquisition policies: pick which candidates the expensive scale computes next.

A policy sees only a :class:`~learners.posterior.Posterior` (never the model) over the
points ``[candidates..., pending...]`` and the positions of the pending points (submitted,
not yet labelled). Batches are chosen greedily with pending points fantasized, as in
BoTorch, not as a naive top-k.

Every policy except :class:`Random` and the :class:`Explore` mixture is a
:class:`GreedyAcquisition`: its :meth:`~GreedyAcquisition.scorer` returns a
:class:`Scorer` that is first conditioned on the pending points, then asked for
``scores()`` (one value per point, higher is better) and told ``add(position)`` after each
pick. The shared greedy loop takes the argmax among points not pending and not yet chosen
(ties: lowest position). Wrappers such as :class:`CostAware` compose by wrapping another
policy's scorer.

Policies and where they come from (one module each; everything is importable from here):

- :class:`MaxVariance`: largest posterior variance, conditioned on pending and chosen.
- :class:`IntegratedVariance`: largest reduction of the summed posterior variance over
  the candidate pool (the qNIPV idea).
- :class:`UpperConfidenceBound`, :class:`ExpectedImprovement`: extremes (rare events).
- :class:`TrustWindow`: DP-GEN, model deviation between a lower and an upper bound.
- :class:`FarthestPoint`: MuMMI-style farthest-point sampling in feature space.
- :class:`LocalOutlier`: DeepDriveMD-style local-outlier-factor novelty.
- :class:`CostAware`: any of the above, value divided by the simulation cost.
- :class:`Explore`: any of the above with a fraction of each batch uniform random.

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

from typing import Any

from learners.acquisition.base import (
    Acquisition,
    Fantasies,
    GreedyAcquisition,
    Random,
    Scorer,
    check_request,
)
from learners.acquisition.cost import CostAware
from learners.acquisition.distance import FarthestPoint
from learners.acquisition.mixture import Explore
from learners.acquisition.optimistic import ExpectedImprovement, UpperConfidenceBound
from learners.acquisition.outlier import LocalOutlier
from learners.acquisition.trust import TrustWindow
from learners.acquisition.variance import IntegratedVariance, MaxVariance

__all__ = [
    "ACQUISITIONS",
    "Acquisition",
    "CostAware",
    "ExpectedImprovement",
    "Explore",
    "Fantasies",
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
    "check_request",
    "default_acquisition",
]

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
    "explore": Explore,
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

    :class:`Explore` with its defaults: :class:`IntegratedVariance` (pool-weighted
    reference, 512 points) with each pick uniform random with probability 0.3. Chosen by a
    rule fixed before the runs (docs/benchmarks.md, "Policies on fixed pools: four
    problems", ``python -m benchmarks.policies``, 5 seeds, 300 labels): of integrated
    variance and explore, the one whose smallest ratio to random's error at the full
    budget, over the four problems and the pool and uniform test sets, is larger.

    - explore: 6.58x / 5.53x random (pool / uniform) on Müller-Brown, 7.70x / 4.77x on
      channel, 1.02x / 0.94x on channel4d, 1.34x / 0.78x on wells6d: smallest 0.78x.
    - integrated variance: 5.29x / 5.98x, 10.49x / 6.25x, 1.03x / 0.95x, 1.18x / 0.66x:
      smallest 0.66x (better than explore on channel, worse on wells6d's uniform set).

    Neither is at least as good as random everywhere: on channel4d and wells6d's uniform
    test sets both end 5-22% worse than random.
    """
    return Explore()
