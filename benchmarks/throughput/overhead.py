"""Parts 1 and 2 of the throughput benchmark: the engine's overhead against raw Parsl
(no-op and 1 ms throughput, round trip, the walkers/in-flight sweep), the driver's cost
per task, and the paired no-op throughput.

**Overhead** (``throughput_noop``, ``throughput_sleep1ms``, ``round_trip``). A
walker-only campaign of no-op tasks (the app returns its input) or 1 ms sleep tasks,
``Budget(w=n)``, run by ``Campaign.run(site="local", workers_per_scale=2)``, against
raw Parsl: the same ``site_configs.get_config("local", ...)``, ``parsl.load``,
``python_app(campaign.task.run_app, executors=["sim-w"])``, every task submitted at
once, all results waited for. Each side is timed from before the config is loaded to
after Parsl is cleaned up, at two run lengths ``n/2`` and ``n``; throughput is
``(n - n/2) / (wall(n) - wall(n/2))``, so start-up and shutdown cancel. Also kept
(``steady_value``/``steady_baseline``): the completion rate between the 10% and 90%
quantiles of the tasks' end times inside the run of ``n``. Walkers and in-flight
limit: async ``M`` = the engine's default (2 per worker, 4 here: one task queued
behind each running one hides the round trip) and ``W = 2M = 8`` walkers (a free slot
always finds an idle walker); ``W = M = 16`` and ``W = M = 64`` were tried and ran
slower (steady 128 and 131 tasks/s against 197 at the default, one run each on a
loaded machine; every steering step waits on, and scans, every in-flight future):
the full mode repeats this as ``throughput_sweep`` records. Rounds: ``W = 100`` (a
round's barrier is amortized over 100 tasks; ``max_in_flight`` does not apply to
rounds). Round trip: raw Parsl, the
median over sequential single tasks (submit, wait for the result) on a warm executor;
the engine, a campaign of one walker with ``max_in_flight=1``: the median interval
between consecutive submissions in its ``attempts`` table (each is one round trip plus
the engine's handling of the result), first 3 left out (cold workers).

**Paired** (``throughput_noop_paired``, part ``paired``): the async no-op row again,
engine and raw Parsl alternated ``--repeats`` times (default 3; order alternating),
one ratio per repeat from runs made back to back; the median of those ratios is
judged, and their range is kept (``paired_ratios``). At 10^3 in ``--quick``, 10^4
in full.

**Scaling** (``driver_cpu_per_task``, ``driver_peak_rss``, ``cpu_per_task_growth``).
``time.process_time()`` of this process (all its threads: the steering loop, the model
thread, Parsl's DataFlowKernel and HTEX threads; the interchange and workers are other
processes) around each no-op run above, differenced between ``n/2`` and ``n`` like the
wall time; peak RSS of this process sampled every 0.1 s during the run (psutil),
baseline raw Parsl at the same ``n``. Growth: engine CPU per task at the largest size
over the same at 10^3 (not in ``--quick``, which has one size).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.throughput.apps import noop_app, sleep_app
from benchmarks.throughput.records import GOALS, record
from benchmarks.throughput.runs import (
    ASYNC_IN_FLIGHT,
    ASYNC_WALKERS,
    ROUND_TRIPS,
    ROUNDS_WALKERS,
    engine_round_trip,
    engine_run,
    raw_round_trip,
    raw_run,
)
from benchmarks.throughput.schedule import marginal_pair

logger = logging.getLogger(__package__)
SWEEP = ((4, None), (16, 16), (64, 64))  # (walkers, max_in_flight); None: engine default
REPEATS = 3  # paired part: engine and raw Parsl alternated this many times


def overhead(sizes: dict[str, Sequence[int]], *, workdir: Path,
             sleep_sizes: dict[str, Sequence[int]],
             sweep_size: int | None, round_trips: int = ROUND_TRIPS, site: str = "local",
             site_params: dict[str, Any] | None = None,
             rounds_walkers: int = ROUNDS_WALKERS) -> list[dict[str, Any]]:
    """Throughput, round trip and driver cost records. ``sizes[mode]`` are the ``n`` per
    mode (each also run at ``n/2``), ``sleep_sizes[mode]`` those of the 1 ms sleep tasks;
    raw Parsl runs at every size any mode needs."""
    records: list[dict[str, Any]] = []
    kinds: list[tuple[str, Callable[..., Any], dict[str, Any], dict[str, Sequence[int]]]] = [
        ("noop", noop_app, {}, sizes),
        ("sleep1ms", sleep_app, {"seconds": 0.001}, sleep_sizes),
    ]
    walkers = {"async": (ASYNC_WALKERS, ASYNC_IN_FLIGHT), "rounds": (rounds_walkers, None)}
    cpu_by_size: dict[str, dict[int, float]] = {"async": {}, "rounds": {}}
    raw_steady: dict[int, float] = {}
    for kind, app, params, kind_sizes in kinds:
        raw_sizes = sorted({n for ns in kind_sizes.values() for n in ns})
        raw: dict[int, dict[str, Any]] = {}
        for n in raw_sizes:
            raw[n] = marginal_pair(lambda m, app=app, params=params: raw_run(
                m, workdir=workdir, app=app, params=params, site=site,
                site_params=site_params), n)
            logger.info("raw %s n=%d: %.0f tasks/s", kind, n, raw[n]["rate"])
            if kind == "noop":
                raw_steady[n] = raw[n]["long"]["steady"]
        for mode, ns in kind_sizes.items():
            for n in ns:
                w, m = walkers[mode]
                pair = marginal_pair(lambda k, mode=mode, w=w, m=m, app=app, params=params:
                                     engine_run(k, workdir=workdir, mode=mode, app=app,
                                                params=params, walkers=w, max_in_flight=m,
                                                site=site, site_params=site_params), n)
                logger.info("engine %s %s n=%d: %.0f tasks/s", mode, kind, n, pair["rate"])
                records.append(record(
                    f"throughput_{kind}", mode, n, pair["rate"], raw[n]["rate"], "tasks/s",
                    steady_value=pair["long"]["steady"], steady_baseline=raw[n]["long"]["steady"],
                    walkers=w, max_in_flight=m, method=pair["method"],
                    baseline_method=raw[n]["method"], goal=GOALS["throughput"],
                    meets_goal=bool(pair["rate"] >= 0.9 * raw[n]["rate"]) if n >= 10_000
                    else None))
                if kind != "noop":
                    continue
                records.append(record("driver_cpu_per_task", mode, n, pair["cpu"],
                                      raw[n]["cpu"], "s/task", method=pair["cpu_method"],
                                      baseline_method=raw[n]["cpu_method"],
                                      total_value=pair["long"]["cpu"] / n,
                                      total_baseline=raw[n]["long"]["cpu"] / n))
                records.append(record("driver_peak_rss", mode, n, pair["long"]["rss_mib"],
                                      raw[n]["long"]["rss_mib"], "MiB"))
                cpu_by_size[mode][n] = pair["cpu"]
    for mode, by_size in cpu_by_size.items():
        if len(by_size) >= 2:
            smallest, largest = min(by_size), max(by_size)
            records.append(record("cpu_per_task_growth", mode, largest, by_size[largest],
                                  by_size[smallest], "s/task", from_n=smallest,
                                  goal=GOALS["cpu_per_task_growth"],
                                  meets_goal=bool(by_size[largest] < 1.5 * by_size[smallest])))
    raw_trip = raw_round_trip(round_trips, workdir=workdir, site=site, site_params=site_params)
    for mode in ("async", "rounds"):
        trip = engine_round_trip(round_trips, workdir=workdir, mode=mode, site=site,
                                 site_params=site_params)
        records.append(record("round_trip", mode, 1, trip, raw_trip, "s",
                              samples=round_trips, goal=GOALS["round_trip"],
                              meets_goal=bool(trip <= 1.2 * raw_trip)))
    if sweep_size:
        for w, m in SWEEP:
            run = engine_run(sweep_size, workdir=workdir, mode="async", walkers=w,
                             max_in_flight=m, site=site, site_params=site_params)
            if sweep_size not in raw_steady:
                raw_steady[sweep_size] = raw_run(sweep_size, workdir=workdir, site=site,
                                                 site_params=site_params)["steady"]
            records.append(record("throughput_sweep", f"async W={w} M={m or 'default'}",
                                  sweep_size, run["steady"], raw_steady[sweep_size], "tasks/s",
                                  walkers=w, max_in_flight=m, wall=run["wall"],
                                  note="steady rate (10-90% of end times) of one run; "
                                       "baseline: raw Parsl's steady rate at this n"))
    return records


def paired_throughput(n: int, *, workdir: Path, repeats: int = REPEATS, site: str = "local",
                      site_params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """No-op throughput of the async engine and raw Parsl, measured ``repeats`` times
    back to back (order alternating: raw first, then engine first, ...), each by
    :func:`marginal_pair`: one ratio per repeat from two runs minutes apart, so load
    that drifts over a benchmark cancels in each ratio. The record's ``value`` and
    ``baseline`` are the medians; ``paired_ratios`` the per-repeat ratios, whose median
    is judged against the goal."""
    def raw(m: int) -> dict[str, Any]:
        return raw_run(m, workdir=workdir, site=site, site_params=site_params)

    def engine(m: int) -> dict[str, Any]:
        return engine_run(m, workdir=workdir, mode="async", walkers=ASYNC_WALKERS,
                          max_in_flight=ASYNC_IN_FLIGHT, site=site, site_params=site_params)

    engine_rates, raw_rates, ratios, steady_ratios = [], [], [], []
    for repeat in range(repeats):
        order = [("raw", raw), ("engine", engine)]
        if repeat % 2:
            order.reverse()
        pairs = {name: marginal_pair(run, n) for name, run in order}
        engine_rates.append(pairs["engine"]["rate"])
        raw_rates.append(pairs["raw"]["rate"])
        ratios.append(pairs["engine"]["rate"] / pairs["raw"]["rate"])
        steady_ratios.append(pairs["engine"]["long"]["steady"] / pairs["raw"]["long"]["steady"])
        logger.info("paired n=%d repeat %d: engine %.0f, raw %.0f tasks/s (%.2fx)", n,
                    repeat + 1, engine_rates[-1], raw_rates[-1], ratios[-1])
    median_ratio = float(np.median(ratios))
    return [record("throughput_noop_paired", "async", n, float(np.median(engine_rates)),
                   float(np.median(raw_rates)), "tasks/s", repeats=repeats,
                   engine_rates=engine_rates, raw_rates=raw_rates, paired_ratios=ratios,
                   paired_ratio_median=median_ratio,
                   paired_ratio_range=[min(ratios), max(ratios)],
                   steady_ratios=steady_ratios, walkers=ASYNC_WALKERS,
                   goal=GOALS["throughput"] + " (median of the paired ratios)",
                   meets_goal=bool(median_ratio >= 0.9) if n >= 10_000 else None)]

