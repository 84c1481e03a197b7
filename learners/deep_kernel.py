"""A deep-kernel GP: an exact GP whose kernel also compares learned features of the inputs.

Deep kernel learning (Wilson, Hu, Salakhutdinov and Xing, AISTATS 2016) puts a neural
network g in front of a GP kernel and fits the network's weights and the kernel's
hyperparameters together by the exact marginal likelihood. Here the kernel is the product

    k(x, x') = s^2 exp(-|x - x'|^2_L / 2) exp(-|g(x) - g(x')|^2 / (2 l_g^2))

of an ARD squared exponential on the (z-scored) inputs and one on the learned features
g(x) (a small tanh MLP). The input factor keeps the GP honest far from the data (the
covariance decays with distance, so the variance grows back to the prior), and the
feature factor lets the model resolve a feature that is narrow along a direction the
network finds (a sharp ridge along a diagonal, a channel) without shrinking every length
scale. ``l_g`` starts large, so an untrained model is the plain ARD GP.

The product of two squared exponentials is one squared exponential on the concatenated,
scaled inputs ``[x / L, g(x) / l_g]``, so prediction is the package's exact float64 GP
algebra (:class:`~learners.posterior.GaussianProcessPosterior`) on those coordinates.
Refits start from the previous weights and hyperparameters (``warm_iterations`` steps).

>>> import numpy as np
>>> X = np.random.default_rng(0).uniform(0, 1, size=(40, 2))
>>> gp = DeepKernelGP(iterations=100).fit(X, np.tanh(8 * (X[:, 0] + X[:, 1] - 1)))
>>> posterior = gp.posterior(np.array([[0.2, 0.2], [0.8, 0.8], [5.0, 5.0]]))
>>> bool(posterior.mean[0] < 0 < posterior.mean[1])
True
>>> bool(posterior.variance[2] > 10 * posterior.variance[0])  # uncertain far away
True
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import torch
from scipy.linalg import cho_solve, solve_triangular

from learners.base import FittedState, check_inputs, check_targets
from learners.cholesky import GrowingCholesky
from learners.kernels import Kernel
from learners.posterior import GaussianProcessPosterior

__all__ = ["DeepKernelGP"]

_STATE_VERSION = 1
_NET_PREFIX = "net."


def _network(d: int, hidden: tuple[int, ...], n_features: int) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = d
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.Tanh()]
        width = size
    layers.append(torch.nn.Linear(width, n_features))
    return torch.nn.Sequential(*layers).to(torch.float64)


class DeepKernelGP(FittedState):
    """Exact GP with an input x learned-feature product kernel (module docstring).

    ``condition(X, y)`` adds observations to the GP layer with the network fixed.

    Args:
        hidden: widths of the MLP's hidden layers (tanh).
        n_features: number of learned features.
        iterations: Adam steps of the first fit; warm_iterations: of later fits.
        learning_rate: Adam's step size.
        seed: of the network's initial weights.
        threads: torch threads during fit (restored after).
        noise_floor: smallest noise variance (standardized units).
    """

    supports_condition = True
    """:meth:`condition` adds observations to the GP layer, the network fixed."""

    def __init__(self, hidden: tuple[int, ...] = (32, 32), n_features: int = 2,
                 iterations: int = 300, warm_iterations: int = 100,
                 learning_rate: float = 0.02, seed: int = 0, threads: int = 1,
                 noise_floor: float = 1e-6) -> None:
        self.hidden = tuple(int(h) for h in hidden)
        self.n_features = int(n_features)
        self.iterations = int(iterations)
        self.warm_iterations = int(warm_iterations)
        self.learning_rate = float(learning_rate)
        self.seed = int(seed)
        self.threads = int(threads)
        self.noise_floor = float(noise_floor)
        if self.n_features < 1 or self.iterations < 1 or self.warm_iterations < 1:
            raise ValueError("n_features, iterations and warm_iterations must be >= 1")
        if not (self.learning_rate > 0 and self.threads >= 1):
            raise ValueError("learning_rate must be > 0 and threads >= 1")
        self._state: dict[str, np.ndarray] | None = None
        self._net: torch.nn.Sequential | None = None

    def __repr__(self) -> str:
        return f"DeepKernelGP(hidden={self.hidden}, n_features={self.n_features})"

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> DeepKernelGP:
        """Fit weights and hyperparameters on (X, y); refits start from the last fit."""
        X = check_inputs(X)
        y = check_targets(y, len(X))
        x_offset = X.mean(axis=0)
        x_scale = X.std(axis=0)
        x_scale[x_scale < 1e-12] = 1.0
        y_offset = float(y.mean())
        y_scale = float(y.std()) if y.std() > 1e-12 else 1.0
        Xs = (X - x_offset) / x_scale
        ys = (y - y_offset) / y_scale
        previous = self._state
        warm = (previous is not None and self._net is not None
                and previous["x_train"].shape[1] == X.shape[1])
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        started = time.time()
        try:
            params = self._optimize(Xs, ys, warm)
        finally:
            torch.set_num_threads(threads)
        state = {"format_version": np.array([_STATE_VERSION], np.int64),
                 "x_train": X.copy(), "y_train": y.copy(), "x_offset": x_offset,
                 "x_scale": x_scale, "y_offset": np.array([y_offset]),
                 "y_scale": np.array([y_scale]),
                 "hidden": np.array(self.hidden, np.int64),
                 "n_features": np.array([self.n_features], np.int64),
                 "fit_seconds": np.array([time.time() - started]), **params}
        self._set_state(state)
        return self

    def _optimize(self, Xs: np.ndarray, ys: np.ndarray, warm: bool) -> dict[str, np.ndarray]:
        t = torch.float64
        d = Xs.shape[1]
        if warm:
            net = self._net
            state = self._state
            start = {k: float(state[k][0]) for k in ("log_outputscale", "log_noise",
                                                     "log_feature_lengthscale", "constant")}
            log_lengthscale0 = state["log_lengthscale"]
            steps = self.warm_iterations
        else:
            torch.manual_seed(self.seed)
            net = _network(d, self.hidden, self.n_features)
            start = {"log_outputscale": 0.0, "log_noise": math.log(1e-2),
                     "log_feature_lengthscale": math.log(3.0), "constant": 0.0}
            log_lengthscale0 = np.zeros(d)
            steps = self.iterations
        x = torch.tensor(Xs, dtype=t)
        y = torch.tensor(ys, dtype=t)
        log_l = torch.tensor(log_lengthscale0, dtype=t, requires_grad=True)
        scalars = {k: torch.tensor(v, dtype=t, requires_grad=True) for k, v in start.items()}
        optimizer = torch.optim.Adam([*net.parameters(), log_l, *scalars.values()],
                                     lr=self.learning_rate)
        eye = torch.eye(len(y), dtype=t)
        for _ in range(steps):
            optimizer.zero_grad()
            z = self._coordinates(net, x, log_l, scalars["log_feature_lengthscale"])
            K = torch.exp(scalars["log_outputscale"]) * torch.exp(-0.5 * torch.cdist(z, z) ** 2)
            noise = torch.exp(scalars["log_noise"]) + self.noise_floor
            L = torch.linalg.cholesky(K + (noise + 1e-8) * eye)
            residual = (y - scalars["constant"])[:, None]
            alpha = torch.cholesky_solve(residual, L)
            nll = 0.5 * (residual * alpha).sum() + torch.log(torch.diagonal(L)).sum()
            # Weak priors (standardized units): length scales near the data's spread, the
            # noise small, the feature length scale not collapsing.
            prior = (0.5 * (log_l**2).sum() / 1.5**2
                     + 0.5 * (scalars["log_feature_lengthscale"] - math.log(1.0)) ** 2 / 1.5**2
                     + 0.5 * (scalars["log_noise"] - math.log(1e-2)) ** 2 / 3.0**2)
            loss = (nll + prior) / len(y)
            loss.backward()
            optimizer.step()
        self._net = net
        out = {"log_lengthscale": log_l.detach().numpy().copy()}
        out.update({k: np.array([v.item()]) for k, v in scalars.items()})
        for name, value in net.state_dict().items():
            out[_NET_PREFIX + name] = value.detach().numpy().astype(np.float64).copy()
        return out

    @staticmethod
    def _coordinates(net: torch.nn.Module, x: torch.Tensor, log_l: torch.Tensor,
                     log_feature_lengthscale: torch.Tensor) -> torch.Tensor:
        return torch.cat([x / torch.exp(log_l),
                          net(x) / torch.exp(log_feature_lengthscale)], dim=1)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        d = state["x_train"].shape[1]
        hidden = tuple(int(h) for h in state["hidden"])
        net = _network(d, hidden, int(state["n_features"][0]))
        weights = {k[len(_NET_PREFIX):]: torch.tensor(v, dtype=torch.float64)
                   for k, v in state.items() if k.startswith(_NET_PREFIX)}
        net.load_state_dict(weights)
        self._net = net
        self._state = state
        self._train_z = self._z(state["x_train"])
        kernel = self._kernel()
        K = kernel(self._train_z, self._train_z)
        noise = self._noise()
        K[np.diag_indices_from(K)] += noise + 1e-8
        cholesky = np.linalg.cholesky(K)
        ys = (state["y_train"] - state["y_offset"][0]) / state["y_scale"][0]
        residual = ys - state["constant"][0]
        self._factor = GrowingCholesky(cholesky)
        self._weights: np.ndarray | None = cho_solve((cholesky, True), residual)
        self._whitened = solve_triangular(cholesky, residual, lower=True, check_finite=False)

    def condition(self, X: np.ndarray, y: np.ndarray) -> DeepKernelGP:
        """A new DeepKernelGP whose GP layer also includes ``(X, y)``; ``self`` unchanged.

        The network, hyperparameters and standardization stay fixed; the new points'
        learned coordinates extend the float64 Cholesky factor by k rows (``O(n^2 k)``).
        Equals ``load_state_dict`` of the grown data (to round-off).

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
            ValueError: bad X or y.
        """
        state = self._fitted()
        X = check_inputs(X, state["x_train"].shape[1])
        y = check_targets(y, len(X))
        z = self._z(X)
        kernel = self._kernel()
        corner = kernel(z, z)
        corner[np.diag_indices_from(corner)] += self._noise() + 1e-8
        factor = self._factor.extend(kernel(self._train_z, z), corner)
        residual = (y - state["y_offset"][0]) / state["y_scale"][0] - state["constant"][0]
        grown = copy.copy(self)
        grown._state = {**state, "x_train": np.concatenate([state["x_train"], X]),
                        "y_train": np.concatenate([state["y_train"], y])}
        grown._train_z = np.concatenate([self._train_z, z])
        grown._factor = factor
        grown._weights = None
        grown._whitened = factor.extend_whitened(self._whitened, residual)
        return grown

    def _kernel(self) -> Kernel:
        state = self._fitted()
        return Kernel("rbf", np.ones(self._train_z.shape[1]),
                      float(np.exp(state["log_outputscale"][0])))

    def _noise(self) -> float:
        return float(np.exp(self._fitted()["log_noise"][0])) + self.noise_floor

    def _z(self, X: np.ndarray) -> np.ndarray:
        state = self._fitted()
        xs = torch.tensor((X - state["x_offset"]) / state["x_scale"], dtype=torch.float64)
        with torch.no_grad():
            z = self._coordinates(self._net, xs, torch.tensor(state["log_lengthscale"]),
                                  torch.tensor(state["log_feature_lengthscale"][0]))
        return z.numpy()

    # -- prediction ----------------------------------------------------------------------
    def posterior(self, X: np.ndarray) -> GaussianProcessPosterior:
        """Exact GP posterior at ``X`` in y units."""
        state = self._fitted()
        X = check_inputs(X, state["x_train"].shape[1])
        return GaussianProcessPosterior(
            self._z(X), self._train_z, self._kernel(), self._factor, self._weights,
            float(state["constant"][0]), self._noise(), float(state["y_offset"][0]),
            float(state["y_scale"][0]), X=X, X_train=state["x_train"],
            whitened_targets=self._whitened)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {k: np.array(v, copy=True) for k, v in self._fitted().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> DeepKernelGP:
        required = {"x_train", "y_train", "x_offset", "x_scale", "y_offset", "y_scale",
                    "hidden", "n_features", "log_lengthscale", "log_outputscale",
                    "log_noise", "log_feature_lengthscale", "constant"}
        missing = required - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        self._set_state({k: np.array(v, copy=True) for k, v in state.items()})
        return self

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"hidden": self.hidden, "n_features": self.n_features,
                "iterations": self.iterations, "warm_iterations": self.warm_iterations,
                "learning_rate": self.learning_rate, "seed": self.seed,
                "threads": self.threads, "noise_floor": self.noise_floor}
