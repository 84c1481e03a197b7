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

from campaign.timeouts import call_with_timeout


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
            params: dict[str, Any], walltime: float | None = None,
            started_marker: str | None = None) -> dict[str, Any]:
    """Run one simulation task; returns outputs plus start/end times and the worker
    (``host/pid/thread``) for the task timeline.

    ``walltime``: the scale's timeout in seconds. Parsl reads it too and raises its
    ``AppTimeout`` into the app's thread past it; here, past it, the processes the
    attempt started are ended and the attempt fails with
    ``campaign.timeouts.AppTimeout`` (see that module for which processes, and its
    limits). ``started_marker``: a file to write the start time, host and pid to as the
    attempt starts, so the engine's deadline runs from here, not from submission
    (``campaign.retry``)."""
    started = time.time()
    write_start_marker(started_marker, started)
    x = np.asarray(x, dtype=np.float64)
    if walltime is None:
        outputs = app(x, seed=seed, **params)
    else:
        outputs = call_with_timeout(app, walltime, x, seed=seed, **params)
    ended = time.time()
    return {"outputs": outputs, "started": started, "ended": ended, "worker": worker_name(),
            "host": socket.gethostname()}


def write_start_marker(path: str | None, started: float) -> None:
    """Record that an attempt started at ``started``, on this host, in this process."""
    if path is None:
        return
    try:
        with open(path, "w") as marker:
            marker.write(f"{started:.6f} {socket.gethostname()} {os.getpid()}\n")
    except OSError:  # no shared file system: the attempt is then never charged a deadline
        pass


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


def warm_learner(learner: Any, X: np.ndarray, seed: int) -> dict[str, Any]:
    """Fit a copy of ``learner`` on ``X`` with random targets, to warm the train worker:
    its first fit otherwise pays the imports and first-call set-up (seconds for torch
    and gpytorch in a fresh process). The fitted copy is thrown away; a failure is
    returned, not raised."""
    started = time.time()
    try:
        y = np.random.default_rng(seed).normal(size=len(X))
        learner.fit(np.asarray(X, dtype=np.float64), y)
        problem = None
    except Exception as error:  # a warm-up never fails a campaign
        problem = f"{type(error).__name__}: {error}"
    ended = time.time()
    return {"seconds": ended - started, "started": started, "ended": ended,
            "problem": problem, "worker": worker_name()}


def fit_features_and_learner(features: Any, x_source: np.ndarray, train_rows: np.ndarray,
                             learner: Any, y: np.ndarray,
                             fit_rows: np.ndarray | None = None) -> dict[str, Any]:
    """Refit refittable ``features`` and fit ``learner`` in the new feature space, on the
    train executor (see ``campaign.spec.Promotion``, refittable features).

    Args:
        features: the featurizer to refit from (``refit(x) -> features``).
        x_source: source rows [0, n) the engine holds features of.
        train_rows: the source row of each training result (indices into ``x_source``).
        learner: a copy of the learner, fitted in place or returned by its ``fit``.
        y: the training results.
        fit_rows: the rows of ``x_source`` the featurizer is refitted on (default: all).

    Returns:
        ``fit_learner``'s dict plus ``features`` (the refitted featurizer), ``X`` (n, f):
        its features of every row of ``x_source``, ``features_fitted_on`` (rows the
        featurizer was refitted on) and ``features_seconds``.
    """
    started = time.time()
    refitted, X = refit_features(features, x_source, fit_rows)
    if X.ndim != 2 or X.shape[0] != len(x_source):
        raise BadResultError(f"refitted features must return (n, f) for n rows, got "
                             f"{X.shape} for {len(x_source)} rows")
    featurized = time.time()
    fitted = learner.fit(X[np.asarray(train_rows, np.int64)], y)
    ended = time.time()
    fitted_on = len(x_source) if fit_rows is None else len(fit_rows)
    return {"learner": fitted, "features": refitted, "X": X, "features_fitted_on": fitted_on,
            "seconds": ended - started,
            "features_seconds": featurized - started, "started": started, "ended": ended,
            "worker": worker_name(), "host": socket.gethostname()}


def refit_features(features: Any, x_source: np.ndarray,
                   fit_rows: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
    """Refit refittable ``features`` on ``x_source[fit_rows]`` (default: all rows) and
    return the new featurizer with its (n, f) features of every row of ``x_source``."""
    x_source = np.asarray(x_source, dtype=np.float64)
    fit_on = x_source if fit_rows is None else x_source[np.asarray(fit_rows, np.int64)]
    refitted = features.refit(fit_on)
    return refitted, np.asarray(refitted(x_source), dtype=np.float64)
