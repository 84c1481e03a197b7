"""Calibration of a predictive distribution against values it has not seen.

Used per round on the newest fine results *before* the learner is trained on them (a
prospective check): if the 90% predictive intervals hold about 90% of the new values and
the z-scores have a standard deviation near 1, the uncertainty the acquisition spends
budget on means what it says.
"""

from __future__ import annotations

import math

import numpy as np

from learners.posterior import Posterior

__all__ = ["calibration_metrics"]

# Half-widths (in sd) of the central 50% and 90% intervals of a normal distribution.
_Z50 = 0.6744897501960817
_Z90 = 1.6448536269514722


def calibration_metrics(posterior: Posterior, y_true: np.ndarray,
                        include_noise: bool = True) -> dict[str, float]:
    """Calibration of ``posterior`` (over n points) against observed values ``y_true``.

    The predictive distribution of a new observation at point i is normal with mean
    ``posterior.mean[i]`` and variance ``posterior.variance[i] + posterior.noise_variance``
    (latent uncertainty plus observation noise). Against noise-free values (an exact
    reference function) pass ``include_noise=False``: the intervals are then those of the
    latent function, ``posterior.variance`` only; with the noise in, they would cover
    noise-free values too often. A zero predictive variance is floored at
    ``1e-12`` times the variance of ``y_true`` (or 1e-300) so the z-scores stay finite.

    Args:
        posterior: predictions at the n points the values were observed at.
        y_true: (n,) observed values, n >= 1, finite.
        include_noise: add ``posterior.noise_variance`` to each point's variance.

    Returns:
        ``{"n", "coverage_50", "coverage_90", "nll", "z_std", "z_mean", "rmse"}``:
        fractions of values inside the central 50% / 90% predictive intervals, mean
        negative log predictive density (nats, in y units), standard deviation (ddof=0;
        0.0 for n = 1) and mean of the z-scores ``(y - mean) / sd``, and the RMSE of the mean.
        Well calibrated: coverages near 0.5 and 0.9, ``z_std`` near 1.

    Raises:
        ValueError: ``y_true`` not (n,) for the posterior's n, empty, or non-finite.
    """
    y = np.asarray(y_true, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] != posterior.n:
        raise ValueError(f"y_true must have shape ({posterior.n},), got {y.shape}")
    if y.size == 0:
        raise ValueError("y_true must hold at least one value")
    if not np.all(np.isfinite(y)):
        raise ValueError("y_true contains non-finite values")
    floor = max(1e-12 * float(np.var(y)), 1e-300)
    noise = posterior.noise_variance if include_noise else 0.0
    variance = np.maximum(posterior.variance + noise, floor)
    error = y - posterior.mean
    z = error / np.sqrt(variance)
    nll = 0.5 * (np.log(2.0 * math.pi * variance) + z * z)
    return {
        "n": float(y.size),
        "coverage_50": float(np.mean(np.abs(z) <= _Z50)),
        "coverage_90": float(np.mean(np.abs(z) <= _Z90)),
        "nll": float(np.mean(nll)),
        "z_std": float(np.std(z)),
        "z_mean": float(np.mean(z)),
        "rmse": float(np.sqrt(np.mean(error**2))),
    }
