"""The learner protocol and the input checks every learner shares.

A learner is a surrogate with uncertainty: ``fit(X, y)`` then ``posterior(X)``. Its learned
state is a flat dict of numpy arrays so the engine can store it in zarr (no pickle) and
predict again after a restart with ``load_state_dict``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from learners.posterior import Posterior

__all__ = ["Learner", "NotFittedError", "check_inputs", "check_targets"]


class NotFittedError(RuntimeError, AttributeError):
    """A learner was asked for a prediction or fitted state before ``fit``/``load_state_dict``.

    Also an ``AttributeError`` so ``hasattr(learner, "lengthscale_")`` is False before fit.
    """


@runtime_checkable
class Learner(Protocol):
    """A surrogate model of a scalar quantity with a predictive distribution.

    Contract:
        ``fit(X, y)``: X (n, d) float64, y (n,) float64, n >= 1, all finite; returns self.
        Refitting replaces the data (it may reuse previous hyperparameters as a start).
        ``posterior(X)``: X (q, d) with the fitted d; returns a :class:`Posterior` over
        those q points in the units of y. Raises :class:`NotFittedError` before fit.
        ``state_dict()``: everything needed to predict again, as plain float64/int64
        numpy arrays keyed by str. ``load_state_dict(state)`` restores it and returns self;
        ``posterior`` then works without ``fit``.
        Bad input raises ``ValueError`` naming the argument.
    """

    def fit(self, X: np.ndarray, y: np.ndarray) -> Learner: ...

    def posterior(self, X: np.ndarray) -> Posterior: ...

    def state_dict(self) -> dict[str, np.ndarray]: ...

    def load_state_dict(self, state: dict[str, np.ndarray]) -> Learner: ...


def check_inputs(X: np.ndarray, n_features: int | None = None, name: str = "X") -> np.ndarray:
    """Return ``X`` as a finite (n, d) float64 array (a copy only if conversion needs one).

    Args:
        X: array-like of shape (n, d).
        n_features: required d (the fitted number of columns), or None for any d >= 1.
        name: the argument name used in error messages.

    Raises:
        ValueError: not numeric, not 2-D, no columns, wrong number of columns,
            or non-finite values.
    """
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric (n, d) array: {error}") from error
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, d), got shape {X.shape}")
    if X.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column, got shape {X.shape}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} columns but the learner was fitted on {n_features}"
        )
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return X


def check_targets(y: np.ndarray, n: int, name: str = "y") -> np.ndarray:
    """Return ``y`` as a finite (n,) float64 array matching ``n`` rows of X.

    Raises:
        ValueError: not numeric, not 1-D, length other than ``n``, or non-finite values.
    """
    try:
        y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be a numeric (n,) array: {error}") from error
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,), got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} values but X has {n} rows")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains non-finite values (nan or inf)")
    return y


class FittedState:
    """Mixin for learners whose fitted state is a dict of arrays in ``self._state`` with
    the training inputs under ``"x_train"``: the not-fitted error and the two sizes every
    learner reports."""

    _state: dict[str, np.ndarray] | None

    def _fitted(self) -> dict[str, np.ndarray]:
        state = getattr(self, "_state", None)
        if state is None:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) "
                                 "or load_state_dict(state) first")
        return state

    @property
    def n_train_(self) -> int:
        """Number of training points of the fit."""
        return int(self._fitted()["x_train"].shape[0])

    @property
    def n_features_in_(self) -> int:
        """Number of input columns d of the fit."""
        return int(self._fitted()["x_train"].shape[1])
