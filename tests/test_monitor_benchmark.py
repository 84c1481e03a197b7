"""The monitor benchmark at a tiny size: its per-run figures agree with the store, and the
summary compares every method with ``none``."""

from __future__ import annotations

import json

import numpy as np
import zarr

from apps import landscapes
from benchmarks import monitor

TINY = {"seeds": [0], "coarse_budgets": [12], "fine": 8}


def test_tiny_sweep_records_agree_with_the_store(tmp_path):
    records = monitor.run_sweep(TINY, tmp_path, progress=False)
    by = {(r["method"], r["metric"]): r["value"] for r in records}
    for method in monitor.METHODS:
        group = zarr.open_group(tmp_path / f"{method}-12-0" / "store.zarr", mode="r")
        x, task_ids = group["coarse/x"][:], group["coarse/meta/task_id"][:]
        assert by[method, "coarse_segments"] == len(np.unique(task_ids)) <= 12
        assert by[method, "rare_fraction"] == landscapes.in_rare_region(x).mean()
        assert 1 <= by[method, "segments_to_rare"] <= by[method, "coarse_segments"]
        assert np.isfinite(by[method, "final_rmse"])
        has_monitor = method != "none"
        assert ("monitor" in group["coarse/meta"]) == has_monitor
    assert by["none", "restart"] == by["none", "stop"] == 0
    summary = monitor.summarize(records, TINY)
    assert {r["method"] for r in summary} == set(monitor.METHODS)
    for record in summary:
        if record["method"] == "none" and np.isfinite(record["value"]) and record["value"]:
            assert record["ratio"] == 1.0
    table = monitor.table(summary)
    assert "segments_to_rare" in table and "coarse_to_target" in table
    json.dumps({"summary": summary, "runs": records})
