"""Policies for extremes: upper confidence bound and expected improvement (kriging believer
for batches)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import ndtr

from learners.acquisition.base import (
    Fantasies,
    GreedyAcquisition,
    Scorer,
)
from learners.posterior import Posterior


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


