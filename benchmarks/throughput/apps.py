"""The tasks the throughput benchmark runs on Parsl workers, and their durations.

No-op and 1 ms sleep tasks (the overhead parts); the utilization workload's coarse walker
segments and fine energies on the Müller-Brown landscape (``apps.toy``), each sleeping a
bounded-Pareto time drawn from its seed (:func:`heavy_tail_seconds`). Module-level
functions, so that workers import them by name (``benchmarks.throughput.apps.<name>``).
"""

from __future__ import annotations

import time

import numpy as np

DURATION_LOW, DURATION_HIGH, DURATION_ALPHA = 0.05, 2.0, 0.5


def noop_app(x: np.ndarray, *, seed: int) -> dict[str, np.ndarray]:
    """A task that does nothing: returns its input as one row."""
    return {"x": np.asarray(x, dtype=np.float64).reshape(1, -1), "value": np.zeros(1)}


def sleep_app(x: np.ndarray, *, seed: int, seconds: float = 0.001) -> dict[str, np.ndarray]:
    """Sleep ``seconds``, then return the input as one row."""
    time.sleep(seconds)
    return noop_app(x, seed=seed)


def heavy_tail_seconds(seed: int, low: float = DURATION_LOW, high: float = DURATION_HIGH,
                       alpha: float = DURATION_ALPHA) -> float:
    """A bounded-Pareto duration on [low, high] drawn from ``seed`` (inverse CDF)."""
    u = np.random.default_rng(seed).random()
    ratio = (low / high) ** alpha
    return float(low / (1.0 - u * (1.0 - ratio)) ** (1.0 / alpha))


def sleep_walker(x: np.ndarray, *, seed: int, duration_scale: float = 1.0
                 ) -> dict[str, np.ndarray]:
    """Coarse: sleep a heavy-tailed time, then emit 1-2 positions a random step away."""
    time.sleep(duration_scale * heavy_tail_seconds(seed))
    from apps import toy

    rng = np.random.default_rng([seed, 1])
    rows = int(rng.integers(1, 3))
    (x_low, x_high), (y_low, y_high) = toy.BOX
    steps = np.cumsum(rng.normal(scale=0.15, size=(rows, 2)), axis=0)
    positions = np.asarray(x, dtype=np.float64).reshape(1, 2) + steps
    positions[:, 0] = np.clip(positions[:, 0], x_low, x_high)
    positions[:, 1] = np.clip(positions[:, 1], y_low, y_high)
    return {"x": positions, "potential": toy.muller_brown(positions)}


def sleep_energy(x: np.ndarray, *, seed: int, duration_scale: float = 1.0
                 ) -> dict[str, np.ndarray]:
    """Fine: sleep a heavy-tailed time, then return the energy at the position."""
    time.sleep(duration_scale * heavy_tail_seconds(seed))
    from apps import toy

    position = np.asarray(x, dtype=np.float64).reshape(1, 2)
    return {"x": position, "energy": toy.muller_brown(position)}

