"""Sparse variational GP for 10^4-10^5 points: minibatch SVGP training, exact SGPR posterior.

Hyperparameters (ARD Matern 5/2 or RBF, as :class:`~learners.gp.ExactGP`, with the same
priors and bounds) and the m inducing inputs are learned by maximizing GPyTorch's SVGP
evidence lower bound with Adam on minibatches, so one step costs ``O(b m^2)`` whatever n
is. After training, the variational distribution is replaced by its optimum for a
Gaussian likelihood (Titsias 2009), computed in float64 in one streaming pass over the
data (``O(n m^2)`` time, ``O(m^2)`` memory besides the data); the posterior is then exact
for the learned hyperparameters and inducing points (:class:`SparseGaussianProcessPosterior`).

Adam alone moves length scales slowly from a default start, so a cold fit starts from an
:class:`~learners.gp.ExactGP` fitted (L-BFGS, restarts) on a random subset of at most
``init_subset`` points; a refit warm-starts from the previous fit instead.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import gpytorch
import numpy as np
import torch
from scipy.linalg import solve_triangular

from learners.base import FittedState, check_inputs, check_targets
from learners.gp import (
    _LENGTHSCALE_BOUNDS,
    _LENGTHSCALE_PRIOR,
    _NOISE_PRIOR,
    _OUTPUTSCALE_PRIOR,
    ExactGP,
    _jittered_cholesky,
    _standardizer,
)
from learners.kernels import KERNELS, Kernel
from learners.posterior import SparseGaussianProcessPosterior

__all__ = ["SparseGP"]

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
_CHUNK = 4096
_STATE_KEYS = ("format_version", "kernel", "x_train", "y_train", "x_offset", "x_scale",
               "y_offset", "y_scale", "inducing", "lengthscale", "outputscale", "noise",
               "constant")


class _TorchSVGP(gpytorch.models.ApproximateGP):
    def __init__(self, inducing: torch.Tensor, kernel: str) -> None:
        m, d = inducing.shape
        distribution = gpytorch.variational.NaturalVariationalDistribution(m)
        strategy = gpytorch.variational.VariationalStrategy(
            self, inducing, distribution, learn_inducing_locations=True)
        super().__init__(strategy)
        options: dict[str, Any] = {
            "ard_num_dims": d,
            "lengthscale_prior": gpytorch.priors.GammaPrior(*_LENGTHSCALE_PRIOR),
            "lengthscale_constraint": gpytorch.constraints.Interval(*_LENGTHSCALE_BOUNDS),
        }
        base = (gpytorch.kernels.RBFKernel(**options) if kernel == "rbf"
                else gpytorch.kernels.MaternKernel(nu=2.5, **options))
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(
            base, outputscale_prior=gpytorch.priors.GammaPrior(*_OUTPUTSCALE_PRIOR))

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


class SparseGP(FittedState):
    """Sparse variational GP regression (SVGP training, closed-form SGPR posterior).

    ``condition(X, y)`` adds observations exactly for the fitted inducing points.

    Args:
        kernel: ``"matern52"`` or ``"rbf"``.
        n_inducing: inducing points m (capped at n); initialized at a random subset of the
            training inputs, or at the previous fit's inducing points (warm start).
        steps: Adam steps; 0 trains nothing: at every fit the hyperparameters are those
            of an exact GP fitted on ``init_subset`` random rows, the inducing points a
            random subset of the rows, and only the closed-form posterior is computed
            (``O(n m^2)``).
        batch_size: rows per minibatch.
        learning_rate: Adam step size.
        seed: seeds the inducing subset, minibatches and torch; fits are deterministic.
        threads: torch threads during ``fit`` (the previous setting is restored after).
        noise_floor: lower bound of the noise variance (standardized y units).
        init_subset: size of the random subset a cold fit's exact-GP start is fitted on.

    Warm start: a refit with the same kernel and number of columns starts from the
    previous hyperparameters and inducing points (converted to the new standardization).
    Fitted attributes: ``n_train_``, ``n_features_in_``, ``n_inducing_``, ``lengthscale_``,
    ``noise_``.
    """

    supports_condition = True
    """:meth:`condition` adds observations exactly, inducing points fixed."""

    def __init__(
        self,
        kernel: str = "matern52",
        n_inducing: int = 256,
        steps: int = 300,
        batch_size: int = 1024,
        learning_rate: float = 0.1,
        seed: int = 0,
        threads: int = 1,
        noise_floor: float = 1e-6,
        init_subset: int = 512,
    ) -> None:
        self.init_subset = init_subset
        self.kernel = kernel
        self.n_inducing = n_inducing
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.threads = threads
        self.noise_floor = noise_floor

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as a dict (scikit-learn contract)."""
        return {name: getattr(self, name) for name in (
            "kernel", "n_inducing", "steps", "batch_size", "learning_rate", "seed", "threads",
            "noise_floor", "init_subset")}

    def __repr__(self) -> str:
        defaults = SparseGP().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k]]
        return f"SparseGP({', '.join(changed)})"

    def _check_params(self) -> None:
        if self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        for name in ("n_inducing", "steps", "batch_size", "threads", "init_subset"):
            value = getattr(self, name)
            if int(value) != value or value < (0 if name == "steps" else 1):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'steps' else 1}"
                                 f", got {value!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not (math.isfinite(self.noise_floor) and self.noise_floor > 0):
            raise ValueError(f"noise_floor must be > 0, got {self.noise_floor!r}")

    @property
    def n_inducing_(self) -> int:
        """Number of inducing points of the fit."""
        return int(self._fitted()["inducing"].shape[0])

    @property
    def lengthscale_(self) -> np.ndarray:
        """(d,) fitted length scales, standardized X units."""
        return self._fitted()["lengthscale"].copy()

    @property
    def noise_(self) -> float:
        """Fitted noise variance, standardized y units squared."""
        return float(self._fitted()["noise"][0])

    def fit(self, X: np.ndarray, y: np.ndarray) -> SparseGP:
        """Learn hyperparameters and inducing points, then the optimal posterior.

        Args:
            X: (n, d) float64, finite. y: (n,) float64, finite.

        Returns:
            self.

        Raises:
            ValueError: bad parameters or inputs (the message names the argument).
        """
        self._check_params()
        X = check_inputs(X, name="X")
        y = check_targets(y, X.shape[0], name="y")
        x_offset, x_scale = _standardizer(X)
        y_offset, y_scale = _standardizer(y[:, None])
        Xs = (X - x_offset) / x_scale
        ys = (y - y_offset[0]) / y_scale[0]
        rng = np.random.default_rng(self.seed)
        # steps=0 learns nothing itself: its hyperparameters come from the exact start
        start = self._warm_start(X.shape[1], x_offset, x_scale) if self.steps else None
        if start is None:
            start = self._exact_start(X, y, x_scale, y_offset, y_scale, rng)
        m = min(int(self.n_inducing), len(X))
        if start["inducing"] is not None and len(start["inducing"]) == m:
            inducing = start["inducing"]
        else:
            inducing = Xs[np.sort(rng.choice(len(Xs), size=m, replace=False))]
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(int(self.threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                learned = (self._train(Xs, ys, inducing, start, rng) if self.steps
                           else {**start, "inducing": inducing})
        finally:
            torch.set_num_threads(previous_threads)
        self._set_state({
            "format_version": np.array([_STATE_VERSION], dtype=np.int64),
            "kernel": np.array([KERNELS.index(self.kernel)], dtype=np.int64),
            "x_train": X.copy(), "y_train": y.copy(), "x_offset": x_offset,
            "x_scale": x_scale, "y_offset": y_offset, "y_scale": y_scale,
            "inducing": learned["inducing"] * x_scale + x_offset,
            "lengthscale": learned["lengthscale"],
            "outputscale": np.array([learned["outputscale"]]),
            "noise": np.array([learned["noise"]]),
            "constant": np.array([learned["constant"]]),
        })
        return self

    def _warm_start(self, d: int, x_offset: np.ndarray, x_scale: np.ndarray
                    ) -> dict[str, Any] | None:
        state = getattr(self, "_state", None)
        if (state is None or state["x_train"].shape[1] != d
                or KERNELS[int(state["kernel"][0])] != self.kernel):
            return None
        return {
            "inducing": (state["inducing"] - x_offset) / x_scale,
            # length scales are in standardized units of the old fit: rescale to the new
            "lengthscale": state["lengthscale"] * state["x_scale"] / x_scale,
            "outputscale": float(state["outputscale"][0]),
            "noise": float(state["noise"][0]),
            "constant": float(state["constant"][0]),
        }

    def _exact_start(self, X: np.ndarray, y: np.ndarray, x_scale: np.ndarray,
                     y_offset: np.ndarray, y_scale: np.ndarray, rng: np.random.Generator
                     ) -> dict[str, Any]:
        """Hyperparameters of an exact GP on a subset, in this fit's standardized units."""
        size = min(int(self.init_subset), len(X))
        rows = np.sort(rng.choice(len(X), size=size, replace=False))
        gp = ExactGP(kernel=self.kernel, restarts=1, seed=int(self.seed),
                     threads=int(self.threads), noise_floor=float(self.noise_floor))
        sub = gp.fit(X[rows], y[rows]).state_dict()
        ratio = sub["y_scale"][0] / y_scale[0]
        return {
            "inducing": None,
            "lengthscale": sub["lengthscale"] * sub["x_scale"] / x_scale,
            "outputscale": float(sub["outputscale"][0]) * ratio**2,
            "noise": max(float(sub["noise"][0]) * ratio**2, 2.0 * float(self.noise_floor)),
            "constant": float((sub["constant"][0] * sub["y_scale"][0] + sub["y_offset"][0]
                               - y_offset[0]) / y_scale[0]),
        }

    def _train(self, Xs: np.ndarray, ys: np.ndarray, inducing: np.ndarray,
               start: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        x = torch.as_tensor(Xs, dtype=torch.float64)
        y = torch.as_tensor(ys, dtype=torch.float64)
        model = _TorchSVGP(torch.as_tensor(inducing, dtype=torch.float64), self.kernel)
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=gpytorch.priors.GammaPrior(*_NOISE_PRIOR),
            noise_constraint=gpytorch.constraints.GreaterThan(float(self.noise_floor)))
        model, likelihood = model.to(torch.float64), likelihood.to(torch.float64)
        low, high = _LENGTHSCALE_BOUNDS
        lengthscale = np.clip(start["lengthscale"], low * 1.01, high * 0.99)
        model.initialize(**{
            "covar_module.base_kernel.lengthscale": torch.as_tensor(lengthscale).reshape(1, -1),
            "covar_module.outputscale": max(float(start["outputscale"]), 1e-6),
            "mean_module.constant": float(start["constant"]),
        })
        likelihood.noise = max(float(start["noise"]), 2.0 * float(self.noise_floor))
        mll = gpytorch.mlls.VariationalELBO(likelihood, model, num_data=len(ys))
        model.train()
        likelihood.train()
        n, batch = len(ys), min(int(self.batch_size), len(ys))
        # Natural gradients for q(u) (a full-batch step of 1 is its exact optimum; smaller
        # with minibatch noise), Adam for hyperparameters and inducing inputs.
        natural = gpytorch.optim.NGD(model.variational_parameters(), num_data=n,
                                     lr=1.0 if batch == n else 0.1)
        optimizer = torch.optim.Adam([*model.hyperparameters(), *likelihood.parameters()],
                                     lr=float(self.learning_rate))
        for _ in range(int(self.steps)):
            rows = (slice(None) if batch == n
                    else torch.as_tensor(rng.choice(n, size=batch, replace=False)))
            natural.zero_grad()
            optimizer.zero_grad()
            loss = -mll(model(x[rows]), y[rows])
            loss.backward()
            natural.step()
            optimizer.step()
        logger.debug("SVGP final loss %.4g", float(loss.detach()))
        return {
            "inducing": model.variational_strategy.inducing_points.detach().numpy().copy(),
            "lengthscale": model.covar_module.base_kernel.lengthscale.detach().numpy()
            .reshape(-1).copy(),
            "outputscale": float(model.covar_module.outputscale.detach()),
            "noise": float(likelihood.noise.detach().reshape(-1)[0]),
            "constant": float(model.mean_module.constant.detach().reshape(-1)[0]),
        }

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        kernel = Kernel(KERNELS[int(state["kernel"][0])], state["lengthscale"],
                        float(state["outputscale"][0]))
        inducing = (state["inducing"] - state["x_offset"]) / state["x_scale"]
        constant = float(state["constant"][0])
        L = _jittered_cholesky(kernel(inducing, inducing), 1e-8 * kernel.outputscale)
        m = len(inducing)
        gram = np.zeros((m, m))
        projected = np.zeros(m)
        for begin in range(0, len(state["x_train"]), _CHUNK):
            rows = slice(begin, begin + _CHUNK)
            Xs = (state["x_train"][rows] - state["x_offset"]) / state["x_scale"]
            ys = (state["y_train"][rows] - state["y_offset"][0]) / state["y_scale"][0]
            phi = solve_triangular(L, kernel(inducing, Xs), lower=True, check_finite=False)
            gram += phi @ phi.T
            projected += phi @ (ys - constant)
        self._state = state
        self._kernel, self._inducing, self._cholesky = kernel, inducing, L
        self._summarize(gram, projected)

    def _summarize(self, gram: np.ndarray, projected: np.ndarray) -> None:
        """Install the optimal q(u) from ``sum phi phi^T`` and ``sum phi (y - mean)``."""
        noise = float(self._state["noise"][0])
        L_B = np.linalg.cholesky(np.eye(len(gram)) + gram / noise)
        self._gram, self._projected = gram, projected
        self._cholesky_b = L_B
        self._coef = solve_triangular(L_B, projected / noise, lower=True, check_finite=False)

    def condition(self, X: np.ndarray, y: np.ndarray) -> SparseGP:
        """A new SparseGP whose posterior also includes ``(X, y)``; ``self`` unchanged.

        Exact for the fixed inducing points and hyperparameters: the optimal variational
        posterior depends on the data only through ``sum phi phi^T`` and
        ``sum phi (y - mean)`` (m x m and m), so k new rows cost ``O(k m^2 + m^3)``
        whatever n is. Equals ``load_state_dict`` of the grown data (to round-off).

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
            ValueError: bad X or y.
        """
        state = self._fitted()
        X = check_inputs(X, n_features=state["x_train"].shape[1], name="X")
        y = check_targets(y, X.shape[0], name="y")
        Xs = (X - state["x_offset"]) / state["x_scale"]
        ys = (y - state["y_offset"][0]) / state["y_scale"][0]
        phi = solve_triangular(self._cholesky, self._kernel(self._inducing, Xs), lower=True,
                               check_finite=False)
        grown = copy.copy(self)
        grown._state = {**state, "x_train": np.concatenate([state["x_train"], X]),
                        "y_train": np.concatenate([state["y_train"], y])}
        grown._summarize(self._gram + phi @ phi.T,
                         self._projected + phi @ (ys - float(state["constant"][0])))
        return grown

    def posterior(self, X: np.ndarray) -> SparseGaussianProcessPosterior:
        """Posterior of the latent function at X in y units.

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
            ValueError: X not (q, d) with the fitted d, or non-finite.
        """
        state = self._fitted()
        X = check_inputs(X, n_features=state["x_train"].shape[1], name="X")
        return SparseGaussianProcessPosterior(
            points=(X - state["x_offset"]) / state["x_scale"], inducing=self._inducing,
            kernel=self._kernel, cholesky=self._cholesky, cholesky_b=self._cholesky_b,
            coef=self._coef, prior_mean=float(state["constant"][0]),
            noise=float(state["noise"][0]), y_offset=float(state["y_offset"][0]),
            y_scale=float(state["y_scale"][0]), X=X, X_train=state["x_train"])

    def state_dict(self) -> dict[str, np.ndarray]:
        """Float64/int64 copies: ``format_version``, ``kernel`` (code), ``x_train``,
        ``y_train``, standardization, ``inducing`` (m, d) in X units, ``lengthscale``,
        ``outputscale``, ``noise``, ``constant``. The posterior is recomputed from them."""
        return {key: value.copy() for key, value in self._fitted().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> SparseGP:
        """Restore a :meth:`state_dict` (one ``O(n m^2)`` pass); later fits warm-start.

        Raises:
            ValueError: missing keys, unsupported version, another kernel, bad shapes.
        """
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"state is missing keys: {', '.join(missing)}")
        loaded = {key: np.array(state[key]) for key in _STATE_KEYS}
        if int(loaded["format_version"].reshape(-1)[0]) != _STATE_VERSION:
            raise ValueError(f"state format_version unsupported (expected {_STATE_VERSION})")
        code = int(loaded["kernel"].reshape(-1)[0])
        if not 0 <= code < len(KERNELS) or KERNELS[code] != self.kernel:
            raise ValueError(f"state kernel code {code} does not match kernel={self.kernel!r}")
        X = check_inputs(loaded["x_train"], name="state['x_train']")
        check_targets(loaded["y_train"], X.shape[0], name="state['y_train']")
        d = X.shape[1]
        if loaded["inducing"].ndim != 2 or loaded["inducing"].shape[1] != d:
            raise ValueError(f"state['inducing'] must be (m, {d}), got {loaded['inducing'].shape}")
        for key in ("x_offset", "x_scale", "lengthscale"):
            if loaded[key].shape != (d,):
                raise ValueError(f"state[{key!r}] must have shape ({d},)")
        self._set_state(loaded)
        return self
