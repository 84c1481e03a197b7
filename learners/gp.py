"""Exact Gaussian-process regression: GPyTorch fits the hyperparameters, float64 numpy predicts.

Inputs are z-scored per column and y is standardized before fitting, so the priors and
bounds below are in units of the data's spread. Small data sometimes drives the marginal
likelihood to tiny length scales (the model then predicts the mean everywhere); a Gamma
prior and an interval constraint on the length scales, several restarts, and a warm start
from the previous fit guard against that.

>>> import numpy as np
>>> X = np.linspace(0.0, 1.0, 12)[:, None]
>>> gp = ExactGP(restarts=0, iterations=50).fit(X, np.sin(6.0 * X[:, 0]))
>>> posterior = gp.posterior(np.array([[0.5], [3.0]]))
>>> bool(abs(posterior.mean[0] - np.sin(3.0)) < 0.1)  # close to the data
True
>>> bool(posterior.variance[1] > 10 * posterior.variance[0])  # uncertain far from it
True
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import gpytorch
import numpy as np
import scipy.linalg
import torch
from scipy.linalg import cho_solve, solve_triangular

from learners.base import FittedState, check_inputs, check_targets
from learners.cholesky import GrowingCholesky
from learners.kernels import KERNELS, Kernel, TorchKernel
from learners.posterior import GaussianProcessPosterior
from learners.subset import fit_subset

__all__ = ["ExactGP"]

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
#: Default ``max_fit_points``: the hyperparameters are fitted on at most this many rows
#: (learners.subset); the posterior is conditioned on all of them. Measured in
#: docs/learners.md ("Regimes").
DEFAULT_MAX_FIT_POINTS = 512
#: Above this many training rows the Cholesky for prediction is computed in place.
IN_PLACE_ROWS = 4096
_CHUNK_ROWS = 2048  # rows of the training covariance built at once
# Hyperparameter priors and bounds, all in standardized units (z-scored X, standardized y).
# Length-scale prior mode 1.0 ~ a third of a uniform column's range; Gamma(2, 0.15) on the
# output scale and Gamma(1.1, 10) on the noise are weak, the latter favouring signal over
# noise when data are few.
_LENGTHSCALE_PRIOR = (3.0, 2.0)
_LENGTHSCALE_BOUNDS = (0.02, 50.0)
_OUTPUTSCALE_PRIOR = (2.0, 0.15)
_NOISE_PRIOR = (1.1, 10.0)
# Ranges of random restarts (log-uniform).
_RESTART_LENGTHSCALE = (0.2, 5.0)
_RESTART_OUTPUTSCALE = (0.5, 2.0)
_RESTART_NOISE = (1e-4, 1e-1)
# state["kernel"] code of a kernel object; its parameters are under "kernel_param.<name>".
_CUSTOM = -1
_PARAM_PREFIX = "kernel_param."
_STATE_KEYS = (
    "format_version", "kernel", "x_train", "y_train", "x_offset", "x_scale", "y_offset",
    "y_scale", "lengthscale", "outputscale", "noise", "constant",
)


class _OutOfTimeError(Exception):
    """The fit-time budget ran out (not a RuntimeError: a failed start is one)."""


class _TorchGP(gpytorch.models.ExactGP):
    """Constant mean + ScaleKernel(ARD Matern 5/2 or RBF) with priors, used only for fitting."""

    def __init__(
        self, x: torch.Tensor, y: torch.Tensor, kernel: Any, noise_floor: float
    ) -> None:
        likelihood = gpytorch.likelihoods.GaussianLikelihood(
            noise_prior=gpytorch.priors.GammaPrior(*_NOISE_PRIOR),
            noise_constraint=gpytorch.constraints.GreaterThan(noise_floor),
        )
        super().__init__(x, y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.custom = not isinstance(kernel, str)
        if self.custom:
            self.covar_module = copy.deepcopy(kernel).to(torch.float64)
            return
        d = x.shape[-1]
        options: dict[str, Any] = {
            "ard_num_dims": d,
            "lengthscale_prior": gpytorch.priors.GammaPrior(*_LENGTHSCALE_PRIOR),
            "lengthscale_constraint": gpytorch.constraints.Interval(*_LENGTHSCALE_BOUNDS),
        }
        if kernel == "rbf":
            base = gpytorch.kernels.RBFKernel(**options)
        else:
            base = gpytorch.kernels.MaternKernel(nu=2.5, **options)
        self.covar_module = gpytorch.kernels.ScaleKernel(
            base, outputscale_prior=gpytorch.priors.GammaPrior(*_OUTPUTSCALE_PRIOR)
        )

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    def set_hyperparameters(self, h: dict[str, Any]) -> None:
        if self.custom:
            with torch.no_grad():
                for name, parameter in self.covar_module.named_parameters():
                    parameter.copy_(torch.as_tensor(h["params"][name], dtype=torch.float64))
            self.initialize(**{"likelihood.noise": float(h["noise"]),
                               "mean_module.constant": float(h["constant"])})
            return
        self.initialize(
            **{
                "covar_module.base_kernel.lengthscale": torch.as_tensor(
                    h["lengthscale"], dtype=torch.float64
                ).reshape(1, -1),
                "covar_module.outputscale": float(h["outputscale"]),
                "likelihood.noise": float(h["noise"]),
                "mean_module.constant": float(h["constant"]),
            }
        )

    def hyperparameters(self) -> dict[str, Any]:
        if self.custom:
            return {
                "params": kernel_parameters(self.covar_module),
                "noise": float(self.likelihood.noise.detach().reshape(-1)[0]),
                "constant": float(self.mean_module.constant.detach().reshape(-1)[0]),
            }
        lengthscale = self.covar_module.base_kernel.lengthscale.detach().numpy()
        return {
            "lengthscale": lengthscale.reshape(-1).copy(),
            "outputscale": float(self.covar_module.outputscale.detach()),
            "noise": float(self.likelihood.noise.detach().reshape(-1)[0]),
            "constant": float(self.mean_module.constant.detach().reshape(-1)[0]),
        }


class ExactGP(FittedState):
    """Exact GP regression with ARD Matern 5/2 (or RBF) kernel and Gaussian noise.

    ``condition(X, y)`` adds observations with the hyperparameters fixed (a rank-k
    Cholesky extension, milliseconds where a fit takes seconds).

    Follows the scikit-learn estimator contract: ``__init__`` stores parameters, ``fit``
    learns; learned state ends in ``_``.

    Args:
        kernel: ``"matern52"`` or ``"rbf"`` (ARD, with the priors and bounds above, on
            z-scored inputs), or any GPyTorch kernel instance, e.g.
            :func:`learners.kernels.additive_kernel`, which sees the inputs in their own
            units (no z-scoring; y is still standardized), keeps its own priors and
            constraints, and must have a constant prior variance ``k(x, x)``. Its raw
            parameters are the starts: the instance's own values (or the previous fit's),
            then ``restarts`` random perturbations (standard normal in the raw space).
        restarts: random hyperparameter starts in addition to the first one on a cold fit;
            the first is the previous fit's hyperparameters when refitting with the same
            kernel and number of columns (warm start: this object's last fit or a
            ``load_state_dict``, re-expressed in the new data's standardization), else a
            default (length scales 1, output scale 1, noise 0.01). The hyperparameters
            with the best penalized marginal likelihood evaluated over all starts are kept.
        warm_restarts: random starts in addition to the warm start on a warm fit (at most
            ``restarts``). The default 0 makes a refit one short L-BFGS run from the last
            optimum; the length-scale prior and bounds, not restarts, then guard against
            collapse (a cold fit keeps its ``restarts``).
        max_fit_seconds: wall-clock budget of the hyperparameter optimization, or None for
            none. Before each marginal-likelihood evaluation but the first, the fit stops
            if that evaluation would end past the budget, judged by the duration of the
            previous one; the best hyperparameters evaluated so far are kept, starts not
            reached are skipped and ``stopped_early_`` is set. The first evaluation always
            runs, and the float64 Cholesky for prediction comes after the budget, so a fit
            on large n can still take longer than it. A fit stopped by the budget depends
            on the machine's speed: it is reproducible only when the budget is not hit.
        iterations: maximum L-BFGS iterations per start.
        learning_rate: L-BFGS step length (strong-Wolfe line search), in the optimizer's
            unconstrained hyperparameter space.
        seed: seeds the restarts and torch, so fits are deterministic.
        threads: torch threads during ``fit`` (the previous setting is restored after).
        noise_floor: lower bound of the noise variance in standardized y units; keeps the
            Cholesky well conditioned for noise-free or duplicated data.
        max_fit_points: above this many rows the hyperparameters are fitted on a subset
            of this size (the most recent half plus a space-filling half of the rest,
            :func:`learners.subset.fit_subset`) while the posterior is conditioned on all
            rows; None fits on all rows. At or below it nothing changes.

    Fitted (read-only) attributes: ``n_train_``, ``n_features_in_``, ``lengthscale_``
    ((d,) standardized X units), ``outputscale_``, ``noise_`` and ``constant_``
    (standardized y units). Describing the last ``fit`` of this object (absent after
    ``load_state_dict`` alone): ``n_evaluations_`` (marginal-likelihood evaluations, each
    one Cholesky of the n x n covariance and its gradient), ``n_starts_`` (starts run),
    ``warm_started_``, ``stopped_early_`` (the budget cut the fit short) and
    ``fit_seconds_``, ``n_fit_points_`` (rows the hyperparameters were fitted on);
    ``n_conditioned_``: rows added by :meth:`condition` since the fit.

    Prediction is exact in float64: a Cholesky of ``K_train + noise I`` and candidate rows
    in chunks of 10,000, so 10^5 candidates x 1,000 training points fit in bounded memory.
    """

    supports_condition = True
    """:meth:`condition` adds observations exactly with the hyperparameters fixed."""

    def __init__(
        self,
        kernel: str = "matern52",
        restarts: int = 2,
        iterations: int = 150,
        learning_rate: float = 1.0,
        seed: int = 0,
        threads: int = 1,
        noise_floor: float = 1e-6,
        warm_restarts: int = 0,
        max_fit_seconds: float | None = None,
        max_fit_points: int | None = DEFAULT_MAX_FIT_POINTS,
    ) -> None:
        self.kernel = kernel
        self.restarts = restarts
        self.iterations = iterations
        self.learning_rate = learning_rate
        self.seed = seed
        self.threads = threads
        self.noise_floor = noise_floor
        self.warm_restarts = warm_restarts
        self.max_fit_seconds = max_fit_seconds
        self.max_fit_points = max_fit_points

    # -- scikit-learn style parameters -------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as a dict (scikit-learn contract)."""
        return {
            "kernel": self.kernel,
            "restarts": self.restarts,
            "iterations": self.iterations,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "threads": self.threads,
            "noise_floor": self.noise_floor,
            "warm_restarts": self.warm_restarts,
            "max_fit_seconds": self.max_fit_seconds,
            "max_fit_points": self.max_fit_points,
        }

    def __repr__(self) -> str:
        defaults = ExactGP().get_params()
        plain = (str, int, float, type(None))
        changed = [
            f"{k}={v!r}" if isinstance(v, plain) else f"{k}={type(v).__name__}(...)"
            for k, v in self.get_params().items()
            if not isinstance(v, plain) or v != defaults[k]
        ]
        return f"ExactGP({', '.join(changed)})"

    def _check_params(self) -> None:
        if self._custom():
            pass
        elif not isinstance(self.kernel, str) or self.kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if int(self.restarts) != self.restarts or self.restarts < 0:
            raise ValueError(f"restarts must be an integer >= 0, got {self.restarts!r}")
        if int(self.iterations) != self.iterations or self.iterations < 1:
            raise ValueError(f"iterations must be an integer >= 1, got {self.iterations!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if int(self.threads) != self.threads or self.threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {self.threads!r}")
        if not (math.isfinite(self.noise_floor) and self.noise_floor > 0):
            raise ValueError(f"noise_floor must be > 0, got {self.noise_floor!r}")
        if (isinstance(self.warm_restarts, bool) or int(self.warm_restarts) != self.warm_restarts
                or self.warm_restarts < 0):
            raise ValueError(f"warm_restarts must be an integer >= 0, got {self.warm_restarts!r}")
        budget = self.max_fit_seconds
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, float))
                                   or not math.isfinite(budget) or budget <= 0):
            raise ValueError(f"max_fit_seconds must be None or a number > 0, got {budget!r}")
        points = self.max_fit_points
        if points is not None and (isinstance(points, bool) or int(points) != points
                                   or points < 2):
            raise ValueError(f"max_fit_points must be None or an integer >= 2, got {points!r}")

    def _custom(self) -> bool:
        return isinstance(self.kernel, gpytorch.kernels.Kernel)

    # -- fitted attributes ---------------------------------------------------------------

    @property
    def lengthscale_(self) -> np.ndarray:
        """(d,) fitted length scales in standardized (z-scored) X units."""
        return self._fitted()["lengthscale"].copy()

    @property
    def outputscale_(self) -> float:
        """Fitted prior variance of the latent function, standardized y units squared."""
        return float(self._fitted()["outputscale"][0])

    @property
    def noise_(self) -> float:
        """Fitted observation noise variance, standardized y units squared."""
        return float(self._fitted()["noise"][0])

    @property
    def constant_(self) -> float:
        """Fitted constant prior mean, standardized y units."""
        return float(self._fitted()["constant"][0])

    # -- fit -------------------------------------------------------------------------------

    def fit(self, X: np.ndarray, y: np.ndarray) -> ExactGP:
        """Fit hyperparameters by maximizing the penalized exact marginal likelihood.

        Args:
            X: (n, d) float64 inputs, n >= 1, finite.
            y: (n,) float64 targets, finite.

        Returns:
            self.

        Raises:
            ValueError: bad parameters, X not 2-D, y not matching X, non-finite values.
        """
        self._check_params()
        X = check_inputs(X, name="X")
        y = check_targets(y, X.shape[0], name="y")
        started = time.perf_counter()
        x_offset, x_scale = _standardizer(X)
        if self._custom():  # a kernel object sees the inputs in their own units
            x_offset, x_scale = np.zeros(X.shape[1]), np.ones(X.shape[1])
        y_offset, y_scale = _standardizer(y[:, None])
        Xs = (X - x_offset) / x_scale
        ys = (y - y_offset[0]) / y_scale[0]

        rows = fit_subset(Xs, None if self.max_fit_points is None else int(self.max_fit_points))
        if rows is not None:
            logger.debug("GP hyperparameters fitted on %d of %d rows (max_fit_points)",
                         len(rows), len(Xs))
        fit_X, fit_y = (Xs, ys) if rows is None else (Xs[rows], ys[rows])

        rng = np.random.default_rng(self.seed)
        first, warm = self._first_start(X.shape[1], x_offset, x_scale, y_offset, y_scale)
        starts = [first]
        restarts = min(int(self.restarts), int(self.warm_restarts)) if warm else int(self.restarts)
        if self._custom():
            first = starts[0]["params"]
            starts += [
                {**starts[0], "params": {name: value + rng.standard_normal(value.shape)
                                         if name in _trainable(self.kernel) else value
                                         for name, value in first.items()}}
                for _ in range(restarts)
            ]
        else:
            starts += [_random_start(X.shape[1], rng) for _ in range(restarts)]

        deadline = None if self.max_fit_seconds is None else started + float(self.max_fit_seconds)
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(int(self.threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                best, evaluations, n_starts, stopped = self._optimize(fit_X, fit_y, starts,
                                                                      deadline)
        finally:
            torch.set_num_threads(previous_threads)

        if self._custom():
            params = best["params"]
            metric, prior = _custom_metric(self.kernel, params, Xs)
            best = {**best, "lengthscale": metric, "outputscale": prior}
        self._set_state(
            {
                "format_version": np.array([_STATE_VERSION], dtype=np.int64),
                "kernel": np.array(
                    [_CUSTOM if self._custom() else KERNELS.index(self.kernel)], dtype=np.int64
                ),
                "x_train": X.copy(),
                "y_train": y.copy(),
                "x_offset": x_offset,
                "x_scale": x_scale,
                "y_offset": y_offset,
                "y_scale": y_scale,
                "lengthscale": np.asarray(best["lengthscale"], dtype=np.float64),
                "outputscale": np.array([best["outputscale"]], dtype=np.float64),
                "noise": np.array([best["noise"]], dtype=np.float64),
                "constant": np.array([best["constant"]], dtype=np.float64),
                **({} if not self._custom() else {
                    _PARAM_PREFIX + name: np.asarray(value, dtype=np.float64).copy()
                    for name, value in best["params"].items()
                }),
            }
        )
        self.n_evaluations_ = evaluations
        self.n_fit_points_ = len(fit_X)
        self.n_starts_ = n_starts
        self.warm_started_ = warm
        self.stopped_early_ = stopped
        self.fit_seconds_ = time.perf_counter() - started
        logger.debug("GP fit on %d points: %s, %d starts, %d evaluations, %.2f s%s", len(X),
                     "warm" if warm else "cold", n_starts, evaluations, self.fit_seconds_,
                     ", stopped by max_fit_seconds" if stopped else "")
        return self

    def _first_start(
        self, d: int, x_offset: np.ndarray, x_scale: np.ndarray, y_offset: np.ndarray,
        y_scale: np.ndarray,
    ) -> tuple[dict[str, Any], bool]:
        """The first start and whether it is a warm start from the current state."""
        state = getattr(self, "_state", None)
        if self._custom():
            params = kernel_parameters(self.kernel)
            if (state is not None and state["x_train"].shape[1] == d
                    and int(state["kernel"][0]) == _CUSTOM
                    and all(_PARAM_PREFIX + k in state
                            and state[_PARAM_PREFIX + k].shape == v.shape
                            for k, v in params.items())):
                # Raw parameters in their own units: no conversion is generic enough.
                params = {k: state[_PARAM_PREFIX + k].copy() for k in params}
                return {"params": params, "noise": float(state["noise"][0]),
                        "constant": float(state["constant"][0])}, True
            return {"params": params, "noise": 1e-2, "constant": 0.0}, False
        if (
            state is not None
            and state["x_train"].shape[1] == d
            and int(state["kernel"][0]) != _CUSTOM
            and KERNELS[int(state["kernel"][0])] == self.kernel
        ):
            # The same hyperparameters in raw units, re-expressed in the new standardization.
            ratio = float(state["y_scale"][0]) / float(y_scale[0])
            return {
                "lengthscale": state["lengthscale"] * state["x_scale"] / x_scale,
                "outputscale": float(state["outputscale"][0]) * ratio**2,
                "noise": float(state["noise"][0]) * ratio**2,
                "constant": (float(state["constant"][0]) * float(state["y_scale"][0])
                             + float(state["y_offset"][0]) - float(y_offset[0]))
                            / float(y_scale[0]),
            }, True
        return {"lengthscale": np.ones(d), "outputscale": 1.0, "noise": 1e-2,
                "constant": 0.0}, False

    def _optimize(
        self, Xs: np.ndarray, ys: np.ndarray, starts: list[dict[str, np.ndarray | float]],
        deadline: float | None,
    ) -> tuple[dict[str, np.ndarray | float], int, int, bool]:
        """L-BFGS from each start in turn; returns (best hyperparameters, evaluations,
        starts run, stopped by the deadline)."""
        x = torch.as_tensor(Xs, dtype=torch.float64)
        y = torch.as_tensor(ys, dtype=torch.float64)
        model = _TorchGP(x, y, self.kernel, float(self.noise_floor)).to(torch.float64)
        mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
        model.train()
        # The best point of every evaluation so far, so a cut-short start still counts.
        track: dict[str, Any] = {"best": None, "loss": math.inf, "evaluations": 0,
                                 "seconds": 0.0}
        stopped = False
        n_starts = 0
        # Exact Cholesky algebra for the sizes we fit (GPyTorch otherwise switches to CG).
        with gpytorch.settings.max_cholesky_size(10**6):
            for index, start in enumerate(starts):
                if _out_of_time(track, deadline):
                    stopped = True
                    break
                n_starts += 1
                model.set_hyperparameters(_clip_start(start, float(self.noise_floor)))
                try:
                    self._run_lbfgs(model, mll, x, y, track, deadline)
                except _OutOfTimeError:
                    stopped = True
                    break
                except (RuntimeError, ValueError) as error:  # NotPSDError is a RuntimeError
                    logger.warning("GP start %d failed: %s", index, error)
                    continue
                logger.debug("GP start %d: best loss so far %.6g", index, track["loss"])
        if stopped:
            logger.info("GP fit stopped by max_fit_seconds=%s after %d evaluations (%d of %d "
                        "starts)", self.max_fit_seconds, track["evaluations"], n_starts,
                        len(starts))
        best = track["best"]
        if best is None:
            logger.warning("all %d GP starts failed; keeping the first start", len(starts))
            best = _clip_start(starts[0], float(self.noise_floor))
        return best, int(track["evaluations"]), n_starts, stopped

    def _run_lbfgs(
        self,
        model: _TorchGP,
        mll: gpytorch.mlls.ExactMarginalLogLikelihood,
        x: torch.Tensor,
        y: torch.Tensor,
        track: dict[str, Any],
        deadline: float | None,
    ) -> None:
        optimizer = torch.optim.LBFGS(
            [p for p in model.parameters() if p.requires_grad],
            lr=float(self.learning_rate),
            max_iter=int(self.iterations),
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            if _out_of_time(track, deadline):
                raise _OutOfTimeError
            began = time.perf_counter()
            optimizer.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            track["evaluations"] += 1
            track["seconds"] = time.perf_counter() - began
            value = float(loss.detach())
            if math.isfinite(value) and value < track["loss"]:
                track["loss"], track["best"] = value, model.hyperparameters()
            return loss

        optimizer.step(closure)

    # -- state -----------------------------------------------------------------------------

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        kernel: Kernel | TorchKernel
        if int(state["kernel"][0]) == _CUSTOM:
            module = copy.deepcopy(self.kernel).to(torch.float64)
            _load_parameters(module, {k[len(_PARAM_PREFIX):]: v for k, v in state.items()
                                      if k.startswith(_PARAM_PREFIX)})
            kernel = TorchKernel(module, state["lengthscale"], float(state["outputscale"][0]))
        else:
            kernel = Kernel(KERNELS[int(state["kernel"][0])], state["lengthscale"],
                            float(state["outputscale"][0]))
        Xs = (state["x_train"] - state["x_offset"]) / state["x_scale"]
        ys = (state["y_train"] - state["y_offset"][0]) / state["y_scale"][0]
        noise = float(state["noise"][0])
        cholesky, jitter = _jittered_cholesky(_train_covariance(kernel, Xs), noise,
                                              with_jitter=True,
                                              rebuild=lambda: _train_covariance(kernel, Xs))
        residual = ys - state["constant"][0]
        weights = cho_solve((cholesky, True), residual, check_finite=False)
        self._state = state
        self._kernel = kernel
        self._train = Xs
        self._factor = GrowingCholesky(cholesky)
        self._jitter = jitter
        self._weights: np.ndarray | None = weights
        self._whitened = solve_triangular(cholesky, residual, lower=True, check_finite=False)
        self.n_conditioned_ = 0

    def condition(self, X: np.ndarray, y: np.ndarray) -> ExactGP:
        """A new ExactGP whose posterior also includes ``(X, y)``, hyperparameters fixed.

        A rank-k extension of the float64 Cholesky factor (``O(n^2 k)``, no copy of the
        n x n factor; :class:`~learners.cholesky.GrowingCholesky`). The standardization,
        hyperparameters and jitter of the fit are kept, so the result equals
        ``load_state_dict`` of the grown data with this state's hyperparameters (to
        round-off). ``self`` is unchanged; a later ``fit`` of the result refits on all
        rows and warm-starts from these hyperparameters.

        Args:
            X: (k, d) float64 inputs with the fitted d, k >= 1, finite.
            y: (k,) float64 targets, finite.

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
            ValueError: bad X or y (the message names the argument).
        """
        state = self._fitted()
        X = check_inputs(X, n_features=state["x_train"].shape[1], name="X")
        y = check_targets(y, X.shape[0], name="y")
        if len(X) == 0:
            return copy.copy(self)
        Xs = (X - state["x_offset"]) / state["x_scale"]
        residual = (y - state["y_offset"][0]) / state["y_scale"][0] - state["constant"][0]
        corner = self._kernel(Xs, Xs)
        corner[np.diag_indices_from(corner)] += float(state["noise"][0]) + self._jitter
        factor = self._factor.extend(self._kernel(self._train, Xs), corner)
        grown = copy.copy(self)
        grown._state = {**state, "x_train": np.concatenate([state["x_train"], X]),
                        "y_train": np.concatenate([state["y_train"], y])}
        grown._train = np.concatenate([self._train, Xs])
        grown._factor = factor
        grown._weights = None
        grown._whitened = factor.extend_whitened(self._whitened, residual)
        grown.n_conditioned_ = self.n_conditioned_ + len(X)
        return grown

    def posterior(self, X: np.ndarray) -> GaussianProcessPosterior:
        """Exact GP posterior of the latent function at X, in the units of y.

        Args:
            X: (q, d) float64 with the fitted number of columns.

        Returns:
            A :class:`~learners.posterior.GaussianProcessPosterior` with mean, variance
            (y units squared), ``noise_variance`` (y units squared) and lazy covariance.

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
            ValueError: X not 2-D, wrong number of columns, or non-finite.
        """
        state = self._fitted()
        X = check_inputs(X, n_features=state["x_train"].shape[1], name="X")
        return GaussianProcessPosterior(
            points=(X - state["x_offset"]) / state["x_scale"],
            train=self._train,
            kernel=self._kernel,
            cholesky=self._factor,
            weights=self._weights,
            whitened_targets=self._whitened,
            prior_mean=float(state["constant"][0]),
            noise=float(state["noise"][0]),
            y_offset=float(state["y_offset"][0]),
            y_scale=float(state["y_scale"][0]),
            X=X,
            X_train=state["x_train"],
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        """Fitted state as float64/int64 numpy arrays (copies), enough to predict again.

        Keys: ``format_version``, ``kernel`` (int64 code, index into
        :data:`learners.kernels.KERNELS`), ``x_train`` (n, d), ``y_train`` (n,), ``x_offset``,
        ``x_scale`` (d,), ``y_offset``, ``y_scale``, ``outputscale``, ``noise``, ``constant``
        (1,), ``lengthscale`` (d,). With a kernel object: ``kernel`` is -1, every raw
        parameter of the fitted kernel is under ``"kernel_param.<parameter name>"``,
        ``lengthscale`` is the nearest-neighbour metric and ``outputscale`` ``k(x, x)``.

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
        """
        return {key: value.copy() for key, value in self._fitted().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> ExactGP:
        """Restore a :meth:`state_dict`; ``posterior`` works afterwards without ``fit``.

        A later ``fit`` warm-starts from the loaded hyperparameters.

        Raises:
            ValueError: missing keys, wrong shapes or dtypes, an unknown format version,
                or a kernel other than this learner's ``kernel`` parameter.
        """
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise ValueError(f"state is missing keys: {', '.join(missing)}")
        loaded = {key: np.array(state[key]) for key in _STATE_KEYS}
        if self._custom():
            expected_params = kernel_parameters(self.kernel)
            for name, value in expected_params.items():
                key = _PARAM_PREFIX + name
                if key not in state:
                    raise ValueError(f"state is missing keys: {key}")
                loaded[key] = np.array(state[key])
                if loaded[key].shape != value.shape:
                    raise ValueError(f"state[{key!r}] must have shape {value.shape}, "
                                     f"got {loaded[key].shape}")
        for key, value in loaded.items():
            expected = np.int64 if key in ("format_version", "kernel") else np.float64
            if key.startswith(_PARAM_PREFIX) and value.dtype != expected:
                raise ValueError(f"state[{key!r}] must be float64, got {value.dtype}")
            if value.dtype != expected:
                raise ValueError(f"state[{key!r}] must be {np.dtype(expected)}, got {value.dtype}")
        if int(loaded["format_version"].reshape(-1)[0]) != _STATE_VERSION:
            raise ValueError(
                f"state format_version {loaded['format_version']} unsupported "
                f"(expected {_STATE_VERSION})"
            )
        code = int(loaded["kernel"].reshape(-1)[0])
        if self._custom() or code == _CUSTOM:
            if not (self._custom() and code == _CUSTOM):
                raise ValueError("state kernel and this learner's kernel must both be kernel "
                                 f"objects or both names (state code {code}, "
                                 f"kernel={self.kernel!r})")
        elif not 0 <= code < len(KERNELS) or KERNELS[code] != self.kernel:
            name = KERNELS[code] if 0 <= code < len(KERNELS) else f"code {code}"
            raise ValueError(f"state kernel {name!r} does not match kernel={self.kernel!r}")
        X = loaded["x_train"]
        if X.ndim != 2 or X.shape[0] < 1:
            raise ValueError(f"state['x_train'] must be (n, d) with n >= 1, got {X.shape}")
        n, d = X.shape
        shapes = {
            "y_train": (n,), "x_offset": (d,), "x_scale": (d,), "lengthscale": (d,),
            "y_offset": (1,), "y_scale": (1,), "outputscale": (1,), "noise": (1,),
            "constant": (1,), "format_version": (1,), "kernel": (1,),
        }
        for key, shape in shapes.items():
            loaded[key] = loaded[key].reshape(-1) if shape == (1,) else loaded[key]
            if loaded[key].shape != shape:
                raise ValueError(f"state[{key!r}] must have shape {shape}, got {loaded[key].shape}")
        self._set_state(loaded)
        for name in ("n_evaluations_", "n_starts_", "warm_started_", "stopped_early_",
                     "fit_seconds_", "n_fit_points_"):
            self.__dict__.pop(name, None)  # they described a fit this state did not come from
        return self


def _out_of_time(track: dict[str, Any], deadline: float | None) -> bool:
    """Whether one more evaluation, as long as the last one, would end past the deadline."""
    return (deadline is not None and track["evaluations"] > 0
            and time.perf_counter() + track["seconds"] > deadline)


def _standardizer(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and standard deviations, with std 1 where a column is constant."""
    offset = A.mean(axis=0)
    scale = A.std(axis=0)
    constant = scale <= 1e-12 * np.maximum(1.0, np.abs(offset))
    scale[constant] = 1.0
    return offset, scale


def _random_start(d: int, rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    def log_uniform(bounds: tuple[float, float], size: int | None = None) -> Any:
        return np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]), size=size))

    return {
        "lengthscale": log_uniform(_RESTART_LENGTHSCALE, d),
        "outputscale": float(log_uniform(_RESTART_OUTPUTSCALE)),
        "noise": float(log_uniform(_RESTART_NOISE)),
        "constant": 0.0,
    }


def _clip_start(
    start: dict[str, np.ndarray | float], noise_floor: float
) -> dict[str, np.ndarray | float]:
    """Move a start strictly inside the constraints (GPyTorch rejects values on a bound)."""
    if "params" in start:  # a kernel object: its own constraints bound the raw parameters
        return {**start, "noise": max(float(start["noise"]), 2.0 * noise_floor)}
    low, high = _LENGTHSCALE_BOUNDS
    return {
        "lengthscale": np.clip(np.asarray(start["lengthscale"]), low * 1.01, high * 0.99),
        "outputscale": max(float(start["outputscale"]), 1e-6),
        "noise": max(float(start["noise"]), 2.0 * noise_floor),
        "constant": float(start["constant"]),
    }


def _jittered_cholesky(K: np.ndarray, noise: float, with_jitter: bool = False,
                       rebuild: Any = None) -> Any:
    """Lower Cholesky of ``K + noise I``, adding jitter if round-off makes it indefinite.

    ``K`` (symmetric, C-ordered) is overwritten. Above :data:`IN_PLACE_ROWS` rows and
    with a ``rebuild`` callable (which returns K afresh), the factor is computed in K's
    own memory (LAPACK on the transposed view), so an n = 20,000 factor needs one n x n
    buffer, not two; if that fails K is rebuilt for the jittered attempts. With
    ``with_jitter`` returns ``(L, jitter added to the diagonal besides the noise)``.
    """
    scale = float(np.mean(np.diag(K)))
    diagonal = np.diag_indices_from(K)
    K[diagonal] += noise
    if rebuild is not None and len(K) > IN_PLACE_ROWS:
        try:
            L = scipy.linalg.cholesky(K.T, lower=True, overwrite_a=True, check_finite=False)
            return (L, 0.0) if with_jitter else L
        except np.linalg.LinAlgError:
            K = rebuild()
            K[diagonal] += noise
    added = 0.0
    for jitter in (0.0, 1e-10, 1e-8, 1e-6, 1e-4):
        K[diagonal] += jitter * scale - added
        added = jitter * scale
        try:
            L = np.linalg.cholesky(K)
        except np.linalg.LinAlgError:
            continue
        if jitter:
            logger.warning("Cholesky of the training covariance needed jitter %.1e", jitter)
        return (L, added) if with_jitter else L
    raise np.linalg.LinAlgError("training covariance is not positive definite even with jitter")


def _train_covariance(kernel: Kernel | TorchKernel, Xs: np.ndarray) -> np.ndarray:
    """``kernel(Xs, Xs)`` built in row chunks: one n x n array, no n x n temporaries."""
    n = len(Xs)
    if n <= _CHUNK_ROWS:
        return kernel(Xs, Xs)
    K = np.empty((n, n))
    for start in range(0, n, _CHUNK_ROWS):
        K[start:start + _CHUNK_ROWS] = kernel(Xs[start:start + _CHUNK_ROWS], Xs)
    return K


def kernel_parameters(module: Any) -> dict[str, np.ndarray]:
    """Raw (unconstrained) parameters of a GPyTorch module as float64 arrays, by name."""
    return {name: parameter.detach().to(torch.float64).numpy().copy()
            for name, parameter in module.named_parameters()}


def _trainable(module: Any) -> set[str]:
    return {name for name, parameter in module.named_parameters() if parameter.requires_grad}


def _load_parameters(module: Any, params: dict[str, np.ndarray]) -> None:
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            parameter.copy_(torch.as_tensor(params[name], dtype=torch.float64))


def _custom_metric(kernel: Any, params: dict[str, np.ndarray], Xs: np.ndarray
                   ) -> tuple[np.ndarray, float]:
    """Nearest-neighbour metric (d,) and constant prior variance of a fitted kernel object.

    The metric is the columnwise smallest ARD length scale of the kernel's parts that
    span all d columns (ones where there is none). Raises ValueError when ``k(x, x)``
    varies over the training inputs (the posteriors assume a constant prior variance).
    """
    module = copy.deepcopy(kernel).to(torch.float64)
    _load_parameters(module, params)
    d = Xs.shape[1]
    metric = np.full(d, np.inf)
    for part in module.modules():
        lengthscale = part.lengthscale if getattr(part, "has_lengthscale", False) else None
        if lengthscale is not None and lengthscale.numel() == d and part.active_dims is None:
            metric = np.minimum(metric, lengthscale.detach().numpy().reshape(-1))
    metric[~np.isfinite(metric)] = 1.0
    with torch.no_grad():
        x = torch.as_tensor(Xs, dtype=torch.float64)
        diag = module(x, x, diag=True).numpy()
    prior = float(diag[0])
    if not (prior > 0 and np.allclose(diag, prior, rtol=1e-6, atol=0.0)):
        raise ValueError("kernel must have a constant positive prior variance k(x, x) "
                         f"(got values in [{diag.min():.3g}, {diag.max():.3g}])")
    return metric, prior
