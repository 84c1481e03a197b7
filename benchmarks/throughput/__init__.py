"""Engine throughput: overhead against raw Parsl, driver cost, utilization, ingest, time to
quality, all in one run on one machine and one executor configuration.

What is measured, and how (every figure is a JSON record ``{"metric", "mode", "n_tasks",
"value", "baseline", "ratio", "unit"}`` with ``ratio = value / baseline``; ``mode`` is
the engine's ``async`` or ``rounds``, or what a record varies):

1. **Overhead** (``throughput_noop``, ``throughput_sleep1ms``, ``round_trip``). A
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
2. **Scaling** (``driver_cpu_per_task``, ``driver_peak_rss``, ``cpu_per_task_growth``).
   ``time.process_time()`` of this process (all its threads: the steering loop, the model
   thread, Parsl's DataFlowKernel and HTEX threads; the interchange and workers are other
   processes) around each no-op run above, differenced between ``n/2`` and ``n`` like the
   wall time; peak RSS of this process sampled every 0.1 s during the run (psutil),
   baseline raw Parsl at the same ``n``. Growth: engine CPU per task at the largest size
   over the same at 10^3 (not in ``--quick``, which has one size).
3. **Utilization** (``utilization``, ``utilization_after_warmup``, ``makespan``,
   ``ideal_schedule_utilization``,
   ``campaign_makespan``). ``workers_per_scale=16`` on ``local``: a two-scale campaign,
   32 coarse walkers of sleep tasks that return 1-2 rows of 2-D positions (a random step
   on the Müller-Brown landscape) and a fine scale of sleep tasks returning the energy
   (``apps.toy.muller_brown``), promoted by ``ExactGP(restarts=1, iterations=60)`` with
   ``MaxVariance`` in batches of 32, ``Budget(coarse=n, fine=n)``. Every task sleeps a
   bounded-Pareto duration (``alpha = 0.5`` on [0.05, 2] s, mean 0.32 s, median 0.15 s)
   drawn from its seed. From the ``attempts`` table, per simulation executor: busy
   worker-seconds / (16 x makespan), makespan = last end - first start of that scale's
   attempts; ``after_warmup`` counts each worker only from its own first start (a cold
   worker first imports the ``campaign`` package, torch included, when it unpickles its
   first task: seconds per worker, and 33 workers share the cores); ideal = the greedy
   list schedule of the same durations, in submission order, on 16
   workers with zero overhead; ``ideal_schedule_utilization`` is that schedule's
   utilization (busy / (16 x ideal makespan)), the ceiling any engine could reach with
   these durations: the tail of the last tasks keeps it below 1. Three variants
   (``VARIANTS``): ``async`` (a model chooses one batch), ``async+keep_busy``
   (``Promotion(keep_busy=True)``: the current model chooses again, conditioned on the
   pending rows, into every free slot of the fine scale) and ``rounds``.
   ``campaign_makespan``: first submission to last end, each async variant over rounds.
4. **Ingest** (``ingest_rows_per_s``, ``durability_window``). ``Store.commit`` of batches
   of 100 and 10,000 rows (x (n, 2) float64, one output, the six meta columns the engine
   writes) into a fresh run directory with its ``Ledger``; ``+tasks`` variants also
   record one task outcome per row (tasks planned first, as the engine does for one-row
   tasks). Baseline: plain zarr appends of the same arrays, no ledger. The durability
   window is ``campaign.ingest.COMMIT_EVERY_SECONDS``; measured: the largest lag from a
   task's end (worker clock) to the ``Store.commit`` that made it durable, in the async
   utilization run.
5. **Time to quality** (``time_to_target``, ``sims_to_target``). The built-in
   Müller-Brown demo (``examples/muller_brown.py``, ``Budget(fine=120, coarse=64)``;
   ``--quick``: both scaled by 40/120, ``Budget(fine=40, coarse=21)``) on
   ``local``, rounds mode first, then ``async`` and ``async+keep_busy``. Target fixed
   before the runs: 1.5 x the rounds-mode run's final reference RMSE. From
   ``Ledger.rounds("coarse-to-fine")``: the first model (by ``fit_ended``) with
   ``reference_rmse <= target``: seconds from the first task's submission to that fit's
   end, and its ``n_train`` (fine simulations).
   A run that never reaches it reports its totals with ``reached: false`` (lower bounds).
6. **Colmena** (``pip install -e .[bench]``; reported as not installed otherwise): the
   no-op workload through a Colmena thinker (``ResourceCounter`` of 4 slots per worker,
   the engine's default in-flight count, a ``task_submitter`` and a ``result_processor``
   agent) and ``ParslTaskServer`` on the same site config, throughput by the same
   differencing, against raw Parsl measured in this part; round trip with one slot. The
   utilization workload through a Colmena thinker too (:func:`colmena_utilization`:
   the same apps, durations from the same distribution, the same GP every 32 fine
   results on the ``train`` executor; fine picks from a list ranked by the newest
   model's variance, random until the first), its utilization and makespan computed
   as the engine's (mode ``colmena``).

Goals are printed next to the figures; nothing is tuned to meet them. Timings depend on
what else runs on the machine: the JSON records the load average before and after.

Usage::

    python -m benchmarks.throughput [--quick] [--json PATH] [--parts a,b] [--workdir DIR]
        [--sizes N,N] [--repeats R]

``--quick`` (~6 min on an idle 2-core machine, far longer when it is shared): 10^3 tasks
only (1 ms sleep tasks in async mode only, no sweep), 200 tasks per utilization scale,
``Budget(fine=40, coarse=21)`` for time to quality. Full: 10^3 and 10^4 (and 10^5 async, no-op),
sleep tasks in both modes, the sweep at 10^4, 400 tasks per utilization scale, the
demo's own budget (an hour or more on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("benchmarks.throughput")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "muller_brown.py"
PARTS = ("overhead", "paired", "utilization", "ingest", "quality", "colmena")

# async: the engine's default max_in_flight (2 per worker) and twice as many walkers, so
# a free slot always finds an idle walker; rounds: 100 walkers per round
ASYNC_WALKERS, ASYNC_IN_FLIGHT, ROUNDS_WALKERS = 8, None, 100
SWEEP = ((4, None), (16, 16), (64, 64))  # (walkers, max_in_flight); None: engine default
ROUND_TRIPS = 20
REPEATS = 3  # paired part: engine and raw Parsl alternated this many times
ROUND_TRIP_SKIP = 3
DURATION_LOW, DURATION_HIGH, DURATION_ALPHA = 0.05, 2.0, 0.5
UTILIZATION_WORKERS = 16
UTILIZATION_WALKERS = 32
UTILIZATION_BATCH = 32
TARGET_FACTOR = 1.5
# what the utilization and quality parts compare: (engine mode, Promotion.keep_busy)
VARIANTS = {"async": ("async", False), "async+keep_busy": ("async", True),
            "rounds": ("rounds", False)}
RSS_PERIOD = 0.1

GOALS = {
    "throughput": ">= 0.9x raw Parsl at 10^4 and 10^5",
    "round_trip": "<= 1.2x raw Parsl",
    "cpu_per_task_growth": "< 1.5x from 10^3 to 10^5",
    "utilization": ">= 95% (async)",
    "makespan": "within 5% of ideal (async)",
    "ingest": ">= 50,000 rows/s",
    "time_to_target": "async < rounds",
    "sims_to_target": "async <= 1.1x rounds",
}


# -- apps: module-level so workers import them as benchmarks.throughput.<name> ----------
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


# -- records -----------------------------------------------------------------------------
def record(metric: str, mode: str, n_tasks: int, value: float, baseline: float, unit: str,
           **extra: Any) -> dict[str, Any]:
    """One result: ``ratio = value / baseline``."""
    value, baseline = float(value), float(baseline)
    ratio = value / baseline if baseline != 0 else math.inf
    return {"metric": metric, "mode": mode, "n_tasks": int(n_tasks), "value": value,
            "baseline": baseline, "ratio": ratio, "unit": unit, **extra}


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


def marginal(short: dict[str, Any], long: dict[str, Any], key: str) -> float:
    """Per-task difference of ``key`` between two run lengths (start-up cancels)."""
    return (long[key] - short[key]) / (long["n"] - short["n"])


class PeakRss:
    """Peak resident memory of this process while the block runs, sampled (MiB)."""

    def __init__(self, period: float = RSS_PERIOD) -> None:
        import psutil

        self.process = psutil.Process()
        self.period = period
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.process.memory_info().rss)
            if self._done.wait(self.period):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def mib(self) -> float:
        return self.peak / 2**20


@contextlib.contextmanager
def measured() -> Iterator[dict[str, float]]:
    """Wall seconds, CPU seconds of this process and peak RSS (MiB) of a block."""
    out: dict[str, float] = {}
    with PeakRss() as rss:
        wall, cpu = time.perf_counter(), time.process_time()
        yield out
        out["wall"] = time.perf_counter() - wall
        out["cpu"] = time.process_time() - cpu
    out["rss_mib"] = rss.mib


def _workers(site_params: dict[str, Any]) -> int:
    """Workers per scale that a site's parameters ask for (HTEX or threads)."""
    return int(site_params.get("workers_per_scale", site_params.get("max_threads", 1)))


def _put_interpreter_on_path() -> None:
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


# -- runs --------------------------------------------------------------------------------
def engine_run(n: int, *, workdir: Path, mode: str, app: Callable[..., Any] = noop_app,
               params: dict[str, Any] | None = None, walkers: int = ASYNC_WALKERS,
               max_in_flight: int | None = ASYNC_IN_FLIGHT, site: str = "local",
               site_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A walker-only campaign of ``n`` tasks through the engine, timed; its attempts."""
    from campaign import Budget, Campaign, Scale
    from campaign.ledger import Ledger

    spec = Campaign(name="throughput",
                    scales=[Scale("w", app=app, params=params or {},
                                  walkers=np.zeros((walkers, 1)),
                                  max_in_flight=max_in_flight)],
                    budget=Budget(w=n), mode=mode)
    out = Path(tempfile.mkdtemp(prefix=f"engine-{mode}-", dir=workdir))
    try:
        with measured() as cost:
            summary = spec.run(site=site, out=out, overwrite=True,
                               **(site_params or {"workers_per_scale": 2}))
        ledger = Ledger(out / "ledger.sqlite", read_only=True)
        try:
            attempts = ledger.attempts()
        finally:
            ledger.close()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    done = [a for a in attempts if a["outcome"] == "done"]
    if len(done) != n:
        raise RuntimeError(f"engine ran {len(done)} of {n} tasks ({summary.stop_reason})")
    return {"n": n, **cost, "attempts": attempts, "stop_reason": summary.stop_reason,
            "steady": steady_rate([a["ended"] for a in done])}


def raw_run(n: int, *, workdir: Path, app: Callable[..., Any] = noop_app,
            params: dict[str, Any] | None = None, site: str = "local",
            site_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``n`` tasks submitted at once to the same site config through plain Parsl."""
    import parsl
    from parsl.app.app import python_app

    from campaign.task import run_app
    from site_configs import get_config

    _put_interpreter_on_path()
    run_dir = Path(tempfile.mkdtemp(prefix="raw-", dir=workdir))
    try:
        with measured() as cost:
            config = get_config(site, scales=["w"], run_dir=str(run_dir),
                                **(site_params or {"workers_per_scale": 2}))
            dfk = parsl.load(config)
            try:
                remote = python_app(run_app, executors=["sim-w"], data_flow_kernel=dfk)
                futures = [remote(app, np.zeros(1), seed, params or {}) for seed in range(n)]
                results = [future.result() for future in futures]
            finally:
                dfk.cleanup()
                parsl.clear()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"n": n, **cost, "steady": steady_rate([r["ended"] for r in results])}


def raw_round_trip(count: int, *, workdir: Path, site: str = "local",
                   site_params: dict[str, Any] | None = None) -> float:
    """Median seconds from submit to result of one no-op task on a warm executor."""
    import parsl
    from parsl.app.app import python_app

    from campaign.task import run_app
    from site_configs import get_config

    _put_interpreter_on_path()
    run_dir = Path(tempfile.mkdtemp(prefix="raw-rt-", dir=workdir))
    params = site_params or {"workers_per_scale": 2}
    workers = _workers(params)
    try:
        dfk = parsl.load(get_config(site, scales=["w"], run_dir=str(run_dir), **params))
        try:
            remote = python_app(run_app, executors=["sim-w"], data_flow_kernel=dfk)
            # warm every worker (each imports the app's modules on its first task)
            for future in [remote(sleep_app, np.zeros(1), i, {"seconds": 0.3})
                           for i in range(2 * workers)]:
                future.result()
            times = []
            for seed in range(count):
                started = time.perf_counter()
                remote(noop_app, np.zeros(1), seed, {}).result()
                times.append(time.perf_counter() - started)
        finally:
            dfk.cleanup()
            parsl.clear()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return float(np.median(times))


def engine_round_trip(count: int, *, workdir: Path, mode: str, site: str = "local",
                      site_params: dict[str, Any] | None = None) -> float:
    """Median interval between consecutive submissions of a 1-walker, 1-in-flight
    campaign (one round trip plus the engine's handling), cold first tasks left out."""
    run = engine_run(count + ROUND_TRIP_SKIP + 1, workdir=workdir, mode=mode, walkers=1,
                     max_in_flight=1, site=site, site_params=site_params)
    submitted = sorted(a["submitted"] for a in run["attempts"])
    gaps = np.diff(submitted)[ROUND_TRIP_SKIP:]
    return float(np.median(gaps))


# -- 1 + 2: overhead and scaling ------------------------------------------------------
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


# -- 3: utilization ------------------------------------------------------------------
def utilization_spec(n: int, mode: str, *, batch: int = UTILIZATION_BATCH,
                     walkers: int = UTILIZATION_WALKERS, duration_scale: float = 1.0,
                     keep_busy: bool = False) -> Any:
    """Two scales of heavy-tailed sleep tasks with a GP retrained in the loop."""
    from apps import toy
    from campaign import Budget, Campaign, Promotion, Scale
    from learners import ExactGP
    from learners.acquisition import MaxVariance

    params = {"duration_scale": duration_scale}
    return Campaign(
        name="utilization",
        scales=[Scale("coarse", app=sleep_walker, params=params,
                      walkers=toy.initial_walkers(walkers)),
                Scale("fine", app=sleep_energy, params=params)],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=1, iterations=60),
                              acquisition=MaxVariance(), batch_size=batch,
                              quantity="energy", keep_busy=keep_busy)],
        budget=Budget(coarse=n, fine=n), seed=0, mode=mode)


@contextlib.contextmanager
def commit_lags() -> Iterator[list[float]]:
    """Seconds from each task's end to the ``Store.commit`` that recorded it (measured
    by wrapping ``Store.commit`` in this process for the duration of the block)."""
    from campaign.store import Store

    lags: list[float] = []
    original = Store.commit

    def commit(self: Any, scale: str, rows: Any, outcomes: Any) -> int:
        outcomes = list(outcomes)
        committed = original(self, scale, rows, outcomes)
        now = time.time()
        lags.extend(now - o.ended for o in outcomes if o.ended is not None)
        return committed

    Store.commit = commit  # type: ignore[method-assign]
    try:
        yield lags
    finally:
        Store.commit = original  # type: ignore[method-assign]


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


def schedule_records(mode: str, scale: str, figures: dict[str, Any], workers: int, *,
                     judged: bool) -> list[dict[str, Any]]:
    """The utilization and makespan records of one scale's :func:`schedule_figures`;
    ``judged``: against the goals (the async variants)."""
    common = {"scale": scale, "workers": workers}
    records = [
        record("utilization", mode, figures["tasks"], figures["utilization"], 1.0, "fraction",
               goal=GOALS["utilization"] if judged else None,
               meets_goal=bool(figures["utilization"] >= 0.95) if judged else None, **common),
        record("ideal_schedule_utilization", mode, figures["tasks"],
               figures["ideal_utilization"], 1.0, "fraction",
               note="the same durations list-scheduled with zero overhead: the most any "
                    "engine could reach", **common)]
    if math.isfinite(figures["utilization_warm"]):
        records.append(record("utilization_after_warmup", mode, figures["tasks"],
                              figures["utilization_warm"], 1.0, "fraction",
                              warmup_seconds=figures["warmup_seconds"], **common))
    records.append(record("makespan", mode, figures["tasks"], figures["makespan"],
                          figures["ideal_makespan"], "s",
                          goal=GOALS["makespan"] if judged else None,
                          meets_goal=bool(figures["makespan"] <= 1.05 * figures["ideal_makespan"])
                          if judged else None, **common))
    return records


def utilization(n: int, *, workdir: Path, site: str = "local",
                site_params: dict[str, Any] | None = None, duration_scale: float = 1.0,
                workers: int = UTILIZATION_WORKERS, batch: int = UTILIZATION_BATCH,
                walkers: int = UTILIZATION_WALKERS
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Utilization and makespan records for each of :data:`VARIANTS`; also the measured
    commit lags."""
    from campaign.ledger import Ledger

    records: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    spans: dict[str, float] = {}
    for mode, (engine_mode, keep_busy) in VARIANTS.items():
        out = Path(tempfile.mkdtemp(prefix=f"utilization-{mode}-", dir=workdir))
        spec = utilization_spec(n, engine_mode, batch=batch, walkers=walkers,
                                duration_scale=duration_scale, keep_busy=keep_busy)
        try:
            with commit_lags() as lags, measured() as cost:
                summary = spec.run(site=site, out=out, overwrite=True,
                                   **(site_params or {"workers_per_scale": workers}))
            ledger = Ledger(out / "ledger.sqlite", read_only=True)
            try:
                attempts = ledger.attempts()
                fits = len(ledger.rounds("coarse-to-fine"))
            finally:
                ledger.close()
        finally:
            shutil.rmtree(out, ignore_errors=True)
        spans[mode] = (max(a["ended"] for a in attempts if a["ended"] is not None)
                       - min(a["submitted"] for a in attempts))
        details[mode] = {"wall": cost["wall"], "stop_reason": summary.stop_reason,
                         "models": fits, "commits_measured": len(lags),
                         "commit_lag_max": max(lags, default=math.nan),
                         "commit_lag_median": float(np.median(lags)) if lags else math.nan}
        for scale in ("coarse", "fine"):
            figures = schedule_figures([a for a in attempts if a["scale"] == scale], workers)
            details[mode][scale] = figures
            records += schedule_records(mode, scale, figures, workers,
                                        judged=engine_mode == "async")
    for mode in VARIANTS:
        if mode == "rounds":
            continue
        tasks = sum(r["n_tasks"] for r in records if r["metric"] == "makespan"
                    and r["mode"] == mode)
        records.append(record("campaign_makespan", mode, tasks, spans[mode], spans["rounds"],
                              "s", note="first submission to last end; baseline: rounds mode"))
    return records, details


# -- 4: ingest -------------------------------------------------------------------------
def _ingest_rows(n: int, first_task: int, rng: np.random.Generator) -> Any:
    from campaign.store import Rows

    now = time.time()
    task_ids = np.arange(first_task, first_task + n, dtype=np.int64)
    meta = {"task_id": task_ids, "parent_row": np.full(n, -1, np.int64),
            "round": np.zeros(n, np.int32), "submitted": np.full(n, now),
            "started": np.full(n, now), "ended": np.full(n, now)}
    return Rows(x=rng.normal(size=(n, 2)), y={"energy": rng.normal(size=n)}, meta=meta)


def ingest(batch: int, batches: int, *, workdir: Path, with_tasks: bool) -> dict[str, Any]:
    """Rows/s of ``Store.commit`` (fresh run dir and ledger) and of plain zarr appends."""
    import zarr

    from campaign.ledger import Ledger, PlannedTask, TaskOutcome
    from campaign.store import Store

    rng = np.random.default_rng(0)
    prepared = [_ingest_rows(batch, 1 + i * batch, rng) for i in range(batches)]
    run_dir = Path(tempfile.mkdtemp(prefix="ingest-", dir=workdir))
    try:
        ledger = Ledger(run_dir / "ledger.sqlite")
        store = Store(run_dir, ledger)
        outcomes: list[list[Any]] = [[] for _ in prepared]
        if with_tasks:
            planned = [PlannedTask("fine", 0, -1, [0.0, 0.0]) for _ in range(batch * batches)]
            ids = ledger.plan(planned, lambda task_id, attempt: task_id)
            now = time.time()
            outcomes = [[TaskOutcome(task_id, "done", now, now, rows=1, submitted=now,
                                     worker="bench/0/0")
                         for task_id in ids[i * batch:(i + 1) * batch]]
                        for i in range(batches)]
        started = time.perf_counter()
        for rows, done in zip(prepared, outcomes, strict=True):
            store.commit("fine", rows, done)
        seconds = time.perf_counter() - started
        if store.rows("fine") != batch * batches:
            raise RuntimeError("ingest lost rows")
        ledger.close()
        group = zarr.open_group(run_dir / "plain.zarr", mode="w")
        started = time.perf_counter()
        arrays: dict[str, Any] = {}
        for rows in prepared:
            columns = {"x": rows.x, **{f"y/{k}": v for k, v in rows.y.items()},
                       **{f"meta/{k}": v for k, v in rows.meta.items()}}
            for path, values in columns.items():
                if path not in arrays:
                    arrays[path] = group.create_array(
                        path, shape=(0, *values.shape[1:]), dtype=values.dtype,
                        chunks=(4096, *values.shape[1:]))
                arrays[path].append(values, axis=0)
        plain = time.perf_counter() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    total = batch * batches
    return {"rows": total, "rate": total / seconds, "plain_rate": total / plain,
            "seconds": seconds, "plain_seconds": plain}


def ingest_records(plan: Sequence[tuple[int, int]], *, workdir: Path
                   ) -> list[dict[str, Any]]:
    records = []
    for batch, batches in plan:
        for with_tasks in (False, True):
            result = ingest(batch, batches, workdir=workdir, with_tasks=with_tasks)
            mode = f"batch={batch}{'+tasks' if with_tasks else ''}"
            records.append(record("ingest_rows_per_s", mode, result["rows"], result["rate"],
                                  result["plain_rate"], "rows/s", goal=GOALS["ingest"],
                                  meets_goal=bool(result["rate"] >= 50_000),
                                  note="baseline: plain zarr appends of the same arrays"))
    return records


def durability_record(details: dict[str, Any]) -> dict[str, Any] | None:
    from campaign.ingest import COMMIT_EVERY_SECONDS

    lag = details.get("async", {}).get("commit_lag_max")
    if lag is None or not math.isfinite(lag):
        return None
    return record("durability_window", "async", details["async"]["commits_measured"], lag,
                  COMMIT_EVERY_SECONDS, "s",
                  median_lag=details["async"]["commit_lag_median"],
                  note="largest lag from a task's end to its commit in the async utilization "
                       "run; baseline: campaign.ingest.COMMIT_EVERY_SECONDS")


# -- 5: time to quality -------------------------------------------------------------------
def quality_curve(run_dir: Path, promotion: str) -> dict[str, Any]:
    from campaign.ledger import Ledger

    ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    try:
        curve = [r for r in ledger.rounds(promotion)
                 if r.get("reference_rmse") is not None and r.get("fit_ended") is not None]
        attempts = ledger.attempts()
    finally:
        ledger.close()
    curve.sort(key=lambda r: r["fit_ended"])
    return {"curve": [{"n_train": r["n_train"], "reference_rmse": r["reference_rmse"],
                       "fit_ended": r["fit_ended"]} for r in curve],
            "t0": min(a["submitted"] for a in attempts),
            "final_rmse": curve[-1]["reference_rmse"] if curve else math.nan}


def reach(curve: dict[str, Any], target: float) -> dict[str, Any]:
    """The first model at or under ``target``: seconds since the first submission and
    fine simulations trained on; else the run's totals (lower bounds)."""
    for point in curve["curve"]:
        if point["reference_rmse"] <= target:
            return {"reached": True, "seconds": point["fit_ended"] - curve["t0"],
                    "sims": point["n_train"]}
    last = curve["curve"][-1]
    return {"reached": False, "seconds": last["fit_ended"] - curve["t0"],
            "sims": last["n_train"]}


def time_to_quality(spec: Any, *, workdir: Path, site: str = "local",
                    site_params: dict[str, Any] | None = None
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rounds first (it fixes the target), then each async variant of :data:`VARIANTS`,
    same spec, same site."""
    promotion = spec.promotions[0].name
    curves: dict[str, dict[str, Any]] = {}
    for mode in ("rounds", *(m for m in VARIANTS if m != "rounds")):
        engine_mode, keep_busy = VARIANTS[mode]
        promotions = [p.model_copy(update={"keep_busy": keep_busy}) for p in spec.promotions]
        out = Path(tempfile.mkdtemp(prefix=f"quality-{mode}-", dir=workdir))
        try:
            with measured() as cost:
                summary = spec.model_copy(update={"mode": engine_mode,
                                                  "promotions": promotions}).run(
                    site=site, out=out, overwrite=True, **(site_params or {}))
            curves[mode] = quality_curve(out, promotion)
            curves[mode].update(wall=cost["wall"], stop_reason=summary.stop_reason,
                                rows=summary.rows,
                                fine_done=summary.task_counts.get(
                                    spec.promotions[0].target, {}).get("done", 0))
        finally:
            shutil.rmtree(out, ignore_errors=True)
    target = TARGET_FACTOR * curves["rounds"]["final_rmse"]
    hit = {mode: reach(curves[mode], target) for mode in curves}
    n = spec.budget.tasks.get(spec.promotions[0].target, 0)
    records = []
    for mode in curves:
        if mode == "rounds":
            continue
        extra = {"target_rmse": target, "reached": hit[mode]["reached"],
                 "baseline_reached": hit["rounds"]["reached"]}
        records += [
            record("time_to_target", mode, n, hit[mode]["seconds"], hit["rounds"]["seconds"],
                   "s", goal=GOALS["time_to_target"],
                   meets_goal=bool(hit[mode]["seconds"] < hit["rounds"]["seconds"]), **extra),
            record("sims_to_target", mode, n, hit[mode]["sims"], hit["rounds"]["sims"],
                   "fine sims", goal=GOALS["sims_to_target"],
                   meets_goal=bool(hit[mode]["sims"] <= 1.1 * hit["rounds"]["sims"]), **extra),
            record("final_reference_rmse", mode, n, curves[mode]["final_rmse"],
                   curves["rounds"]["final_rmse"], "energy"),
            record("quality_run_wall", mode, n, curves[mode]["wall"],
                   curves["rounds"]["wall"], "s", note="whole Campaign.run, start-up included"),
        ]
    return records, {"target_rmse": target, "runs": curves, "reach": hit}


# -- 6: Colmena --------------------------------------------------------------------------
def run_thinker(thinker_class: Any, queues: Any, methods: list[Any], config: Any) -> Any:
    """Start a Colmena ``ParslTaskServer`` of ``methods`` on ``config``, run a thinker of
    ``thinker_class`` on ``queues`` to its end, stop the server; returns the thinker."""
    from colmena.task_server.parsl import ParslTaskServer

    server = ParslTaskServer(methods, queues, config)
    server.start()
    try:
        thinker = thinker_class(queues)
        thinker.start()
        thinker.join()
    finally:
        queues.send_kill_signal()
        server.join(timeout=60)
    return thinker


def colmena_noop(seed: int) -> dict[str, Any]:
    """The overhead part's no-op as a Colmena method: ``run_app`` on the worker, as raw
    Parsl runs it."""
    from campaign.task import run_app

    return run_app(noop_app, np.zeros(1), seed, {})


def colmena_run(n: int, *, workdir: Path, in_flight: int, site: str = "local",
                site_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``n`` no-op tasks through a Colmena thinker (a ``ResourceCounter`` of ``in_flight``
    slots, a ``task_submitter`` and a ``result_processor`` agent, Colmena's own pattern)
    and a ``ParslTaskServer`` on the same site config; timed like :func:`raw_run`. The
    task server is its own process: ``cpu`` is the thinker's process only."""
    from colmena.queue.python import PipeQueues
    from colmena.thinker import BaseThinker, ResourceCounter, result_processor, task_submitter

    from site_configs import get_config

    class NoopThinker(BaseThinker):  # type: ignore[misc]
        def __init__(self, queues: Any) -> None:
            super().__init__(queues, ResourceCounter(in_flight), logger_name="colmena.bench")
            self.submitted: list[float] = []
            self.received: list[float] = []

        @task_submitter()  # type: ignore[misc]
        def submit(self) -> None:
            if len(self.submitted) < n:  # past n the slot is kept: nothing left to send
                self.submitted.append(time.time())
                self.queues.send_inputs(len(self.submitted), method="colmena_noop")

        @result_processor()  # type: ignore[misc]
        def collect(self, result: Any) -> None:
            if not result.success:
                raise RuntimeError(f"colmena task failed: {result.failure_info}")
            self.received.append(time.time())
            self.rec.release()
            if len(self.received) == n:
                self.done.set()

    _put_interpreter_on_path()
    run_dir = Path(tempfile.mkdtemp(prefix="colmena-", dir=workdir))
    try:
        with measured() as cost:
            config = get_config(site, scales=["w"], run_dir=str(run_dir),
                                **(site_params or {"workers_per_scale": 2}))
            queues = PipeQueues(serialization_method="pickle", keep_inputs=False)
            thinker = run_thinker(NoopThinker, queues,
                                  [(colmena_noop, {"executors": ["sim-w"]})], config)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if len(thinker.received) != n:
        raise RuntimeError(f"colmena returned {len(thinker.received)} of {n} results")
    return {"n": n, **cost, "steady": steady_rate(thinker.received),
            "submitted": thinker.submitted}


def colmena_walker(x: np.ndarray, seed: int, duration_scale: float) -> dict[str, Any]:
    """The utilization workload's coarse segment as a Colmena method (timed on the
    worker by ``run_app``, as the engine's tasks are)."""
    from campaign.task import run_app

    return run_app(sleep_walker, x, seed, {"duration_scale": duration_scale})


def colmena_energy(x: np.ndarray, seed: int, duration_scale: float) -> dict[str, Any]:
    """The utilization workload's fine task as a Colmena method."""
    from campaign.task import run_app

    return run_app(sleep_energy, x, seed, {"duration_scale": duration_scale})


def colmena_fit(X: np.ndarray, y: np.ndarray) -> Any:
    """The utilization workload's GP fit as a Colmena method (on the ``train`` executor)."""
    from learners import ExactGP

    return ExactGP(restarts=1, iterations=60).fit(X, y)


def colmena_utilization(n: int, *, workdir: Path, workers: int = UTILIZATION_WORKERS,
                        walkers: int = UTILIZATION_WALKERS, batch: int = UTILIZATION_BATCH,
                        duration_scale: float = 1.0, site: str = "local",
                        site_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The utilization workload (:func:`utilization_spec`) through a Colmena thinker on
    the same site config: ``n`` coarse segments of ``walkers`` walkers and ``n`` fine
    tasks, in Colmena's own pattern. A ``ResourceCounter`` holds the engine's in-flight
    counts (coarse: one per walker, up to 4 per worker; fine: 4 per worker); a coarse
    ``task_submitter`` sends an idle walker's next segment, whose ``result_processor``
    adds its positions to the pool and frees the walker; a fine ``task_submitter`` takes
    the next candidate from a list ranked by the newest GP's posterior variance (random
    picks until the first model, and when the list runs dry); every ``batch`` fine
    results a fit runs on the ``train`` executor, and its ``result_processor`` ranks the
    pool anew. Returns the attempts (worker clocks, as the engine's ``attempts`` table)
    and the models fitted."""
    from colmena.queue.python import PipeQueues
    from colmena.thinker import (
        BaseThinker,
        ResourceCounter,
        agent,
        result_processor,
        task_submitter,
    )

    from apps import toy
    from campaign.engine import IN_FLIGHT_PER_WORKER
    from site_configs import get_config

    coarse_slots = min(walkers, IN_FLIGHT_PER_WORKER * workers)
    fine_slots = IN_FLIGHT_PER_WORKER * workers

    class UtilizationThinker(BaseThinker):  # type: ignore[misc]
        def __init__(self, queues: Any) -> None:
            super().__init__(queues, ResourceCounter(coarse_slots + fine_slots,
                                                     ["coarse", "fine"]),
                             logger_name="colmena.bench")
            self.positions = np.asarray(toy.initial_walkers(walkers), dtype=np.float64)
            self.idle = list(range(walkers))
            self.pool: list[np.ndarray] = []
            self.taken: set[int] = set()
            self.ranked: list[int] = []
            self.X: list[np.ndarray] = []
            self.y: list[float] = []
            self.sent = {"coarse": 0, "fine": 0}
            self.done_count = {"coarse": 0, "fine": 0}
            self.attempts: list[dict[str, Any]] = []
            self.fitting = False
            self.fitted_on = 0
            self.models = 0
            self.rng = np.random.default_rng(0)
            self.lock = threading.Lock()

        @agent(startup=True)  # type: ignore[misc]
        def allocate(self) -> None:
            self.rec.reallocate(None, "coarse", coarse_slots)
            self.rec.reallocate(None, "fine", fine_slots)

        def _attempt(self, scale: str, result: Any) -> dict[str, Any]:
            if not result.success:
                raise RuntimeError(f"colmena {scale} task failed: {result.failure_info}")
            value = result.value
            return {"scale": scale, "task_id": int(result.task_info["seed"]), "attempt": 1,
                    "submitted": result.timestamp.created, "started": value["started"],
                    "ended": value["ended"], "worker": value["worker"]}

        @task_submitter(task_type="coarse")  # type: ignore[misc]
        def submit_segment(self) -> None:
            with self.lock:
                if self.sent["coarse"] >= n or not self.idle:
                    return  # the slot stays taken: nothing more to send
                walker = self.idle.pop(0)
                self.sent["coarse"] += 1
                seed = self.sent["coarse"]
            self.queues.send_inputs(self.positions[walker], seed, duration_scale,
                                    method="colmena_walker", topic="coarse",
                                    task_info={"walker": walker, "seed": seed})

        @result_processor(topic="coarse")  # type: ignore[misc]
        def segment_done(self, result: Any) -> None:
            attempt = self._attempt("coarse", result)
            rows = np.asarray(result.value["outputs"]["x"], dtype=np.float64)
            with self.lock:
                self.attempts.append(attempt)
                self.pool.extend(rows)
                walker = int(result.task_info["walker"])
                self.positions[walker] = rows[-1]
                self.idle.append(walker)
                self.done_count["coarse"] += 1
            self.rec.release("coarse")
            self._maybe_done()

        def _next_candidate(self) -> int | None:
            while self.ranked:
                row = self.ranked.pop(0)
                if row not in self.taken:
                    return row
            free = [i for i in range(len(self.pool)) if i not in self.taken]
            return int(self.rng.choice(free)) if free else None

        @task_submitter(task_type="fine")  # type: ignore[misc]
        def submit_fine(self) -> None:
            while not self.done.is_set():
                with self.lock:
                    if self.sent["fine"] >= n:
                        return
                    row = self._next_candidate()
                    if row is not None:
                        self.taken.add(row)
                        self.sent["fine"] += 1
                        seed = n + self.sent["fine"]
                        position = self.pool[row]
                        break
                time.sleep(0.01)  # no candidate yet: wait for coarse rows
            else:
                return
            self.queues.send_inputs(position, seed, duration_scale, method="colmena_energy",
                                    topic="fine", task_info={"row": row, "seed": seed})

        @result_processor(topic="fine")  # type: ignore[misc]
        def fine_done(self, result: Any) -> None:
            attempt = self._attempt("fine", result)
            with self.lock:
                self.attempts.append(attempt)
                self.X.append(self.pool[int(result.task_info["row"])])
                self.y.append(float(np.asarray(result.value["outputs"]["energy"]).ravel()[0]))
                self.done_count["fine"] += 1
                fit = not self.fitting and len(self.y) - self.fitted_on >= batch
                if fit:
                    self.fitting, self.fitted_on = True, len(self.y)
                    X, y = np.asarray(self.X), np.asarray(self.y)
            self.rec.release("fine")
            if fit:
                self.queues.send_inputs(X, y, method="colmena_fit", topic="train")
            self._maybe_done()

        @result_processor(topic="train")  # type: ignore[misc]
        def fit_done(self, result: Any) -> None:
            if not result.success:
                raise RuntimeError(f"colmena fit failed: {result.failure_info}")
            with self.lock:
                pool = np.asarray(self.pool)
            variance = result.value.posterior(pool).variance
            with self.lock:
                self.ranked = [int(i) for i in np.argsort(-variance) if int(i) not in self.taken]
                self.fitting = False
                self.models += 1

        def _maybe_done(self) -> None:
            if self.done_count["coarse"] >= n and self.done_count["fine"] >= n:
                self.done.set()

    _put_interpreter_on_path()
    run_dir = Path(tempfile.mkdtemp(prefix="colmena-utilization-", dir=workdir))
    try:
        with measured() as cost:
            config = get_config(site, scales=["coarse", "fine"], run_dir=str(run_dir),
                                **(site_params or {"workers_per_scale": workers}))
            queues = PipeQueues(topics=["coarse", "fine", "train"],
                                serialization_method="pickle", keep_inputs=False)
            thinker = run_thinker(UtilizationThinker, queues,
                                  [(colmena_walker, {"executors": ["sim-coarse"]}),
                                   (colmena_energy, {"executors": ["sim-fine"]}),
                                   (colmena_fit, {"executors": ["train"]})], config)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return {"wall": cost["wall"], "attempts": thinker.attempts, "models": thinker.models}


def colmena_utilization_records(n: int, *, workdir: Path, workers: int = UTILIZATION_WORKERS,
                                **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Utilization and makespan records of :func:`colmena_utilization` (mode
    ``colmena``), computed as the engine's are."""
    run = colmena_utilization(n, workdir=workdir, workers=workers, **kwargs)
    records = []
    details: dict[str, Any] = {"wall": run["wall"], "models": run["models"]}
    for scale in ("coarse", "fine"):
        figures = schedule_figures([a for a in run["attempts"] if a["scale"] == scale], workers)
        details[scale] = figures
        records += schedule_records("colmena", scale, figures, workers, judged=False)
    return records, details


def colmena_records(sizes: Sequence[int], *, workdir: Path, round_trips: int = ROUND_TRIPS,
                    site: str = "local", site_params: dict[str, Any] | None = None
                    ) -> list[dict[str, Any]]:
    """No-op throughput (marginal, as the engine's) and round trip (1 slot, the median gap
    between consecutive submissions after the first few) through Colmena, each against
    raw Parsl measured in this part on the same site config."""
    from campaign.engine import IN_FLIGHT_PER_WORKER

    params = site_params or {"workers_per_scale": 2}
    workers = _workers(params)
    on_site = {"site": site, "site_params": params}
    records = []
    for n in sizes:
        raw = marginal_pair(lambda m: raw_run(m, workdir=workdir, **on_site), n)
        pair = marginal_pair(lambda m: colmena_run(
            m, workdir=workdir, in_flight=IN_FLIGHT_PER_WORKER * workers, **on_site), n)
        logger.info("colmena noop n=%d: %.0f tasks/s (raw %.0f)", n, pair["rate"], raw["rate"])
        records.append(record("throughput_noop", "colmena", n, pair["rate"], raw["rate"],
                              "tasks/s", in_flight=IN_FLIGHT_PER_WORKER * workers,
                              method=pair["method"], baseline_method=raw["method"],
                              note="baseline: raw Parsl, measured in the Colmena part"))
    trip_run = colmena_run(round_trips + ROUND_TRIP_SKIP + 1, workdir=workdir, in_flight=1,
                           **on_site)
    trip = float(np.median(np.diff(sorted(trip_run["submitted"]))[ROUND_TRIP_SKIP:]))
    raw_trip = raw_round_trip(round_trips, workdir=workdir, **on_site)
    records.append(record("round_trip", "colmena", 1, trip, raw_trip, "s",
                          samples=round_trips, note="baseline: raw Parsl"))
    return records


def colmena_status() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("colmena")
    except PackageNotFoundError:
        return {"installed": False, "note": "not installed (pip install -e .[bench]): "
                                            "no comparison"}
    return {"installed": True, "version": installed,
            "note": f"colmena {installed}: no-op throughput, round trip and the "
                    "utilization workload (mode 'colmena')"}


# -- the whole benchmark ---------------------------------------------------------------
def settings(quick: bool) -> dict[str, Any]:
    if quick:
        return {"sizes": {"async": [1000], "rounds": [1000]},
                "sleep_sizes": {"async": [1000]}, "sweep_size": None,
                "utilization_tasks": 200, "ingest": [(100, 50), (10_000, 3)],
                "fine_budget": 40, "colmena_sizes": [1000], "paired_size": 1000}
    return {"sizes": {"async": [1000, 10_000, 100_000], "rounds": [1000, 10_000]},
            "sleep_sizes": {"async": [1000, 10_000], "rounds": [1000, 10_000]},
            "sweep_size": 10_000, "utilization_tasks": 400,
            "ingest": [(100, 1000), (10_000, 20)], "fine_budget": None,
            "colmena_sizes": [1000, 10_000], "paired_size": 10_000}


def run(quick: bool, *, parts: Sequence[str] = PARTS, workdir: Path | None = None,
        sizes: Sequence[int] | None = None, repeats: int = REPEATS) -> dict[str, Any]:
    """Every part of the benchmark in this process; the report (records and details).
    ``sizes``: the no-op sizes of the overhead part (async mode only, no 1 ms tasks), of
    the Colmena part and (the largest) of the paired part, instead of the mode's."""
    chosen = settings(quick)
    if sizes:
        chosen.update(sizes={"async": list(sizes)}, sleep_sizes={}, sweep_size=None,
                      colmena_sizes=list(sizes), paired_size=max(sizes))
    started = time.time()
    load_before = os.getloadavg()
    records: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="throughput-") as scratch:
        folder = Path(workdir or scratch)
        folder.mkdir(parents=True, exist_ok=True)
        if "overhead" in parts:
            records += overhead(chosen["sizes"], workdir=folder,
                                sleep_sizes=chosen["sleep_sizes"],
                                sweep_size=chosen["sweep_size"])
        if "paired" in parts:
            records += paired_throughput(chosen["paired_size"], workdir=folder,
                                         repeats=repeats)
        if "utilization" in parts:
            found, details["utilization"] = utilization(chosen["utilization_tasks"],
                                                        workdir=folder)
            records += found
            durability = durability_record(details["utilization"])
            if durability is not None:
                records.append(durability)
        if "ingest" in parts:
            records += ingest_records(chosen["ingest"], workdir=folder)
        if "quality" in parts:
            from campaign import Budget
            from campaign.script import load_campaign

            spec = load_campaign(DEMO)
            if chosen["fine_budget"] is not None:  # the demo's coarse work, scaled alike
                fine = chosen["fine_budget"]
                coarse = max(4, round(spec.budget.tasks["coarse"] * fine
                                      / spec.budget.tasks["fine"]))
                spec = spec.model_copy(update={"budget": Budget(fine=fine, coarse=coarse)})
            found, details["quality"] = time_to_quality(spec, workdir=folder)
            records += found
        colmena = colmena_status() if "colmena" in parts else None
        if colmena is not None and colmena["installed"]:
            records += colmena_records(chosen["colmena_sizes"], workdir=folder)
            found, details["colmena_utilization"] = colmena_utilization_records(
                chosen["utilization_tasks"], workdir=folder)
            records += found
    return {"benchmark": "throughput", "quick": quick, "records": records,
            "colmena": colmena, "details": details, "goals": GOALS,
            "machine": {"cpus": os.cpu_count(), "load_before": load_before,
                        "load_after": os.getloadavg()},
            "wall_seconds": time.time() - started}


def _number(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.3f}"
    return f"{value:.2e}"


def table(report: dict[str, Any]) -> str:
    """The records as a fixed-width table, goals alongside."""
    header = ("metric", "mode", "n", "value", "baseline", "ratio", "unit", "goal")
    rows = [header]
    for r in report["records"]:
        mode = r["mode"] + (f" {r['scale']}" if "scale" in r else "")
        goal = r.get("goal") or ""
        if goal and r.get("meets_goal") is not None:
            goal += "  [met]" if r["meets_goal"] else "  [NOT met]"
        if "paired_ratios" in r:
            goal += (f"  (median paired ratio {r['paired_ratio_median']:.2f}x; per repeat "
                     + ", ".join(f"{x:.2f}" for x in r["paired_ratios"]) + ")")
        if r.get("reached") is False:
            goal += "  (never reached the target: lower bound)"
        for side, who in (("method", "value"), ("baseline_method", "baseline")):
            if r.get(side, "difference") != "difference":
                goal += f"  ({who}: {r[side]})"
        rows.append((r["metric"], mode, str(r["n_tasks"]), _number(r["value"]),
                     _number(r["baseline"]), f"{r['ratio']:.2f}x", r["unit"], goal))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
             + "  " + row[-1] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    machine = report["machine"]
    lines.append("")
    lines.append(f"machine: {machine['cpus']} cpus, load average before "
                 f"{machine['load_before'][0]:.2f}, after {machine['load_after'][0]:.2f} "
                 "(other jobs may share the cores: timings are upper bounds)")
    quality = report["details"].get("quality")
    if quality:
        lines.append(f"time to quality: target reference RMSE {quality['target_rmse']:.3g} "
                     f"(= {TARGET_FACTOR} x rounds-mode final)")
    if report.get("colmena") is not None:
        lines.append(f"colmena: {report['colmena']['note']}")
    if report["quick"]:
        lines.append("cpu_per_task_growth: n/a in --quick (one size)")
    lines.append(f"benchmark wall time: {report['wall_seconds']:.0f} s")
    return "\n".join(lines)


def quiet_logging() -> None:
    """Warnings only from the engine and Parsl (whose loggers pass DEBUG records to the
    root handler); this benchmark's progress lines at INFO."""
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setLevel(logging.WARNING)
    progress = logging.StreamHandler()
    progress.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(progress)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.throughput",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="10^3 tasks only, 200 tasks per utilization scale, fine=40")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--workdir", type=Path, help="run directories here (default: a "
                        "temporary folder); each run's folder is removed after it")
    parser.add_argument("--sizes", help="comma-separated no-op task counts for the overhead "
                        "(async only) and Colmena parts, the largest for the paired part, "
                        "e.g. 10000")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"engine/raw alternations of the paired part (default {REPEATS})")
    args = parser.parse_args(argv)
    try:
        sizes = [int(n) for n in args.sizes.split(",")] if args.sizes else None
    except ValueError:
        parser.error(f"--sizes takes comma-separated integers, got {args.sizes!r}")
    if sizes and min(sizes) < 4:
        parser.error("--sizes: each run is also made at half its size: use 4 or more")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    quiet_logging()
    report = run(args.quick, parts=parts, workdir=args.workdir, sizes=sizes,
                 repeats=args.repeats)
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")

