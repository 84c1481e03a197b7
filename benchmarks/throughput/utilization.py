"""Part 3 of the throughput benchmark: how busy the engine keeps 16 workers per scale
on a two-scale campaign of heavy-tailed sleep tasks with a GP in the loop, for each of
:data:`~benchmarks.throughput.records.VARIANTS`, against the ideal list schedule.

**Utilization** (``utilization``, ``utilization_after_warmup``, ``makespan``,
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
these durations: the tail of the last tasks keeps it below 1. One run for each of the
variants in ``VARIANTS`` (:mod:`benchmarks.throughput.records`, which says what each is).
``campaign_makespan``: first submission to last end, each async variant over rounds.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.throughput.apps import sleep_energy, sleep_walker
from benchmarks.throughput.records import GOALS, VARIANTS, record
from benchmarks.throughput.runs import finished_ledger, measured, scratch_dir
from benchmarks.throughput.schedule import schedule_figures

UTILIZATION_WORKERS = 16
UTILIZATION_WALKERS = 32
UTILIZATION_BATCH = 32


def utilization_spec(n: int, mode: str, *, batch: int = UTILIZATION_BATCH,
                     walkers: int = UTILIZATION_WALKERS, duration_scale: float = 1.0) -> Any:
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
                              quantity="energy")],
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


def scale_records(mode: str, attempts: list[dict[str, Any]], workers: int, *, judged: bool
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`schedule_records` of each simulation scale (coarse, fine) of a run's
    attempts, and the :func:`schedule_figures` they come from, by scale."""
    records: list[dict[str, Any]] = []
    figures_by_scale: dict[str, Any] = {}
    for scale in ("coarse", "fine"):
        figures = schedule_figures([a for a in attempts if a["scale"] == scale], workers)
        figures_by_scale[scale] = figures
        records += schedule_records(mode, scale, figures, workers, judged=judged)
    return records, figures_by_scale


def utilization(n: int, *, workdir: Path, site: str = "local",
                site_params: dict[str, Any] | None = None, duration_scale: float = 1.0,
                workers: int = UTILIZATION_WORKERS, batch: int = UTILIZATION_BATCH,
                walkers: int = UTILIZATION_WALKERS
                ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Utilization and makespan records for each of :data:`VARIANTS`; also the measured
    commit lags."""
    records: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    spans: dict[str, float] = {}
    for mode, engine_mode in VARIANTS.items():
        spec = utilization_spec(n, engine_mode, batch=batch, walkers=walkers,
                                duration_scale=duration_scale)
        with scratch_dir(f"utilization-{mode}-", workdir) as out:
            with commit_lags() as lags, measured() as cost:
                summary = spec.run(site=site, out=out, overwrite=True,
                                   **(site_params or {"workers_per_scale": workers}))
            with finished_ledger(out) as ledger:
                attempts = ledger.attempts()
                fits = len(ledger.rounds("coarse-to-fine"))
        spans[mode] = (max(a["ended"] for a in attempts if a["ended"] is not None)
                       - min(a["submitted"] for a in attempts))
        details[mode] = {"wall": cost["wall"], "stop_reason": summary.stop_reason,
                         "models": fits, "commits_measured": len(lags),
                         "commit_lag_max": max(lags, default=math.nan),
                         "commit_lag_median": float(np.median(lags)) if lags else math.nan}
        found, figures_by_scale = scale_records(mode, attempts, workers,
                                                judged=engine_mode == "async")
        details[mode].update(figures_by_scale)
        records += found
    for mode in VARIANTS:
        if mode == "rounds":
            continue
        tasks = sum(r["n_tasks"] for r in records if r["metric"] == "makespan"
                    and r["mode"] == mode)
        records.append(record("campaign_makespan", mode, tasks, spans[mode], spans["rounds"],
                              "s", note="first submission to last end; baseline: rounds mode"))
    return records, details
