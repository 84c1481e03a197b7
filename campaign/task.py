"""What runs on a worker: a simulation app call or a learner fit, timed.

These are the only functions the engine ships to Parsl executors. They return results
to the engine (the store's only writer) and never touch the run directory themselves.
The checks of what an app returned happen here *and* in the engine: here, so a bad
result is described where it was made; in the engine, so nothing unchecked is stored.

>>> import numpy as np
>>> checked = check_result({"x": [[0.0, 1.0]], "energy": [2.5]})
>>> checked["x"].shape, checked["energy"].dtype
((1, 2), dtype('float64'))
>>> check_result({"x": [[0.0, 1.0]], "energy": [np.nan]})
Traceback (most recent call last):
    ...
campaign.task.BadResultError: 'energy' has 1 non-finite values (NaN or inf)
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np


class BadResultError(ValueError):
    """An app returned something that cannot be stored (wrong type, shape, NaN, inf)."""


def check_result(result: Any) -> dict[str, np.ndarray]:
    """Validate an app's return value: a dict with ``x`` (n, d) and named outputs whose
    leading dimension is n, all finite numbers. Returns it with numpy arrays."""
    if not isinstance(result, dict) or "x" not in result:
        raise BadResultError(f"app must return a dict with key 'x', got {type(result).__name__}")
    arrays = {name: np.asarray(value) for name, value in result.items()}
    x = arrays["x"]
    if x.ndim != 2 or x.shape[0] < 1:
        raise BadResultError(f"'x' must have shape (n>=1, d), got {x.shape}")
    if len(arrays) < 2:
        raise BadResultError("app returned no outputs besides 'x'")
    for name, values in arrays.items():
        if values.dtype.kind not in "biuf":
            raise BadResultError(f"'{name}' is not numeric (dtype {values.dtype})")
        if values.ndim == 0 or values.shape[0] != x.shape[0]:
            raise BadResultError(f"'{name}' has shape {values.shape}; 'x' has {x.shape[0]} rows")
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise BadResultError(f"'{name}' has {bad} non-finite values (NaN or inf)")
    return arrays


def run_app(app: Callable[..., dict[str, Any]], x: np.ndarray, seed: int,
            params: dict[str, Any], walltime: float | None = None) -> dict[str, Any]:
    """Run one simulation task; returns outputs plus start/end times and the worker
    (``host/pid/thread``) for the task timeline.

    ``walltime`` is read by Parsl, which raises ``AppTimeout`` in the task past it."""
    started = time.time()
    outputs = app(np.asarray(x, dtype=np.float64), seed=seed, **params)
    ended = time.time()
    return {"outputs": outputs, "started": started, "ended": ended, "worker": worker_name(),
            "host": socket.gethostname()}


def worker_name() -> str:
    """Who ran a task: ``host/pid/thread`` (a thread executor's workers share one pid)."""
    return f"{socket.gethostname()}/{os.getpid()}/{threading.current_thread().name}"


def fit_learner(learner: Any, X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Fit ``learner`` on (X, y) on the train executor; returns it with the fit time."""
    started = time.time()
    fitted = learner.fit(X, y)
    ended = time.time()
    return {"learner": fitted, "seconds": ended - started, "started": started,
            "ended": ended, "worker": worker_name(), "host": socket.gethostname()}
