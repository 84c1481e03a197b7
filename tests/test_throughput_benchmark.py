"""The throughput benchmark's pieces at tiny sizes on the threads site: records are well
formed and the ideal list schedule is right."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import tiny_campaign

from benchmarks import throughput
from campaign import Budget

KEYS = {"metric", "mode", "n_tasks", "value", "baseline", "ratio", "unit"}
THREADS = {"max_threads": 2}


def check_records(records: list[dict]) -> None:
    assert records
    for r in records:
        assert KEYS <= set(r), r
        assert isinstance(r["metric"], str) and isinstance(r["mode"], str)
        assert isinstance(r["unit"], str) and isinstance(r["n_tasks"], int)
        assert math.isfinite(r["value"]) and math.isfinite(r["baseline"]), r
        assert r["baseline"] != 0, r
        assert r["ratio"] == pytest.approx(r["value"] / r["baseline"]), r
    json.dumps(records)  # the report is JSON


def test_list_schedule_on_hand_made_examples():
    # 2 workers: [3] | [1, 1, 1]; both free at 3, the last task (2) ends at 5
    assert throughput.list_schedule([3, 1, 1, 1, 2], 2) == 5.0
    assert throughput.list_schedule([2, 2, 1], 2) == 3.0
    assert throughput.list_schedule([0.5, 0.25, 0.25], 1) == 1.0
    assert throughput.list_schedule([4, 1], 8) == 4.0  # more workers than tasks
    assert throughput.list_schedule([], 3) == 0.0
    with pytest.raises(ValueError):
        throughput.list_schedule([1.0], 0)


def test_schedule_figures_from_attempts():
    # two workers, perfectly packed: 100% busy, makespan equals the ideal
    attempts = [
        {"task_id": 1, "attempt": 1, "submitted": 0.0, "started": 0.0, "ended": 2.0,
         "worker": "h/1/t"},
        {"task_id": 2, "attempt": 1, "submitted": 0.0, "started": 0.0, "ended": 1.0,
         "worker": "h/2/t"},
        {"task_id": 3, "attempt": 1, "submitted": 0.0, "started": 1.0, "ended": 2.0,
         "worker": "h/2/t"},
    ]
    figures = throughput.schedule_figures(attempts, workers=2)
    assert figures["utilization"] == pytest.approx(1.0)
    assert figures["makespan"] == figures["ideal_makespan"] == pytest.approx(2.0)
    assert figures["busy"] == pytest.approx(4.0)


def test_heavy_tailed_durations_are_bounded_and_deterministic():
    seconds = np.array([throughput.heavy_tail_seconds(seed) for seed in range(4000)])
    assert seconds.min() >= throughput.DURATION_LOW
    assert seconds.max() <= throughput.DURATION_HIGH
    assert throughput.heavy_tail_seconds(7) == throughput.heavy_tail_seconds(7)
    assert 0.25 < seconds.mean() < 0.4 and 0.1 < np.median(seconds) < 0.2  # mean 0.32


@pytest.mark.slow
def test_benchmark_pieces_produce_well_formed_records(tmp_path):
    sizes = {"async": [40], "rounds": [40]}
    records = throughput.overhead(sizes, workdir=tmp_path, sleep_sizes=sizes, sweep_size=None,
                                  round_trips=5, site="threads", site_params=THREADS,
                                  rounds_walkers=10)
    assert {r["metric"] for r in records} >= {"throughput_noop", "throughput_sleep1ms",
                                              "driver_cpu_per_task", "driver_peak_rss",
                                              "round_trip"}
    assert {r["mode"] for r in records} == {"async", "rounds"}

    paired = throughput.paired_throughput(40, workdir=tmp_path, repeats=2, site="threads",
                                          site_params=THREADS)
    assert [r["metric"] for r in paired] == ["throughput_noop_paired"]
    assert len(paired[0]["paired_ratios"]) == 2
    assert paired[0]["paired_ratio_median"] == pytest.approx(np.median(
        paired[0]["paired_ratios"]))
    records += paired

    found, details = throughput.utilization(12, workdir=tmp_path, site="threads",
                                            site_params={"max_threads": 4},
                                            duration_scale=0.02, workers=4, batch=4,
                                            walkers=4)
    records += found
    assert {(r["metric"], r["mode"], r["scale"]) for r in found
            if r["metric"] == "utilization"} == {(m, mode, scale) for m in ["utilization"]
                                                 for mode in throughput.VARIANTS
                                                 for scale in ("coarse", "fine")}
    for r in found:
        if r["metric"] in ("utilization", "utilization_after_warmup"):
            assert 0.0 < r["value"] <= 1.0 + 1e-9
        if r["metric"] == "makespan":
            assert r["value"] >= r["baseline"] - 0.05  # nothing beats the ideal by much
    durability = throughput.durability_record(details)
    assert durability is not None and durability["value"] >= 0
    records.append(durability)

    records += throughput.ingest_records([(100, 2), (1000, 2)], workdir=tmp_path)

    spec = tiny_campaign(budget=Budget(fine=8))
    found, quality = throughput.time_to_quality(spec, workdir=tmp_path, site="threads",
                                                site_params=THREADS)
    records += found
    assert quality["target_rmse"] > 0
    assert {r["metric"] for r in found} >= {"time_to_target", "sims_to_target"}
    check_records(records)
    assert list(tmp_path.iterdir()) == []  # every run directory was removed

    report = {"records": records, "details": {"quality": quality}, "quick": True,
              "colmena": throughput.colmena_status(), "wall_seconds": 1.0,
              "machine": {"cpus": 2, "load_before": (0.0, 0.0, 0.0),
                          "load_after": (0.0, 0.0, 0.0)}}
    text = throughput.table(report)
    assert "throughput_noop" in text and "colmena" in text and "goal" in text


@pytest.mark.slow
def test_colmena_side_by_side_records(tmp_path):
    """Only where Colmena is installed (``pip install -e .[bench]``; ``make test`` does
    not install it, so there this test is skipped)."""
    pytest.importorskip("colmena")
    records = throughput.colmena_records([40], workdir=tmp_path, round_trips=3,
                                         site="threads", site_params=THREADS)
    check_records(records)
    assert {(r["metric"], r["mode"]) for r in records} == {("throughput_noop", "colmena"),
                                                           ("round_trip", "colmena")}
    assert all(r["value"] > 0 for r in records)
    assert throughput.colmena_status()["installed"]

    found, details = throughput.colmena_utilization_records(
        12, workdir=tmp_path, workers=4, walkers=4, batch=4, duration_scale=0.02,
        site="threads", site_params={"max_threads": 4})
    check_records(found)
    for scale in ("coarse", "fine"):  # every task of both scales ran, timed on its worker
        assert details[scale]["tasks"] == 12
        utilization = [r for r in found if r["metric"] == "utilization" and r["scale"] == scale]
        assert len(utilization) == 1 and 0.0 < utilization[0]["value"] <= 1.0 + 1e-9
    assert details["models"] >= 1  # the GP was fitted in the loop
    assert list(tmp_path.iterdir()) == []
