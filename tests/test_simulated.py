"""The simulated site: the real engine on a virtual clock (campaign.simulated)."""

import collections
import sqlite3

import numpy as np
import pytest
from conftest import tiny_campaign

from campaign import Budget
from campaign.durations import Fixed, LogNormal
from campaign.engine import Engine
from campaign.ledger import Ledger
from campaign.plan import plan, plan_table, utilization_from_ledger
from campaign.simulated import Simulation
from campaign.store import Store

FINE_SECONDS = 60.0
COARSE_SECONDS = 5.0


def attempts(run_dir):
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    try:
        return db.execute("SELECT t.scale, a.started, a.ended, a.worker, a.outcome, "
                          "a.task_id FROM attempts a JOIN tasks t USING (task_id)").fetchall()
    finally:
        db.close()


def simulated(tmp_path, *, fine_workers=6, fine=18, mode="async", **simulation):
    spec = tiny_campaign(mode=mode, budget=Budget(fine=fine, coarse=40))
    sim = Simulation(workers={"sim-coarse": 2, "sim-fine": fine_workers, "train": 1},
                     durations={"coarse": Fixed(COARSE_SECONDS), "fine": Fixed(FINE_SECONDS)},
                     **simulation)
    engine = Engine(spec, tmp_path / "run", simulation=sim)
    return engine, engine.run()


def test_virtual_durations_and_worker_slots_are_respected(tmp_path):
    engine, summary = simulated(tmp_path)
    assert not summary.failed and summary.task_counts["fine"]["done"] == 18
    rows = attempts(tmp_path / "run")
    per_worker = collections.defaultdict(list)
    for scale, started, ended, worker, outcome, _ in rows:
        assert outcome == "done"
        seconds = FINE_SECONDS if scale == "fine" else COARSE_SECONDS
        assert ended - started == pytest.approx(seconds, abs=1e-6)  # the model's, exactly
        per_worker[worker].append((started, ended))
    assert len([w for w in per_worker if w.startswith("simulated/sim-fine/")]) <= 6
    for spans in per_worker.values():  # a worker runs one task at a time
        spans.sort()
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:], strict=False))
    fine_spans = [(s, e) for scale, s, e, *_ in rows if scale == "fine"]
    ends = sorted(e for _, e in fine_spans)
    # 18 tasks on 6 workers take at least three task durations
    assert ends[-1] - min(s for s, _ in fine_spans) >= 3 * FINE_SECONDS - 1e-6
    # the run's clock is virtual: far longer than it took, and the store matches the ledger
    assert summary.wall_seconds >= 3 * FINE_SECONDS
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite")
    assert Store(tmp_path / "run", ledger, read_only=True).read("fine").x.shape[0] == 18
    ledger.close()
    assert engine.dispatcher.charged["driver"] > 0  # the steering was charged to the clock


def test_worker_losses_are_resubmitted_and_use_no_retry(tmp_path):
    _, summary = simulated(tmp_path, loss_rate={"fine": 0.3}, seed=3)
    assert not summary.failed
    rows = attempts(tmp_path / "run")
    outcomes = collections.Counter(outcome for scale, *_, outcome, _ in rows if scale == "fine")
    assert outcomes["lost"] > 0 and outcomes["done"] == 18
    assert summary.task_counts["fine"].get("quarantined", 0) == 0


def test_app_failures_are_retried_then_quarantined_like_real_ones(tmp_path):
    _, summary = simulated(tmp_path, failure_rate={"fine": 1.0})
    assert summary.task_counts["fine"].get("done", 0) == 0
    assert summary.task_counts["fine"]["quarantined"] > 0
    assert summary.failed  # a scale that always fails stops the run, as on a real site


def test_rounds_mode_runs_simulated_too(tmp_path):
    _, summary = simulated(tmp_path, mode="rounds", fine=8)
    assert not summary.failed and summary.task_counts["fine"]["done"] == 8


def test_plan_reports_tasks_utilization_and_the_driver(tmp_path):
    spec = tiny_campaign(mode="async", budget=Budget(fine=10, coarse=30))
    workers = {"sim-coarse": 2, "sim-fine": 4, "train": 1}
    result = plan(spec, workers=workers, hours=0.25, out=tmp_path / "plan",
                  durations={"coarse": Fixed(COARSE_SECONDS),
                             "fine": LogNormal(FINE_SECONDS, 0.2)},
                  per_node={"sim-fine": 4, "sim-coarse": 2}, seed=1)
    fine = result["scales"]["fine"]
    # task budgets are lifted: the allocation's length decides how many fine tasks run
    assert result["fine_simulations"] > 10
    assert result["virtual_seconds"] >= 0.25 * 3600 - 1e-6
    assert 0 < fine["utilization"] <= 1.0 + 1e-9
    assert fine["node_hours_allocated"] == pytest.approx(0.25)
    assert 0 < fine["node_hours_used"] <= fine["node_hours_allocated"] * 1.1
    assert result["driver_cpu_per_task_ms"] > 0
    assert np.isfinite(result["decision_latency_s"]["p99"])
    assert result["bottleneck_workers"] > 0
    text = plan_table(result)
    assert "fine simulations in the allocation" in text and "bottleneck" in text
    recomputed = utilization_from_ledger(tmp_path / "plan", {"fine": 4},
                                         window=tuple(result["window"]))
    assert recomputed["fine"]["utilization"] == pytest.approx(fine["utilization"])
