"""The schedule arithmetic of the throughput benchmark, on plain numbers: the ideal
greedy list schedule (:func:`list_schedule`), completion rates (:func:`steady_rate`,
:func:`marginal_pair`: throughput by differencing two run lengths), the median gap
between submissions (round trips), and the busy/makespan/utilization figures of a set of
attempts (:func:`schedule_figures`). Nothing here runs a task.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def list_schedule(durations: Sequence[float], workers: int) -> float:
    """Makespan of the greedy list schedule: each task, in the given order, starts on the
    worker that frees first; zero overhead.

    >>> list_schedule([3, 1, 1, 1, 2], 2)
    5.0
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    free = [0.0] * workers
    for duration in durations:
        heapq.heappush(free, heapq.heappop(free) + float(duration))
    return max(free)


def steady_rate(ended: Sequence[float]) -> float:
    """Completions per second between the 10% and 90% quantiles of end times."""
    times = np.sort(np.asarray(ended, dtype=np.float64))
    low, high = int(0.1 * len(times)), int(0.9 * len(times)) - 1
    if high <= low or times[high] <= times[low]:
        return math.nan
    return (high - low) / float(times[high] - times[low])


def median_gap(times: Sequence[float], *, skip: int) -> float:
    """Median interval between consecutive ``times`` (sorted), the first ``skip``
    intervals left out: a round trip, from the submission times of one-in-flight runs."""
    return float(np.median(np.diff(sorted(times))[skip:]))


def marginal(short: dict[str, Any], long: dict[str, Any], key: str) -> float:
    """Per-task difference of ``key`` between two run lengths (start-up cancels)."""
    return (long[key] - short[key]) / (long["n"] - short["n"])


def marginal_pair(run: Callable[[int], dict[str, Any]], n: int) -> dict[str, Any]:
    """Run at ``n // 2`` and ``n``: marginal rate (tasks/s) and CPU seconds per task.

    Where noise swamps the difference (the longer run was not slower, or used less
    CPU: tiny ``n``), the steady rate and the run's CPU per task stand in, and
    ``method`` says so."""
    short, long = run(n // 2), run(n)
    seconds = long["wall"] - short["wall"]
    cpu = marginal(short, long, "cpu")
    method = cpu_method = "difference"
    if seconds > 0:
        rate = (long["n"] - short["n"]) / seconds
    else:
        rate, method = long["steady"], "steady (difference not positive)"
    if cpu <= 0:
        cpu, cpu_method = long["cpu"] / long["n"], "total/n (difference not positive)"
    return {"short": short, "long": long, "rate": rate, "cpu": cpu, "method": method,
            "cpu_method": cpu_method}


def schedule_figures(attempts: list[dict[str, Any]], workers: int) -> dict[str, Any]:
    """Busy seconds, makespan, utilization and the ideal list schedule of some attempts."""
    timed = sorted((a for a in attempts if a["started"] is not None and a["ended"] is not None),
                   key=lambda a: (a["submitted"], a["task_id"], a["attempt"]))
    durations = [a["ended"] - a["started"] for a in timed]
    first, last = min(a["started"] for a in timed), max(a["ended"] for a in timed)
    makespan = last - first
    busy = float(np.sum(durations))
    by_worker: dict[str, float] = {}
    for a in timed:
        by_worker[a["worker"]] = min(by_worker.get(a["worker"], math.inf), a["started"])
    # each worker counts from its own first start; workers never seen count from the end
    available = sum(last - start for start in by_worker.values())
    ideal = list_schedule(durations, workers)
    return {"tasks": len(timed), "busy": busy, "makespan": makespan,
            "utilization": busy / (workers * makespan),
            "utilization_warm": busy / available if available > 0 else math.nan,
            "warmup_seconds": max(by_worker.values()) - first,
            "worker_first_starts": sorted(start - first for start in by_worker.values()),
            "workers_seen": len(by_worker),
            "ideal_makespan": ideal, "ideal_utilization": busy / (workers * ideal),
            "lower_bound": max(busy / workers, max(durations))}

