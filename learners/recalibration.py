"""Recalibrated uncertainty: scale a learner's predictive spread by what its prospective
errors say.

A campaign refits its learner on a growing training set; the points added since the
previous fit were *not* seen by the previous model, so its z-scores on them,
``(y - mean) / sqrt(variance + noise)``, are an honest (prospective) check of its
intervals. :class:`Recalibrated` keeps the last ``window`` such z-scores and scales the
wrapped learner's posterior standard deviation by

    scale = quantile(|z|, level) / z_level          (z_level = 1.645 for level 0.9)

so that the central ``level`` interval of the rescaled predictions would have held that
fraction of the recent prospective points (a quantile recalibration, Kuleshov et al.,
ICML 2018, in its simplest scalar form). Mean predictions are unchanged. Before
``min_points`` prospective z-scores exist, the scale is 1.

The new points of a refit are the rows after the previous fit's ``n`` rows: the engine
passes the whole training set in commit order, which is what this relies on (a refit on
unrelated data should use a fresh wrapper).

>>> import numpy as np
>>> from learners import ExactGP
>>> X = np.linspace(0, 1, 30)[:, None]
>>> y = np.sin(6 * X[:, 0])
>>> learner = Recalibrated(ExactGP(restarts=0, iterations=30), min_points=5)
>>> for n in (10, 20, 30):
...     learner = learner.fit(X[:n], y[:n])
>>> learner.scale_ > 0, learner.n_scored_
(True, 20)
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from scipy.stats import norm

from learners.base import Learner, NotFittedError, check_inputs
from learners.posterior import Posterior

__all__ = ["Recalibrated", "ScaledPosterior"]


class ScaledPosterior(Posterior):
    """A posterior with its deviations from the mean scaled by ``factor``: variance,
    noise and covariances times ``factor**2``, draws ``mean + factor (draw - mean)``."""

    def __init__(self, posterior: Posterior, factor: float) -> None:
        self.inner = posterior
        self.factor = float(factor)
        super().__init__(posterior.mean, posterior.variance * self.factor**2,
                         posterior.noise_variance * self.factor**2, X=posterior.X,
                         X_train=posterior.X_train)

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        return self.inner.covariance(columns) * self.factor**2

    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        draws = self.inner.sample(n_samples, rng)
        return self.mean + self.factor * (draws - self.inner.mean)


class Recalibrated:
    """Wrap ``learner`` so its predictive spread matches its prospective errors.

    Args:
        learner: any :class:`~learners.base.Learner` of scalar values (default: a new
            :class:`~learners.ExactGP`).
        level: the central interval whose coverage is matched (0 < level < 1).
        window: most recent prospective z-scores used.
        min_points: z-scores needed before the scale departs from 1.
        bounds: the scale is clipped to this range.
    """

    def __init__(self, learner: Learner | None = None, level: float = 0.9, window: int = 200,
                 min_points: int = 10, bounds: tuple[float, float] = (0.2, 10.0)) -> None:
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must lie in (0, 1), got {level!r}")
        if window < 1 or min_points < 1:
            raise ValueError("window and min_points must be >= 1")
        if learner is None:
            from learners.gp import ExactGP

            learner = ExactGP()
        self.learner = learner
        self.level = float(level)
        self.window = int(window)
        self.min_points = int(min_points)
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self._z = np.zeros(0)
        self._n_seen = 0
        self._scale = 1.0
        self._fitted = False

    def __repr__(self) -> str:
        return f"Recalibrated({self.learner!r}, level={self.level})"

    @property
    def scale_(self) -> float:
        """The current factor on the wrapped learner's standard deviation."""
        self._check_fitted()
        return self._scale

    @property
    def n_scored_(self) -> int:
        """Prospective z-scores collected so far (all, not only the window)."""
        return int(self._z.size)

    def _check_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError("this Recalibrated learner is not fitted yet; call fit(X, y) "
                                 "or load_state_dict(state) first")

    @property
    def supports_condition(self) -> bool:
        """Whether the wrapped learner has :meth:`condition` (this wrapper passes it on)."""
        return bool(getattr(self.learner, "supports_condition", False))

    def _score(self, X_new: np.ndarray, y_new: np.ndarray) -> None:
        """Add the current model's prospective z-scores on unseen rows; update the scale."""
        before = self.learner.posterior(X_new)
        sd = np.sqrt(np.maximum(before.variance + before.noise_variance, 1e-300))
        self._z = np.concatenate([self._z, (y_new - before.mean) / sd])
        recent = np.abs(self._z[-self.window:])
        if recent.size >= self.min_points:
            wanted = norm.ppf(0.5 + self.level / 2)
            self._scale = float(np.clip(np.quantile(recent, self.level) / wanted,
                                        *self.bounds))

    def fit(self, X: np.ndarray, y: np.ndarray) -> Recalibrated:
        """Score the previous model on the rows it did not see, update the scale, refit."""
        X = check_inputs(X)
        y = np.asarray(y, dtype=np.float64)
        if self._fitted and len(X) > self._n_seen:
            self._score(X[self._n_seen:], y[self._n_seen:])
        self.learner = self.learner.fit(X, y)
        self._n_seen = len(X)
        self._fitted = True
        return self

    def condition(self, X: np.ndarray, y: np.ndarray) -> Recalibrated:
        """A new wrapper around ``learner.condition(X, y)`` (``self`` unchanged).

        The new rows are scored prospectively first (the model has not seen them), and
        they count as seen: pass them in the order a later ``fit`` gets them, after the
        rows fitted so far (the engine's commit order).

        Raises:
            NotImplementedError: the wrapped learner cannot condition.
            NotFittedError: before ``fit`` or ``load_state_dict``.
        """
        self._check_fitted()
        if not self.supports_condition:
            raise NotImplementedError(f"{type(self.learner).__name__} cannot condition: "
                                      "refit instead")
        X = check_inputs(X)
        y = np.asarray(y, dtype=np.float64)
        grown = copy.copy(self)
        grown._score(X, y)
        grown.learner = self.learner.condition(X, y)
        grown._n_seen = self._n_seen + len(X)
        return grown

    def posterior(self, X: np.ndarray) -> Posterior:
        """The wrapped learner's posterior, its spread times :attr:`scale_`."""
        self._check_fitted()
        inner = self.learner.posterior(X)
        return inner if self._scale == 1.0 else ScaledPosterior(inner, self._scale)

    def state_dict(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        state = {f"inner.{k}": v for k, v in self.learner.state_dict().items()}
        state.update({"recalibration.z": self._z.copy(),
                      "recalibration.scale": np.array([self._scale]),
                      "recalibration.n_seen": np.array([self._n_seen], dtype=np.int64)})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> Recalibrated:
        try:
            inner = {k[len("inner."):]: v for k, v in state.items() if k.startswith("inner.")}
            self.learner = copy.deepcopy(self.learner).load_state_dict(inner)
            self._z = np.array(state["recalibration.z"], dtype=np.float64)
            self._scale = float(state["recalibration.scale"][0])
            self._n_seen = int(state["recalibration.n_seen"][0])
        except KeyError as error:
            raise ValueError(f"state is missing {error}") from None
        self._fitted = True
        return self

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"learner": self.learner, "level": self.level, "window": self.window,
                "min_points": self.min_points, "bounds": self.bounds}
