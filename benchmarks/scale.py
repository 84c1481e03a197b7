"""Allocation scale on a virtual clock: does the steering keep thousands of workers busy?

    python -m benchmarks.scale [--quick] [--workers 1024 4096] [--durations 60 600]
                               [--waves 3] [--json PATH] [--profile PATH]
    python -m benchmarks.scale --tasks 1000 10000 100000 [--walkers 1024] [--json PATH]

``--tasks`` measures the driver's cost per task as the task count grows instead
(``benchmarks.scale_tasks``).

Each configuration runs the real engine (steering, the default learner and the default
acquisition, store, ledger) on the simulated site (``campaign.simulated``): a coarse
scale of walkers (a quarter as many workers as the fine scale, tasks a tenth as long)
feeds candidates to a promoted fine scale of N workers whose tasks take lognormal
durations (the given mean, cv 0.3), for ``waves`` fine task durations of virtual time.
The apps are cheap analytic stand-ins that run for real (``benchmarks.throughput``'s
walker and energy without their sleeps). Reported per configuration:

* fine and coarse utilization inside the allocation, and the fine utilization of the
  ideal list schedule of the same durations on the same workers (the ceiling);
* decision latency (virtual s from a worker freeing to its next task starting), p50/p99;
* driver CPU per task (the steering thread: events, commits, ledger), model-thread CPU
  per task (selection, conditioning, scoring) and per selection, fit CPU;
* the worker count at which the driver or the model thread becomes the bottleneck for
  these durations; peak memory of the process; store size; store commits (how many,
  rows per commit, their wall seconds); real seconds.

``--profile PATH`` also profiles the largest configuration (cProfile, top functions).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["configuration", "main", "scale_spec"]

QUICK_WORKERS = [64, 256]
FULL_WORKERS = [1024, 4096, 16384]
QUICK_DURATIONS = [600.0]
FULL_DURATIONS = [1.0, 60.0, 600.0]
GOALS = {"utilization_4096_600s": ">= 0.98 of the ideal schedule's",
         "utilization_16384_60s": ">= 0.95 of the ideal schedule's",
         "p99_latency_4096": "<= 1 s virtual"}


def scale_spec(fine_workers: int, seed: int = 0) -> Any:
    """The benchmark's campaign for ``fine_workers`` fine workers (module docstring)."""
    from apps import toy
    from benchmarks.throughput.apps import sleep_energy, sleep_walker
    from campaign import Budget, Campaign, Promotion, Scale

    cheap = {"duration_scale": 0.0}
    return Campaign(
        name=f"scale_{fine_workers}",
        scales=[Scale("coarse", app=sleep_walker, params=cheap,
                      walkers=toy.initial_walkers(max(1, fine_workers // 4))),
                Scale("fine", app=sleep_energy, params=cheap)],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              batch_size=max(8, fine_workers // 32), quantity="energy")],
        budget=Budget(fine=10 ** 9), seed=seed)


def _ideal_utilization(run_dir: Path, scale: str, workers: int, window: list[float]) -> float:
    """Utilization inside the allocation of the zero-overhead list schedule of the
    durations that ran (in submission order, every worker free at the start)."""
    import heapq
    import sqlite3

    start, end = window
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        durations = [row[0] for row in db.execute(
            "SELECT a.ended - a.started FROM attempts a JOIN tasks t USING (task_id) "
            "WHERE t.scale = ? AND a.started IS NOT NULL AND a.ended IS NOT NULL "
            "ORDER BY a.submitted", (scale,))]
    finally:
        db.close()
    length = end - start
    free = [0.0] * workers
    busy = 0.0
    for seconds in durations:
        began = heapq.heappop(free)
        if began >= length:
            break
        busy += min(began + seconds, length) - began
        heapq.heappush(free, began + seconds)
    return busy / (workers * length)


def configuration(fine_workers: int, mean_seconds: float, *, waves: float, workdir: Path,
                  seed: int = 0) -> dict[str, Any]:
    """One configuration's record (module docstring)."""
    from campaign.durations import LogNormal
    from campaign.plan import plan

    coarse_workers = max(1, fine_workers // 4)
    workers = {"sim-coarse": coarse_workers, "sim-fine": fine_workers, "train": 1}
    hours = waves * mean_seconds / 3600.0
    out = workdir / f"w{fine_workers}-d{mean_seconds:g}"
    result = plan(scale_spec(fine_workers, seed), workers=workers, hours=hours, out=out,
                  durations={"coarse": LogNormal(mean_seconds / 10, 0.3),
                             "fine": LogNormal(mean_seconds, 0.3)}, seed=seed)
    fine = result["scales"]["fine"]
    ideal = _ideal_utilization(out, "fine", fine_workers, result["window"])
    store_bytes = sum(f.stat().st_size for f in (out / "store.zarr").rglob("*") if f.is_file())
    selections = result["model_thread_jobs"].get("select_batch", {"jobs": 0, "cpu_seconds": 0})
    return {
        "fine_workers": fine_workers, "coarse_workers": coarse_workers,
        "mean_seconds": mean_seconds, "hours": hours,
        "fine_tasks": fine["done"], "coarse_tasks": result["scales"]["coarse"]["done"],
        "fine_utilization": fine["utilization"],
        "coarse_utilization": result["scales"]["coarse"]["utilization"],
        "ideal_fine_utilization": ideal,
        "fine_utilization_vs_ideal": fine["utilization"] / ideal if ideal else float("nan"),
        "decision_latency_p50_s": result["decision_latency_s"]["p50"],
        "decision_latency_p99_s": result["decision_latency_s"]["p99"],
        "driver_cpu_per_task_ms": result["driver_cpu_per_task_ms"],
        "model_thread_cpu_per_task_ms": result["model_thread_cpu_per_task_ms"],
        "selections": selections["jobs"],
        "seconds_per_selection": selections["cpu_seconds"] / max(1, selections["jobs"]),
        "fit_cpu_seconds": result["driver_seconds"]["fits (train executor, and waited-for fits)"],
        "bottleneck_workers": result["bottleneck_workers"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "store_mib": store_bytes / 2 ** 20,
        "commits": result["store_commits"]["commits"],
        "rows_per_commit": result["store_commits"]["rows"] / max(
            1, result["store_commits"]["commits"]),
        "commit_wall_seconds": result["store_commits"]["wall_seconds"],
        "commits_per_virtual_hour": result["store_commits"]["commits"] / max(hours, 1e-9),
        "real_seconds": result["real_seconds"],
        "model_thread_jobs": result["model_thread_jobs"],
        "stop_reason": result["stop_reason"],
    }


def table(records: list[dict[str, Any]]) -> str:
    head = (f"{'workers':>8}{'mean s':>8}{'fine tasks':>11}{'fine util':>10}{'ideal':>7}"
            f"{'p99 lat s':>10}{'driver ms':>10}{'model ms':>10}{'s/select':>9}"
            f"{'bottleneck':>11}{'real s':>8}")
    rows = [head]
    for r in records:
        rows.append(f"{r['fine_workers']:>8}{r['mean_seconds']:>8g}{r['fine_tasks']:>11}"
                    f"{r['fine_utilization']:>10.3f}{r['ideal_fine_utilization']:>7.3f}"
                    f"{r['decision_latency_p99_s']:>10.3g}{r['driver_cpu_per_task_ms']:>10.2f}"
                    f"{r['model_thread_cpu_per_task_ms']:>10.2f}"
                    f"{r['seconds_per_selection']:>9.3f}{r['bottleneck_workers']:>11,.0f}"
                    f"{r['real_seconds']:>8.0f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, nargs="*")
    parser.add_argument("--durations", type=float, nargs="*")
    parser.add_argument("--waves", type=float, default=3.0,
                        help="virtual time in fine task durations")
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/scale"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", type=Path, help="profile the last configuration here")
    parser.add_argument("--tasks", type=int, nargs="*",
                        help="driver cost per task at these task counts (scale_tasks)")
    parser.add_argument("--walkers", type=int, default=1024, help="with --tasks")
    args = parser.parse_args(argv)
    if args.tasks:
        from benchmarks.scale_tasks import main as tasks_main

        return tasks_main(args.tasks, args.walkers, args.workdir, args.json, args.profile)
    workers = args.workers or (QUICK_WORKERS if args.quick else FULL_WORKERS)
    durations = args.durations or (QUICK_DURATIONS if args.quick else FULL_DURATIONS)
    grid = [(w, d) for d in durations for w in workers]
    records: list[dict[str, Any]] = []
    began = time.time()
    for index, (w, d) in enumerate(grid):
        profiler = cProfile.Profile() if args.profile and index == len(grid) - 1 else None
        if profiler:
            profiler.enable()
        record = configuration(w, d, waves=args.waves, workdir=args.workdir)
        if profiler:
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
            args.profile.parent.mkdir(parents=True, exist_ok=True)
            args.profile.write_text(text.getvalue())
        records.append(record)
        print(table([record]).splitlines()[-1], flush=True)
        if args.json:  # what finished is kept if a later configuration is stopped
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"quick": args.quick, "waves": args.waves,
                                             "goals": GOALS, "records": records,
                                             "seconds": time.time() - began},
                                            indent=2, default=float) + "\n")
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
