"""Active learning on a fixed, fully known pool: the loop a campaign runs, without a campaign.

Seed with random picks, then each round fit the learner on the labelled points, take its
posterior over the unlabelled ones, let the acquisition pick a batch and label it, until
the budget is spent. It knows nothing of Parsl or the engine: ``label_fn`` is any
function of the chosen rows, so comparing learners and policies on a problem with known
ground truth takes a few lines.

>>> import numpy as np
>>> from learners import ExactGP, pool_loop
>>> from learners.acquisition import MaxVariance
>>> X = np.linspace(0.0, 1.0, 60)[:, None]
>>> f = lambda X: np.sin(6.0 * X[:, 0])
>>> curve = pool_loop(X, f, ExactGP(restarts=0, iterations=50), MaxVariance(),
...                   batch_size=4, budget=16, test=(X, f(X)), rng=0)
>>> curve.n_labels
[4, 8, 12, 16]
>>> len(set(curve.labelled.tolist())) == 16  # never the same point twice
True
>>> bool(curve.rmse[-1] < curve.rmse[0])
True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from learners.acquisition import Acquisition
from learners.base import Learner, check_inputs
from learners.calibration import calibration_metrics

__all__ = ["PoolCurve", "pool_loop"]

logger = logging.getLogger(__name__)


@dataclass
class PoolCurve:
    """What a :func:`pool_loop` run did, one entry per fit (round).

    Attributes:
        n_labels: labelled points the learner was fitted on in each round.
        chosen: per round, the int64 pool indices added just before that round's fit
            (the first entry is the random seed design, the others the acquisition's
            batches in pick order).
        fit_seconds: wall seconds of each ``fit``.
        rmse: test RMSE after each fit (empty without ``test``).
        coverage_90: fraction of test targets inside the 90% predictive interval
            (latent variance plus noise) after each fit (empty without ``test``).
        labelled: (budget,) int64 pool indices in labelling order.
        y: (budget,) float64 labels, aligned with ``labelled``.
    """

    n_labels: list[int] = field(default_factory=list)
    chosen: list[np.ndarray] = field(default_factory=list)
    fit_seconds: list[float] = field(default_factory=list)
    rmse: list[float] = field(default_factory=list)
    coverage_90: list[float] = field(default_factory=list)
    labelled: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    y: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float64))


def pool_loop(
    X_pool: np.ndarray,
    label_fn: Callable[[np.ndarray], np.ndarray],
    learner: Learner,
    acquisition: Acquisition,
    batch_size: int,
    budget: int,
    *,
    initial: int | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    rng: np.random.Generator | int | None = None,
    on_round: Callable[[int, PoolCurve], None] | None = None,
) -> PoolCurve:
    """Label ``budget`` points of ``X_pool`` chosen by ``acquisition`` on ``learner``.

    Rounds: ``initial`` uniform random picks, then repeatedly fit on all labels so far,
    record test metrics, and (while labels remain) let ``acquisition.select`` pick
    ``min(batch_size, labels left)`` of the unlabelled points (no pending points: each
    batch is labelled before the next fit). The learner is fitted once more after the
    last batch, so the curve ends at ``budget`` labels.

    Args:
        X_pool: (n, d) float64 candidates.
        label_fn: ``label_fn(X_chosen (k, d)) -> (k,)`` labels (the expensive scale).
        learner: fitted in place each round (a later fit may warm-start from the last).
        acquisition: the batch policy.
        batch_size: points labelled per round, >= 1.
        budget: total labels, ``1 <= budget <= n``.
        initial: size of the random seed design, ``1 <= initial <= budget``
            (default ``min(batch_size, budget)``).
        test: ``(X_test (t, d), y_test (t,))`` ground truth scored after each fit.
        rng: a Generator or a seed; the same seed (and a deterministic learner) gives
            the same run.
        on_round: called as ``on_round(round_index, curve)`` after each fit's metrics.

    Returns:
        A :class:`PoolCurve`.

    Raises:
        ValueError: bad sizes, ``label_fn`` returning the wrong shape or non-finite
            values, or an acquisition choosing a labelled or out-of-range point.
    """
    X_pool = check_inputs(X_pool, name="X_pool")
    n = X_pool.shape[0]
    batch_size = _positive_int(batch_size, "batch_size")
    budget = _positive_int(budget, "budget")
    if budget > n:
        raise ValueError(f"budget must be <= the pool size {n}, got {budget}")
    initial = min(batch_size, budget) if initial is None else _positive_int(initial, "initial")
    if initial > budget:
        raise ValueError(f"initial must be <= budget ({budget}), got {initial}")
    if test is not None:
        X_test = check_inputs(test[0], n_features=X_pool.shape[1], name="test[0]")
        y_test = np.asarray(test[1], dtype=np.float64).reshape(-1)
        if y_test.shape != (X_test.shape[0],):
            raise ValueError(f"test[1] must have shape ({X_test.shape[0]},), got {y_test.shape}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    curve = PoolCurve()
    labelled = np.zeros(n, dtype=bool)
    order: list[np.ndarray] = []
    labels: list[np.ndarray] = []

    def label(indices: np.ndarray) -> None:
        y = np.asarray(label_fn(X_pool[indices]), dtype=np.float64).reshape(-1)
        if y.shape != indices.shape or not np.all(np.isfinite(y)):
            raise ValueError(f"label_fn must return {indices.size} finite values, got "
                             f"shape {y.shape}")
        labelled[indices] = True
        order.append(indices)
        labels.append(y)
        curve.chosen.append(indices)

    label(np.sort(rng.choice(n, size=initial, replace=False)).astype(np.int64))
    round_index = 0
    while True:
        chosen_so_far = np.concatenate(order)
        y_so_far = np.concatenate(labels)
        start = time.perf_counter()
        learner.fit(X_pool[chosen_so_far], y_so_far)
        curve.fit_seconds.append(time.perf_counter() - start)
        curve.n_labels.append(int(chosen_so_far.size))
        if test is not None:
            metrics = calibration_metrics(learner.posterior(X_test), y_test)
            curve.rmse.append(metrics["rmse"])
            curve.coverage_90.append(metrics["coverage_90"])
        logger.debug("pool round %d: %d labels", round_index, chosen_so_far.size)
        if on_round is not None:
            on_round(round_index, curve)
        left = budget - chosen_so_far.size
        if left == 0:
            break
        free = np.flatnonzero(~labelled)
        picks = acquisition.select(
            learner.posterior(X_pool[free]), min(batch_size, left),
            np.empty(0, dtype=np.int64), rng,
        )
        picks = np.asarray(picks, dtype=np.int64).reshape(-1)
        if picks.size == 0 or picks.min() < 0 or picks.max() >= free.size or (
            np.unique(picks).size != picks.size
        ):
            raise ValueError(f"acquisition returned invalid positions {picks!r} for "
                             f"{free.size} candidates")
        label(free[picks])
        round_index += 1

    curve.labelled = np.concatenate(order)
    curve.y = np.concatenate(labels)
    return curve


def _positive_int(value: int, name: str) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)
