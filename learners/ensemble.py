"""Deep ensemble: several small torch MLPs from different seeds, their spread as uncertainty.

Lakshminarayanan et al. (2017): members differ by random initialization (and optionally a
bootstrap of the data); the ensemble mean predicts and the members' disagreement is the
epistemic variance. Members are trained together as one batched network (``torch.bmm``),
so an ensemble of 5 costs little more than one member in Python overhead. Prediction is
plain float64 numpy from the stored weights (no torch, no pickle).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from learners.base import FittedState, check_inputs, check_targets
from learners.gp import _standardizer
from learners.posterior import SampledPosterior

__all__ = ["DeepEnsemble"]

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
_CHUNK = 20_000


class DeepEnsemble(FittedState):
    """An ensemble of SiLU MLPs with predictive mean and (epistemic) variance.

    ``__init__`` stores parameters; ``fit`` learns (scikit-learn contract). X columns and y
    are standardized before training. Each member is an MLP with ``hidden`` SiLU layers
    (SiLU extrapolates linearly, so members disagree more the farther a point is from the
    data), trained with Adam on the mean squared error plus ``weight_decay`` (L2) for
    ``steps`` steps on minibatches of ``batch_size`` rows (full batch when n is smaller).

    Args:
        members: ensemble size, >= 2 (5 or more recommended).
        hidden: widths of the hidden layers.
        steps: optimizer steps per fit.
        batch_size: rows per step.
        learning_rate: Adam step size (cosine-decayed to 1% over the steps).
        weight_decay: L2 penalty on the weights, in standardized units.
        bootstrap: train each member on a bootstrap resample (as multiplicity weights)
            instead of the full data.
        seed: seeds initialization, bootstrap and minibatches; fits are deterministic.
        threads: torch threads during ``fit`` (the previous setting is restored after).

    Posterior: a :class:`~learners.posterior.SampledPosterior` over the members'
    predictions with Gaussian sampling (``gaussian=True``); ``noise_variance`` is the mean
    squared training residual of the ensemble mean (aleatoric noise is not modelled
    separately).

    Fitted attributes: ``n_train_``, ``n_features_in_``.
    """

    def __init__(
        self,
        members: int = 5,
        hidden: tuple[int, ...] = (64, 64),
        steps: int = 1500,
        batch_size: int = 512,
        learning_rate: float = 0.01,
        weight_decay: float = 1e-5,
        bootstrap: bool = False,
        seed: int = 0,
        threads: int = 1,
    ) -> None:
        self.members = members
        self.hidden = hidden
        self.steps = steps
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.bootstrap = bootstrap
        self.seed = seed
        self.threads = threads

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as a dict (scikit-learn contract)."""
        return {name: getattr(self, name) for name in (
            "members", "hidden", "steps", "batch_size", "learning_rate", "weight_decay",
            "bootstrap", "seed", "threads")}

    def __repr__(self) -> str:
        defaults = DeepEnsemble().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k]]
        return f"DeepEnsemble({', '.join(changed)})"

    def _check_params(self) -> None:
        for name, low in (("members", 2), ("steps", 1), ("batch_size", 1), ("threads", 1)):
            value = getattr(self, name)
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not self.hidden or any(int(h) != h or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of widths >= 1, got "
                             f"{self.hidden!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")

    def fit(self, X: np.ndarray, y: np.ndarray) -> DeepEnsemble:
        """Train every member on (X, y).

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
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(int(self.threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                layers = self._train(Xs, ys)
        finally:
            torch.set_num_threads(previous_threads)
        state = {
            "format_version": np.array([_STATE_VERSION], dtype=np.int64),
            "x_train": X.copy(), "y_train": y.copy(),
            "x_offset": x_offset, "x_scale": x_scale, "y_offset": y_offset, "y_scale": y_scale,
            "n_layers": np.array([len(layers)], dtype=np.int64),
        }
        for i, (weight, bias) in enumerate(layers):
            state[f"weight_{i}"] = weight
            state[f"bias_{i}"] = bias
        draws = _forward(state, Xs)
        residual = draws.mean(axis=0) - ys
        state["noise"] = np.array([float(np.mean(residual**2)) * y_scale[0] ** 2])
        self._state = state
        return self

    def _train(self, Xs: np.ndarray, ys: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        M, (n, d) = int(self.members), Xs.shape
        generator = torch.Generator().manual_seed(int(self.seed))
        widths = [d, *map(int, self.hidden), 1]
        params = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)  # PyTorch's nn.Linear initialization
            weight = (torch.rand(M, fan_in, fan_out, generator=generator, dtype=torch.float64)
                      * 2 - 1) * bound
            bias = (torch.rand(M, 1, fan_out, generator=generator, dtype=torch.float64)
                    * 2 - 1) * bound
            params += [weight.requires_grad_(), bias.requires_grad_()]
        if self.bootstrap:
            picks = torch.randint(0, n, (M, n), generator=generator)
            weights = torch.zeros(M, n, dtype=torch.float64)
            weights.scatter_add_(1, picks, torch.ones(M, n, dtype=torch.float64))
        else:
            weights = torch.ones(M, n, dtype=torch.float64)
        x = torch.as_tensor(Xs, dtype=torch.float64)
        y = torch.as_tensor(ys, dtype=torch.float64)
        optimizer = torch.optim.Adam(params, lr=float(self.learning_rate))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=int(self.steps), eta_min=0.01 * float(self.learning_rate))
        batch = min(int(self.batch_size), n)
        for _ in range(int(self.steps)):
            rows = (torch.arange(n) if batch == n
                    else torch.randperm(n, generator=generator)[:batch])
            h = x[rows].expand(M, -1, -1)
            for i in range(0, len(params), 2):
                h = torch.baddbmm(params[i + 1], h, params[i])
                if i + 2 < len(params):
                    h = torch.nn.functional.silu(h)
            w = weights[:, rows]
            loss = ((h[..., 0] - y[rows]) ** 2 * w).sum() / w.sum().clamp_min(1.0)
            loss = loss + float(self.weight_decay) * sum(
                (p**2).sum() for p in params[0::2])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
        logger.debug("ensemble final loss %.3g", float(loss.detach()))
        return [(params[i].detach().numpy().copy(), params[i + 1].detach().numpy()[:, 0].copy())
                for i in range(0, len(params), 2)]

    def posterior(self, X: np.ndarray) -> SampledPosterior:
        """Members' predictions at X (y units) as a Gaussian-sampled ensemble posterior.

        Raises:
            NotFittedError: before ``fit`` or ``load_state_dict``.
            ValueError: X not (q, d) with the fitted d, or non-finite.
        """
        state = self._fitted()
        X = check_inputs(X, n_features=state["x_train"].shape[1], name="X")
        Xs = (X - state["x_offset"]) / state["x_scale"]
        draws = state["y_offset"][0] + state["y_scale"][0] * _forward(state, Xs)
        return SampledPosterior(draws, float(state["noise"][0]), X=X,
                                X_train=state["x_train"], gaussian=True)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights and standardization as float64/int64 arrays (copies).

        Keys: ``format_version``, ``n_layers``, ``weight_<i>`` (members, fan_in, fan_out),
        ``bias_<i>`` (members, fan_out), ``x_train``, ``y_train``, ``x_offset``, ``x_scale``,
        ``y_offset``, ``y_scale``, ``noise``.
        """
        return {key: value.copy() for key, value in self._fitted().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> DeepEnsemble:
        """Restore a :meth:`state_dict`; ``posterior`` works afterwards without ``fit``.

        Raises:
            ValueError: missing keys, wrong version, or inconsistent layer shapes.
        """
        base = ("format_version", "n_layers", "x_train", "y_train", "x_offset", "x_scale",
                "y_offset", "y_scale", "noise")
        missing = [key for key in base if key not in state]
        if missing:
            raise ValueError(f"state is missing keys: {', '.join(missing)}")
        if int(np.asarray(state["format_version"]).reshape(-1)[0]) != _STATE_VERSION:
            raise ValueError(f"state format_version unsupported (expected {_STATE_VERSION})")
        n_layers = int(np.asarray(state["n_layers"]).reshape(-1)[0])
        keys = [*base] + [f"{kind}_{i}" for i in range(n_layers) for kind in ("weight", "bias")]
        missing = [key for key in keys if key not in state]
        if missing:
            raise ValueError(f"state is missing keys: {', '.join(missing)}")
        loaded = {key: np.array(state[key]) for key in keys}
        width = loaded["x_train"].shape[1]
        for i in range(n_layers):
            weight, bias = loaded[f"weight_{i}"], loaded[f"bias_{i}"]
            if weight.ndim != 3 or weight.shape[1] != width or bias.shape != (
                    weight.shape[0], weight.shape[2]):
                raise ValueError(f"state['weight_{i}'] / ['bias_{i}'] have inconsistent shapes")
            width = weight.shape[2]
        if width != 1:
            raise ValueError("the last layer must have one output")
        self._state = loaded
        return self


def _forward(state: dict[str, np.ndarray], Xs: np.ndarray) -> np.ndarray:
    """Members' outputs in standardized y units: (members, n) float64, in row chunks."""
    n_layers = int(state["n_layers"][0])
    members = state["weight_0"].shape[0]
    out = np.empty((members, len(Xs)))
    for start in range(0, len(Xs), _CHUNK):
        h = np.broadcast_to(Xs[start:start + _CHUNK], (members, *Xs[start:start + _CHUNK].shape))
        for i in range(n_layers):
            h = h @ state[f"weight_{i}"] + state[f"bias_{i}"][:, None, :]
            if i + 1 < n_layers:
                h = h / (1.0 + np.exp(-h))  # SiLU
        out[:, start:start + _CHUNK] = h[..., 0]
    return out
