"""Driver cost as the task count grows: does a campaign of 10^6 tasks cost the driver
more per task than one of 10^3?

    python -m benchmarks.scale --tasks 1000 10000 100000 [--walkers 1024]
                               [--json PATH] [--profile PATH]

Each count runs the real engine (steering, store, ledger) on the simulated site
(``campaign.simulated``) in a process of its own (so its peak memory is its own): one
scale of ``walkers`` walkers whose segments are a cheap random step (:func:`step`, one
row each) lasting a lognormal virtual second (cv 0.3), until ``tasks`` tasks are done.
There is no promotion: what is measured is the per-task path every task takes (its
event, the ledger's plan and commit, the store's append, the in-memory state), not
selection or fits. Reported per count:

* driver CPU per task: the steering thread's (what the virtual clock charges), and the
  whole process's CPU less the apps it ran inline (this adds zarr's event-loop and I/O
  threads, which the clock does not charge);
* peak resident memory of the process; ledger and store size on disk;
* commits, rows per commit, commit wall seconds per row, commits per real second;
* whether ``xarray.open_zarr`` reads the store back with every committed row, and how
  long that took; the real seconds of the run.

A separate table (:func:`commit_cost`) gives one store's commit cost per row as the
rows per commit grow, the reason commits are batched.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["STEP_COLUMNS", "commit_cost", "main", "step", "task_count", "tasks_spec"]

STEP_COLUMNS = 2
MEAN_SECONDS = 1.0  # virtual seconds per segment


def step(x: np.ndarray, *, seed: int) -> dict[str, np.ndarray]:
    """A walker segment that costs next to nothing: one row, a small random step."""
    rng = np.random.default_rng(seed)
    position = np.asarray(x, dtype=np.float64).reshape(1, STEP_COLUMNS)
    position = position + rng.normal(scale=0.1, size=position.shape)
    return {"x": position, "value": position.sum(axis=1)}


def tasks_spec(tasks: int, walkers: int, seed: int = 0) -> Any:
    """One scale of ``walkers`` walkers and a budget of ``tasks`` tasks."""
    from campaign import Budget, Campaign, Scale

    starts = np.zeros((walkers, STEP_COLUMNS))
    return Campaign(name=f"tasks_{tasks}", scales=[Scale("walk", app=step, walkers=starts)],
                    budget=Budget(walk=tasks), seed=seed)


def _bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _read_with_xarray(run_dir: Path, scale: str, rows: int) -> dict[str, Any]:
    """Open the scale's outputs and meta with xarray; check every committed row is there."""
    import xarray

    began = time.perf_counter()
    outputs = xarray.open_zarr(run_dir / "store.zarr", group=f"{scale}/y",
                               consolidated=False)
    meta = xarray.open_zarr(run_dir / "store.zarr", group=f"{scale}/meta",
                            consolidated=False)
    task_ids = meta["task_id"].values
    found = {"rows": int(outputs.sizes["row"]),
             "distinct_tasks": int(len(np.unique(task_ids))),
             "value_finite": bool(np.isfinite(outputs["value"].values).all())}
    found["seconds"] = time.perf_counter() - began
    found["ok"] = found["rows"] == rows == found["distinct_tasks"] and found["value_finite"]
    return found


def task_count(tasks: int, walkers: int, workdir: Path, seed: int = 0,
               profile: Path | None = None) -> dict[str, Any]:
    """Run one count (module docstring) in this process and return its record."""
    from campaign.durations import LogNormal
    from campaign.engine import Engine
    from campaign.simulated import Simulation

    out = workdir / f"tasks{tasks}-w{walkers}"
    simulation = Simulation(workers={"sim-walk": walkers},
                            durations={"walk": LogNormal(MEAN_SECONDS, 0.3)}, seed=seed)
    engine = Engine(tasks_spec(tasks, walkers, seed), out, overwrite=True,
                    simulation=simulation)
    profiler = None
    if profile is not None:
        import cProfile

        # thread CPU, not wall: on a loaded machine wall time is mostly waiting for a core
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
    real, cpu = time.perf_counter(), time.process_time()
    summary = engine.run()
    real, cpu = time.perf_counter() - real, time.process_time() - cpu
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(35)
        profile.write_text(f"python -m benchmarks.scale --tasks {tasks} --walkers {walkers}"
                           f" --profile: steering thread CPU seconds (the apps it runs "
                           f"inline included)\n{text.getvalue()}")
    charged = engine.dispatcher.charged
    done = int(summary.task_counts.get("walk", {}).get("done", 0))
    commits = engine.store.commit_counts
    rows = summary.rows["walk"]
    return {
        "tasks": tasks, "walkers": walkers, "done": done, "rows": rows,
        "stop_reason": summary.stop_reason, "virtual_seconds": summary.wall_seconds,
        "real_seconds": real,
        "driver_thread_cpu_per_task_ms": 1e3 * charged["driver"] / max(done, 1),
        "driver_process_cpu_per_task_ms": 1e3 * (cpu - charged["apps"] - charged["fits"]
                                                 - charged["model_thread"]) / max(done, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ledger_mib": sum(_bytes(out / name) for name in
                          ("ledger.sqlite", "ledger.sqlite-wal")) / 2 ** 20,
        "store_mib": _bytes(out / "store.zarr") / 2 ** 20,
        "commits": commits.commits,
        "rows_per_commit": commits.rows / max(commits.commits, 1),
        "commit_ms_per_row": 1e3 * commits.seconds / max(commits.rows, 1),
        "commit_seconds": commits.seconds,
        "commits_per_real_second": commits.commits / max(real, 1e-9),
        "commits_per_virtual_second": commits.commits / max(summary.wall_seconds, 1e-9),
        "xarray": _read_with_xarray(out, "walk", rows),
    }


def in_own_process(tasks: int, walkers: int, workdir: Path,
                   profile: Path | None = None) -> dict[str, Any]:
    """:func:`task_count` in a fresh process: its peak memory is this count's alone."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        return pool.submit(task_count, tasks, walkers, workdir, 0, profile).result()


def commit_cost(rows_per_commit: tuple[int, ...] = (1, 10, 100, 1000),
                rows_each: int = 2000, repeats: int = 3) -> list[dict[str, Any]]:
    """Wall and CPU milliseconds per row of ``Store.commit`` as rows per commit grow
    (rows shaped as :func:`step`'s, with the engine's meta columns). The batch sizes
    alternate inside each repeat; the median repeat is reported, with the spread."""
    from campaign.ledger import Ledger, TaskOutcome
    from campaign.store import Rows, Store

    samples: dict[int, list[tuple[float, float]]] = {n: [] for n in rows_per_commit}
    for _ in range(repeats):
        for batch in rows_per_commit:
            total = max(batch, min(rows_each, 50 * batch))
            with tempfile.TemporaryDirectory() as scratch:
                ledger = Ledger(Path(scratch) / "ledger.sqlite")
                store = Store(scratch, ledger)
                rng = np.random.default_rng(0)
                real, cpu = time.perf_counter(), time.process_time()
                for first in range(0, total, batch):
                    ids = range(first + 1, first + batch + 1)
                    meta = Rows.meta_for(0, batch)
                    meta["task_id"] = np.asarray(ids, dtype=np.int64)
                    rows = Rows(x=rng.random((batch, STEP_COLUMNS)),
                                y={"value": rng.random(batch)}, meta=meta)
                    store.commit("walk", rows, [TaskOutcome(i, "done", rows=1) for i in ids])
                real, cpu = time.perf_counter() - real, time.process_time() - cpu
                ledger.close()
            samples[batch].append((1e3 * real / total, 1e3 * cpu / total))
    table = []
    for batch, values in samples.items():
        walls = sorted(v[0] for v in values)
        cpus = sorted(v[1] for v in values)
        table.append({"rows_per_commit": batch, "wall_ms_per_row": walls[len(walls) // 2],
                      "wall_ms_per_row_range": [walls[0], walls[-1]],
                      "cpu_ms_per_row": cpus[len(cpus) // 2],
                      "cpu_ms_per_row_range": [cpus[0], cpus[-1]]})
    return table


def table(records: list[dict[str, Any]]) -> str:
    head = (f"{'tasks':>9}{'real s':>8}{'drv ms':>8}{'proc ms':>8}{'RSS MiB':>9}"
            f"{'ledger':>8}{'store':>8}{'commits':>8}{'rows/c':>8}{'c ms/row':>9}"
            f"{'xarray':>7}")
    lines = [head]
    for r in records:
        lines.append(f"{r['tasks']:>9}{r['real_seconds']:>8.0f}"
                     f"{r['driver_thread_cpu_per_task_ms']:>8.3f}"
                     f"{r['driver_process_cpu_per_task_ms']:>8.3f}{r['peak_rss_mib']:>9.0f}"
                     f"{r['ledger_mib']:>8.1f}{r['store_mib']:>8.1f}{r['commits']:>8}"
                     f"{r['rows_per_commit']:>8.0f}{r['commit_ms_per_row']:>9.3f}"
                     f"{'ok' if r['xarray']['ok'] else 'NO':>7}")
    return "\n".join(lines)


def commit_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'rows/commit':>12}{'wall ms/row':>13}{'cpu ms/row':>12}"]
    lines += [f"{r['rows_per_commit']:>12}{r['wall_ms_per_row']:>13.3f}"
              f"{r['cpu_ms_per_row']:>12.3f}" for r in rows]
    return "\n".join(lines)


def main(counts: list[int], walkers: int, workdir: Path, json_path: Path | None,
         profile: Path | None) -> int:
    """The commit-cost table, then each count in a process of its own (the largest
    profiled to ``profile``); the JSON is rewritten after each, so what finished is
    kept."""
    began = time.time()
    records: list[dict[str, Any]] = []
    commits: list[dict[str, Any]] = []

    def save() -> None:
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(
                {"walkers": walkers, "mean_seconds": MEAN_SECONDS, "records": records,
                 "commit_cost": commits, "seconds": time.time() - began},
                indent=2, default=float) + "\n")

    commits.extend(commit_cost())
    print(commit_table(commits), flush=True)
    save()
    for count in sorted(counts):
        profiled = profile if profile is not None and count == max(counts) else None
        records.append(in_own_process(count, walkers, workdir, profiled))
        print(table([records[-1]]).splitlines()[-1], flush=True)
        save()
    print(table(records))
    if len(records) > 1:
        first, last = records[0], records[-1]
        for key in ("driver_thread_cpu_per_task_ms", "driver_process_cpu_per_task_ms"):
            print(f"{key}: {last[key] / first[key]:.2f}x from {first['tasks']:,} to "
                  f"{last['tasks']:,} tasks")
    return 0
