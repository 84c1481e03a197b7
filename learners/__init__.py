"""Surrogate learners with uncertainty, and the policies that spend a simulation budget.

A learner fits ``(X, y)`` and returns a :class:`Posterior` over candidate points;
:mod:`learners.acquisition` turns a posterior (and pending points) into a batch choice.
Nothing here knows about Parsl or the campaign engine.

    >>> import numpy as np
    >>> from learners.acquisition import default_acquisition
    >>> X = np.linspace(0.0, 1.0, 8)[:, None]
    >>> learner = default_learner().fit(X, np.sin(6 * X[:, 0]))
    >>> pool = np.linspace(0.0, 1.0, 50)[:, None]
    >>> posterior = learner.posterior(pool)
    >>> posterior.mean.shape, bool(np.all(posterior.variance > 0))
    ((50,), True)
    >>> chosen = default_acquisition().select(posterior, 3, np.array([], dtype=int),
    ...                                       np.random.default_rng(0))
    >>> len(set(chosen.tolist()))
    3
"""

from __future__ import annotations

from learners.base import Learner, NotFittedError
from learners.deep_kernel import DeepKernelGP
from learners.ensemble import DeepEnsemble
from learners.gp import ExactGP
from learners.gradient_gp import GradientGP
from learners.pool import PoolCurve, pool_loop
from learners.posterior import (
    GaussianProcessPosterior,
    Posterior,
    SampledPosterior,
    SparseGaussianProcessPosterior,
)
from learners.recalibration import Recalibrated
from learners.scalable_gp import ScalableGP
from learners.scikit import RandomForest, SklearnLearner
from learners.sparse_gp import SparseGP

__all__ = [
    "LEARNERS",
    "DeepEnsemble",
    "DeepKernelGP",
    "ExactGP",
    "GaussianProcessPosterior",
    "GradientGP",
    "Learner",
    "NotFittedError",
    "PoolCurve",
    "Posterior",
    "RandomForest",
    "Recalibrated",
    "SampledPosterior",
    "ScalableGP",
    "SklearnLearner",
    "SparseGP",
    "SparseGaussianProcessPosterior",
    "default_learner",
    "learner_by_name",
    "pool_loop",
]

#: Learner classes by the name a campaign spec uses.
LEARNERS: dict[str, type] = {
    "exact_gp": ExactGP,
    "sparse_gp": SparseGP,
    "deep_ensemble": DeepEnsemble,
    "sklearn": SklearnLearner,
    "random_forest": RandomForest,
    "gradient_gp": GradientGP,
    "recalibrated": Recalibrated,
    "deep_kernel_gp": DeepKernelGP,
    "scalable_gp": ScalableGP,
}


def learner_by_name(name: str, **params: object) -> Learner:
    """A new learner registered as ``name`` in :data:`LEARNERS`, built with ``params``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        cls = LEARNERS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(LEARNERS))
        raise ValueError(f"unknown learner {name!r}; known: {known}") from None
    return cls(**params)


def default_learner() -> Learner:
    """A new instance of the learner a campaign uses when its spec names none.

    A :class:`ScalableGP` with its default parameters: up to 512 training rows exactly
    the default :class:`ExactGP` (ARD Matern 5/2, 2 restarts) of the demo and of every
    policy comparison in docs/benchmarks.md; from 513 to 16,000 rows that exact GP with
    its hyperparameters fitted on 512 of them (the newest half and a space-filling half)
    and its posterior on all; above 16,000 rows a sparse GP (SVGP, 512 inducing points),
    with a log line. Where these crossovers come from: docs/learners.md ("Regimes").
    A fresh object on each call, so two promotions never share fitted state.
    """
    return ScalableGP()
