"""Part 6 of the throughput benchmark: the same workloads through a Colmena thinker and
``ParslTaskServer`` on the same site config, side by side with the engine.

**Colmena** (``pip install -e .[bench]``; reported as not installed otherwise): the
no-op workload through a Colmena thinker (``ResourceCounter`` of 4 slots per worker,
the engine's default in-flight count, a ``task_submitter`` and a ``result_processor``
agent) and ``ParslTaskServer`` on the same site config, throughput by the same
differencing, against raw Parsl measured in this part; round trip with one slot. The
utilization workload through a Colmena thinker too (:func:`colmena_utilization`:
the same apps, durations from the same distribution, the same GP every 32 fine
results on the ``train`` executor; fine picks from a list ranked by the newest
model's variance, random until the first), its utilization and makespan computed
as the engine's (mode ``colmena``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.throughput.apps import noop_app, sleep_energy, sleep_walker
from benchmarks.throughput.records import record
from benchmarks.throughput.runs import (
    OVERHEAD_SITE_PARAMS,
    ROUND_TRIP_SKIP,
    ROUND_TRIPS,
    measured,
    put_interpreter_on_path,
    raw_round_trip,
    raw_run,
    scratch_dir,
    site_workers,
)
from benchmarks.throughput.schedule import marginal_pair, median_gap, steady_rate
from benchmarks.throughput.utilization import (
    UTILIZATION_BATCH,
    UTILIZATION_WALKERS,
    UTILIZATION_WORKERS,
    scale_records,
)

logger = logging.getLogger(__package__)


def run_thinker(thinker_class: Any, methods: list[Any], *, scales: list[str],
                topics: Sequence[str] = (), prefix: str, workdir: Path, site: str,
                site_params: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    """Run a thinker of ``thinker_class`` to its end against a Colmena
    ``ParslTaskServer`` of ``methods`` on the site's config for ``scales`` (run folder:
    a scratch folder named ``prefix``..., removed after), and stop the server. Timed by
    :func:`measured` from before the config is made to after the server is stopped.
    Returns the thinker and that cost."""
    from colmena.queue.python import PipeQueues
    from colmena.task_server.parsl import ParslTaskServer

    from site_configs import get_config

    put_interpreter_on_path()
    with scratch_dir(prefix, workdir) as run_dir, measured() as cost:
        config = get_config(site, scales=scales, run_dir=str(run_dir), **site_params)
        queues = PipeQueues(topics=topics, serialization_method="pickle", keep_inputs=False)
        server = ParslTaskServer(methods, queues, config)
        server.start()
        try:
            thinker = thinker_class(queues)
            thinker.start()
            thinker.join()
        finally:
            queues.send_kill_signal()
            server.join(timeout=60)
    return thinker, cost


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
    from colmena.thinker import BaseThinker, ResourceCounter, result_processor, task_submitter

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

    thinker, cost = run_thinker(NoopThinker, [(colmena_noop, {"executors": ["sim-w"]})],
                                scales=["w"], prefix="colmena-", workdir=workdir, site=site,
                                site_params=site_params or OVERHEAD_SITE_PARAMS)
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
    from colmena.thinker import (
        BaseThinker,
        ResourceCounter,
        agent,
        result_processor,
        task_submitter,
    )

    from apps import toy
    from campaign.engine import IN_FLIGHT_PER_WORKER

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

    thinker, cost = run_thinker(UtilizationThinker,
                                [(colmena_walker, {"executors": ["sim-coarse"]}),
                                 (colmena_energy, {"executors": ["sim-fine"]}),
                                 (colmena_fit, {"executors": ["train"]})],
                                scales=["coarse", "fine"], topics=["coarse", "fine", "train"],
                                prefix="colmena-utilization-", workdir=workdir, site=site,
                                site_params=site_params or {"workers_per_scale": workers})
    return {"wall": cost["wall"], "attempts": thinker.attempts, "models": thinker.models}


def colmena_utilization_records(n: int, *, workdir: Path, workers: int = UTILIZATION_WORKERS,
                                **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Utilization and makespan records of :func:`colmena_utilization` (mode
    ``colmena``), computed as the engine's are."""
    run = colmena_utilization(n, workdir=workdir, workers=workers, **kwargs)
    records, figures_by_scale = scale_records("colmena", run["attempts"], workers, judged=False)
    return records, {"wall": run["wall"], "models": run["models"], **figures_by_scale}


def colmena_records(sizes: Sequence[int], *, workdir: Path, round_trips: int = ROUND_TRIPS,
                    site: str = "local", site_params: dict[str, Any] | None = None
                    ) -> list[dict[str, Any]]:
    """No-op throughput (marginal, as the engine's) and round trip (1 slot, the median gap
    between consecutive submissions after the first few) through Colmena, each against
    raw Parsl measured in this part on the same site config."""
    from campaign.engine import IN_FLIGHT_PER_WORKER

    params = site_params or OVERHEAD_SITE_PARAMS
    workers = site_workers(params)
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
    trip = median_gap(trip_run["submitted"], skip=ROUND_TRIP_SKIP)
    raw_trip = raw_round_trip(round_trips, workdir=workdir, **on_site)
    records.append(record("round_trip", "colmena", 1, trip, raw_trip, "s",
                          samples=round_trips, note="baseline: raw Parsl"))
    return records


def colmena_status() -> dict[str, Any]:
    """Whether Colmena is installed (its version), and a note for the report."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("colmena")
    except PackageNotFoundError:
        return {"installed": False, "note": "not installed (pip install -e .[bench]): "
                                            "no comparison"}
    return {"installed": True, "version": installed,
            "note": f"colmena {installed}: no-op throughput, round trip and the "
                    "utilization workload (mode 'colmena')"}

