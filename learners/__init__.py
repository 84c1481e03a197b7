"""Surrogate learners with uncertainty, and the policies that spend a simulation budget.

A learner fits ``(X, y)`` and returns a :class:`Posterior` over candidate points;
:mod:`learners.acquisition` turns a posterior (and pending points) into a batch choice.
Nothing here knows about Parsl or the campaign engine.
"""

from __future__ import annotations

from learners.base import Learner, NotFittedError
from learners.ensemble import DeepEnsemble
from learners.gp import ExactGP
from learners.posterior import (
    GaussianProcessPosterior,
    Posterior,
    SampledPosterior,
    SparseGaussianProcessPosterior,
)
from learners.scikit import RandomForest, SklearnLearner
from learners.sparse_gp import SparseGP

__all__ = [
    "LEARNERS",
    "DeepEnsemble",
    "ExactGP",
    "GaussianProcessPosterior",
    "Learner",
    "NotFittedError",
    "Posterior",
    "RandomForest",
    "SampledPosterior",
    "SklearnLearner",
    "SparseGP",
    "SparseGaussianProcessPosterior",
    "learner_by_name",
]

#: Learner classes by the name a campaign spec uses.
LEARNERS: dict[str, type] = {
    "exact_gp": ExactGP,
    "sparse_gp": SparseGP,
    "deep_ensemble": DeepEnsemble,
    "sklearn": SklearnLearner,
    "random_forest": RandomForest,
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
