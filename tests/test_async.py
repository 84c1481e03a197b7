"""The asynchronous engine (the default mode): events, not rounds.

End to end on threads and on a real local HTEX; fits overlap simulations; a hung task
is retried after its engine-side deadline; a SIGKILLed driver resumes with nothing lost,
duplicated or torn; per-task engine cost (SQL statements, whole-scale store reads) does
not grow with the campaign; a three-scale chain runs in both modes."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_COARSE, TINY_FINE, tiny_campaign

from apps import toy
from campaign import Budget, Campaign, Promotion, Scale
from campaign.ledger import Ledger
from campaign.store import Store
from learners import ExactGP
from learners.acquisition import MaxVariance, Random

ROOT = Path(__file__).resolve().parents[1]


def open_run(run_dir):
    ledger = Ledger(run_dir / "ledger.sqlite")
    return ledger, Store(run_dir, ledger, read_only=True)


def check_consistent(run_dir, fine_budget):
    """Every done task's rows are in the store exactly once; nothing else is."""
    ledger, store = open_run(run_dir)
    for scale in store.scales():
        data = store.read(scale)
        done = {t["task_id"]: t["rows"] for t in ledger.tasks(scale, status="done")}
        ids, counts = np.unique(data.meta["task_id"], return_counts=True)
        assert dict(zip(ids.tolist(), counts.tolist(), strict=True)) == done, scale
        assert not ledger.tasks(scale, status="submitted")
    fine = store.read("fine")
    parents = fine.meta["parent_row"].tolist()
    assert len(set(parents)) == len(parents)  # each candidate promoted once
    np.testing.assert_array_equal(fine.x, store.read("coarse").x[parents])
    assert sum(ledger.task_counts()["fine"].values()) == fine_budget
    ledger.close()


def test_async_campaign_end_to_end_on_threads(tmp_path):
    spec = tiny_campaign(mode="async", budget=Budget(fine=16))
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert summary.mode == "async" and not summary.failed
    assert summary.stop_reason == "task budget spent (fine=16)"
    check_consistent(tmp_path / "run", 16)
    ledger, store = open_run(tmp_path / "run")
    assert ledger.fact("mode") == "async"
    records = [r for r in ledger.rounds("coarse-to-fine") if r.get("n_train")]
    # a model fitted while simulations ran (busy by default: the fine workers never
    # wait for a fit, so fast simulations may spend the budget before a second), then
    # a final fit
    assert len(records) >= 2
    assert [r["n_train"] for r in records] == sorted(r["n_train"] for r in records)
    assert records[-1]["policy"] == "final fit" and records[-1]["n_train"] == 16
    assert any(r.get("prospective_rmse") is not None for r in records[:-1])
    # each promoted row's round is the generation of the model that chose it
    fine = store.read("fine")
    assert fine.meta["round"].min() == 0 and fine.meta["round"].max() >= 1
    # ... and meta/model says so too (-1: the space-filling design), with its staleness
    by_model = fine.meta["model"] >= 1
    np.testing.assert_array_equal(fine.meta["model"][by_model], fine.meta["round"][by_model])
    assert np.all(fine.meta["staleness"][by_model] >= 0)
    assert np.all(fine.meta["staleness"][~by_model] == -1)
    # the timeline holds every attempt with its worker
    attempts = ledger.attempts()
    assert len(attempts) == sum(t["attempts"] for t in ledger.tasks())
    assert all(a["worker"] and a["started"] <= a["ended"] for a in attempts)
    # walker rows are tagged with their segment number and walkers continue
    coarse = store.read("coarse")
    walker_of = {t["task_id"]: t["walker"] for t in ledger.tasks("coarse")}
    for walker in (0, 1):
        rows = np.flatnonzero([walker_of[t] == walker for t in coarse.meta["task_id"]])
        rounds = coarse.meta["round"][rows]
        assert np.all(np.diff(rounds) >= 0)
    ledger.close()


def slow_fine(x, *, seed, n_samples, pause):
    time.sleep(pause)
    return toy.smeared_energy(x, seed=seed, n_samples=n_samples)


def test_fits_run_while_simulations_go_on(tmp_path):
    spec = tiny_campaign(mode="async", budget=Budget(fine=12), fine_app=slow_fine,
                         fine_params={**TINY_FINE, "pause": 0.2},
                         promotion={"retrain_every": 2})
    spec.run(site="threads", out=tmp_path / "run")
    ledger, _ = open_run(tmp_path / "run")
    fits = [(r["fit_started"], r["fit_ended"]) for r in ledger.rounds("coarse-to-fine")
            if r.get("fit_started") and r.get("policy") != "final fit"]
    sims = [(a["started"], a["ended"]) for a in ledger.attempts()]
    overlapping = [f for f in fits if any(s < f[1] and e > f[0] for s, e in sims)]
    assert len(overlapping) >= 2, (fits, len(sims))
    ledger.close()


FINE_RUNS: list[int] = []  # one entry per fine task run (threads site: this process)


def counted_fine(x, *, seed, n_samples):
    FINE_RUNS.append(seed)
    return toy.smeared_energy(x, seed=seed, n_samples=n_samples)


class GatedFitGP(ExactGP):
    """An ExactGP whose fit returns only after ``ahead`` more fine tasks have run (or the
    budget's last has): simulations outpace fits by construction, not by a race between
    a sleep and the machine's speed."""

    def __init__(self, ahead: int = 4, budget: int = 40, **kwargs):
        super().__init__(**kwargs)
        self.ahead, self.budget = ahead, budget

    def fit(self, X, y):
        target = min(len(FINE_RUNS) + self.ahead, self.budget)
        give_up = time.monotonic() + 60.0  # never hang the suite
        while len(FINE_RUNS) < target and time.monotonic() < give_up:
            time.sleep(0.01)
        return super().fit(X, y)


def picks_per_model(run_dir):
    """Fine tasks chosen by each model (a promoted row's round is the generation of the
    model that chose it; round 0: the space-filling design before the first model)."""
    ledger, store = open_run(run_dir)
    rounds, counts = np.unique(store.read("fine").meta["round"], return_counts=True)
    ledger.close()
    return {int(r): int(c) for r, c in zip(rounds, counts, strict=True)}


def test_busy_by_default_a_model_chooses_again_while_the_next_fit_runs(tmp_path):
    FINE_RUNS.clear()
    learner = GatedFitGP(ahead=4, budget=40, restarts=1, iterations=30)
    run_dir = tmp_path / "busy"
    spec = tiny_campaign(mode="async", budget=Budget(fine=40), fine_app=counted_fine,
                         promotion={"batch_size": 2, "learner": learner})
    summary = spec.run(site="threads", out=run_dir)
    assert summary.stop_reason == "task budget spent (fine=40)"
    check_consistent(run_dir, 40)  # and no row was chosen twice
    chosen = picks_per_model(run_dir)
    by_models = [count for generation, count in chosen.items() if generation >= 1]
    # the seed design, then space-filling picks into free slots while the first fit
    # runs, then more than one batch per model while the next fit runs
    assert chosen[0] > 2 and by_models and max(by_models) > 2, chosen
    ledger, store = open_run(run_dir)
    staleness = store.read("fine").meta["staleness"]
    assert np.all(staleness[store.read("fine").meta["round"] >= 1] >= 0)
    ledger.close()


def hangs_on_first_attempt(x, *, seed, marker):
    """Blocks in a C call (Parsl's walltime cannot interrupt it) the first time."""
    if not Path(marker).exists():
        Path(marker).write_text("hung once")
        time.sleep(4.0)
    return {"x": np.atleast_2d(x), "value": np.array([float(x[0])])}


def test_a_hung_task_is_retried_after_its_engine_side_deadline(tmp_path):
    marker = tmp_path / "hung"
    spec = Campaign(name="hung", scales=[
        Scale("coarse", app=hangs_on_first_attempt, params={"marker": str(marker)},
              walkers=[[0.0]], timeout=0.3, retries=1)], budget=Budget(coarse=2))
    started = time.time()
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert summary.task_counts["coarse"] == {"done": 2}
    ledger, _ = open_run(tmp_path / "run")
    first = ledger.tasks("coarse")[0]
    assert first["attempts"] == 2 and "DeadlineExceeded" in first["reason"]
    failed = [a for a in ledger.attempts() if a["outcome"] == "failed"]
    assert len(failed) == 1 and "engine-side deadline" in failed[0]["reason"]
    assert time.time() - started < 30
    ledger.close()


def noop(x, *, seed):
    return {"x": np.atleast_2d(x), "value": np.zeros(1)}


def count_engine_work(tmp_path, monkeypatch, tasks):
    """SQL statements and whole-scale store reads of one walker-only async campaign."""
    statements, reads = [], []
    original_init, original_read = Ledger.__init__, Store.read

    def traced_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self._db.set_trace_callback(statements.append)

    def counted_read(self, *args, **kwargs):
        reads.append(args)
        return original_read(self, *args, **kwargs)

    monkeypatch.setattr(Ledger, "__init__", traced_init)
    monkeypatch.setattr(Store, "read", counted_read)
    spec = Campaign(name="noop", scales=[Scale("walk", app=noop, walkers=np.zeros((4, 1)))],
                    budget=Budget(walk=tasks))
    spec.run(site="threads", out=tmp_path / f"run{tasks}")
    monkeypatch.setattr(Ledger, "__init__", original_init)
    monkeypatch.setattr(Store, "read", original_read)
    return statements, reads


def test_per_task_engine_cost_does_not_grow_with_the_campaign(tmp_path, monkeypatch):
    small, small_reads = count_engine_work(tmp_path, monkeypatch, 100)
    large, large_reads = count_engine_work(tmp_path, monkeypatch, 800)
    assert small_reads == [] and large_reads == []  # decisions never read the store
    per_task = [len(small) / 100, len(large) / 800]
    assert per_task[1] <= 1.1 * per_task[0], per_task
    # and no statement loads every task row
    assert not [s for s in large if s.startswith("SELECT * FROM tasks WHERE 1=1 ORDER")]


SCRIPT = textwrap.dedent('''
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import tiny_campaign
    from campaign import Budget
    campaign = tiny_campaign(mode="async", budget=Budget(fine=16))
''')


def test_async_resume_after_sigkill_loses_duplicates_and_tears_nothing(tmp_path):
    script = tmp_path / "campaign_script.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests")))
    out = tmp_path / "run"
    env = {**os.environ, "CAMPAIGN_FAULT_POINT": "after-commit:5",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    command = [sys.executable, "-m", "campaign.cli", "run", str(script), "--site", "threads",
               "--out", str(out), "--no-report"]
    killed = subprocess.run(command, env=env, capture_output=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    env.pop("CAMPAIGN_FAULT_POINT")
    resumed = subprocess.run([sys.executable, "-m", "campaign.cli", "resume", str(out),
                              "--no-report"], env=env, capture_output=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    check_consistent(out, 16)
    ledger = Ledger(out / "ledger.sqlite", read_only=True)
    assert ledger.fact("resumed") == 1
    assert ledger.fact("stop_reason") == "task budget spent (fine=16)"
    ledger.close()


def segment(x, *, seed, n_steps, stride):
    """A middle scale: a short Langevin run from a promoted point, all its frames."""
    return toy.langevin(x, seed=seed, n_steps=n_steps, stride=stride)


def three_scale_chain(mode):
    """macro (broad walkers) -> cg (short runs from chosen macro frames, whose frames
    are the next pool) -> fine (smeared energy), like MuMMI's macro -> CG -> AA."""
    return Campaign(
        name="chain", mode=mode, seed=4,
        scales=[Scale("macro", app=toy.langevin, params=TINY_COARSE,
                      walkers=toy.initial_walkers(2)),
                Scale("cg", app=segment, params={"n_steps": 500, "stride": 100}),
                Scale("fine", app=toy.smeared_energy, params=TINY_FINE)],
        promotions=[
            Promotion(source="macro", target="cg", features=toy.positions,
                      learner=ExactGP(restarts=1, iterations=40), acquisition=Random(),
                      batch_size=3, quantity="energy"),
            Promotion(source="cg", target="fine", features=toy.positions,
                      learner=ExactGP(restarts=1, iterations=40), acquisition=MaxVariance(),
                      batch_size=3, quantity="energy")],
        budget=Budget(cg=6, fine=6))


@pytest.mark.parametrize("mode", ["async", "rounds"])
def test_three_scale_chain(tmp_path, mode):
    summary = three_scale_chain(mode).run(site="threads", out=tmp_path / "run")
    assert summary.task_counts["cg"] == {"done": 6} and summary.task_counts["fine"] == {
        "done": 6}
    ledger, store = open_run(tmp_path / "run")
    cg, fine = store.read("cg"), store.read("fine")
    assert len(cg) == 6 * 5  # each cg task returns its 5 frames
    np.testing.assert_array_equal(fine.x, cg.x[fine.meta["parent_row"]])
    macro = store.read("macro")
    # every cg task started from a distinct promoted macro row
    starts = cg.meta["parent_row"][::5]
    assert len(set(starts.tolist())) == 6 and starts.max() < len(macro)
    assert np.all(cg.meta["parent_row"].reshape(6, 5) == starts[:, None])
    ledger.close()


@pytest.mark.htex
@pytest.mark.slow
def test_async_campaign_on_local_htex(tmp_path):
    spec = tiny_campaign(mode="async", budget=Budget(fine=8))
    summary = spec.run(site="local", out=tmp_path / "run")
    assert summary.stop_reason == "task budget spent (fine=8)"
    check_consistent(tmp_path / "run", 8)
    processes = (tmp_path / "run" / "processes.json").read_text()
    assert "interchange" in processes


COUNTER_LOCK = threading.Lock()


def fails_after_four(x, *, seed, counter):
    """Succeeds for the seed design, then fails every time."""
    with COUNTER_LOCK:  # the threads site runs tasks side by side
        calls = int(Path(counter).read_text() or 0) if Path(counter).exists() else 0
        Path(counter).write_text(str(calls + 1))
    if calls >= 4:
        raise RuntimeError("fails after the seed design")
    return toy.smeared_energy(x, seed=seed, n_samples=1024)


def test_a_fine_scale_that_keeps_failing_stops_the_campaign(tmp_path):
    """A model whose whole batch is quarantined chooses again (no result will bring a
    new model), and 20 quarantined tasks in a row end the run as failed."""
    spec = tiny_campaign(mode="async", budget=Budget(fine=40), fine_app=fails_after_four,
                         fine_params={"counter": str(tmp_path / "calls")},
                         scales=[Scale("coarse", app=toy.langevin, params=TINY_COARSE,
                                       walkers=toy.initial_walkers(2), max_in_flight=1),
                                 Scale("fine", app=fails_after_four, retries=0,
                                       params={"counter": str(tmp_path / "calls")},
                                       max_in_flight=1)])
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert summary.failed
    assert summary.stop_reason.startswith("scale 'fine' failed 20 tasks in a row")
    assert summary.task_counts["fine"] == {"done": 4, "quarantined": 20}


def test_a_model_cut_short_by_a_kill_is_not_restored(tmp_path):
    from campaign.resume import saved_models

    ledger = Ledger(tmp_path / "ledger.sqlite")
    store = Store(tmp_path, ledger)
    store.save_model("a-to-b", 1, {"w": np.ones(3)}, n_train=4, learner="L")
    partial = store.group.require_group("models/a-to-b/2")  # killed before its attrs
    partial.create_array("w", shape=(3,), dtype="float64")
    assert saved_models(store, "a-to-b") == [1]
    ledger.close()


def test_the_three_scale_example_runs_its_chain(tmp_path):
    from campaign.script import load_campaign

    spec = load_campaign(ROOT / "examples" / "three_scales.py")
    spec = spec.model_copy(update={"budget": Budget(macro=8, cg=2, fine=8)})
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert not summary.failed
    assert summary.task_counts == {"macro": {"done": 8}, "cg": {"done": 2},
                                   "fine": {"done": 8}}
    ledger, store = open_run(tmp_path / "run")
    cg, fine = store.read("cg"), store.read("fine")
    assert len(cg) == 2 * 10  # two short runs of 10 frames
    np.testing.assert_array_equal(fine.x, cg.x[fine.meta["parent_row"]])
    ledger.close()


class NeedsThreeFeatures(ExactGP):
    def fit(self, X, y):
        if X.shape[1] != 3:
            raise ValueError(f"expected 3 features, got {X.shape[1]}")
        return super().fit(X, y)


def test_warm_up_fit_reports_a_failure_instead_of_raising():
    from campaign.task import warm_learner

    X = np.random.default_rng(0).normal(size=(8, 2))
    learner = ExactGP(restarts=1, iterations=5)
    warmed = warm_learner(learner, X, seed=0)
    assert warmed["problem"] is None and warmed["ended"] >= warmed["started"]
    failed = warm_learner(NeedsThreeFeatures(restarts=1, iterations=5), X, seed=0)
    assert "expected 3 features" in failed["problem"]


def test_each_learner_is_warmed_up_once_at_launch_and_changes_nothing(tmp_path, monkeypatch):
    from campaign import task

    calls = []
    original = task.warm_learner

    def counted(learner, X, seed):
        calls.append((type(learner).__name__, X.shape))
        return original(learner, X, seed)

    def broken(learner, X, seed):
        calls.append(("broken", X.shape))
        raise RuntimeError("the train executor lost its warm-up")

    fine = {}
    for name, warm in (("warmed", counted), ("broken", broken)):
        monkeypatch.setattr(task, "warm_learner", warm)
        spec = tiny_campaign(mode="rounds", budget=Budget(fine=8))
        summary = spec.run(site="threads", out=tmp_path / name)
        assert summary.stop_reason == "task budget spent (fine=8)"
        ledger = Ledger(tmp_path / name / "ledger.sqlite")
        fine[name] = Store(tmp_path / name, ledger, read_only=True).read("fine")
        ledger.close()
    assert calls == [("ExactGP", (8, 2)), ("broken", (8, 2))]  # once per run
    # rounds mode replays exactly with or without it: the warm-up fitted a copy
    np.testing.assert_array_equal(fine["warmed"].x, fine["broken"].x)
    for key in fine["warmed"].y:
        np.testing.assert_array_equal(fine["warmed"].y[key], fine["broken"].y[key])


def sleepy(x, *, seed):
    time.sleep(0.3)
    return {"x": np.atleast_2d(x), "value": np.zeros(1)}


def test_a_queued_attempt_is_never_charged_a_deadline(tmp_path):
    """40 attempts queued on 2 threads wait up to ~6 s, past the 4 s deadline
    (2 x timeout + 2 s): it runs from each attempt's start, so none expires."""
    from campaign.engine import Engine

    spec = Campaign(name="queued", scales=[
        Scale("walk", app=sleepy, walkers=np.zeros((40, 1)), timeout=1.0, retries=0,
              max_in_flight=40)], budget=Budget(walk=80))
    snapshots = []
    summary = Engine(spec, tmp_path / "run", site="threads",
                     on_progress=snapshots.append).run()
    assert not summary.failed and summary.task_counts["walk"] == {"done": 80}
    # progress says attempts wait to start (the queue lasts >= 6 s: 40 x 0.3 s / 2)
    assert max(s["scales"][0]["tasks"]["waiting"] for s in snapshots) > 0
    ledger, _ = open_run(tmp_path / "run")
    waits = [a["started"] - a["submitted"] for a in ledger.attempts()]
    assert max(waits) > 4.0  # queued past the deadline a submission clock would set
    assert all(a["outcome"] == "done" for a in ledger.attempts())
    ledger.close()
