"""Deep ensemble: several small torch MLPs from different seeds, their spread as uncertainty.

Lakshminarayanan et al. (2017): members differ by random initialization (and optionally a
bootstrap of the data); the ensemble mean predicts and the members' disagreement is the
epistemic variance. Members are trained together as one batched network (``torch.bmm``),
so an ensemble of 5 costs little more than one member in Python overhead. Prediction is
plain float64 numpy from the stored weights (no torch, no pickle).

Refitting a fitted ensemble (or one restored by ``load_state_dict``) with the same
architecture warm-starts from its weights: a short fine-tune instead of a fresh training
run, which is what makes the ensemble usable in a loop that refits after every batch.
Fits with enough data stop early on a held-out split.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
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
# Early stopping: the held-out loss is checked every _CHECK_EVERY steps; a check improves
# on the best by more than _MIN_IMPROVEMENT (relative) to reset the patience; a split is
# used only when at least _MIN_HELD_OUT rows per member are expected to be held out.
_CHECK_EVERY = 10
_MIN_IMPROVEMENT = 1e-3
_MIN_HELD_OUT = 10
_WARM_RATE = 0.3  # default warm learning rate, relative to learning_rate


class DeepEnsemble(FittedState):
    """An ensemble of SiLU MLPs with predictive mean and (epistemic) variance.

    ``__init__`` stores parameters; ``fit`` learns (scikit-learn contract). X columns and y
    are standardized before training. Each member is an MLP with ``hidden`` SiLU layers
    (SiLU extrapolates linearly, so members disagree more the farther a point is from the
    data), trained with Adam on the mean squared error plus ``weight_decay`` (L2) for up to
    ``steps`` steps on minibatches of ``batch_size`` rows (full batch when n is smaller).

    Warm start: when the ensemble already holds weights of the same architecture (from a
    previous ``fit`` of this object or from ``load_state_dict``) and ``warm_start`` is
    true, ``fit`` starts from them, re-expressed exactly in the new data's standardization,
    and trains for at most ``warm_steps`` steps; when some rows are new (not in the
    previous training set) and n exceeds ``batch_size``, half of every minibatch is drawn
    from the new rows, so the steps go to what changed while the other half keeps the old
    rows fitted. A fresh object is a cold start (random initialization), and so is a
    refit with another architecture or number of columns.

    Early stopping: when ``validation_fraction * n >= 10``, each member holds out that
    fraction of the rows (chosen by a hash of the row and ``seed``, so a row stays held
    out, for that member, in every later fit: the split stays honest across warm starts),
    the held-out loss is checked every 10 steps, each member keeps its best weights, and
    training stops once no member has improved by 0.1% for ``patience`` steps. Members
    hold out different rows, so the ensemble as a whole still sees every row.

    Args:
        members: ensemble size, >= 2 (5 or more recommended).
        hidden: widths of the hidden layers.
        steps: most optimizer steps of a cold fit.
        batch_size: rows per step.
        learning_rate: Adam step size (cosine-decayed to 1% over the steps of a fit).
        weight_decay: L2 penalty on the weights, in standardized units.
        bootstrap: train each member on a bootstrap resample (as multiplicity weights)
            instead of the full data.
        seed: seeds initialization, bootstrap, split and minibatches; fits are deterministic
            for a given seed and history (the weights a warm fit starts from).
        threads: torch threads during ``fit`` (the previous setting is restored after).
        warm_start: refit from the current weights when the architecture matches.
        warm_steps: most optimizer steps of a warm fit (>= 1).
        warm_learning_rate: Adam step size of a warm fit (cosine-decayed to 1% as well), or
            None for ``0.3 * learning_rate`` (a fresh Adam at the full rate first moves the
            trained weights away from their optimum: warm fits came out worse).
        validation_fraction: held-out fraction per member for early stopping, in [0, 0.5];
            0 trains every fit for all its steps on all rows.
        patience: steps without improvement of every member's held-out loss before a fit
            stops (>= 1).

    Posterior: a :class:`~learners.posterior.SampledPosterior` over the members'
    predictions with Gaussian sampling (``gaussian=True``); ``noise_variance`` is the mean
    squared training residual of the ensemble mean (aleatoric noise is not modelled
    separately).

    Fitted attributes: ``n_train_``, ``n_features_in_``; describing the last ``fit`` of
    this object (absent after ``load_state_dict`` alone): ``n_steps_`` (optimizer steps
    taken), ``warm_started_``, ``stopped_early_`` (early stopping ended the fit before its
    step limit), ``n_new_`` (rows not in the previous training set; n on a cold fit),
    ``fit_seconds_``.
    """

    supports_condition = False
    """No :meth:`condition` (it raises NotImplementedError)."""

    def condition(self, X: np.ndarray, y: np.ndarray) -> None:
        """Not supported: always raises.

        Raises:
            NotImplementedError: DeepEnsemble cannot condition.
        """
        raise NotImplementedError("DeepEnsemble cannot condition: networks trained by gradient "
                                  "steps have no closed-form update; refit or fantasize")

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
        warm_start: bool = True,
        warm_steps: int = 300,
        warm_learning_rate: float | None = None,
        validation_fraction: float = 0.1,
        patience: int = 100,
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
        self.warm_start = warm_start
        self.warm_steps = warm_steps
        self.warm_learning_rate = warm_learning_rate
        self.validation_fraction = validation_fraction
        self.patience = patience

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters as a dict (scikit-learn contract)."""
        return {name: getattr(self, name) for name in (
            "members", "hidden", "steps", "batch_size", "learning_rate", "weight_decay",
            "bootstrap", "seed", "threads", "warm_start", "warm_steps", "warm_learning_rate",
            "validation_fraction", "patience")}

    def __repr__(self) -> str:
        defaults = DeepEnsemble().get_params()
        changed = [f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k]]
        return f"DeepEnsemble({', '.join(changed)})"

    def _check_params(self) -> None:
        for name, low in (("members", 2), ("steps", 1), ("batch_size", 1), ("threads", 1),
                          ("warm_steps", 1), ("patience", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not self.hidden or any(int(h) != h or h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of widths >= 1, got "
                             f"{self.hidden!r}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        rate = self.warm_learning_rate
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                 or not math.isfinite(rate) or rate <= 0):
            raise ValueError(f"warm_learning_rate must be None or a number > 0, got {rate!r}")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start must be True or False, got {self.warm_start!r}")
        fraction = self.validation_fraction
        if isinstance(fraction, bool) or not (
                isinstance(fraction, (int, float)) and 0.0 <= fraction <= 0.5):
            raise ValueError(f"validation_fraction must be a number in [0, 0.5], got "
                             f"{fraction!r}")

    def fit(self, X: np.ndarray, y: np.ndarray) -> DeepEnsemble:
        """Train every member on (X, y), warm from the current weights where they fit.

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
        started = time.perf_counter()
        x_offset, x_scale = _standardizer(X)
        y_offset, y_scale = _standardizer(y[:, None])
        Xs = (X - x_offset) / x_scale
        ys = (y - y_offset[0]) / y_scale[0]
        previous = self._warm_weights(X.shape[1], x_offset, x_scale, y_offset, y_scale)
        new_rows = (np.arange(len(X)) if previous is None
                    else _new_rows(X, y, self._state["x_train"], self._state["y_train"]))
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(int(self.threads))
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                layers, steps, stopped = self._train(Xs, ys, X, y, previous, new_rows)
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
        self.n_steps_ = steps
        self.warm_started_ = previous is not None
        self.stopped_early_ = stopped
        self.n_new_ = int(len(new_rows))
        self.fit_seconds_ = time.perf_counter() - started
        logger.debug("ensemble fit: %s, %d steps, stopped early %s, %.2f s",
                     "warm" if previous is not None else "cold", steps, stopped,
                     self.fit_seconds_)
        return self

    def _warm_weights(self, d: int, x_offset: np.ndarray, x_scale: np.ndarray,
                      y_offset: np.ndarray, y_scale: np.ndarray
                      ) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The current weights re-expressed for the new standardization (the network
        computes the same function of the raw inputs), or None for a cold start."""
        state = getattr(self, "_state", None)
        if not self.warm_start or state is None:
            return None
        n_layers = int(state["n_layers"][0])
        widths = [d, *map(int, self.hidden), 1]
        shapes = [(int(self.members), a, b) for a, b in zip(widths[:-1], widths[1:],
                                                            strict=True)]
        if n_layers != len(shapes) or any(state[f"weight_{i}"].shape != shape
                                          for i, shape in enumerate(shapes)):
            return None
        layers = [(state[f"weight_{i}"].copy(), state[f"bias_{i}"].copy())
                  for i in range(n_layers)]
        # First layer: old standardized input = (new * new_scale + new_offset - old_offset)
        # / old_scale.
        ratio = x_scale / state["x_scale"]
        shift = (x_offset - state["x_offset"]) / state["x_scale"]
        weight, bias = layers[0]
        layers[0] = (weight * ratio[None, :, None], bias + np.einsum("d,mdo->mo", shift, weight))
        # Last layer: new standardized output = (old_offset + old_scale * old - new_offset)
        # / new_scale.
        factor = state["y_scale"][0] / y_scale[0]
        weight, bias = layers[-1]
        layers[-1] = (weight * factor,
                      bias * factor + (state["y_offset"][0] - y_offset[0]) / y_scale[0])
        return layers

    def _train(self, Xs: np.ndarray, ys: np.ndarray, X: np.ndarray, y_raw: np.ndarray,
               previous: list[tuple[np.ndarray, np.ndarray]] | None, new_rows: np.ndarray
               ) -> tuple[list[tuple[np.ndarray, np.ndarray]], int, bool]:
        """Adam on the (weighted) mean squared error; returns (layers, steps, stopped)."""
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
            params += [weight, bias]
        if previous is not None:  # same generator draws either way: the rest stays seeded
            params = [torch.as_tensor(array, dtype=torch.float64).clone()
                      for weight, bias in previous for array in (weight, bias[:, None, :])]
        for parameter in params:
            parameter.requires_grad_()
        if self.bootstrap:
            picks = torch.randint(0, n, (M, n), generator=generator)
            weights = torch.zeros(M, n, dtype=torch.float64)
            weights.scatter_add_(1, picks, torch.ones(M, n, dtype=torch.float64))
        else:
            weights = torch.ones(M, n, dtype=torch.float64)
        held_out = _held_out(X, y_raw, M, float(self.validation_fraction), int(self.seed))
        if held_out is not None:
            weights = weights * torch.as_tensor(~held_out, dtype=torch.float64)
            check_rows = torch.as_tensor(np.flatnonzero(held_out.any(axis=0)))
            check_weights = torch.as_tensor(held_out[:, check_rows.numpy()], dtype=torch.float64)
        x = torch.as_tensor(Xs, dtype=torch.float64)
        y = torch.as_tensor(ys, dtype=torch.float64)
        max_steps = int(self.steps if previous is None else self.warm_steps)
        rate = float(self.learning_rate)
        if previous is not None:
            rate = (_WARM_RATE * rate if self.warm_learning_rate is None
                    else float(self.warm_learning_rate))
        optimizer = torch.optim.Adam(params, lr=rate)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max_steps, eta_min=0.01 * rate)
        batch = min(int(self.batch_size), n)
        # A warm fit with new rows draws half of each minibatch from them.
        focus = previous is not None and batch < n and 0 < len(new_rows) < n
        if focus:
            is_new = np.zeros(n, dtype=bool)
            is_new[new_rows] = True
            new_index = torch.as_tensor(np.flatnonzero(is_new))
            old_index = torch.as_tensor(np.flatnonzero(~is_new))
            n_focus = min(batch // 2, len(new_index))

        def forward(inputs: torch.Tensor) -> torch.Tensor:
            h = inputs.expand(M, -1, -1)
            for i in range(0, len(params), 2):
                h = torch.baddbmm(params[i + 1], h, params[i])
                if i + 2 < len(params):
                    h = torch.nn.functional.silu(h)
            return h[..., 0]

        best = [parameter.detach().clone() for parameter in params]
        best_loss = torch.full((M,), math.inf, dtype=torch.float64)
        mark = best_loss.clone()  # the loss a check must beat by _MIN_IMPROVEMENT
        since = torch.zeros(M, dtype=torch.int64)
        stopped = False
        steps = 0
        for _ in range(max_steps):
            if batch == n:
                rows = torch.arange(n)
            elif focus:
                rows = torch.cat([
                    new_index[torch.randperm(len(new_index), generator=generator)[:n_focus]],
                    old_index[torch.randperm(len(old_index), generator=generator)[
                        :batch - n_focus]]])
            else:
                rows = torch.randperm(n, generator=generator)[:batch]
            w = weights[:, rows]
            loss = ((forward(x[rows]) - y[rows]) ** 2 * w).sum() / w.sum().clamp_min(1.0)
            loss = loss + float(self.weight_decay) * sum(
                (p**2).sum() for p in params[0::2])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            steps += 1
            if held_out is None or steps % _CHECK_EVERY:
                continue
            with torch.no_grad():
                error = ((forward(x[check_rows]) - y[check_rows]) ** 2 * check_weights).sum(
                    1) / check_weights.sum(1).clamp_min(1.0)
                better = error < best_loss
                for keep, parameter in zip(best, params, strict=True):
                    keep[better] = parameter[better]
                best_loss = torch.where(better, error, best_loss)
                significant = error < mark * (1.0 - _MIN_IMPROVEMENT)
                mark = torch.where(significant, error, mark)
                since = torch.where(significant, 0, since + _CHECK_EVERY)
            if bool((since >= int(self.patience)).all()):
                stopped = steps < max_steps
                break
        logger.debug("ensemble final loss %.3g", float(loss.detach()))
        if held_out is not None:  # each member's best weights on its held-out rows
            params = best
        return ([(params[i].detach().numpy().copy(),
                  params[i + 1].detach().numpy()[:, 0].copy())
                 for i in range(0, len(params), 2)], steps, stopped)

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
        for name in ("n_steps_", "warm_started_", "stopped_early_", "n_new_", "fit_seconds_"):
            self.__dict__.pop(name, None)  # they described a fit this state did not come from
        return self


def _row_keys(X: np.ndarray, y: np.ndarray) -> list[bytes]:
    """One bytes key per (x, y) row (exact float64 values)."""
    rows = np.ascontiguousarray(np.column_stack([X, y]))
    return [row.tobytes() for row in rows]


def _new_rows(X: np.ndarray, y: np.ndarray, X_old: np.ndarray, y_old: np.ndarray
              ) -> np.ndarray:
    """Positions of the (x, y) rows not in the previous training set."""
    if X_old.shape[1] != X.shape[1]:
        return np.arange(len(X))
    old = set(_row_keys(X_old, y_old))
    return np.array([i for i, key in enumerate(_row_keys(X, y)) if key not in old],
                    dtype=np.int64)


def _held_out(X: np.ndarray, y: np.ndarray, members: int, fraction: float, seed: int
              ) -> np.ndarray | None:
    """(members, n) bool: which rows each member holds out, or None without a split.

    A row's fate depends only on its values, the seed and the member, so a row held out
    once stays held out in every later fit of a growing data set.
    """
    n = len(X)
    if fraction <= 0 or fraction * n < _MIN_HELD_OUT:
        return None
    key = str(int(seed)).encode()
    digests = np.array([int.from_bytes(hashlib.blake2b(row, digest_size=8, key=key).digest(),
                                       "little") for row in _row_keys(X, y)], dtype=np.uint64)
    # SplitMix64 of (row digest + member constant): an independent uniform per member.
    with np.errstate(over="ignore"):
        z = digests[None, :] + np.arange(1, members + 1, dtype=np.uint64)[:, None] * np.uint64(
            0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    uniform = (z >> np.uint64(11)).astype(np.float64) / 2.0**53
    held = uniform < fraction
    held[:, held.all(axis=0)] = False  # never hold a row out of every member
    return held


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
