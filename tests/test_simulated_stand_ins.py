"""The simulated site's stand-in outputs (campaign.stand_ins) and block walltimes."""

import collections
import json
import sqlite3

import numpy as np
import pytest
from conftest import tiny_campaign

from campaign import Budget
from campaign.durations import Fixed
from campaign.engine import Engine
from campaign.ledger import Ledger
from campaign.simulated import Simulation, record_simulation
from campaign.stand_ins import Recorded, SurrogateDraw, recorded_from_run
from campaign.store import Store

WORKERS = {"sim-coarse": 2, "sim-fine": 4, "train": 1}
DURATIONS = {"coarse": Fixed(5.0), "fine": Fixed(60.0)}


def run(tmp_path, name, *, fine=12, **simulation):
    spec = tiny_campaign(mode="async", budget=Budget(fine=fine, coarse=30))
    sim = Simulation(workers=WORKERS, durations=DURATIONS, **simulation)
    engine = Engine(spec, tmp_path / name, simulation=sim)
    summary = engine.run()
    record_simulation(tmp_path / name, sim)
    run.began = engine.dispatcher.began  # where the blocks' walltimes count from
    return sim, summary


def stored(run_dir, scale):
    ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    try:
        return Store(run_dir, ledger, read_only=True).read(scale)
    finally:
        ledger.close()


def fact(run_dir, key):
    db = sqlite3.connect(run_dir / "ledger.sqlite")
    try:
        return json.loads(db.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()[0])
    finally:
        db.close()


def test_surrogate_draws_answer_after_the_recorded_real_call_and_label_a_dry_run(tmp_path):
    calls = []

    def counted_fine(x, *, seed, **params):  # the real app, counted
        from apps import toy
        calls.append(seed)
        return toy.smeared_energy(x, seed=seed, **params)

    stand_in = SurrogateDraw(real_calls=1)
    spec = tiny_campaign(mode="async", budget=Budget(fine=16, coarse=30), fine_app=counted_fine)
    sim = Simulation(workers=WORKERS, durations=DURATIONS, outputs={"fine": stand_in})
    summary = Engine(spec, tmp_path / "dry", simulation=sim).run()
    record_simulation(tmp_path / "dry", sim)
    assert not summary.failed and summary.task_counts["fine"]["done"] == 16
    assert len(calls) == 1  # one real call, recorded; the other 15 are stand-ins
    energies = np.asarray(stored(tmp_path / "dry", "fine").y["energy"])
    assert len(energies) == 16 and np.all(np.isfinite(energies))
    # once a model is fitted, each value is a fresh draw: not all the recorded one
    assert len(np.unique(np.round(energies, 9))) > 2
    assert sim.dry_run and fact(tmp_path / "dry", "dry_run") is True
    assert "surrogate" in fact(tmp_path / "dry", "simulated")["stand_ins"]["fine"]


def test_a_slow_app_is_stood_in_after_two_slow_calls_and_a_cheap_one_never(tmp_path):
    sim, summary = run(tmp_path, "slow", cheap_seconds=-1.0)  # every call counts as slow
    assert set(sim.outputs) == {"coarse", "fine"} and sim.dry_run
    assert isinstance(sim.outputs["coarse"], Recorded)
    assert isinstance(sim.outputs["fine"], SurrogateDraw)
    assert [len(sim.outputs[name].outputs) for name in ("coarse", "fine")] == [1, 1]
    assert not summary.failed
    sim, _ = run(tmp_path, "cheap", cheap_seconds=60.0)  # no toy call takes a minute
    assert sim.outputs == {} and not sim.dry_run
    assert fact(tmp_path / "cheap", "dry_run") is False
    sim, _ = run(tmp_path, "real", cheap_seconds=-1.0, real_apps={"fine"})
    assert set(sim.outputs) == {"coarse"}


def test_replay_of_an_earlier_runs_store_gives_its_outputs_task_by_task(tmp_path):
    run(tmp_path, "earlier")
    earlier = stored(tmp_path / "earlier", "fine")
    recorded = recorded_from_run(tmp_path / "earlier", "fine")
    assert len(recorded.outputs) == len(np.unique(earlier.meta["task_id"])) == 12
    assert not recorded.wants_real()
    _, summary = run(tmp_path, "replayed", outputs={"fine": recorded})
    assert not summary.failed
    replayed = stored(tmp_path / "replayed", "fine")
    assert sorted(np.asarray(replayed.y["energy"]).tolist()) == sorted(
        np.asarray(earlier.y["energy"]).tolist())
    with pytest.raises(FileNotFoundError):
        recorded_from_run(tmp_path / "nothing", "fine")


def test_block_walltime_loses_running_attempts_without_using_retries(tmp_path):
    # fine tasks of 60 s on blocks of 150 s: every block end finds tasks running
    sim, summary = run(tmp_path, "blocks", fine=16, block_walltime={"sim-fine": 150.0})
    assert not summary.failed and summary.task_counts["fine"]["done"] == 16
    db = sqlite3.connect(tmp_path / "blocks" / "ledger.sqlite")
    rows = db.execute("SELECT t.scale, a.task_id, a.outcome, a.reason, a.started, a.ended "
                      "FROM attempts a JOIN tasks t USING (task_id)").fetchall()
    db.close()
    lost = [r for r in rows if r[2] == "lost"]
    assert lost and all(r[0] == "fine" and "walltime of 150 s" in r[3] for r in lost)
    assert summary.task_counts["fine"].get("quarantined", 0) == 0
    done = [r for r in rows if r[0] == "fine" and r[2] == "done"]
    began = run.began
    for *_, started, ended in done:  # no finished attempt spans a block's end
        assert int((started - began + 1e-6) // 150) == int((ended - began - 1e-6) // 150)
    per_task = collections.Counter(r[1] for r in done)
    assert set(per_task.values()) == {1}
