"""Part 4 of the throughput benchmark: rows per second of ``Store.commit`` against plain
zarr appends, and the durability window measured in the utilization run.

**Ingest** (``ingest_rows_per_s``, ``durability_window``). ``Store.commit`` of batches
of 100 and 10,000 rows (x (n, 2) float64, one output, the six meta columns the engine
writes) into a fresh run directory with its ``Ledger``; ``+tasks`` variants also
record one task outcome per row (tasks planned first, as the engine does for one-row
tasks). Baseline: plain zarr appends of the same arrays, no ledger. The durability
window is ``campaign.ingest.COMMIT_EVERY_SECONDS``; measured: the largest lag from a
task's end (worker clock) to the ``Store.commit`` that made it durable, in the async
utilization run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.throughput.records import GOALS, record
from benchmarks.throughput.runs import scratch_dir


def _ingest_rows(n: int, first_task: int, rng: np.random.Generator) -> Any:
    """``n`` rows as the engine commits them (x, one output, the six meta columns)."""
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
    with scratch_dir("ingest-", workdir) as run_dir:
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
    total = batch * batches
    return {"rows": total, "rate": total / seconds, "plain_rate": total / plain,
            "seconds": seconds, "plain_seconds": plain}


def ingest_records(plan: Sequence[tuple[int, int]], *, workdir: Path
                   ) -> list[dict[str, Any]]:
    """:func:`ingest` records for each ``(batch, batches)`` of ``plan``, with and
    without task outcomes."""
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
    """The largest commit lag of the async utilization run (its ``details``) against
    ``campaign.ingest.COMMIT_EVERY_SECONDS``; ``None`` where none was measured."""
    from campaign.ingest import COMMIT_EVERY_SECONDS

    lag = details.get("async", {}).get("commit_lag_max")
    if lag is None or not math.isfinite(lag):
        return None
    return record("durability_window", "async", details["async"]["commits_measured"], lag,
                  COMMIT_EVERY_SECONDS, "s",
                  median_lag=details["async"]["commit_lag_median"],
                  note="largest lag from a task's end to its commit in the async utilization "
                       "run; baseline: campaign.ingest.COMMIT_EVERY_SECONDS")

