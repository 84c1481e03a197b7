"""A Gaussian process of a scalar function learned from its gradients (and values).

The natural surrogate of a free-energy surface: a restrained (umbrella) window measures
the *gradient* of F at one point, with its own standard error, and F is defined only up to
a constant. Following Stecher, Bernstein and Csanyi (JCTC 2014) and Mones et al. (JCTC
2016), F is a GP with a squared-exponential kernel (periodic in every input by default,
for angles) and the observations are linear functionals of it: values ``F(x)`` and
partial derivatives ``dF/dx_j`` at other points. Their joint covariances follow from the
kernel's derivatives, so the posterior of F (and of its gradient) on any grid is exact
GP algebra in float64. Fitted on gradients only, the periodic kernel has its constant
Fourier mode removed (F has zero mean over the torus), which fixes the constant that
gradients cannot see: the variance of F is then the uncertainty of F relative to its
average, not of an offset. With values, the constant mode is kept and the values set it.

Observations are passed to :meth:`GradientGP.fit` as ``y``:

- ``y`` of shape (n,): values of F at ``X`` (the learner protocol; the noise is learned);
- ``y`` of shape (n, 3d): gradient windows, columns ``[dF/dx (d), stderr (d), where (d)]``:
  the measured gradient, its standard error, and the point it was measured at (for an
  umbrella window the mean position, close to the restraint centre ``X``). Each gradient
  component has variance ``stderr^2 + extra_noise``, ``extra_noise`` learned.

:meth:`GradientGP.fit_observations` takes both kinds at once. Hyperparameters (output
scale, one length scale per input, noise) maximize the marginal likelihood (torch L-BFGS,
warm-started from the previous fit).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.uniform(-np.pi, np.pi, size=(40, 2))
>>> gradient = np.stack([np.cos(X[:, 0]), -np.sin(X[:, 1])], axis=1)  # F = sin x + cos y
>>> y = np.hstack([gradient, np.full((40, 2), 0.01), X])
>>> gp = GradientGP().fit(X, y)
>>> grid = np.array([[0.5, 0.0], [-1.0, 2.0]])
>>> F = gp.posterior(grid).mean
>>> truth = np.sin(grid[:, 0]) + np.cos(grid[:, 1])
>>> bool(abs((F[0] - F[1]) - (truth[0] - truth[1])) < 0.05)  # up to a constant
True
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import numpy as np
import scipy.special
import torch

from learners.base import FittedState, check_inputs
from learners.cholesky import GrowingCholesky
from learners.posterior import IndependentPosterior, Posterior, _covariance_root

__all__ = ["GradientGP", "GradientGPPosterior"]

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
_LOG_BOUNDS = {"lengthscale": (math.log(0.05), math.log(20.0)),
               "outputscale": (math.log(1e-4), math.log(1e4)),
               "noise": (math.log(1e-8), math.log(10.0))}


def _functional_blocks(A: Any, B: Any, lengthscale: Any, outputscale: Any, periodic: bool,
                       a_value: bool, a_grad: bool, b_value: bool, b_grad: bool,
                       lib: Any, drop_constant: bool = True) -> Any:
    """Covariances between functionals of F at A and at B (torch or numpy, by ``lib``).

    Rows: ``F(A)`` (if ``a_value``) then ``dF/dx_0(A)``, ..., ``dF/dx_{d-1}(A)`` (if
    ``a_grad``), each block of len(A) rows; columns likewise for B. ``drop_constant``
    (periodic only) removes the kernel's constant Fourier mode from value-value blocks.
    """
    u = A[:, None, :] - B[None, :, :]  # (na, nb, d)
    inv = 1.0 / lengthscale**2  # (d,)
    if periodic:
        k = outputscale * lib.exp(((lib.cos(u) - 1.0) * inv).sum(-1))
        s_u, c_u = lib.sin(u), lib.cos(u)
        if a_value and b_value and drop_constant:  # F has zero mean over the torus
            i0e = torch.special.i0e if lib is torch else scipy.special.i0e
            k_values = k - outputscale * lib.prod(i0e(inv))
        else:
            k_values = k
    else:
        k = outputscale * lib.exp(-0.5 * (u * u * inv).sum(-1))
        s_u, c_u = u, None
        k_values = k
    d = A.shape[1]
    rows = []
    if a_value:
        row = []
        if b_value:
            row.append(k_values)
        if b_grad:  # Cov(F(a), dF/dx'_j(b)) = k s_j / l_j^2
            row.extend(k * s_u[..., j] * inv[j] for j in range(d))
        rows.append(row)
    if a_grad:
        for i in range(d):
            row = []
            if b_value:  # Cov(dF/dx_i(a), F(b)) = -k s_i / l_i^2
                row.append(-k * s_u[..., i] * inv[i])
            if b_grad:
                for j in range(d):
                    block = -k * s_u[..., i] * s_u[..., j] * inv[i] * inv[j]
                    if i == j:
                        block = block + k * (c_u[..., i] if periodic else 1.0) * inv[i]
                    row.append(block)
            rows.append(row)
    cat = lib.cat if lib is torch else np.concatenate
    return cat([cat(row, 1) for row in rows], 0)


def _check_gradient_rows(y: np.ndarray, n: int, d: int) -> tuple[np.ndarray, ...]:
    if y.shape != (n, 3 * d):
        raise ValueError(f"y must be (n,) values or (n, 3d) = ({n}, {3 * d}) gradient "
                         f"windows [gradient, stderr, where], got shape {y.shape}")
    if not np.all(np.isfinite(y)):
        raise ValueError("y contains non-finite values (nan or inf)")
    gradient, stderr, where = y[:, :d], y[:, d:2 * d], y[:, 2 * d:]
    if np.any(stderr < 0):
        raise ValueError("y: gradient standard errors must be >= 0")
    return gradient, stderr, where


class GradientGPPosterior(Posterior):
    """Posterior of F at n points, with the gradient functionals beside it.

    ``mean``, ``variance``, :meth:`covariance` and :meth:`sample` are those of F at the
    points (in y units; with gradient data only, F's constant is set by the prior).

    Gradient-aware acquisition (``learners.acquisition.IntegratedVariance``) also reads the
    *augmented* index space of ``n (1 + d)`` functionals: position ``i`` is ``F(x_i)``,
    position ``n (1 + j) + i`` is ``dF/dx_j (x_i)``; observing point i measures the d
    positions :meth:`observation_positions` gives, each with variance
    ``gradient_noise[j]``.
    """

    observes_gradients = True

    def __init__(self, gp: GradientGP, points: np.ndarray, X: np.ndarray) -> None:
        self._gp = gp
        self.points = points
        self.d = points.shape[1]
        state = gp._fitted()
        self.gradient_noise = np.full(self.d, float(state["typical_gradient_noise"][0]))
        self._whitened: np.ndarray | None = None
        self._aug_mean: np.ndarray | None = None
        mean, variance = self._value_marginals()
        super().__init__(mean, variance, float(state["value_noise"][0]), X=X,
                         X_train=state["x_train"])

    # -- F at the points ---------------------------------------------------------------
    def _cross(self, with_grad: bool) -> np.ndarray:
        """Training functionals x (F at points [+ gradients]): (m, n (1 + d?))."""
        return self._gp._cross(self.points, with_grad)

    def _value_marginals(self) -> tuple[np.ndarray, np.ndarray]:
        gp, state = self._gp, self._gp._fitted()
        cross = self._cross(with_grad=False)  # (m, n)
        mean = cross.T @ state["weights"]
        V = gp._solve_lower(cross)
        variance = gp._value_prior_variance() - np.einsum("ij,ij->j", V, V)
        return gp._y_scale * mean, gp._y_scale**2 * np.maximum(variance, 0.0)

    def covariance(self, columns: np.ndarray) -> np.ndarray:
        """Cov(F(x_i), F(x_columns)): (n, c), y units squared."""
        columns = self._check_columns(columns)
        return self.augmented_covariance(columns)[: self.n]

    def sample(self, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Joint draws of F at the points: (n_samples, n)."""
        n_samples = self._check_n_samples(n_samples)
        C = self.covariance(np.arange(self.n))
        return self.mean + rng.standard_normal((n_samples, self.n)) @ _covariance_root(C).T

    # -- the augmented space (F and its gradient at the points) --------------------------
    @property
    def n_augmented(self) -> int:
        return self.n * (1 + self.d)

    def observation_positions(self, position: int) -> np.ndarray:
        """Augmented positions measured by a window at point ``position``: (d,)."""
        return self.n * (1 + np.arange(self.d)) + int(position)

    def _whitened_cross(self) -> np.ndarray:
        if self._whitened is None:
            self._whitened = self._gp._solve_lower(self._cross(with_grad=True))  # (m, N)
        return self._whitened

    def augmented_variance(self) -> np.ndarray:
        """(n (1 + d),) posterior variances of F and each gradient component, y units^2."""
        W = self._whitened_cross()
        gp = self._gp
        prior = np.concatenate([np.full(self.n, gp._value_prior_variance())]
                               + [np.full(self.n, float(gp._fitted()["outputscale"][0])
                                          / gp._lengthscale[j] ** 2) for j in range(self.d)])
        return gp._y_scale**2 * np.maximum(prior - np.einsum("ij,ij->j", W, W), 0.0)

    def augmented_covariance(self, columns: np.ndarray) -> np.ndarray:
        """Posterior covariance of every augmented functional with ``columns`` (augmented
        positions): (n (1 + d), c), y units squared."""
        columns = np.asarray(columns, dtype=np.int64)
        gp = self._gp
        W = self._whitened_cross()
        n = self.n
        point = columns % n
        kind = columns // n  # 0: value, 1 + j: gradient j
        prior = gp._blocks(self.points, self.points[point], value=True, grad=True,
                           b_value=True, b_grad=True)  # (N, c (1 + d))
        c = columns.size
        picked = prior[:, kind * c + np.arange(c)]
        return gp._y_scale**2 * (picked - W.T @ W[:, columns])

    def gradient_blocks(self) -> np.ndarray:
        """(n, d, d) posterior covariance of the gradient components at each point."""
        W = self._whitened_cross()
        n, d = self.n, self.d
        gp = self._gp
        outputscale = float(gp._fitted()["outputscale"][0])
        G = W[:, n:].reshape(W.shape[0], d, n)  # (m, d, n)
        blocks = -np.einsum("min,mjn->nij", G, G)
        blocks[:, np.arange(d), np.arange(d)] += outputscale / gp._lengthscale**2
        return gp._y_scale**2 * blocks

    def gradient_mean(self) -> np.ndarray:
        """(n, d) posterior mean of the gradient at the points (y units per input unit)."""
        gp, state = self._gp, self._gp._fitted()
        cross = self._cross(with_grad=True)[:, self.n:]
        mean = cross.T @ state["weights"]
        return gp._y_scale * mean.reshape(self.d, self.n).T


class GradientGP(FittedState):
    """Exact GP of a scalar F from values and/or noisy gradients (module docstring).

    Args:
        periodic: kernel periodic with period 2 pi in every input (angles, radians);
            False for the squared-exponential kernel on the real line.
        lengthscale: start of the length scales (input units; radians when periodic).
        iterations: L-BFGS iterations per start. restarts: extra random starts on the
            first fit (refits start from the previous hyperparameters only).
        lengthscale_prior_sd: sd of the log-normal prior on each length scale around
            ``lengthscale`` (smaller: length scales stay nearer it with few data).
        noise_floor: smallest learned noise variance (standardized units).
        threads: torch threads during fit (restored after).
        seed: of the random restarts.
    """

    supports_condition = True
    """:meth:`condition` adds observations with the hyperparameters fixed (rank-k)."""

    defined_up_to_constant = True
    """With gradient data only, F is known up to a constant: compare it with a reference
    after aligning the constant (the engine's reference error does)."""

    multi_column_targets = True
    """``fit`` takes ``y`` of shape (n, 3d) (gradient windows) as well as (n,): the engine
    passes a quantity with several numbers per row through unchanged."""

    def __init__(self, periodic: bool = True, lengthscale: float = 1.0, iterations: int = 60,
                 restarts: int = 1, noise_floor: float = 1e-6, threads: int = 1,
                 seed: int = 0, lengthscale_prior_sd: float = 1.5) -> None:
        self.periodic = bool(periodic)
        self.lengthscale = float(lengthscale)
        self.iterations = int(iterations)
        self.restarts = int(restarts)
        self.noise_floor = float(noise_floor)
        self.threads = int(threads)
        self.seed = int(seed)
        self.lengthscale_prior_sd = float(lengthscale_prior_sd)
        self._state: dict[str, np.ndarray] | None = None
        if not self.lengthscale > 0:
            raise ValueError(f"lengthscale must be > 0, got {lengthscale!r}")
        if self.iterations < 1 or self.restarts < 0 or self.threads < 1:
            raise ValueError("iterations and threads must be >= 1, restarts >= 0")

    def __repr__(self) -> str:
        return f"GradientGP(periodic={self.periodic})"

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray) -> GradientGP:
        """Fit on values (y (n,)) or gradient windows (y (n, 3d), see the module).

        Raises:
            ValueError: bad shapes or non-finite values, naming ``X`` or ``y``.
        """
        X = check_inputs(X)
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"y must be numeric: {error}") from error
        n, d = X.shape
        if y.ndim == 1:
            if y.shape[0] != n:
                raise ValueError(f"y has {y.shape[0]} values but X has {n} rows")
            if not np.all(np.isfinite(y)):
                raise ValueError("y contains non-finite values (nan or inf)")
            return self.fit_observations(X_value=X, value=y)
        if y.ndim != 2 or y.shape[0] != n:
            raise ValueError(f"y must be (n,) or (n, 3d) for n={n} rows of X, got {y.shape}")
        gradient, stderr, where = _check_gradient_rows(y, n, d)
        return self.fit_observations(X_gradient=where, gradient=gradient,
                                     gradient_stderr=stderr, X_features=X)

    def fit_observations(self, X_value: np.ndarray | None = None,
                         value: np.ndarray | None = None,
                         X_gradient: np.ndarray | None = None,
                         gradient: np.ndarray | None = None,
                         gradient_stderr: np.ndarray | None = None,
                         X_features: np.ndarray | None = None) -> GradientGP:
        """Fit on values ``value`` (n_v,) at ``X_value`` and gradients ``gradient``
        (n_g, d) with standard errors ``gradient_stderr`` (n_g, d; None: 0) at
        ``X_gradient``; either kind may be left out. ``X_features`` (the inputs the
        engine pairs observations with) is kept as ``X_train`` when given."""
        have_value = X_value is not None and value is not None and len(value) > 0
        have_grad = X_gradient is not None and gradient is not None and len(gradient) > 0
        if not (have_value or have_grad):
            raise ValueError("y: no observations to fit")
        d = (check_inputs(X_value, name="X") if have_value else
             check_inputs(X_gradient, name="X")).shape[1]
        Xv = check_inputs(X_value, d, "X") if have_value else np.zeros((0, d))
        yv = np.asarray(value, np.float64) if have_value else np.zeros(0)
        Xg = check_inputs(X_gradient, d, "X") if have_grad else np.zeros((0, d))
        G = np.asarray(gradient, np.float64).reshape(-1, d) if have_grad else np.zeros((0, d))
        S = (np.zeros_like(G) if gradient_stderr is None or not have_grad else
             np.asarray(gradient_stderr, np.float64).reshape(-1, d))
        # Standardize: one scale for F (y units); values also lose their mean.
        offset = float(yv.mean()) if have_value else 0.0
        scale_parts = ([yv - offset] if have_value and len(yv) > 1 else []) + (
            [G.ravel() * self.lengthscale] if have_grad else [])
        spread = float(np.std(np.concatenate(scale_parts))) if scale_parts else 0.0
        scale = spread if spread > 1e-12 else 1.0
        targets = np.concatenate([(yv - offset) / scale, (G / scale).T.ravel()])
        known_noise = np.concatenate([np.zeros(len(yv)), ((S / scale) ** 2).T.ravel()])
        previous = self._state
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        started = time.time()
        try:
            params = self._optimize(Xv, Xg, targets, known_noise, previous)
        finally:
            torch.set_num_threads(previous_threads)
        self._install(Xv, Xg, targets, known_noise, params, offset, scale,
                      X_train=X_features if X_features is not None else
                      (Xg if have_grad else Xv), fit_seconds=time.time() - started,
                      gradient_layout=have_grad and X_features is not None)
        return self

    def _optimize(self, Xv: np.ndarray, Xg: np.ndarray, targets: np.ndarray,
                  known_noise: np.ndarray, previous: dict[str, np.ndarray] | None
                  ) -> dict[str, np.ndarray]:
        d = Xv.shape[1] if len(Xv) else Xg.shape[1]
        self._drop_constant = len(Xv) == 0
        starts = []
        if previous is not None and previous["lengthscale"].shape == (d,):
            starts.append({"lengthscale": previous["lengthscale"],
                           "outputscale": previous["outputscale"][0],
                           "value_noise": previous["value_noise_std"][0],
                           "extra_noise": previous["extra_noise"][0]})
        else:
            rng = np.random.default_rng(self.seed)
            starts.append({"lengthscale": np.full(d, self.lengthscale), "outputscale": 1.0,
                           "value_noise": 1e-2, "extra_noise": 1e-2})
            for _ in range(self.restarts):
                starts.append({"lengthscale": self.lengthscale * np.exp(rng.uniform(-1, 1, d)),
                               "outputscale": float(np.exp(rng.uniform(-1, 1))),
                               "value_noise": 1e-2, "extra_noise": 1e-2})
        best, best_loss = None, math.inf
        for start in starts:
            try:
                params, loss = self._lbfgs(Xv, Xg, targets, known_noise, start)
            except (RuntimeError, ValueError) as error:  # a singular start
                logger.debug("GradientGP start failed: %s", error)
                continue
            if loss < best_loss:
                best, best_loss = params, loss
        if best is None:
            raise RuntimeError("GradientGP: every hyperparameter start failed")
        return best

    def _lbfgs(self, Xv: np.ndarray, Xg: np.ndarray, targets: np.ndarray,
               known_noise: np.ndarray, start: dict[str, Any]
               ) -> tuple[dict[str, np.ndarray], float]:
        t = torch.float64
        Av, Ag = torch.tensor(Xv, dtype=t), torch.tensor(Xg, dtype=t)
        y = torch.tensor(targets, dtype=t)
        known = torch.tensor(known_noise, dtype=t)
        nv = len(Xv)
        log_l = torch.tensor(np.log(start["lengthscale"]), dtype=t, requires_grad=True)
        log_s = torch.tensor(math.log(start["outputscale"]), dtype=t, requires_grad=True)
        log_nv = torch.tensor(math.log(max(start["value_noise"], self.noise_floor)), dtype=t,
                              requires_grad=True)
        log_ng = torch.tensor(math.log(max(start["extra_noise"], self.noise_floor)), dtype=t,
                              requires_grad=True)
        variables = [log_l, log_s, log_nv, log_ng]
        optimizer = torch.optim.LBFGS(variables, lr=0.5, max_iter=self.iterations,
                                      line_search_fn="strong_wolfe")

        def loss_fn() -> torch.Tensor:
            lengthscale = torch.exp(log_l.clamp(*_LOG_BOUNDS["lengthscale"]))
            outputscale = torch.exp(log_s.clamp(*_LOG_BOUNDS["outputscale"]))
            noise_v = torch.exp(log_nv.clamp(*_LOG_BOUNDS["noise"])) + self.noise_floor
            noise_g = torch.exp(log_ng.clamp(*_LOG_BOUNDS["noise"])) + self.noise_floor
            K = self._train_covariance_torch(Av, Ag, lengthscale, outputscale)
            diagonal = known + torch.cat([noise_v.expand(nv), noise_g.expand(len(y) - nv)])
            K = K + torch.diag(diagonal) + 1e-9 * torch.eye(len(y), dtype=t)
            L = torch.linalg.cholesky(K)
            alpha = torch.cholesky_solve(y[:, None], L)[:, 0]
            nll = 0.5 * (y @ alpha) + torch.log(torch.diagonal(L)).sum()
            # Weak log-normal priors keep the length scale near the data's scale.
            prior = 0.5 * ((log_l - math.log(self.lengthscale)) ** 2).sum() / (
                self.lengthscale_prior_sd**2)
            return (nll + prior) / len(y)

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            loss = float(loss_fn())
        if not math.isfinite(loss):
            raise ValueError("non-finite marginal likelihood")
        return {
            "lengthscale": np.exp(np.clip(log_l.detach().numpy(), *_LOG_BOUNDS["lengthscale"])),
            "outputscale": float(np.exp(np.clip(log_s.item(), *_LOG_BOUNDS["outputscale"]))),
            "value_noise": float(np.exp(np.clip(log_nv.item(), *_LOG_BOUNDS["noise"])))
            + self.noise_floor,
            "extra_noise": float(np.exp(np.clip(log_ng.item(), *_LOG_BOUNDS["noise"])))
            + self.noise_floor,
        }, loss

    def _train_covariance_torch(self, Av: torch.Tensor, Ag: torch.Tensor,
                                lengthscale: torch.Tensor, outputscale: torch.Tensor
                                ) -> torch.Tensor:
        """Covariance of [values at Av; gradients at Ag] (component-major)."""
        blocks = []
        if len(Av):
            row = [_functional_blocks(Av, Av, lengthscale, outputscale, self.periodic,
                                      True, False, True, False, torch, self._drop_constant)]
            if len(Ag):
                row.append(_functional_blocks(Av, Ag, lengthscale, outputscale, self.periodic,
                                              True, False, False, True, torch))
            blocks.append(torch.cat(row, 1))
        if len(Ag):
            row = []
            if len(Av):
                row.append(_functional_blocks(Ag, Av, lengthscale, outputscale, self.periodic,
                                              False, True, True, False, torch))
            row.append(_functional_blocks(Ag, Ag, lengthscale, outputscale, self.periodic,
                                          False, True, False, True, torch))
            blocks.append(torch.cat(row, 1))
        return torch.cat(blocks, 0)

    def _install(self, Xv: np.ndarray, Xg: np.ndarray, targets: np.ndarray,
                 known_noise: np.ndarray, params: dict[str, Any], offset: float,
                 scale: float, X_train: np.ndarray, fit_seconds: float,
                 gradient_layout: bool) -> None:
        nv = len(Xv)
        diagonal = known_noise + np.concatenate([np.full(nv, params["value_noise"]),
                                                 np.full(len(targets) - nv,
                                                         params["extra_noise"])])
        state = {
            "format_version": np.array([_STATE_VERSION], np.int64),
            "periodic": np.array([int(self.periodic)], np.int64),
            "x_value": Xv.copy(), "x_gradient": Xg.copy(), "x_train": np.array(X_train),
            "targets": targets.copy(), "noise_diagonal": diagonal,
            "lengthscale": np.asarray(params["lengthscale"], np.float64).copy(),
            "outputscale": np.array([params["outputscale"]]),
            "value_noise_std": np.array([params["value_noise"]]),
            "extra_noise": np.array([params["extra_noise"]]),
            "y_offset": np.array([offset]), "y_scale": np.array([scale]),
            "fit_seconds": np.array([fit_seconds]),
            "gradient_layout": np.array([int(gradient_layout)], np.int64),
        }
        self._set_state(state)

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self._state = state
        self.periodic = bool(state["periodic"][0])
        self._drop_constant = len(state["x_value"]) == 0
        self._lengthscale = state["lengthscale"]
        self._y_scale = float(state["y_scale"][0])
        K = self._blocks_train()
        K[np.diag_indices_from(K)] += state["noise_diagonal"] + 1e-9
        self._factor = GrowingCholesky(np.linalg.cholesky(K))
        self._order: np.ndarray | None = None  # factor row i is training row order[i]
        state["weights"] = self._factor.cho_solve(state["targets"])
        self._derive_noise(state)

    def _derive_noise(self, state: dict[str, np.ndarray]) -> None:
        nv = len(state["x_value"])
        known = state["noise_diagonal"][nv:] - state["extra_noise"][0]
        typical = float(np.median(known)) if len(known) else 0.0
        state["typical_gradient_noise"] = np.array([
            (typical + state["extra_noise"][0]) * self._y_scale**2])
        state["value_noise"] = np.array([state["value_noise_std"][0] * self._y_scale**2])

    def condition(self, X: np.ndarray, y: np.ndarray) -> GradientGP:
        """A new GradientGP whose posterior also includes ``(X, y)``; ``self`` unchanged.

        ``y`` as in :meth:`fit`: values (k,) or gradient windows (k, 3d). Hyperparameters
        and the standardization of the fit are kept. Unlike :class:`~learners.ExactGP`
        this refactorizes the grown covariance once (``O(N^3)``, N the number of scalar
        observations) instead of a rank-k update: the training functionals are stored
        component by component, so new rows are not at the end. That is still one
        Cholesky where a fit runs L-BFGS over many. Values added to a fit on gradients
        only change the kernel (its constant mode comes back), so they are refused.

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
            ValueError: bad X or y, or values added to a gradient-only fit.
        """
        state = self._fitted()
        d = state["x_train"].shape[1]
        X = check_inputs(X, d)
        y = np.asarray(y, dtype=np.float64)
        offset, scale = float(state["y_offset"][0]), float(state["y_scale"][0])
        grown = {key: value for key, value in state.items()
                 if key not in ("weights", "typical_gradient_noise", "value_noise")}
        nv, ng = len(state["x_value"]), len(state["x_gradient"])
        targets, noise = state["targets"], state["noise_diagonal"]
        if y.ndim == 1:
            if y.shape != (len(X),) or not np.all(np.isfinite(y)):
                raise ValueError(f"y must be ({len(X)},) finite values, got shape {y.shape}")
            if nv == 0:
                raise ValueError("y: values cannot be added to a fit on gradients only "
                                 "(the kernel changes); refit")
            value_noise = float(state["value_noise_std"][0])
            grown["x_value"] = np.concatenate([state["x_value"], X])
            grown["targets"] = np.concatenate([targets[:nv], (y - offset) / scale,
                                               targets[nv:]])
            grown["noise_diagonal"] = np.concatenate([noise[:nv], np.full(len(X), value_noise),
                                                      noise[nv:]])
            grown["x_train"] = np.concatenate([state["x_train"], X])
        else:
            gradient, stderr, where = _check_gradient_rows(y, len(X), d)
            extra = float(state["extra_noise"][0])
            old_t, old_n = targets[nv:].reshape(d, ng), noise[nv:].reshape(d, ng)
            new_t, new_n = (gradient / scale).T, (stderr / scale).T ** 2 + extra
            grown["x_gradient"] = np.concatenate([state["x_gradient"], where])
            grown["targets"] = np.concatenate([targets[:nv], np.hstack([old_t, new_t]).ravel()])
            grown["noise_diagonal"] = np.concatenate([noise[:nv],
                                                      np.hstack([old_n, new_n]).ravel()])
            grown["x_train"] = np.concatenate([state["x_train"],
                                               X if state["gradient_layout"][0] else where])
        return self._extended(grown, new_values=y.ndim == 1, k=len(X))

    def _extended(self, grown: dict[str, np.ndarray], new_values: bool, k: int) -> GradientGP:
        """This learner with the training rows of ``grown`` (the old rows plus k new
        points' values, or their d gradient components), by a rank-k factor update."""
        state = self._fitted()
        d = state["x_train"].shape[1]
        nv, ng = len(state["x_value"]), len(state["x_gradient"])
        nv2, ng2 = len(grown["x_value"]), len(grown["x_gradient"])
        # training-row positions in the grown layout [values; gradient j at every point]
        old_rows = np.concatenate([np.arange(nv)] + [nv2 + j * ng2 + np.arange(ng)
                                                      for j in range(d)]).astype(np.int64)
        if new_values:
            new_rows = nv + np.arange(k)
            B = grown["x_value"][nv:]
        else:
            new_rows = np.concatenate([nv2 + j * ng2 + ng + np.arange(k) for j in range(d)])
            B = grown["x_gradient"][ng:]
        previous = np.arange(len(old_rows)) if self._order is None else self._order
        order = np.concatenate([old_rows[previous], new_rows])
        parts = []  # every grown training row against the new functionals
        if nv2:
            parts.append(self._blocks(grown["x_value"], B, True, False, new_values,
                                      not new_values))
        if ng2:
            parts.append(self._blocks(grown["x_gradient"], B, False, True, new_values,
                                      not new_values))
        columns = np.vstack(parts)
        corner = columns[new_rows]
        corner[np.diag_indices_from(corner)] += grown["noise_diagonal"][new_rows] + 1e-9
        learner = copy.copy(self)
        learner._state = grown
        learner._factor = self._factor.extend(columns[order[:-len(new_rows)]], corner)
        learner._order = order
        grown["weights"] = learner._factor.cho_solve(grown["targets"][order])
        learner._derive_noise(grown)
        return learner

    # -- algebra -------------------------------------------------------------------------
    def _blocks(self, A: np.ndarray, B: np.ndarray, value: bool, grad: bool, b_value: bool,
                b_grad: bool) -> np.ndarray:
        return _functional_blocks(A, B, self._lengthscale,
                                  float(self._fitted()["outputscale"][0]), self.periodic,
                                  value, grad, b_value, b_grad, np, self._drop_constant)

    def _value_prior_variance(self) -> float:
        """Prior variance of F at a point (without the constant mode when periodic)."""
        outputscale = float(self._fitted()["outputscale"][0])
        if not (self.periodic and self._drop_constant):
            return outputscale
        return outputscale * (1.0 - float(np.prod(scipy.special.i0e(1.0 / self._lengthscale**2))))

    def _blocks_train(self) -> np.ndarray:
        state = self._fitted()
        Xv, Xg = state["x_value"], state["x_gradient"]
        parts = []
        if len(Xv):
            row = [self._blocks(Xv, Xv, True, False, True, False)]
            if len(Xg):
                row.append(self._blocks(Xv, Xg, True, False, False, True))
            parts.append(np.hstack(row))
        if len(Xg):
            row = [self._blocks(Xg, Xv, False, True, True, False)] if len(Xv) else []
            row.append(self._blocks(Xg, Xg, False, True, False, True))
            parts.append(np.hstack(row))
        return np.vstack(parts)

    def _cross(self, points: np.ndarray, with_grad: bool) -> np.ndarray:
        """Training functionals x functionals at ``points``: (m, n) or (m, n (1 + d))."""
        state = self._fitted()
        Xv, Xg = state["x_value"], state["x_gradient"]
        parts = []
        if len(Xv):
            parts.append(self._blocks(Xv, points, True, False, True, with_grad))
        if len(Xg):
            parts.append(self._blocks(Xg, points, False, True, True, with_grad))
        rows = np.vstack(parts)
        return rows if self._order is None else rows[self._order]

    def _solve_lower(self, B: np.ndarray) -> np.ndarray:
        return self._factor.solve_lower(B)

    # -- prediction ----------------------------------------------------------------------
    def posterior(self, X: np.ndarray) -> GradientGPPosterior:
        """Posterior of F at ``X`` (n, d); F in y units (values' mean added back)."""
        state = self._fitted()
        X = check_inputs(X, state["x_train"].shape[1])
        posterior = GradientGPPosterior(self, X, X)
        if state["y_offset"][0]:
            posterior._store_marginals(posterior.mean + state["y_offset"][0],
                                       posterior.variance)
        return posterior

    def observation_posterior(self, X: np.ndarray, y: np.ndarray
                              ) -> tuple[Posterior, np.ndarray]:
        """Predictions of what ``y`` measured, flattened, for prospective scoring.

        For gradient windows: the predicted gradient components at each window's ``where``
        (variance = latent + the window's own stderr^2 + extra noise) against the measured
        ones; for values: the usual posterior and ``y``."""
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 1:
            return self.posterior(X), y
        state = self._fitted()
        d = state["x_train"].shape[1]
        gradient, stderr, where = _check_gradient_rows(y, len(y), d)
        posterior = GradientGPPosterior(self, check_inputs(where, d), where)
        mean = posterior.gradient_mean()  # (n, d)
        n = len(where)
        variance = posterior.augmented_variance()[n:].reshape(d, n).T
        variance = variance + stderr**2 + state["extra_noise"][0] * self._y_scale**2
        return (IndependentPosterior(mean.ravel(), variance.ravel()), gradient.ravel())

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        state = self._fitted()
        return {k: np.array(v, copy=True) for k, v in state.items()
                if k not in ("weights", "typical_gradient_noise", "value_noise")}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> GradientGP:
        required = {"format_version", "periodic", "x_value", "x_gradient", "x_train",
                    "targets", "noise_diagonal", "lengthscale", "outputscale",
                    "value_noise_std", "extra_noise", "y_offset", "y_scale"}
        missing = required - set(state)
        if missing:
            raise ValueError(f"state is missing {sorted(missing)}")
        copied = {k: np.array(v, copy=True) for k, v in state.items()}
        copied.setdefault("fit_seconds", np.array([0.0]))
        copied.setdefault("gradient_layout", np.array([0], np.int64))
        self._set_state(copied)
        return self

    @property
    def lengthscale_(self) -> np.ndarray:
        """Fitted length scales (input units)."""
        return self._fitted()["lengthscale"].copy()
