"""A stopped or killed campaign resumes with nothing lost, duplicated or trained twice,
and ends with the same store as an uninterrupted run of the same seed."""

import os
import signal

import numpy as np
import pytest
from conftest import TINY_COARSE, TINY_FINE, tiny_campaign

from apps import toy
from campaign import Budget, Scale
from campaign.engine import RunDirError
from campaign.ledger import Ledger, LedgerError
from campaign.store import Store, StoreError


def signal_on_call(number: int, signum: int = signal.SIGTERM):
    """A refresh_params hook that sends ``signum`` to this process on its n-th call."""
    calls = []

    def hook(data):
        calls.append(1)
        if len(calls) == number:
            os.kill(os.getpid(), signum)
        return {}

    return hook


def campaign_with_hook(hook, fine=12, fine_app=toy.smeared_energy):
    return tiny_campaign(
        scales=[Scale("coarse", app=toy.langevin, params=TINY_COARSE,
                      walkers=toy.initial_walkers(2), refresh_params=hook),
                Scale("fine", app=fine_app, params=TINY_FINE)],
        budget=Budget(fine=fine))


def stores_equal(a, b):
    for scale in ("coarse", "fine"):
        left, right = a.read(scale), b.read(scale)
        np.testing.assert_array_equal(left.x, right.x)
        for name in left.y:
            np.testing.assert_array_equal(left.y[name], right.y[name])
        for name in ("task_id", "parent_row", "round"):
            np.testing.assert_array_equal(left.meta[name], right.meta[name])


def open_run(run_dir):
    ledger = Ledger(run_dir / "ledger.sqlite")
    return ledger, Store(run_dir, ledger, read_only=True)


def test_sigterm_stops_gracefully_and_resume_matches_uninterrupted(tmp_path):
    campaign_with_hook(lambda data: {}).run(site="threads", out=tmp_path / "straight")
    stopped = campaign_with_hook(signal_on_call(3)).run(site="threads", out=tmp_path / "cut")
    assert stopped.interrupted and stopped.stop_reason == "interrupted by SIGTERM"
    ledger, _ = open_run(tmp_path / "cut")
    assert ledger.fact("stop_reason") is None and ledger.fact("interrupted")
    assert ledger.task_counts()["fine"]["done"] < 12
    ledger.close()
    resumed = campaign_with_hook(lambda data: {}).run(site="threads", out=tmp_path / "cut",
                                                      resume=True)
    assert not resumed.interrupted and resumed.stop_reason == "task budget spent (fine=12)"
    a, b = open_run(tmp_path / "straight"), open_run(tmp_path / "cut")
    stores_equal(a[1], b[1])
    assert a[0].task_counts() == b[0].task_counts()
    curve = [(r["n_train"], r["reference_rmse"]) for r in a[0].rounds("coarse-to-fine")
             if r.get("n_train")]
    assert curve == [(r["n_train"], r["reference_rmse"]) for r in b[0].rounds("coarse-to-fine")
                     if r.get("n_train")]
    assert b[0].fact("resumed") == 1


def test_second_signal_stops_at_once_and_nothing_committed_is_lost(tmp_path):
    def two_signals(data, calls=[]):  # noqa: B006 - a counter across calls
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return {}

    summary = campaign_with_hook(two_signals).run(site="threads", out=tmp_path / "run")
    assert summary.interrupted and summary.stop_reason == "interrupted by SIGINT"
    ledger, store = open_run(tmp_path / "run")
    committed = {scale: store.rows(scale) for scale in ("coarse", "fine")}
    ledger.close()
    campaign_with_hook(lambda data: {}).run(site="threads", out=tmp_path / "run", resume=True)
    ledger, store = open_run(tmp_path / "run")
    for scale, rows in committed.items():
        assert store.rows(scale) >= rows
    assert "submitted" not in ledger.task_counts().get("fine", {})
    task_ids = store.read("fine").meta["task_id"]
    assert len(set(task_ids.tolist())) == len(task_ids)  # no task committed twice


def test_resume_after_finishing_with_a_larger_budget_continues(tmp_path):
    campaign_with_hook(lambda data: {}, fine=8).run(site="threads", out=tmp_path / "run")
    summary = campaign_with_hook(lambda data: {}, fine=12).run(
        site="threads", out=tmp_path / "run", resume=True)
    assert summary.rows["fine"] == 12
    ledger, store = open_run(tmp_path / "run")
    assert sorted(set(store.read("fine").meta["parent_row"].tolist())).__len__() == 12
    ledger.close()


def test_resume_refuses_a_changed_spec_and_an_empty_directory(tmp_path):
    campaign_with_hook(lambda data: {}, fine=4).run(site="threads", out=tmp_path / "run")
    changed = tiny_campaign(promotion={"batch_size": 2}, budget=Budget(fine=8))
    with pytest.raises(RunDirError, match=r"different spec \(changed: promotions\)"):
        changed.run(site="threads", out=tmp_path / "run", resume=True)
    with pytest.raises(RunDirError, match="holds no campaign to resume"):
        changed.run(site="threads", out=tmp_path / "empty", resume=True)
    assert not (tmp_path / "empty").exists()


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_corrupted_ledger_is_one_clear_error_and_nothing_changes(tmp_path):
    campaign_with_hook(lambda data: {}, fine=4).run(site="threads", out=tmp_path / "run")
    ledger_path = tmp_path / "run" / "ledger.sqlite"
    ledger_path.write_bytes(b"this is not sqlite" * 100)
    before = snapshot(tmp_path / "run")
    with pytest.raises(LedgerError, match="ledger.sqlite is not a readable campaign ledger"):
        campaign_with_hook(lambda data: {}, fine=8).run(site="threads", out=tmp_path / "run",
                                                        resume=True)
    assert snapshot(tmp_path / "run") == before


def test_damaged_zarr_array_is_one_clear_error_and_nothing_changes(tmp_path):
    campaign_with_hook(lambda data: {}, fine=4).run(site="threads", out=tmp_path / "run")
    (tmp_path / "run" / "store.zarr" / "fine" / "y" / "energy" / "zarr.json").write_text("{oops")
    before = snapshot(tmp_path / "run")
    with pytest.raises(StoreError, match="fine/y/energy is damaged"):
        campaign_with_hook(lambda data: {}, fine=8).run(site="threads", out=tmp_path / "run",
                                                        resume=True)
    assert snapshot(tmp_path / "run") == before


def test_incompatible_store_version_is_refused(tmp_path):
    import zarr

    campaign_with_hook(lambda data: {}, fine=4).run(site="threads", out=tmp_path / "run")
    zarr.open_group(tmp_path / "run" / "store.zarr").attrs["store_format"] = 99
    with pytest.raises(StoreError, match="store format 99"):
        campaign_with_hook(lambda data: {}, fine=8).run(site="threads", out=tmp_path / "run",
                                                        resume=True)


def test_stop_during_a_fit_submits_nothing_new_and_resumes(tmp_path, monkeypatch):
    """A SIGTERM that arrives while a learner is being fitted: the round's batch is not
    submitted; the resumed run re-plans it and matches an uninterrupted run."""
    from campaign import task
    from learners import ExactGP

    # the launch's warm-up fit (8 random points) would fire the signal itself
    monkeypatch.setattr(task, "warm_learner", lambda learner, X, seed: {"problem": "off"})

    class SignallingGP(ExactGP):
        def fit(self, X, y):
            if len(y) == 8 and not getattr(SignallingGP, "fired", False):
                SignallingGP.fired = True
                os.kill(os.getpid(), signal.SIGTERM)
            return super().fit(X, y)

    straight = tiny_campaign(promotion={"learner": ExactGP(restarts=1, iterations=60)})
    straight.run(site="threads", out=tmp_path / "straight")
    cut = tiny_campaign(promotion={"learner": SignallingGP(restarts=1, iterations=60)})
    summary = cut.run(site="threads", out=tmp_path / "cut")
    assert summary.interrupted
    ledger, store = open_run(tmp_path / "cut")
    assert ledger.task_counts()["fine"] == {"done": 8}  # round 2's batch never submitted
    ledger.close()
    tiny_campaign(promotion={"learner": SignallingGP(restarts=1, iterations=60)}).run(
        site="threads", out=tmp_path / "cut", resume=True)
    stores_equal(open_run(tmp_path / "straight")[1], open_run(tmp_path / "cut")[1])


def test_directory_of_a_driver_killed_while_starting_is_taken_over(tmp_path):
    """A ledger with no campaign recorded (killed between creating the file and
    recording its facts) holds nothing: `run` takes it over, `resume` says so."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    Ledger(run_dir / "ledger.sqlite").close()
    spec = campaign_with_hook(lambda data: {}, fine=4)
    with pytest.raises(RunDirError, match="stopped while starting"):
        spec.run(site="threads", out=run_dir, resume=True)
    assert spec.run(site="threads", out=run_dir).rows["fine"] == 4


def test_resume_restores_the_durations_the_deadline_derives_from(tmp_path):
    """A resumed run has an engine-side deadline from its first task on: a task hung
    right after a resume (e.g. its worker killed) is not waited for forever."""
    from conftest import tiny_campaign

    from campaign import Budget
    from campaign.ledger import Ledger
    from campaign.resume import restore_state
    from campaign.store import Store

    spec = tiny_campaign(mode="async", budget=Budget(fine=4))
    spec.run(site="threads", out=tmp_path / "run")
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite")
    store = Store(tmp_path / "run", ledger)
    state = restore_state(spec, store, ledger, [None])
    for name in ("coarse", "fine"):
        finished = [a for a in ledger.attempts() if a["scale"] == name
                    and a["started"] is not None and a["ended"] is not None]
        assert state.scales[name].durations_seen == len(finished) > 0
        assert state.scales[name].longest_duration == pytest.approx(
            max(a["ended"] - a["started"] for a in finished))
    ledger.close()
