"""One timed run of the throughput benchmark: ``n`` tasks through the engine
(:func:`engine_run`, a walker-only campaign) or through plain Parsl on the same site
config (:func:`raw_run`), round trips on both sides, and how a run is measured (wall and
CPU seconds of this process, peak RSS: :func:`measured`), in a scratch folder removed
after it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.throughput.apps import noop_app, sleep_app
from benchmarks.throughput.schedule import median_gap, steady_rate

# async: the engine's default max_in_flight (2 per worker) and twice as many walkers, so
# a free slot always finds an idle walker; rounds: 100 walkers per round
ASYNC_WALKERS, ASYNC_IN_FLIGHT, ROUNDS_WALKERS = 8, None, 100
ROUND_TRIPS = 20  # round trips measured one after another, per side
ROUND_TRIP_SKIP = 3  # the first round trips left out (cold workers)
RSS_PERIOD = 0.1  # seconds between samples of peak RSS
# the overhead parts' executors: 2 workers per scale, unless a caller passes its own
OVERHEAD_SITE_PARAMS: dict[str, Any] = {"workers_per_scale": 2}


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


def site_workers(site_params: dict[str, Any]) -> int:
    """Workers per scale that a site's parameters ask for (HTEX or threads)."""
    return int(site_params.get("workers_per_scale", site_params.get("max_threads", 1)))


def put_interpreter_on_path() -> None:
    """Put this interpreter's folder on ``PATH``, where Parsl looks for its worker
    commands."""
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


@contextlib.contextmanager
def scratch_dir(prefix: str, workdir: Path) -> Iterator[Path]:
    """A fresh folder under ``workdir`` for one run, removed after the block."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=workdir))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def finished_ledger(run_dir: Path) -> Iterator[Any]:
    """The ``Ledger`` of a finished run, read-only, closed after the block."""
    from campaign.ledger import Ledger

    ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    try:
        yield ledger
    finally:
        ledger.close()


@contextlib.contextmanager
def raw_parsl(run_dir: Path, *, site: str, site_params: dict[str, Any]
              ) -> Iterator[Callable[..., Any]]:
    """Plain Parsl on the site's config for one scale ``w``: loaded, the remote
    ``campaign.task.run_app`` on ``sim-w`` given to the block, cleaned up after it."""
    import parsl
    from parsl.app.app import python_app

    from campaign.task import run_app
    from site_configs import get_config

    dfk = parsl.load(get_config(site, scales=["w"], run_dir=str(run_dir), **site_params))
    try:
        yield python_app(run_app, executors=["sim-w"], data_flow_kernel=dfk)
    finally:
        dfk.cleanup()
        parsl.clear()


def engine_run(n: int, *, workdir: Path, mode: str, app: Callable[..., Any] = noop_app,
               params: dict[str, Any] | None = None, walkers: int = ASYNC_WALKERS,
               max_in_flight: int | None = ASYNC_IN_FLIGHT, site: str = "local",
               site_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A walker-only campaign of ``n`` tasks through the engine, timed; its attempts."""
    from campaign import Budget, Campaign, Scale

    spec = Campaign(name="throughput",
                    scales=[Scale("w", app=app, params=params or {},
                                  walkers=np.zeros((walkers, 1)),
                                  max_in_flight=max_in_flight)],
                    budget=Budget(w=n), mode=mode)
    with scratch_dir(f"engine-{mode}-", workdir) as out:
        with measured() as cost:
            summary = spec.run(site=site, out=out, overwrite=True,
                               **(site_params or OVERHEAD_SITE_PARAMS))
        with finished_ledger(out) as ledger:
            attempts = ledger.attempts()
    done = [a for a in attempts if a["outcome"] == "done"]
    if len(done) != n:
        raise RuntimeError(f"engine ran {len(done)} of {n} tasks ({summary.stop_reason})")
    return {"n": n, **cost, "attempts": attempts, "stop_reason": summary.stop_reason,
            "steady": steady_rate([a["ended"] for a in done])}


def raw_run(n: int, *, workdir: Path, app: Callable[..., Any] = noop_app,
            params: dict[str, Any] | None = None, site: str = "local",
            site_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``n`` tasks submitted at once to the same site config through plain Parsl."""
    put_interpreter_on_path()
    with scratch_dir("raw-", workdir) as run_dir, measured() as cost:
        with raw_parsl(run_dir, site=site,
                       site_params=site_params or OVERHEAD_SITE_PARAMS) as remote:
            futures = [remote(app, np.zeros(1), seed, params or {}) for seed in range(n)]
            results = [future.result() for future in futures]
    return {"n": n, **cost, "steady": steady_rate([r["ended"] for r in results])}


def raw_round_trip(count: int, *, workdir: Path, site: str = "local",
                   site_params: dict[str, Any] | None = None) -> float:
    """Median seconds from submit to result of one no-op task on a warm executor."""
    put_interpreter_on_path()
    params = site_params or OVERHEAD_SITE_PARAMS
    workers = site_workers(params)
    with scratch_dir("raw-rt-", workdir) as run_dir, raw_parsl(
            run_dir, site=site, site_params=params) as remote:
        # warm every worker (each imports the app's modules on its first task)
        for future in [remote(sleep_app, np.zeros(1), i, {"seconds": 0.3})
                       for i in range(2 * workers)]:
            future.result()
        times = []
        for seed in range(count):
            started = time.perf_counter()
            remote(noop_app, np.zeros(1), seed, {}).result()
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def engine_round_trip(count: int, *, workdir: Path, mode: str, site: str = "local",
                      site_params: dict[str, Any] | None = None) -> float:
    """Median interval between consecutive submissions of a 1-walker, 1-in-flight
    campaign (one round trip plus the engine's handling), cold first tasks left out."""
    run = engine_run(count + ROUND_TRIP_SKIP + 1, workdir=workdir, mode=mode, walkers=1,
                     max_in_flight=1, site=site, site_params=site_params)
    return median_gap([a["submitted"] for a in run["attempts"]], skip=ROUND_TRIP_SKIP)
