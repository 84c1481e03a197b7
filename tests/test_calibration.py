"""calibration_metrics: coverage, NLL and z-scores against known distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from learners import SampledPosterior
from learners.calibration import calibration_metrics
from learners.posterior import Posterior


class _Normal(Posterior):
    def sample(self, n_samples, rng):
        return self.mean + rng.standard_normal((n_samples, self.n)) * np.sqrt(self.variance)

    def covariance(self, columns):
        columns = self._check_columns(columns)
        return np.eye(self.n)[:, columns] * self.variance


def test_calibrated_predictions_score_as_calibrated():
    rng = np.random.default_rng(0)
    n = 20000
    mean = rng.normal(size=n)
    variance = rng.uniform(0.5, 2.0, size=n)
    y = mean + rng.standard_normal(n) * np.sqrt(variance + 0.25)  # latent + noise
    metrics = calibration_metrics(_Normal(mean, variance, noise_variance=0.25), y)
    assert metrics["coverage_50"] == pytest.approx(0.5, abs=0.02)
    assert metrics["coverage_90"] == pytest.approx(0.9, abs=0.01)
    assert metrics["z_std"] == pytest.approx(1.0, abs=0.02)
    assert metrics["z_mean"] == pytest.approx(0.0, abs=0.03)
    expected_nll = np.mean(0.5 * np.log(2 * math.pi * (variance + 0.25))) + 0.5
    assert metrics["nll"] == pytest.approx(expected_nll, abs=0.03)
    assert metrics["rmse"] == pytest.approx(np.sqrt(np.mean(variance + 0.25)), rel=0.02)
    assert metrics["n"] == n


def test_overconfident_predictions_are_flagged():
    rng = np.random.default_rng(1)
    y = rng.standard_normal(5000) * 3.0
    metrics = calibration_metrics(_Normal(np.zeros(5000), np.ones(5000)), y)
    assert metrics["coverage_90"] < 0.5 and metrics["z_std"] == pytest.approx(3.0, rel=0.05)


def test_exact_values():
    posterior = _Normal(np.array([0.0, 1.0]), np.array([1.0, 4.0]))
    metrics = calibration_metrics(posterior, np.array([0.5, 5.0]))  # z = 0.5, 2.0
    assert metrics["coverage_50"] == 0.5 and metrics["coverage_90"] == 0.5
    assert metrics["z_std"] == pytest.approx(0.75)
    assert metrics["rmse"] == pytest.approx(np.sqrt((0.25 + 16) / 2))


def test_zero_variance_and_bad_input():
    posterior = SampledPosterior(np.ones((3, 2)))  # zero variance, zero noise
    metrics = calibration_metrics(posterior, np.array([1.0, 2.0]))
    assert all(np.isfinite(value) for value in metrics.values())
    with pytest.raises(ValueError, match="y_true"):
        calibration_metrics(posterior, np.zeros(3))
    with pytest.raises(ValueError, match="y_true"):
        calibration_metrics(posterior, np.array([np.nan, 1.0]))


def test_noise_free_values_are_scored_against_the_latent_intervals():
    rng = np.random.default_rng(2)
    n = 20000
    mean = rng.normal(size=n)
    variance = rng.uniform(0.5, 2.0, size=n)
    truth = mean + rng.standard_normal(n) * np.sqrt(variance)  # the latent function itself
    posterior = _Normal(mean, variance, noise_variance=1.0)
    with_noise = calibration_metrics(posterior, truth)
    latent = calibration_metrics(posterior, truth, include_noise=False)
    assert latent["coverage_90"] == pytest.approx(0.9, abs=0.01)
    assert latent["z_std"] == pytest.approx(1.0, abs=0.02)
    assert with_noise["coverage_90"] > 0.96  # the noise inflates noise-free coverage


def test_recalibration_brings_an_overconfident_model_into_range():
    from learners import ExactGP, Recalibrated
    from learners.recalibration import ScaledPosterior

    class Overconfident(ExactGP):
        """An exact GP whose predictive sd is 4x too small."""

        def posterior(self, X):
            return ScaledPosterior(super().posterior(X), 0.25)

    rng = np.random.default_rng(3)
    X = rng.uniform(0, 1, size=(200, 2))
    y = np.sin(4 * X[:, 0]) * np.cos(3 * X[:, 1]) + 0.1 * rng.standard_normal(200)
    raw = Overconfident(restarts=0, iterations=30)
    wrapped = Recalibrated(Overconfident(restarts=0, iterations=30), min_points=20)
    raw_cover, wrapped_cover = [], []
    for n in range(40, 200, 20):
        for learner, cover in ((raw, raw_cover), (wrapped, wrapped_cover)):
            if n > 40:  # prospective: the model fitted on n - 20 points, on the next 20
                metrics = calibration_metrics(learner.posterior(X[n - 20:n]), y[n - 20:n])
                cover.append(metrics["coverage_90"])
            learner.fit(X[:n], y[:n])
    assert np.mean(raw_cover) < 0.6
    assert 0.8 <= np.mean(wrapped_cover[2:]) <= 0.98  # once 20+ z-scores were collected
    assert 2.0 < wrapped.scale_ < 8.0
    restored = Recalibrated(Overconfident(restarts=0, iterations=30)).load_state_dict(
        wrapped.state_dict())
    np.testing.assert_allclose(restored.posterior(X[:5]).variance,
                               wrapped.posterior(X[:5]).variance)
