"""The retry and deadline policy, and infrastructure losses, without Parsl.

Queue time is not app time: an attempt's deadline runs from its start marker, and an
attempt that never started is never charged. A lost worker is resubmitted with the same
seed and uses no retry; an executor that can start nothing ends the run, quarantining
nothing."""

from __future__ import annotations

import os
import socket
import time

import numpy as np
from test_steering import FakeLearner, make_steerer, pool

from campaign.budget import budget_reason, quarantine_reason, tasks_left
from campaign.events import TaskExpired, TaskLost
from campaign.ingest import SubmittedTask, error_kind
from campaign.retry import DEADLINE_MARGIN, RetryPolicy, task_seed
from campaign.state import CampaignState
from campaign.task import write_start_marker


def spec_with_timeout(tmp_path, timeout=1.0, retries=2):
    steerer = make_steerer(tmp_path, FakeLearner())
    spec = steerer.spec.model_copy(update={"scales": [
        steerer.spec.scales[0],
        steerer.spec.scales[1].model_copy(update={"timeout": timeout, "retries": retries})]})
    return spec


def test_an_attempt_that_never_started_is_never_charged(tmp_path):
    spec = spec_with_timeout(tmp_path)
    policy = RetryPolicy(spec, tmp_path / "started")
    held = CampaignState(spec, [FakeLearner()]).scales["fine"]
    task = SubmittedTask(7, "fine", 0, 3, time.time() - 3600.0, np.zeros(1))
    assert policy.first_check(task, held) == task.submitted + 2 * 1.0 + DEADLINE_MARGIN
    verdict, later = policy.check(task, held, time.time())  # an hour in the queue
    assert verdict is None and later is not None and later > time.time()


def test_the_deadline_runs_from_the_start_marker(tmp_path):
    spec = spec_with_timeout(tmp_path)
    policy = RetryPolicy(spec, tmp_path / "started")
    held = CampaignState(spec, [FakeLearner()]).scales["fine"]
    task = SubmittedTask(7, "fine", 0, 3, time.time() - 3600.0, np.zeros(1))
    began = time.time() - 1.0
    write_start_marker(policy.marker(task), began)
    assert abs(policy.started(task)[0] - began) < 1e-5
    assert policy.check(task, held, time.time())[0] is None  # 1 s of 4 used
    assert policy.check(task, held, began + 4.5)[0] == "expired"
    policy.forget(task)
    assert not os.path.exists(policy.marker(task))


def test_a_dead_worker_of_this_host_is_a_loss_not_an_expiry(tmp_path):
    spec = spec_with_timeout(tmp_path)
    policy = RetryPolicy(spec, tmp_path / "started")
    held = CampaignState(spec, [FakeLearner()]).scales["fine"]
    task = SubmittedTask(8, "fine", 0, 3, time.time(), np.zeros(1))
    gone = 2**22 + 12345  # above the default pid_max: no such process
    with open(policy.marker(task), "w") as marker:
        marker.write(f"{time.time():.3f} {socket.gethostname()} {gone}\n")
    assert policy.check(task, held, time.time())[0] == "lost"


def test_retries_count_app_failures_only(tmp_path):
    spec = spec_with_timeout(tmp_path, retries=1)
    policy = RetryPolicy(spec, None)
    task = SubmittedTask(9, "fine", 0, 3, 0.0, np.zeros(1), attempt=5, failures=0)
    retry = policy.after_failure(task, "ValueError: x", deterministic=False)
    assert retry.action == "retry" and retry.seed == task_seed(spec.seed, 9, 2)
    task.failures = 1
    quarantine = policy.after_failure(task, "ValueError: x", deterministic=False)
    assert quarantine.action == "quarantine"
    assert quarantine.reason == "after 2 attempts: ValueError: x"
    assert policy.after_loss(task, "WorkerLost: gone").seed == task.seed


def test_error_kinds():
    assert error_kind("WorkerLost: Task failure due to loss of worker 3") == "infrastructure"
    assert error_kind("ManagerLost: manager lost") == "infrastructure"
    assert error_kind("BadStateException: sbatch: error: invalid account") == "fatal"
    assert error_kind("ValueError: input deck missing") == "app"
    assert error_kind("DeadlineExceeded: no result") == "app"


def launched_fine_task(steerer):
    held = steerer.state.promotions[0]
    steerer.keeper.featurize_all(held)
    return steerer.submit("fine", [0], [np.zeros(1)], [4], [None])[0]


def test_a_lost_attempt_is_resubmitted_with_its_seed_and_no_retry_used(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    task = launched_fine_task(steerer)
    for _ in range(5):  # more losses than the scale has retries (fewer than LOST_STREAK)
        steerer.react([TaskLost(steerer.dispatcher.sims.pop(task.task_id), "WorkerLost: x")])
        again = steerer.dispatcher.sims[task.task_id]
        assert again.seed == task.seed and again.failures == 0
        task = again
    held = steerer.state.scales["fine"]
    assert held.lost_attempts == 5 and held.in_flight == 1
    assert not steerer.state.status.failed_reason
    attempts = steerer.ledger.attempts()
    assert [a["outcome"] for a in attempts] == ["lost"] * 5
    assert steerer.ledger.tasks("fine")[0]["status"] == "submitted"


def test_a_block_ending_with_many_attempts_on_it_does_not_stop_the_run(tmp_path, monkeypatch):
    """A block at its walltime loses every attempt on it at once: first losses of
    distinct tasks are not a streak, however many (a site of 5,000 workers)."""
    monkeypatch.setattr("campaign.steering.LOST_STREAK", 2)
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    steerer.keeper.featurize_all(steerer.state.promotions[0])
    tasks = steerer.submit("fine", [0] * 4, [np.zeros(1)] * 4, [4, 5, 6, 7], [None] * 4)
    steerer.react([TaskLost(steerer.dispatcher.sims.pop(t.task_id), "WorkerLost: walltime")
                   for t in tasks])
    assert not steerer.state.status.failed_reason
    assert steerer.state.scales["fine"].lost_attempts == 4
    assert len(steerer.dispatcher.sims) == 4  # every one resubmitted


def test_a_task_lost_again_and_again_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr("campaign.steering.LOST_STREAK", 2)
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    task = launched_fine_task(steerer)
    for _ in range(3):  # the first loss, then two repeats: the streak
        assert not steerer.state.status.failed_reason
        steerer.react([TaskLost(steerer.dispatcher.sims.pop(task.task_id), "WorkerLost: x")])
        task = steerer.dispatcher.sims.get(task.task_id, task)
    assert "cannot run tasks on this site" in steerer.state.status.failed_reason
    steerer.flush()
    assert steerer.ledger.tasks("fine")[0]["status"] == "submitted"


def test_an_executor_that_starts_nothing_stops_the_run_and_quarantines_nothing(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    task = launched_fine_task(steerer)
    message = "BadStateException: sbatch: error: Batch job submission failed"
    steerer.react([TaskLost(steerer.dispatcher.sims.pop(task.task_id), message, fatal=True)])
    steerer.flush()
    assert "sbatch: error" in steerer.state.status.failed_reason
    assert steerer.ledger.tasks("fine")[0]["status"] == "submitted"
    assert not steerer.state.scales["fine"].tasks.get("quarantined")


def test_an_expired_attempt_is_retried_then_quarantined(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    pool(steerer)
    task = launched_fine_task(steerer)
    retries = steerer.spec.scale("fine").retries
    for _ in range(retries + 1):
        steerer.react([TaskExpired(steerer.dispatcher.sims.pop(task.task_id), 9.0)])
        task = steerer.dispatcher.sims.get(task.task_id, task)
    steerer.flush()
    record = steerer.ledger.tasks("fine")[0]
    assert record["status"] == "quarantined" and "after the attempt started" in record["reason"]


def test_budget_rules_are_functions_of_spec_and_state(tmp_path):
    steerer = make_steerer(tmp_path, FakeLearner())
    spec, state = steerer.spec, CampaignState(steerer.spec, [FakeLearner()])
    assert tasks_left(spec, state, "fine") == 40 and budget_reason(spec, state, 0.0) == ""
    state.scales["fine"].tasks["done"] = 40
    assert tasks_left(spec, state, "fine") == 0
    assert budget_reason(spec, state, 0.0) == "task budget spent (fine=40)"
    state.scales["fine"].tasks.update(done=-30, quarantined=30)
    assert quarantine_reason(state).startswith("most tasks of scale 'fine'")


class _NeverDone:
    """A Parsl session whose simulation attempts never complete, and whose executors
    say whether worker pools are connected (one pool in block '0', holding a task, and
    an idle one in block '1') and record the blocks they are asked to end."""

    def __init__(self, workers_up):
        import concurrent.futures
        from types import SimpleNamespace

        def connected_managers():
            if workers_up is None:
                raise RuntimeError("no interchange")
            return [{"active": True, "worker_count": 2, "tasks": 1, "block_id": "0"},
                    {"active": True, "worker_count": 2, "tasks": 0, "block_id": "1"}
                    ] if workers_up else []

        self.scaled_in: list[int] = []

        def scale_in_facade(blocks):
            self.scaled_in.append(blocks)
            return [str(block) for block in range(blocks)]

        executor = SimpleNamespace(connected_managers=connected_managers,
                                   scale_in_facade=scale_in_facade)
        self.dfk = SimpleNamespace(executors={"sim-coarse": executor, "sim-fine": executor})
        self.sim_apps = {name: (lambda *args, **kwargs: concurrent.futures.Future())
                         for name in ("coarse", "fine")}


def _stall_events(tmp_path, monkeypatch, *, workers_up, started):
    from campaign import dispatcher as dispatching

    monkeypatch.setattr(dispatching, "STALL_SECONDS", 0.0)
    monkeypatch.setattr(dispatching, "WAITING_SECONDS", 0.0)
    spec = spec_with_timeout(tmp_path)
    state = CampaignState(spec, [FakeLearner()])
    policy = RetryPolicy(spec, tmp_path / "started")
    session = _NeverDone(workers_up)
    dispatcher = dispatching.Dispatcher(session, spec, state, policy)
    task = SubmittedTask(7, "fine", 0, 3, 0.0, np.zeros(1))
    dispatcher.launch(task, {})
    if started:
        write_start_marker(policy.marker(task), time.time())
    time.sleep(0.01)
    events = dispatcher.wait(timeout=0.01)
    dispatcher.close()
    return events, dispatcher, session


def test_an_attempt_not_started_while_its_workers_are_up_and_idle_of_it_is_lost(
        tmp_path, monkeypatch):
    events, dispatcher, session = _stall_events(tmp_path, monkeypatch, workers_up=True,
                                                started=False)
    lost = [e for e in events if isinstance(e, TaskLost)]
    assert len(lost) == 1 and "was not started" in lost[0].problem and not lost[0].fatal
    assert error_kind(lost[0].problem) == "infrastructure" and not dispatcher.sims
    # the pool holding tasks is replaced (one block ended: Parsl starts a new one)
    assert session.scaled_in == [1]


def test_a_queued_attempt_is_not_lost_without_workers_or_while_its_scale_runs(
        tmp_path, monkeypatch):
    for workers_up, started in [(False, False), (None, False), (True, True)]:
        folder = tmp_path / f"{workers_up}{started}"
        folder.mkdir()
        events, dispatcher, session = _stall_events(folder, monkeypatch,
                                                    workers_up=workers_up, started=started)
        assert not [e for e in events if isinstance(e, TaskLost)], (workers_up, started)
        assert len(dispatcher.sims) == 1 and session.scaled_in == []
