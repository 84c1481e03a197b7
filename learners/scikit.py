"""scikit-learn regressors as learners: a predictive std or an ensemble's spread.

Two kinds of estimator become a :class:`~learners.base.Learner`:

* a regressor whose ``predict`` takes ``return_std=True`` (e.g.
  ``GaussianProcessRegressor``, ``BayesianRidge``): mean and variance from it. For a
  ``GaussianProcessRegressor`` the covariance columns are exact (from its fitted kernel);
  for others points are treated as independent (diagonal covariance).
* an ensemble with ``estimators_`` (e.g. ``RandomForestRegressor``,
  ``ExtraTreesRegressor``): the per-estimator predictions are the members of a
  :class:`~learners.posterior.SampledPosterior`.

Weights without pickle: scikit-learn models are not arrays, so ``state_dict`` stores the
training data and, for a Gaussian process, the fitted kernel hyperparameters (``theta``);
``load_state_dict`` refits deterministically (fixed ``random_state``; the GP with its
optimizer off) and predicts exactly as before. Loading therefore costs one fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import solve_triangular

from learners.base import FittedState, check_inputs, check_targets
from learners.posterior import IndependentPosterior, Posterior, SampledPosterior

__all__ = ["RandomForest", "SklearnLearner"]

_STATE_VERSION = 1
_CHUNK = 10_000


def _default_estimator(name: str, seed: int) -> Any:
    if name == "gaussian_process":
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
            length_scale=1.0, length_scale_bounds=(1e-2, 1e2), nu=2.5
        ) + WhiteKernel(1e-4, (1e-8, 1e-1))
        return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2,
                                        random_state=seed)
    if name == "random_forest":
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(n_estimators=100, min_samples_leaf=1, random_state=seed)
    raise ValueError(f"estimator must be 'gaussian_process', 'random_forest' or a scikit-learn "
                     f"regressor, got {name!r}")


class SklearnLearner(FittedState):
    """A scikit-learn regressor with uncertainty as a :class:`~learners.base.Learner`.

    Args:
        estimator: ``"gaussian_process"`` (Matern 5/2 ARD-free GP + white noise,
            ``normalize_y``), ``"random_forest"``, or an unfitted scikit-learn regressor
            (cloned at ``fit``) whose ``predict`` accepts ``return_std`` or that has
            ``estimators_`` after fitting.
        seed: ``random_state`` given to the estimator (when it has one).

    X columns are z-scored before fitting (the GP's single length scale then fits
    columns of different units). Fitted attributes: ``estimator_``, ``n_train_``,
    ``n_features_in_``.
    """

    supports_condition = False
    """No :meth:`condition` (it raises NotImplementedError)."""

    def condition(self, X: np.ndarray, y: np.ndarray) -> None:
        """Not supported: always raises.

        Raises:
            NotImplementedError: a scikit-learn estimator cannot condition.
        """
        raise NotImplementedError("a scikit-learn estimator cannot condition: no update for "
                                  "new data; refit or fantasize pending points")

    def __init__(self, estimator: Any = "gaussian_process", seed: int = 0) -> None:
        self.estimator = estimator
        self.seed = seed

    def __repr__(self) -> str:
        return f"{type(self).__name__}(estimator={self.estimator!r}, seed={self.seed!r})"

    def _new_estimator(self) -> Any:
        if isinstance(self.estimator, str):
            return _default_estimator(self.estimator, int(self.seed))
        from sklearn.base import clone

        try:
            estimator = clone(self.estimator)
        except TypeError as error:
            raise ValueError(f"estimator must be a scikit-learn regressor: {error}") from error
        if "random_state" in estimator.get_params():
            estimator.set_params(random_state=int(self.seed))
        return estimator

    def fit(self, X: np.ndarray, y: np.ndarray) -> SklearnLearner:
        """Fit the estimator on (X, y); returns self.

        Raises:
            ValueError: bad inputs (naming the argument), or an estimator that gives no
                uncertainty (neither ``return_std`` nor ``estimators_``).
        """
        X = check_inputs(X, name="X")
        y = check_targets(y, X.shape[0], name="y")
        offset = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale <= 1e-12] = 1.0
        self._fit_state({"format_version": np.array([_STATE_VERSION], dtype=np.int64),
                         "x_train": X.copy(), "y_train": y.copy(), "x_offset": offset,
                         "x_scale": scale}, theta=None)
        return self

    def _fit_state(self, state: dict[str, np.ndarray], theta: np.ndarray | None) -> None:
        estimator = self._new_estimator()
        Xs = (state["x_train"] - state["x_offset"]) / state["x_scale"]
        if theta is not None:
            estimator.set_params(kernel=estimator.kernel.clone_with_theta(theta), optimizer=None)
        estimator.fit(Xs, state["y_train"])
        if not (hasattr(estimator, "estimators_") or _has_return_std(estimator)):
            raise ValueError(f"estimator {type(estimator).__name__} gives no uncertainty: "
                             "predict has no return_std and it has no estimators_")
        if hasattr(estimator, "kernel_"):
            state = {**state, "theta": np.asarray(estimator.kernel_.theta, dtype=np.float64)}
        self.estimator_ = estimator
        self._state = state

    def posterior(self, X: np.ndarray) -> Posterior:
        """Predictive distribution at X in y units.

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
            ValueError: X not (q, d) with the fitted d, or non-finite.
        """
        state = self._fitted()
        X = check_inputs(X, n_features=state["x_train"].shape[1], name="X")
        Xs = (X - state["x_offset"]) / state["x_scale"]
        estimator = self.estimator_
        if hasattr(estimator, "estimators_") and not _has_return_std(estimator):
            draws = np.stack([np.asarray(member.predict(Xs), dtype=np.float64)
                              for member in estimator.estimators_])
            return SampledPosterior(draws, 0.0, X=X, X_train=state["x_train"], gaussian=True)
        if hasattr(estimator, "kernel_") and hasattr(estimator, "L_"):
            return _SklearnGPPosterior(estimator, Xs, X=X, X_train=state["x_train"])
        mean, std = estimator.predict(Xs, return_std=True)
        return IndependentPosterior(np.asarray(mean, np.float64),
                                     np.asarray(std, np.float64) ** 2, 0.0,
                                     X=X, X_train=state["x_train"])

    def state_dict(self) -> dict[str, np.ndarray]:
        """Training data, standardization and (GP) fitted ``theta``: float64/int64 copies."""
        return {key: value.copy() for key, value in self._fitted().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> SklearnLearner:
        """Refit deterministically from a :meth:`state_dict` (the GP without optimizing).

        Raises:
            ValueError: missing keys, unsupported version or inconsistent shapes.
        """
        keys = ("format_version", "x_train", "y_train", "x_offset", "x_scale")
        missing = [key for key in keys if key not in state]
        if missing:
            raise ValueError(f"state is missing keys: {', '.join(missing)}")
        loaded = {key: np.array(state[key]) for key in keys}
        if int(loaded["format_version"].reshape(-1)[0]) != _STATE_VERSION:
            raise ValueError(f"state format_version unsupported (expected {_STATE_VERSION})")
        X = check_inputs(loaded["x_train"], name="state['x_train']")
        check_targets(loaded["y_train"], X.shape[0], name="state['y_train']")
        if loaded["x_offset"].shape != (X.shape[1],) or loaded["x_scale"].shape != (X.shape[1],):
            raise ValueError("state['x_offset'] and ['x_scale'] must have one value per column")
        theta = np.array(state["theta"], dtype=np.float64) if "theta" in state else None
        self._fit_state(loaded, theta)
        return self


class RandomForest(SklearnLearner):
    """:class:`SklearnLearner` with a 100-tree ``RandomForestRegressor`` (per-tree spread).

    Trees predict a constant outside the data, so the spread does not grow away from it:
    a baseline, not an explorer.
    """

    def __init__(self, estimator: Any = "random_forest", seed: int = 0) -> None:
        super().__init__(estimator, seed)


def _has_return_std(estimator: Any) -> bool:
    import inspect

    try:
        return "return_std" in inspect.signature(estimator.predict).parameters
    except (TypeError, ValueError):
        return False


class _SklearnGPPosterior(Posterior):
    """Exact posterior of a fitted ``GaussianProcessRegressor`` (latent f; the white-noise
    kernel term is reported as ``noise_variance``)."""

    def __init__(self, gp: Any, Xs: np.ndarray, X: np.ndarray, X_train: np.ndarray):
        from sklearn.gaussian_process.kernels import WhiteKernel

        self._gp = gp
        self._points = Xs
        kernel = gp.kernel_
        noise = 0.0
        if hasattr(kernel, "k2") and isinstance(kernel.k2, WhiteKernel):
            noise, kernel = float(kernel.k2.noise_level), kernel.k1
        self._kernel = kernel
        scale = float(np.atleast_1d(getattr(gp, "_y_train_std", 1.0))[0])
        self._scale2 = scale**2
        mean = np.asarray(gp.predict(Xs), dtype=np.float64).reshape(-1)
        variance = np.empty(len(Xs))
        for start in range(0, len(Xs), _CHUNK):
            rows = slice(start, start + _CHUNK)
            V = self._whiten(Xs[rows])
            variance[rows] = kernel.diag(Xs[rows]) - np.einsum("ij,ij->j", V, V)
        super().__init__(mean, self._scale2 * np.maximum(variance, 0.0), self._scale2 * noise,
                         X=X, X_train=X_train)

    def _whiten(self, A: np.ndarray) -> np.ndarray:
        cross = self._kernel(self._gp.X_train_, A)
        return solve_triangular(self._gp.L_, cross, lower=True, check_finite=False)

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        columns = self._check_columns(columns)
        chosen = self._points[columns]
        Vc = self._whiten(chosen)
        out = np.empty((self.n, columns.size))
        for start in range(0, self.n, _CHUNK):
            rows = slice(start, start + _CHUNK)
            out[rows] = self._kernel(self._points[rows], chosen) - self._whiten(
                self._points[rows]).T @ Vc
        return out * self._scale2

    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        n_samples = self._check_n_samples(n_samples)
        C = self.covariance(np.arange(self.n))
        values, vectors = np.linalg.eigh(0.5 * (C + C.T))
        root = vectors * np.sqrt(np.maximum(values, 0.0))
        return self.mean + rng.standard_normal((n_samples, self.n)) @ root.T
