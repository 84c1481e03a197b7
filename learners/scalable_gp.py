"""The default surrogate: an exact GP while one Cholesky is affordable, then a sparse one.

:class:`ScalableGP` picks its regime from the number of training rows n at each ``fit``:

- ``n <= max_fit_points``: an :class:`~learners.ExactGP` fitted on every row, exactly
  the learner the small-n benchmarks measure;
- ``max_fit_points < n <= max_exact_points``: the same exact GP, its hyperparameters
  fitted on a subset of ``max_fit_points`` rows (:mod:`learners.subset`), its posterior
  conditioned on all n rows (one float64 Cholesky);
- ``n > max_exact_points``: a :class:`~learners.SparseGP` (SVGP trained on minibatches,
  closed-form posterior over ``n_inducing`` inducing points; its first fit starts from
  an exact GP fitted on a random subset, later ones from the previous sparse fit).

The switch is logged (INFO) and described by :attr:`ScalableGP.regime_`, a dict the
engine can record. ``condition`` passes through to the learner of the current regime.
The crossover defaults are measured (docs/learners.md, "Regimes").

>>> import numpy as np
>>> X = np.linspace(0.0, 1.0, 12)[:, None]
>>> gp = ScalableGP().fit(X, np.sin(6.0 * X[:, 0]))
>>> gp.regime_["regime"], gp.regime_["n_train"]
('exact', 12)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from learners.base import NotFittedError, check_inputs
from learners.gp import DEFAULT_MAX_FIT_POINTS, ExactGP
from learners.posterior import Posterior
from learners.sparse_gp import SparseGP

__all__ = ["ScalableGP"]

logger = logging.getLogger(__name__)

#: Default ``max_exact_points``: above it an exact fit (a hyperparameter fit on 512 rows
#: plus one float64 Cholesky on all n, ~n^3) takes longer than a sparse fit (~constant in
#: n). Measured on 1 thread (docs/results/fit_time_scaling_full.json): the exact fit
#: 11 s at 5,000 and 130 s at 20,000, the sparse fit 83 s at 20,000; the two cross near
#: 17,000 (docs/learners.md, "Regimes").
DEFAULT_MAX_EXACT_POINTS = 16_000
_REGIMES = ("exact", "sparse")
_PREFIX = "inner."


class ScalableGP:
    """A GP surrogate from 10 to 10^5 rows: exact, exact with a subset fit, or sparse.

    Args:
        kernel: ``"matern52"`` or ``"rbf"`` (both regimes).
        max_fit_points: the exact GP fits its hyperparameters on at most this many rows.
        max_exact_points: above this many rows a fit switches to the sparse GP.
        n_inducing: inducing points of the sparse GP.
        seed, threads: passed to both learners.

    Fitted attributes: ``regime_`` (``{"regime": "exact" | "sparse", "n_train",
    "n_fit_points", "max_fit_points", "max_exact_points", "n_inducing", "switched"}``,
    ``switched`` True on the fit that changed regime) and ``learner_`` (the learner of
    the current regime); other fitted attributes (``fit_seconds_``,
    ``warm_started_``, ...) are those of ``learner_``.
    """

    supports_condition = True
    """:meth:`condition` passes through; both regimes condition exactly."""

    def __init__(self, kernel: str = "matern52",
                 max_fit_points: int = DEFAULT_MAX_FIT_POINTS,
                 max_exact_points: int = DEFAULT_MAX_EXACT_POINTS, n_inducing: int = 512,
                 seed: int = 0, threads: int = 1) -> None:
        self.kernel = kernel
        self.max_fit_points = max_fit_points
        self.max_exact_points = max_exact_points
        self.n_inducing = n_inducing
        self.seed = seed
        self.threads = threads

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as a dict (scikit-learn contract)."""
        return {name: getattr(self, name) for name in (
            "kernel", "max_fit_points", "max_exact_points", "n_inducing", "seed", "threads")}

    def __repr__(self) -> str:
        defaults = ScalableGP().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k]]
        return f"ScalableGP({', '.join(changed)})"

    def __getattr__(self, name: str) -> Any:
        # Fitted attributes of the current learner (fit_seconds_, warm_started_, ...).
        if name.endswith("_") and not name.startswith("__"):
            inner = self.__dict__.get("learner_")
            if inner is None:
                raise NotFittedError(f"this ScalableGP is not fitted yet (no {name})")
            return getattr(inner, name)
        raise AttributeError(name)

    def _new(self, regime: str) -> ExactGP | SparseGP:
        if regime == "exact":
            return ExactGP(kernel=self.kernel, max_fit_points=self.max_fit_points,
                           seed=self.seed, threads=self.threads)
        return SparseGP(kernel=self.kernel, n_inducing=self.n_inducing, seed=self.seed,
                        threads=self.threads)

    def _fitted_learner(self) -> ExactGP | SparseGP:
        inner = self.__dict__.get("learner_")
        if inner is None:
            raise NotFittedError("this ScalableGP is not fitted yet; call fit(X, y) or "
                                 "load_state_dict(state) first")
        return inner

    def fit(self, X: np.ndarray, y: np.ndarray) -> ScalableGP:
        """Fit the learner of the regime that ``len(X)`` rows fall in (class docstring).

        Raises:
            ValueError: bad inputs (the message names the argument) or parameters.
        """
        X = check_inputs(X, name="X")
        n = len(X)
        regime = "exact" if n <= int(self.max_exact_points) else "sparse"
        previous = self.__dict__.get("learner_")
        previous_regime = self.__dict__.get("regime_", {}).get("regime")
        if previous is not None and previous_regime == regime:
            inner = previous  # the same learner: its refit warm-starts
        else:
            inner = self._new(regime)
            if previous_regime is not None:
                logger.info("ScalableGP: %d rows > max_exact_points=%d: switching from the "
                            "%s GP to the %s GP", n, self.max_exact_points, previous_regime,
                            regime)
            elif regime == "sparse":
                logger.info("ScalableGP: %d rows > max_exact_points=%d: sparse GP", n,
                            self.max_exact_points)
        inner.fit(X, y)
        self.learner_ = inner
        self.regime_ = {
            "regime": regime, "n_train": n,
            "n_fit_points": int(getattr(inner, "n_fit_points_", n)),
            "max_fit_points": int(self.max_fit_points),
            "max_exact_points": int(self.max_exact_points),
            "n_inducing": int(inner.n_inducing_) if regime == "sparse" else 0,
            "switched": previous_regime is not None and previous_regime != regime,
        }
        return self

    def condition(self, X: np.ndarray, y: np.ndarray) -> ScalableGP:
        """A new ScalableGP whose learner is ``learner_.condition(X, y)``; ``self``
        unchanged. The regime stays that of the last fit (a fit may switch it)."""
        inner = self._fitted_learner()
        grown = ScalableGP(**self.get_params())
        grown.learner_ = inner.condition(X, y)
        grown.regime_ = {**self.regime_, "n_train": self.regime_["n_train"] + len(X),
                         "switched": False}
        return grown

    def posterior(self, X: np.ndarray) -> Posterior:
        """The current learner's posterior at X (see ExactGP / SparseGP)."""
        return self._fitted_learner().posterior(X)

    @property
    def n_train_(self) -> int:
        """Rows the posterior is conditioned on."""
        return self._fitted_learner().n_train_

    def state_dict(self) -> dict[str, np.ndarray]:
        """``regime`` (int64: 0 exact, 1 sparse) and the learner's state under ``inner.``."""
        inner = self._fitted_learner()
        state = {_PREFIX + key: value for key, value in inner.state_dict().items()}
        state["regime"] = np.array([_REGIMES.index(self.regime_["regime"])], dtype=np.int64)
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> ScalableGP:
        """Restore a :meth:`state_dict`; later fits warm-start from it.

        Raises:
            ValueError: missing ``regime`` or an invalid inner state.
        """
        if "regime" not in state:
            raise ValueError("state is missing keys: regime")
        code = int(np.asarray(state["regime"]).reshape(-1)[0])
        if code not in (0, 1):
            raise ValueError(f"state['regime'] must be 0 or 1, got {code}")
        regime = _REGIMES[code]
        inner = self._new(regime).load_state_dict(
            {key[len(_PREFIX):]: value for key, value in state.items()
             if key.startswith(_PREFIX)})
        self.learner_ = inner
        n = inner.n_train_
        self.regime_ = {"regime": regime, "n_train": n, "n_fit_points": n,
                        "max_fit_points": int(self.max_fit_points),
                        "max_exact_points": int(self.max_exact_points),
                        "n_inducing": int(inner.n_inducing_) if regime == "sparse" else 0,
                        "switched": False}
        return self
