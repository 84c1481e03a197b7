"""The engine: the only process that writes a run's store and ledger, and its two
steering loops.

Owns: launching tasks (recorded in the ledger, in one transaction per batch, *before*
they are submitted), reacting to what completes (retry with a new seed, quarantine,
engine-side deadlines, circuit breakers), fitting learners on the ``train`` executor,
budgets, and the loops that tie these together:

* ``mode="async"`` (default, :meth:`Engine._steer_async`): events, not rounds. Every
  simulation executor keeps ``max_in_flight`` tasks submitted; a walker's next segment
  goes out when its last returns; a fit starts when ``retrain_every`` new results have
  been committed and runs while simulations go on; the newest fitted model makes the
  next selection, which conditions on pending points. Selections and every posterior
  run on one model thread, so the steering thread keeps ingesting.
* ``mode="rounds"`` (:meth:`Engine._steer_rounds`): round-locked and exactly
  reproducible. In round ``r`` every walker runs one segment and every promotion fits on
  results from rounds before ``r`` and chooses from source rows of rounds before ``r``;
  results commit in task order, so a resumed run ends with the same store as an
  uninterrupted one.

Decisions read only the in-memory :class:`~campaign.state.CampaignState`; the store
and ledger are append logs written in batches (``campaign.ingest``), read back once on
resume (``campaign.resume``). The run directory and Parsl are ``campaign.lifecycle``'s.
"""

from __future__ import annotations

import collections
import concurrent.futures
import copy
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from campaign.faults import fault_point
from campaign.ingest import (
    COMMIT_EVERY_ROWS,
    CommitBuffer,
    Completion,
    SubmittedTask,
    check_completion,
)
from campaign.ledger import Attempt, Ledger, PlannedTask, TaskOutcome
from campaign.lifecycle import (
    ParslSession,
    RunDirError,
    clear_run,
    inspect_run_dir,
    versions,
)
from campaign.lock import RunLock
from campaign.planner import Selection, select_batch, snapshot
from campaign.processes import end_leftovers, record_processes
from campaign.resume import (
    mapped_input,
    restore_learner,
    restore_state,
    saved_models,
    unfinished_tasks,
)
from campaign.signals import StopRequest
from campaign.spec import CampaignSpec
from campaign.state import PromotionState, learned_values
from campaign.store import Rows, Store
from campaign.task import BadResultError
from learners.calibration import calibration_metrics

__all__ = ["Engine", "RunDirError", "RunSummary", "task_seed"]

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2
PROGRESS_SECONDS = 10.0
LIVE_SECONDS = 1.0  # how often an ``on_progress`` callback is given a snapshot
IN_FLIGHT_PER_WORKER = 4  # default max_in_flight: queued work hides the round trip (noop
# tasks, 2 HTEX workers: 203 tasks/s at 2 per worker, 380 at 4, raw Parsl 412; noisy)
DEADLINE_MARGIN = 2.0  # seconds past 2 x timeout (queue wait + start-up)
DEADLINE_MULTIPLE = 10.0  # without a timeout: x the longest duration seen ...
DEADLINE_MIN = 60.0  # ... and never less than this
DEADLINE_OBSERVED = 3  # durations seen before a derived deadline applies
FAILURE_STREAK = 20  # quarantined tasks in a row that stop a campaign
WARM_UP_POINTS = 8  # random 2-D points a learner's warm-up fit sees (campaign.task.warm_learner)


class FitAbandonedError(Exception):
    """A second stop signal arrived while a learner was being fitted."""


@dataclass
class RunSummary:
    """What a run reports: where it is, what ran, why it stopped."""

    run_dir: Path
    name: str
    rounds: int
    stop_reason: str
    wall_seconds: float
    task_counts: dict[str, dict[str, int]]
    rows: dict[str, int]
    interrupted: bool = False
    unfinished: int = 0
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    mode: str = "async"
    failed: bool = False  # stopped because it could not progress


def task_seed(campaign_seed: int, task_id: int, attempt: int) -> int:
    """The seed of one attempt of one task: reproducible across kills and resumes."""
    return int(np.random.SeedSequence([campaign_seed, task_id, attempt]).generate_state(1)[0])


class Engine:
    """Runs one campaign spec into one run directory on one Parsl site.

    ``on_progress``, if given, is called on the steering thread with
    :meth:`progress_snapshot` about every ``LIVE_SECONDS`` while the campaign runs, and
    once at the end (stop reason set); one that raises is logged once and not called
    again, and the run goes on (``campaign.live.LiveProgress.update`` is one)."""

    def __init__(self, spec: CampaignSpec, run_dir: str | Path, *, site: str = "local",
                 site_params: dict[str, Any] | None = None, script: str | None = None,
                 overwrite: bool = False, resume: bool = False, grace_period: float = 25.0,
                 torch_threads: int = 1, mode: str | None = None,
                 on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        if overwrite and resume:
            raise ValueError("choose one of overwrite and resume")
        if mode not in (None, "async", "rounds"):
            raise ValueError(f"mode must be 'async' or 'rounds', got {mode!r}")
        self.spec = spec if mode is None else spec.model_copy(update={"mode": mode})
        self.run_dir = Path(run_dir)
        self.site = site
        self.site_params = site_params or {}
        self.script = script
        self.overwrite = overwrite
        self.resume = resume
        self.stop = StopRequest(grace_period)
        self.torch_threads = torch_threads
        self.shutdown_incomplete = False
        self.on_progress = on_progress

    @property
    def mode(self) -> str:
        return self.spec.mode

    # -- the whole run ---------------------------------------------------------------
    def run(self) -> RunSummary:
        from site_configs import get_config

        config = get_config(self.site, scales=[s.name for s in self.spec.scales],
                            run_dir=str(self.run_dir / "parsl"), **self.site_params)
        inspect_run_dir(self.run_dir, self.spec, overwrite=self.overwrite, resume=self.resume)
        self._set_torch_threads()
        with RunLock(self.run_dir):
            start = inspect_run_dir(self.run_dir, self.spec, overwrite=self.overwrite,
                                    resume=self.resume)
            ended = end_leftovers(self.run_dir)  # a killed earlier driver's Parsl processes
            if ended:
                logger.warning("ended %d Parsl processes left running by a killed driver of "
                               "this run directory (pids %s)", len(ended),
                               ", ".join(map(str, ended[:10])))
            if start == "overwrite":
                clear_run(self.run_dir)
            self.ledger = Ledger(self.run_dir / "ledger.sqlite")
            try:
                self.store = Store(self.run_dir, self.ledger)
                self._record_facts(start)
                # a copy: the spec's learner stays unfitted (a thread executor fits in place)
                learners = [copy.deepcopy(p.learner) for p in self.spec.promotions]
                self.state = restore_state(self.spec, self.store, self.ledger, learners)
                with self.stop:
                    self.parsl = ParslSession(config, self.spec)
                    self._record_processes()
                    try:
                        return self._steer()
                    finally:
                        recorder = getattr(self, "process_recorder", None)
                        if recorder is not None:
                            recorder.join(10.0)
                        self.parsl.close()
                        self.shutdown_incomplete = self.parsl.shutdown_incomplete
            finally:
                self.ledger.close()

    def _set_torch_threads(self) -> None:
        try:
            import torch
        except ImportError:
            return
        torch.set_num_threads(self.torch_threads)

    def _record_facts(self, start: str) -> None:
        """One transaction: a driver killed while starting leaves all or nothing."""
        facts: dict[str, Any] = {"spec": self.spec.describe(), "script": self.script,
                                 "site": self.site, "versions": versions(), "mode": self.mode}
        now = time.time()
        if start == "resume":  # sessions: when each driver started (the report's gaps)
            facts.update(resumed=self.ledger.fact("resumed", 0) + 1, interrupted=None,
                         stop_reason=None, failed=None,
                         sessions=[*self.ledger.fact("sessions", []), now])
        else:
            facts.update(name=self.spec.name, created=now, wall_seconds=0.0, sessions=[now])
        self.ledger.set_facts(facts)

    def _steer(self) -> RunSummary:
        self.in_flight: dict[concurrent.futures.Future[Any], SubmittedTask] = {}
        self.in_flight_by_scale: collections.Counter[str] = collections.Counter()
        self.buffer = CommitBuffer(self.store, self._on_commit, ordered=self.mode == "rounds")
        self.refreshed_params: dict[str, dict[str, Any]] = {}
        self.warmups = {p.name: self._warm_up(p) for p in self.state.promotions}
        self.max_in_flight = {
            scale.name: scale.max_in_flight
            or IN_FLIGHT_PER_WORKER * self.parsl.workers[scale.name]
            for scale in self.spec.scales}
        self.failed_reason = ""
        self.stop_reason = ""
        self.failed_attempts: collections.Counter[str] = collections.Counter()
        self.scores = {p.name: _score_of(p.last_record, p.generation)
                       for p in self.state.promotions if p.last_record.get("calibration")}
        self.last_live = float("-inf")
        started = time.time()
        self.earlier_wall = float(self.ledger.fact("wall_seconds", 0.0) or 0.0)
        self.started = started
        if self.mode == "rounds":
            rounds, stop_reason = self._steer_rounds()
        else:
            rounds, stop_reason = self._steer_async()
        if not self.stop.stopping and not self.failed_reason:
            self.failed_reason = self._quarantine_reason()
            if self.failed_reason:
                stop_reason = f"{stop_reason}; but {self.failed_reason}"
        wall = self._elapsed()
        self.ledger.set_fact("wall_seconds", wall)
        unfinished = 0
        if self.stop.stopping:
            unfinished = len(self.ledger.tasks(status="submitted"))
            stop_reason = f"interrupted by {self.stop.signal_name}"
            self.ledger.set_fact("interrupted", stop_reason)
            logger.warning("%s: everything completed is committed; %d tasks unfinished",
                           stop_reason, unfinished)
        else:
            self.ledger.set_facts({"stop_reason": stop_reason,
                                   "failed": self.failed_reason or None})
            logger.info("campaign %s stopped: %s", self.spec.name, stop_reason)
        self.stop_reason = stop_reason
        self._report_progress(final=True)
        return RunSummary(
            run_dir=self.run_dir, name=self.spec.name, rounds=rounds,
            stop_reason=stop_reason, wall_seconds=wall,
            task_counts=self.ledger.task_counts(),
            rows={name: held.committed_rows for name, held in self.state.scales.items()},
            interrupted=self.stop.stopping, unfinished=unfinished,
            curves={p.name: self.ledger.rounds(p.name) for p in self.spec.promotions},
            mode=self.mode, failed=bool(self.failed_reason),
        )

    def _record_processes(self) -> None:
        """Record the pids Parsl started (``campaign.processes``), so a later run can end
        what a SIGKILL leaves: right after load, while pools start (3, 10, 30 s), then
        every 5 minutes. It reads /proc (seconds on a loaded machine), so it runs on a
        thread of its own and never holds up the steering loop."""
        now = time.monotonic()
        if not hasattr(self, "parsl_loaded"):
            self.parsl_loaded = now
            self.next_process_record = 0.0
        if now - self.parsl_loaded < self.next_process_record:
            return
        recorder = getattr(self, "process_recorder", None)
        if recorder is not None and recorder.is_alive():
            return
        schedule = (3.0, 10.0, 30.0)
        later = [t for t in schedule if t > now - self.parsl_loaded]
        self.next_process_record = later[0] if later else now - self.parsl_loaded + 300.0
        self.process_recorder = threading.Thread(
            target=record_processes, args=(self.run_dir, self.parsl.dfk),
            name="campaign-processes", daemon=True)
        self.process_recorder.start()

    def _elapsed(self) -> float:
        return self.earlier_wall + time.time() - self.started

    # -- launching -------------------------------------------------------------------
    def _seed_for(self, task_id: int, attempt: int) -> int:
        return task_seed(self.spec.seed, task_id, attempt)

    def _deadline(self, scale_name: str, submitted: float) -> float | None:
        """Engine-side deadline of an attempt: a task that hangs inside the executor
        (seen with repeated HTEX worker deaths) is retried instead of waited for."""
        scale = self.spec.scale(scale_name)
        if scale.timeout is not None:
            return submitted + 2 * scale.timeout + DEADLINE_MARGIN
        held = self.state.scales[scale_name]
        if held.durations_seen >= DEADLINE_OBSERVED:
            return submitted + max(DEADLINE_MIN, DEADLINE_MULTIPLE * held.longest_duration)
        return None

    def _launch(self, task: SubmittedTask) -> None:
        scale = self.spec.scale(task.scale)
        params = {**scale.params, **self.refreshed_params.get(scale.name, {})}
        limits = {} if scale.timeout is None else {"walltime": scale.timeout}
        task.submitted = time.time()
        task.deadline = self._deadline(scale.name, task.submitted)
        future = self.parsl.sim_apps[scale.name](scale.app, task.task_input, task.seed,
                                                 params, **limits)
        self.in_flight[future] = task
        self.in_flight_by_scale[task.scale] += 1

    def _submit(self, scale_name: str, rounds: list[int], inputs: list[np.ndarray],
                parents: list[int], walkers: list[int | None]) -> list[SubmittedTask]:
        """Record a batch in the ledger (one transaction), then submit it. ``rounds`` is
        each task's round (async: a walker's segment number, or the generation of the
        model that chose a promoted row)."""
        if not inputs:
            return []
        planned = [PlannedTask(scale_name, round_index, parent,
                               task_input.ravel().tolist() if walker is not None else [],
                               walker)
                   for round_index, task_input, parent, walker in zip(
                       rounds, inputs, parents, walkers, strict=True)]
        ids = self.ledger.plan(planned, self._seed_for)
        fault_point("after-plan")
        held = self.state.scales[scale_name]
        held.tasks["submitted"] += len(ids)
        promotion_state = self.state.promotion_into(scale_name)
        tasks = []
        for task_id, round_index, task_input, parent, walker in zip(
                ids, rounds, inputs, parents, walkers, strict=True):
            if walker is not None:
                held.walkers[walker].segments += 1
                held.walkers[walker].latest_task = task_id
            if promotion_state is not None:
                promotion_state.promoted.add(parent)
                promotion_state.pending.add(parent)
            task = SubmittedTask(task_id, scale_name, round_index, parent, 0.0, task_input,
                                 1, walker, self._seed_for(task_id, 1))
            self._launch(task)
            tasks.append(task)
        return tasks

    def _resubmit_unfinished(self) -> int:
        """Submit again every task recorded but never committed (same id and seed)."""
        unfinished = unfinished_tasks(self.spec, self.state, self.ledger)
        for task in unfinished:
            self._launch(task)
        if unfinished:
            logger.info("resuming: %d unfinished tasks submitted again", len(unfinished))
        return len(unfinished)

    def _tasks_left(self, scale: str) -> int | None:
        """Tasks ``scale`` may still record under the task and (async) round budgets."""
        limits = []
        budget = self.spec.budget
        if scale in budget.tasks:
            limits.append(budget.tasks[scale])
        promotion_state = self.state.promotion_into(scale)
        if self.mode == "async" and budget.rounds is not None and promotion_state is not None:
            limits.append(budget.rounds * promotion_state.promotion.batch_size)
        if not limits:
            return None
        return max(0, min(limits) - self.state.scales[scale].tasks_recorded)

    # -- completions -----------------------------------------------------------------
    def _complete(self, future: concurrent.futures.Future[Any]) -> None:
        """One simulation attempt finished: buffer its rows, or retry / quarantine it."""
        task = self.in_flight.pop(future)
        self.in_flight_by_scale[task.scale] -= 1
        completion = check_completion(future, task)
        self._count_compute(completion)
        if completion.problem is None:
            self._check_against_scale(completion)
        if completion.problem is None:
            self.state.scales[task.scale].failure_streak = 0
            if task.walker is not None and self.state.scales[task.scale].monitor is not None:
                self._judge_segment(completion)
                return
            self.buffer.add(task.scale, completion.rows, completion.outcome("done"))
            if task.walker is not None:
                assert completion.rows is not None
                self._walker_returned(task, completion.rows.x[-1])
            return
        self._failed(completion, completion.problem)

    def _check_against_scale(self, completion: Completion) -> None:
        """A promotion target's result must hold the learned quantity, one number per
        row, and every result the columns (dtype, row shape) of the scale's earlier rows:
        otherwise the problem is deterministic. A quantity the target does not return is
        the spec's mistake: it ends the run."""
        task, rows = completion.task, completion.rows
        assert rows is not None
        held = self.state.scales[task.scale]
        promotion_state = self.state.promotion_into(task.scale)
        if promotion_state is not None:
            try:
                promotion_state.quantity_of(rows.y)
            except BadResultError as error:
                completion.problem, completion.deterministic = f"bad result: {error}", True
                self.failed_reason = self.failed_reason or str(error)
                return
            try:
                learned_values(promotion_state, rows.y)
            except BadResultError as error:
                completion.problem, completion.deterministic = f"bad result: {error}", True
                return
        columns = {"x": (rows.x.dtype, rows.x.shape[1:])}
        columns.update({f"y/{k}": (v.dtype, v.shape[1:]) for k, v in rows.y.items()})
        if held.columns is None:
            held.columns = self.store.columns(task.scale) or columns
        if columns != held.columns:
            completion.problem = ("bad result: its columns " + _columns_text(columns)
                                  + " differ from the scale's " + _columns_text(held.columns))
            completion.deterministic = True

    def _count_compute(self, completion: Completion) -> None:
        if completion.started is None or completion.ended is None:
            return
        held = self.state.scales[completion.task.scale]
        seconds = completion.ended - completion.started
        held.observe_duration(seconds)
        held.core_seconds += seconds * float(held.scale.resources.get("cores", 1))

    def _failed(self, completion: Completion, problem: str) -> None:
        """Retry with a new seed while retries are left, else quarantine. While stopping,
        the task stays 'submitted' for resume."""
        task = completion.task
        scale = self.spec.scale(task.scale)
        if self.stop.stopping:
            return
        if completion.deterministic:
            problem = f"{problem} (not retried: a new seed fails the same way)"
        elif task.attempt <= scale.retries:
            seed = self._seed_for(task.task_id, task.attempt + 1)
            failed = Attempt(task.task_id, task.attempt, task.submitted, completion.started,
                             completion.ended, completion.worker, "failed", problem[:2000])
            attempt = self.ledger.retry(task.task_id, seed, problem[:2000], failed)
            self.failed_attempts[task.scale] += 1
            logger.warning("task %d (%s) attempt %d failed: %s; retrying", task.task_id,
                           task.scale, task.attempt, problem)
            self._launch(SubmittedTask(task.task_id, task.scale, task.round_index,
                                       task.parent_row, 0.0, task.task_input, attempt,
                                       task.walker, seed))
            return
        logger.warning("task %d (%s) quarantined after %d attempts: %s", task.task_id,
                       task.scale, task.attempt, problem)
        reason = f"after {task.attempt} attempt{'s' if task.attempt > 1 else ''}: {problem}"
        self.buffer.add(task.scale, None, completion.outcome("quarantined", reason[:2000]))
        held = self.state.scales[task.scale]
        held.failure_streak += 1
        if task.walker is not None and held.walkers[task.walker].latest_task == task.task_id:
            held.walkers[task.walker].ended = "quarantined"
        if held.failure_streak >= FAILURE_STREAK and not self.failed_reason:
            self.failed_reason = (f"scale '{task.scale}' failed {held.failure_streak} tasks in "
                                  f"a row (last: {problem[:300]})")

    def _expire_deadlines(self) -> None:
        """Attempts past their engine-side deadline count as failed (the executor may
        never report them); a late result of an abandoned attempt is ignored."""
        now = time.time()
        expired = [f for f, t in self.in_flight.items()
                   if t.deadline is not None and now > t.deadline and not f.done()]
        for future in expired:
            task = self.in_flight.pop(future)
            self.in_flight_by_scale[task.scale] -= 1
            waited = now - task.submitted
            self._failed(Completion(task, None, None),
                         f"DeadlineExceeded: no result after {waited:.1f} s (engine-side "
                         f"deadline of scale '{task.scale}')")

    def _on_commit(self, scale: str, rows: Rows | None, outcomes: list[TaskOutcome]) -> None:
        """The store just committed ``rows``: the in-memory state follows it."""
        if rows is None:
            self.state.committed(scale, np.zeros((0, 0)), {}, {}, outcomes)
        else:
            self.state.committed(scale, rows.x, rows.y, rows.meta, outcomes)

    def _flush(self) -> None:
        """Commit buffered results. In rounds mode with tasks still running, only tasks
        below the oldest still running of their scale (task order is kept)."""
        if self.mode == "rounds" and self.in_flight:
            running: dict[str, int | None] = {}
            for task in self.in_flight.values():
                current = running.get(task.scale)
                running[task.scale] = task.task_id if current is None else min(current,
                                                                               task.task_id)
            for scale in self.state.scales:
                running.setdefault(scale, None)
            self.buffer.flush(before=running)
        else:
            self.buffer.flush()

    # -- walkers ---------------------------------------------------------------------
    def _walker_returned(self, task: SubmittedTask, position: np.ndarray) -> None:
        held = self.state.scales[task.scale]
        walker = held.walkers[task.walker]
        if walker.latest_task != task.task_id:
            return  # an older segment (resubmitted on resume): its successor is out
        walker.position = np.asarray(position, dtype=np.float64).reshape(walker.position.shape)
        if self.mode == "async":  # refilled once per batch of completions (one transaction)
            self.idle_walkers[task.scale].append(task.walker)

    def _judge_segment(self, completion: Completion) -> None:
        """A monitored walker's segment returned: its monitor decides (on the model
        thread when it reads the surrogate) before the rows are buffered."""
        task = completion.task
        assert completion.rows is not None and task.walker is not None
        held = self.state.scales[task.scale]
        uncertainty = None
        drawing = self.state.promotion_from(task.scale)
        if held.monitor.monitor.needs_model and drawing is not None and drawing.fitted:
            uncertainty = _posterior_std(drawing.learner)
        request = held.monitor.request(held.walkers[task.walker], completion.rows.x,
                                       uncertainty)
        if uncertainty is None:
            self._segment_judged(completion, held.monitor.judge(request))
            return
        job = self.model_thread.submit(held.monitor.judge, request)
        self.model_jobs[job] = ("monitor", drawing, completion)

    def _segment_judged(self, completion: Completion, judgement: Any) -> None:
        """Apply a monitor's decision: the rows carry it in ``meta``; the walker goes on
        from its last frame or a restart frame, or stops."""
        task = completion.task
        assert completion.rows is not None and task.walker is not None
        held = self.state.scales[task.scale]
        walker = held.walkers[task.walker]
        latest = walker.latest_task == task.task_id  # else an older segment, run again
        action, start, meta = held.monitor.apply(walker if latest else None,
                                                 completion.rows.x, judgement)
        completion.rows.meta.update(meta)
        self.buffer.add(task.scale, completion.rows, completion.outcome("done"))
        if not latest:
            return
        if action == "stop":
            walker.ended = f"stopped by monitor ({judgement.decision.reason})"
            logger.info("%s walker %d stopped after %d segments: %s", task.scale,
                        task.walker, walker.segments, judgement.decision.reason)
            return
        self._walker_returned(task, start)

    def _walker_may_run(self, scale: str, index: int) -> bool:
        walker = self.state.scales[scale].walkers[index]
        rounds = self.spec.budget.rounds
        return walker.ended is None and (rounds is None or walker.segments < rounds)

    def _fill_walkers(self, scale: str) -> None:
        """Async: give free slots of ``scale`` to idle walkers, oldest idle first."""
        if self.stop.stopping or self.stop_reason:
            return
        free = self.max_in_flight[scale] - self.in_flight_by_scale[scale]
        left = self._tasks_left(scale)
        if left is not None:
            free = min(free, left)
        idle = self.idle_walkers[scale]
        chosen: list[int] = []
        for _ in range(len(idle)):
            if len(chosen) >= free:
                break
            index = idle.popleft()
            if self._walker_may_run(scale, index):
                chosen.append(index)
        if chosen:
            walkers = self.state.scales[scale].walkers
            self._submit(scale, [walkers[w].segments for w in chosen],
                         [walkers[w].position.copy() for w in chosen], [-1] * len(chosen),
                         list(chosen))

    # -- fits ------------------------------------------------------------------------
    def _warm_up(self, promotion_state: PromotionState) -> concurrent.futures.Future[Any]:
        """At launch: fit a copy of the learner on a few random points on the ``train``
        executor, so the first real fit finds a warm worker (imports and first-call
        set-up done: ``campaign.task.warm_learner``). Only the first fit the steering
        thread waits for (:meth:`_fit_now`: rounds mode, the final fit) waits for it
        first; a failure is logged, never raised."""
        X = np.random.default_rng(self.spec.seed).normal(size=(WARM_UP_POINTS, 2))
        future = self.parsl.warm_app(copy.deepcopy(promotion_state.learner), X, self.spec.seed)
        future.add_done_callback(functools.partial(_warmed, promotion_state.name))
        return future

    def _fit_now(self, promotion_state: PromotionState, X: np.ndarray, y: np.ndarray,
                 before_round: int | None = None) -> Any:
        """Fit a copy of the learner on the train executor and wait for it (a second
        stop signal abandons the wait). Refittable features are refitted in the same job
        (on source rows of rounds before ``before_round`` when given). A warm-up fit
        still running is waited for first: two fits at once on a thread executor would
        share torch's global seed, and rounds mode replays exactly."""
        warming = self.warmups.pop(promotion_state.name, None)
        if warming is not None:
            self._wait_for(warming)
        if promotion_state.promotion.refits_features:
            fitting = self._submit_refit(promotion_state, before_round)
        else:
            fitting = self.parsl.train_app(copy.deepcopy(promotion_state.learner), X, y)
        fault_point("during-fit")
        self._wait_for(fitting)
        return fitting.result()

    def _wait_for(self, future: concurrent.futures.Future[Any]) -> None:
        """Wait for a train job, reporting progress; a second stop signal abandons it."""
        while not future.done():
            if self.stop.stop_now:
                raise FitAbandonedError
            concurrent.futures.wait([future], timeout=POLL_SECONDS)
            self._report_progress()

    def _submit_refit(self, promotion_state: PromotionState,
                      before_round: int | None = None) -> Any:
        """Refittable features: submit one train job that refits the featurizer on the
        committed source rows (of rounds before ``before_round`` when given), computes
        the features of every committed source row and fits a copy of the learner on the
        training results' features (``campaign.task.fit_features_and_learner``).

        Rounds mode refits the spec's featurizer (exact replay needs nothing saved);
        async mode refits the current one (a warm start)."""
        promotion = promotion_state.promotion
        source = self.state.scales[promotion.source]
        n = source.committed_rows
        assert source.x is not None and source.row_round is not None
        rows, values = promotion_state.training_rows(before_round)
        fit_rows = None
        if before_round is not None:
            fit_rows = np.flatnonzero(source.row_round.values[:n] < before_round)
        base = promotion.features if self.mode == "rounds" else promotion_state.featurizer
        return self.parsl.refit_app(base, source.x.values[:n].copy(), rows,
                                    copy.deepcopy(promotion_state.learner), values, fit_rows)

    def _swap_features(self, promotion_state: PromotionState, fitted: dict[str, Any]) -> None:
        """Install the refitted featurizer of ``fitted`` with the features it computed;
        source rows featurized meanwhile (after the job's rows) are recomputed with it."""
        featurized = promotion_state.featurized
        promotion_state.replace_features(fitted["features"], fitted["X"])
        self._featurize_all(promotion_state, upto=featurized)

    def _install_model(self, promotion_state: PromotionState, fitted: dict[str, Any],
                       model_index: int, n_train: int, record: dict[str, Any]) -> None:
        """Make ``fitted`` the promotion's newest model: save it, measure its error
        against the reference, record it under ``model_index``. A refitted featurizer
        in ``fitted`` is swapped in with it."""
        if "features" in fitted:
            self._swap_features(promotion_state, fitted)
            record.update(features_refit_on=fitted["features_fitted_on"],
                          features_seconds=fitted["features_seconds"])
        promotion_state.learner = fitted["learner"]
        promotion_state.fitted = True
        promotion_state.generation = model_index
        path = self.store.save_model(promotion_state.name, model_index,
                                     promotion_state.learner.state_dict(), n_train,
                                     type(promotion_state.learner).__name__)
        record.update(n_train=int(n_train), fit_seconds=fitted["seconds"], model=path,
                      fit_started=fitted.get("started"), fit_ended=fitted.get("ended"))
        record.update(self._reference_error(promotion_state, promotion_state.learner))
        promotion_state.last_record = record
        self.ledger.record_round(model_index, promotion_state.name, record)

    def _reference_error(self, promotion_state: PromotionState, learner: Any,
                         featurizer: Any = None) -> dict[str, Any]:
        """Error of ``learner`` against the promotion's reference (async mode: on the
        model thread, the only user of the cached reference there). With refittable
        features the reference holds source rows, featurized here by ``featurizer``
        (the model's; default: the current one)."""
        promotion = promotion_state.promotion
        if promotion.reference is None:
            return {}
        if promotion_state.reference is None:
            X_ref, y_ref = promotion.reference()
            promotion_state.reference = (np.asarray(X_ref, np.float64),
                                         np.asarray(y_ref, np.float64))
        X_ref, y_ref = promotion_state.reference
        if promotion.refits_features:
            from campaign.planner import featurize

            X_ref = featurize(promotion, X_ref, featurizer if featurizer is not None
                              else promotion_state.featurizer)
        error = learner.posterior(X_ref).mean - y_ref
        if getattr(learner, "defined_up_to_constant", False):
            error = error - error.mean()  # e.g. a free energy learned from its gradient
        return {"reference_rmse": float(np.sqrt(np.mean(error**2))),
                "reference_max_error": float(np.max(np.abs(error)))}

    def _score(self, promotion_state: PromotionState, model_index: int,
               rows: np.ndarray, values: np.ndarray) -> None:
        """Prospective error and calibration of model ``model_index`` on results it had
        not been trained on (``learners.calibration``), kept in its round record and in
        the store (``models/<promotion>/<index>`` attribute ``calibration``)."""
        if len(rows) == 0 or promotion_state.features is None:
            return
        self._record_calibration(promotion_state, model_index, _prospective(
            promotion_state.learner, promotion_state.features.values[rows], values))

    def _record_calibration(self, promotion_state: PromotionState, model_index: int,
                            calibration: dict[str, float]) -> None:
        """Add prospective calibration to model ``model_index``'s record and store group."""
        record = self.ledger.round_record(model_index, promotion_state.name)
        if record is None:
            return
        record.update(prospective_rmse=calibration["rmse"], n_scored=int(calibration["n"]),
                      calibration=calibration)
        self.scores[promotion_state.name] = _score_of(record, model_index)
        if model_index == promotion_state.generation:
            promotion_state.last_record = record
        self.store.record_calibration(promotion_state.name, model_index, calibration)
        self.ledger.record_round(model_index, promotion_state.name, record)

    def _fit_final(self, promotion_state: PromotionState, model_index: int) -> None:
        """Fit once more on everything, so the learning curve ends at the full budget."""
        X, y = promotion_state.training_set()
        if len(y) == 0:
            return
        fitted = self._fit_now(promotion_state, X, y)  # refittable: on every source row
        record: dict[str, Any] = {"policy": "final fit"}
        self._install_model(promotion_state, fitted, model_index, len(y), record)
        logger.info("final surrogate for %s: %d training points%s", promotion_state.name,
                    len(y), _error_text(record))

    def _refresh_params(self) -> None:
        """Let scales with a ``refresh_params`` hook update their parameters from data
        (this reads the whole store: only campaigns that ask for it pay)."""
        hooked = [scale for scale in self.spec.scales if scale.refresh_params is not None]
        if not hooked:
            return
        data = {scale.name: self.store.read(scale.name) for scale in self.spec.scales}
        for scale in hooked:
            update = scale.refresh_params(data)
            if not isinstance(update, dict) or "seed" in update:
                raise TypeError(f"refresh_params of scale '{scale.name}' must return a dict "
                                "of app parameters (not 'seed')")
            self.refreshed_params[scale.name] = update

    # -- budgets ---------------------------------------------------------------------
    def _budget_reason(self) -> str:
        """Why the budget ends the campaign now ('' if it does not)."""
        budget = self.spec.budget
        if budget.wall_time is not None and self._elapsed() >= budget.wall_time:
            return f"wall-time budget reached ({budget.wall_time:g} s)"
        if budget.core_seconds is not None:
            spent = sum(held.core_seconds for held in self.state.scales.values())
            if spent >= budget.core_seconds:
                return f"core-seconds budget reached ({spent:.1f} of {budget.core_seconds:g})"
        ending = self._ending_scales()  # must all be spent
        if not ending or not all(self._scale_spent(name) for name in ending):
            return ""
        if all(name in budget.tasks and self._tasks_left(name) == 0 for name in ending):
            spent = ", ".join(f"{name}={budget.tasks[name]}" for name in ending)
            return f"task budget spent ({spent})"
        if budget.rounds is not None and self.mode == "async":
            return f"round budget reached ({budget.rounds} rounds)"
        return ""

    def _ending_scales(self) -> list[str]:
        """The scales whose task budgets end the run: promotion targets, or without
        promotions the walker scales."""
        return [p.target for p in self.spec.promotions] or [
            name for name, held in self.state.scales.items() if held.walkers]

    def _scale_spent(self, name: str) -> bool:
        """No more tasks of ``name`` may be recorded (its walkers, if any, are done)."""
        if self._tasks_left(name) == 0:
            return True
        held = self.state.scales[name]
        if held.walkers and self.mode == "async" and self.spec.budget.rounds is not None:
            return not any(self._walker_may_run(name, i) for i in range(len(held.walkers)))
        return False

    def _stuck_reason(self) -> str:
        """Why nothing can progress ('' if something still can): the campaign then
        stops and says so instead of waiting forever."""
        if self.failed_reason:
            return self.failed_reason
        for name, held in self.state.scales.items():
            if held.walkers and all(w.ended == "quarantined" for w in held.walkers):
                self.failed_reason = f"every walker of scale '{name}' was quarantined"
                return self.failed_reason
        return ""

    def _quarantine_reason(self) -> str:
        """At the end: a promotion that committed no results, or a scale that lost most
        of its tasks to quarantine, makes the run a failure, whatever ended it."""
        for promotion_state in self.state.promotions:
            held = self.state.scales[promotion_state.promotion.target]
            lost = held.tasks.get("quarantined", 0)
            if lost and not held.tasks.get("done", 0):
                return (f"promotion {promotion_state.name} committed no results (all {lost} "
                        f"tasks of scale '{held.scale.name}' were quarantined)")
        for name, held in self.state.scales.items():
            lost, done = held.tasks.get("quarantined", 0), held.tasks.get("done", 0)
            if lost > done:
                return f"most tasks of scale '{name}' were quarantined ({lost} of {lost + done})"
        return ""

    # -- async steering --------------------------------------------------------------
    def _steer_async(self) -> tuple[int, str]:
        self.stop_reason = ""
        self.idle_walkers: dict[str, collections.deque[int]] = {}
        for promotion_state in self.state.promotions:
            models = saved_models(self.store, promotion_state.name)
            if models:
                restore_learner(self.store, promotion_state, models[-1])
                if promotion_state.promotion.refits_features:
                    # the featurizer it was fitted with is not saved: refit both at once
                    # and let no selection use the restored model meanwhile
                    promotion_state.fitted = False
                    promotion_state.trained_on = 0
        self._refresh_params()
        self._resubmit_unfinished()
        for name, held in self.state.scales.items():  # resubmitted walkers are busy
            busy = {t.walker for t in self.in_flight.values() if t.scale == name}
            self.idle_walkers[name] = collections.deque(
                i for i in range(len(held.walkers)) if i not in busy)
        self.model_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="campaign-model")
        self.fits: dict[concurrent.futures.Future[Any], tuple[PromotionState, int]] = {}
        self.model_jobs: dict[concurrent.futures.Future[Any], tuple[str, PromotionState,
                                                                   Any]] = {}
        self.selecting: set[str] = set()
        self.exhausted_at: dict[str, int] = {}
        self.chosen_by_model: dict[str, tuple[int | None, int]] = {}
        self.selections = 0
        last_progress = time.monotonic()
        try:
            while True:
                if self.stop.stopping:
                    if self.stop.stop_now or not self.in_flight:
                        break
                elif not self.stop_reason:
                    self.stop_reason = self._budget_reason() or self._stuck_reason()
                    if not self.stop_reason:
                        for name in self.state.scales:
                            self._fill_walkers(name)
                        for promotion_state in self.state.promotions:
                            self._maybe_fit(promotion_state)
                            self._maybe_select(promotion_state)
                        if self._idle():
                            self.stop_reason = (self._stuck_reason()
                                                or self._exhausted_reason())
                if self.stop_reason:
                    if not (self.in_flight or self.fits or self.model_jobs):
                        break
                    for promotion_state in self.state.promotions:  # the curve goes on
                        if promotion_state.pending:  # (the final fit takes the rest)
                            self._maybe_fit(promotion_state)
                waitables = [*self.in_flight, *self.fits, *self.model_jobs]
                if waitables:
                    done, _ = concurrent.futures.wait(
                        waitables, timeout=POLL_SECONDS,
                        return_when=concurrent.futures.FIRST_COMPLETED)
                else:
                    done = set()
                    time.sleep(POLL_SECONDS / 10)
                for future in done:
                    if future in self.in_flight:
                        self._complete(future)
                    elif future in self.fits:
                        self._fit_returned(future)
                    elif future in self.model_jobs:
                        self._model_job_returned(future)
                for name, idle in self.idle_walkers.items():
                    if idle:
                        self._fill_walkers(name)
                self._expire_deadlines()
                if self.stop.stopping or self.stop_reason or self.buffer.due():
                    self._flush()
                self._record_processes()
                if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                    self._log_progress()
                    last_progress = time.monotonic()
                self._report_progress()
            self._flush()
        finally:
            self.model_thread.shutdown(wait=True, cancel_futures=True)
        if self.stop.stopping:
            return self._generations(), ""
        if self.failed_reason:
            self.stop_reason = self.failed_reason
        for promotion_state in self.state.promotions:
            if promotion_state.fitted:  # prospective score of the newest model
                seen = int(promotion_state.last_record.get("n_train",
                                                           promotion_state.trained_on))
                rows = np.asarray(promotion_state.train_rows[seen:], np.int64)
                values = np.asarray(promotion_state.train_y[seen:])
                self._score(promotion_state, promotion_state.generation, rows, values)
            try:
                self._fit_final(promotion_state, promotion_state.generation + 1)
            except FitAbandonedError:
                break
        self._log_progress()
        return self._generations(), self.stop_reason

    def _generations(self) -> int:
        return max((p.generation for p in self.state.promotions), default=0)

    def _idle(self) -> bool:
        return not (self.in_flight or self.fits or self.model_jobs or len(self.buffer))

    def _exhausted_reason(self) -> str:
        if self.state.promotions:
            return "nothing left to run (candidate pool exhausted)"
        return "nothing left to run"

    def _maybe_fit(self, promotion_state: PromotionState) -> None:
        """Async: refit when ``retrain_every`` new results arrived, or when results
        arrived and nothing of the target scale is still running."""
        if any(state is promotion_state for state, _ in self.fits.values()):
            return
        n = len(promotion_state.train_rows)
        new = n - promotion_state.trained_on
        if new <= 0:
            return
        if new < promotion_state.promotion.retrain_after and promotion_state.pending:
            return
        X, y = promotion_state.training_set()
        if promotion_state.fitted:  # prospective: the current model never saw these
            rows = np.asarray(promotion_state.train_rows[promotion_state.trained_on:], np.int64)
            values = np.asarray(promotion_state.train_y[promotion_state.trained_on:])
            job = self.model_thread.submit(_prospective, promotion_state.learner,
                                           promotion_state.features.values[rows], values)
            self.model_jobs[job] = ("score", promotion_state, promotion_state.generation)
        promotion_state.trained_on = n
        if promotion_state.promotion.refits_features:
            future = self._submit_refit(promotion_state)
        else:
            future = self.parsl.train_app(copy.deepcopy(promotion_state.learner), X, y)
        fault_point("during-fit")
        self.fits[future] = (promotion_state, n)

    def _fit_returned(self, future: concurrent.futures.Future[Any]) -> None:
        promotion_state, n_train = self.fits.pop(future)
        try:
            fitted = future.result()
        except Exception as error:  # a failing fit keeps the previous model
            logger.warning("%s: fit on %d points failed (%s: %s); keeping the previous model",
                           promotion_state.name, n_train, type(error).__name__, error)
            promotion_state.trained_on = min(promotion_state.trained_on, n_train - 1)
            return
        if "features" in fitted:
            job = self.model_thread.submit(self._prepare_install, promotion_state, fitted,
                                           self._source_rows(promotion_state, len(fitted["X"])))
        else:
            job = self.model_thread.submit(self._reference_error, promotion_state,
                                           fitted["learner"])
        self.model_jobs[job] = ("install", promotion_state, (fitted, n_train))

    def _source_rows(self, promotion_state: PromotionState, start: int) -> np.ndarray:
        """Steering thread: a copy of the featurized source rows from ``start`` on."""
        source = self.state.scales[promotion_state.promotion.source]
        if source.x is None or promotion_state.featurized <= start:
            return np.zeros((0, 0))
        return source.x.values[start:promotion_state.featurized].copy()

    def _prepare_install(self, promotion_state: PromotionState, fitted: dict[str, Any],
                         more_rows: np.ndarray) -> dict[str, Any]:
        """Model thread, refittable features: the new model's reference error, and the
        refitted features of the source rows featurized since the fit was submitted
        (appended to ``fitted["X"]``), so the install on the steering thread is a swap."""
        from campaign.planner import featurize

        more = featurize(promotion_state.promotion, more_rows, fitted["features"])
        if len(more):
            fitted["X"] = np.concatenate([np.asarray(fitted["X"], np.float64), more])
        return self._reference_error(promotion_state, fitted["learner"], fitted["features"])

    def _model_job_returned(self, future: concurrent.futures.Future[Any]) -> None:
        kind, promotion_state, payload = self.model_jobs.pop(future)
        result = future.result()  # a failing selection or score is a bug: let it surface
        if kind == "select":
            self.selecting.discard(promotion_state.name)
            self._selected(promotion_state, result, payload)
        elif kind == "score":
            self._record_calibration(promotion_state, payload, result)
        elif kind == "monitor":
            self._segment_judged(payload, result)
        elif kind == "rules":
            if result and not self.stop_reason:
                self.ledger.set_fact("stop_rule", self.rule_reasons)
                self.stop_reason = result
        elif kind == "install":
            fitted, n_train = payload
            if "features" in fitted:  # the featurizer, its features and the model at once
                self._swap_features(promotion_state, fitted)
                result = {**result, "features_refit_on": fitted["features_fitted_on"],
                          "features_seconds": fitted["features_seconds"]}
            promotion_state.learner = fitted["learner"]
            promotion_state.fitted = True
            promotion_state.generation += 1
            path = self.store.save_model(promotion_state.name, promotion_state.generation,
                                         promotion_state.learner.state_dict(), n_train,
                                         type(promotion_state.learner).__name__)
            record = {"policy": type(promotion_state.promotion.acquisition).__name__,
                      "n_train": int(n_train), "fit_seconds": fitted["seconds"],
                      "model": path, "fit_started": fitted.get("started"),
                      "fit_ended": fitted.get("ended"), **result}
            promotion_state.last_record = record
            self.ledger.record_round(promotion_state.generation, promotion_state.name, record)
            logger.info("%s: model %d fitted on %d points%s", promotion_state.name,
                        promotion_state.generation, n_train, _error_text(record))
            if self.spec.stopping:
                job = self.model_thread.submit(self._rules_reason, self._rule_inputs(None))
                self.model_jobs[job] = ("rules", promotion_state, None)
            if any(s.refresh_params is not None for s in self.spec.scales):
                self._refresh_params()

    def _maybe_select(self, promotion_state: PromotionState) -> None:
        """Async: choose more source rows when the target scale has free slots."""
        promotion = promotion_state.promotion
        if promotion_state.name in self.selecting:
            return
        source = self.state.scales[promotion.source]
        if source.committed_rows == 0 or self.exhausted_at.get(
                promotion_state.name) == source.committed_rows:
            return
        left = self._tasks_left(promotion.target)
        free = self.max_in_flight[promotion.target] - self.in_flight_by_scale[promotion.target]
        if left == 0 or free <= 0:
            return
        if not promotion_state.fitted:
            # the seed design, once: then wait for the first model (``keep_busy``: go on
            # choosing at random into free slots until it arrives)
            fitting = any(state is promotion_state for state, _ in self.fits.values())
            if promotion_state.pending or promotion_state.train_rows or fitting:
                if not promotion.keep_busy:
                    return
                k = min(promotion.batch_size, free)
            else:
                # from a pool that every walker has added to, not the first rows to arrive
                walkers = len(source.walkers)
                if source.tasks.get("done", 0) < walkers or (
                        source.committed_rows < promotion.seed_design_size):
                    return
                k = promotion.seed_design_size
        else:
            # one model chooses at most one batch. Measured on the demo: allowing a
            # batch plus one queue (4) more per model spent the budget on stale picks
            # (reference RMSE 0.54 vs 0.37 at 120 fine sims, same coarse pool) when
            # simulations are faster than fits; slower simulations keep the queue full
            # while the next fit runs. ``keep_busy`` chooses again into every free slot
            allowed = promotion.batch_size
            chosen = self.chosen_by_model.get(promotion_state.name, (None, 0))
            used = chosen[1] if chosen[0] == promotion_state.generation else 0
            # a fit running, or a fitted model being installed (its reference error, or
            # refitted features, on the model thread): a new model is on its way
            fitting = any(state is promotion_state for state, _ in self.fits.values()) or any(
                kind == "install" and state is promotion_state
                for kind, state, _ in self.model_jobs.values())
            if used >= allowed and not promotion_state.pending and not fitting:
                # its whole batch was quarantined: no result will bring a new model
                used = 0
                self.chosen_by_model[promotion_state.name] = (promotion_state.generation, 0)
            if promotion.keep_busy:
                k = min(promotion.batch_size, free)
            elif used >= allowed:
                return
            else:
                k = min(promotion.batch_size, free, allowed - used)
        if left is not None:
            k = min(k, left)
        index = self.state.promotions.index(promotion_state)
        rng = np.random.default_rng([self.spec.seed, index, self.selections, 7919])
        self.selections += 1
        request = snapshot(self.state, promotion_state, k, rng, use_model=promotion_state.fitted)
        job = self.model_thread.submit(select_batch, request)
        self.model_jobs[job] = ("select", promotion_state,
                                (source.committed_rows, promotion_state.features_version))
        self.selecting.add(promotion_state.name)

    def _selected(self, promotion_state: PromotionState, selection: Selection,
                  snapshot_of: tuple[int, int]) -> None:
        committed_at_snapshot, features_version = snapshot_of
        if features_version != promotion_state.features_version:
            # refitted features were swapped in since the snapshot: its new features are
            # in the old space; featurize those rows with the current featurizer
            self._featurize_all(promotion_state, upto=committed_at_snapshot)
        elif committed_at_snapshot > promotion_state.featurized:
            promotion_state.add_features(selection.new_features,
                                         committed_at_snapshot - promotion_state.featurized)
        if len(selection.chosen) == 0:
            self.exhausted_at[promotion_state.name] = committed_at_snapshot
            return
        if self.stop.stopping or self.stop_reason:
            return
        left = self._tasks_left(promotion_state.promotion.target)
        chosen = [int(r) for r in selection.chosen][: left if left is not None else None]
        inputs = [mapped_input(promotion_state.promotion, self.state, row) for row in chosen]
        round_index = promotion_state.generation if promotion_state.fitted else 0
        previous = self.chosen_by_model.get(promotion_state.name, (None, 0))
        used = previous[1] if previous[0] == round_index else 0
        self.chosen_by_model[promotion_state.name] = (round_index, used + len(chosen))
        self._submit(promotion_state.promotion.target, [round_index] * len(chosen), inputs,
                     chosen, [None] * len(chosen))

    def _rule_inputs(self, before_round: int | None) -> list[tuple[Any, np.ndarray]]:
        """Steering thread: per promotion, its model and the features of its candidates
        (a copy), for :meth:`_rules_reason` to use on another thread."""
        inputs = []
        for promotion_state in self.state.promotions:
            candidates = self.state.candidates(promotion_state, before_round=before_round)
            features = (promotion_state.features.values[candidates]
                        if promotion_state.features is not None and len(candidates)
                        else np.zeros((0, 0)))
            inputs.append((promotion_state.learner if promotion_state.fitted else None,
                           features))
        return inputs

    def _rules_reason(self, inputs: list[tuple[Any, np.ndarray]],
                      round_index: int | None = None) -> str:
        """The reason if, for every promotion, one of the spec's stopping rules fires."""
        from learners.stopping import StoppingState, first_to_fire

        done = {name: held.tasks.get("done", 0) for name, held in self.state.scales.items()}
        budget: dict[str, int | None] = {s.name: self.spec.budget.tasks.get(s.name)
                                         for s in self.spec.scales}
        reasons = []
        for index, promotion_state in enumerate(self.state.promotions or [None]):
            posterior, heldout = None, []
            if promotion_state is not None:
                heldout = [r["prospective_rmse"] for r in self.ledger.rounds(
                    promotion_state.name) if r.get("prospective_rmse") is not None] \
                    if self.mode == "rounds" else [
                    r["prospective_rmse"] for r in [promotion_state.last_record]
                    if r.get("prospective_rmse") is not None]
                learner, features = inputs[index]
                if learner is not None and len(features):
                    posterior = learner.posterior(features)
            rounds = round_index - 1 if round_index is not None else (
                promotion_state.generation if promotion_state is not None else 0)
            check = StoppingState(round=rounds, n_simulations=done, budget=budget,
                                  posterior=posterior, heldout_rmse=heldout,
                                  elapsed_seconds=self._elapsed())
            fired = first_to_fire(self.spec.stopping, check)
            if fired is None:
                return ""
            reasons.append(f"{type(fired[0]).__name__}: {fired[1]}")
        self.rule_reasons = reasons  # the steering thread records them in the ledger
        return "stopping rule " + "; ".join(reasons)

    # -- rounds steering -------------------------------------------------------------
    def _steer_rounds(self) -> tuple[int, str]:
        self.stop_reason = ""
        round_index = self._first_round()
        self._restore_round_learners(round_index)
        carried = self._resubmit_unfinished()
        stop_reason = ""
        while True:
            begun = self._round_begun(round_index)
            if self.stop.stopping:
                break
            if not begun and not carried:
                stop_reason = self._rounds_stop_reason(round_index)
                if stop_reason:
                    break
            try:
                self._plan_round(round_index)
            except FitAbandonedError:
                break
            if not self.stop.stopping:
                self.ledger.mark_planned(round_index)
            if not self.in_flight and not begun and not carried and not self.stop.stopping:
                stop_reason = "nothing left to run (candidate pool exhausted)"
                break
            carried = 0
            self._wait_round()
            self._score_round(round_index)
            self._log_round(round_index)
            self._report_progress()
            if self.stop.stopping:
                break
            round_index += 1
        if not self.stop.stopping:
            if self.failed_reason:
                stop_reason = self.failed_reason
            for promotion_state in self.state.promotions:
                try:
                    self._fit_final(promotion_state, round_index)
                except FitAbandonedError:
                    break
        return round_index, stop_reason

    def _round_begun(self, round_index: int) -> bool:
        return any(self.ledger.has_tasks(name, round_index) for name in self.state.scales)

    def _first_round(self) -> int:
        """The round to continue with: an unfinished or not fully planned one, else next."""
        last = self.ledger.last_round()
        if last is None:
            return 0
        if not self.ledger.planned(last) or self.ledger.tasks(status="submitted",
                                                               round_index=last):
            return last
        return last + 1

    def _restore_round_learners(self, round_index: int) -> None:
        """Warm-start each learner from the newest model saved before ``round_index``, or
        from round ``round_index``'s own model if that round's batch was already chosen."""
        for promotion_state in self.state.promotions:
            chosen = self.ledger.has_tasks(promotion_state.promotion.target, round_index)
            usable = [r for r in saved_models(self.store, promotion_state.name)
                      if r < round_index or (chosen and r == round_index)]
            if usable:
                restore_learner(self.store, promotion_state, usable[-1])
                if promotion_state.promotion.refits_features:
                    self._restore_round_features(promotion_state, usable[-1])

    def _restore_round_features(self, promotion_state: PromotionState, model: int) -> None:
        """Rounds mode, refittable features: the featurizer model ``model`` was fitted
        with is the spec's refitted on source rows of rounds before ``model``; rebuild it
        (deterministic) with the features it gives."""
        from campaign.task import refit_features

        source = self.state.scales[promotion_state.promotion.source]
        if source.x is None or source.row_round is None:
            return
        n = source.committed_rows
        fit_rows = np.flatnonzero(source.row_round.values[:n] < model)
        if len(fit_rows) < 2:
            return
        featurizer, X = refit_features(promotion_state.promotion.features,
                                       source.x.values[:n], fit_rows)
        promotion_state.replace_features(featurizer, X)

    def _rounds_stop_reason(self, round_index: int) -> str:
        budget = self.spec.budget
        if self.failed_reason or self._stuck_reason():
            return self.failed_reason
        if budget.rounds is not None and round_index >= budget.rounds:
            return f"round budget reached ({budget.rounds} rounds)"
        reason = self._budget_reason()
        if reason:
            return reason
        return self._rounds_rule_stop(round_index)

    def _rounds_rule_stop(self, round_index: int) -> str:
        if not self.spec.stopping or round_index == 0:
            return ""
        for promotion_state in self.state.promotions:
            self._featurize_all(promotion_state)
        reason = self._rules_reason(self._rule_inputs(round_index), round_index)
        if reason:
            self.ledger.set_fact("stop_rule", self.rule_reasons)
        return reason

    def _featurize_all(self, promotion_state: PromotionState, upto: int | None = None) -> None:
        """Featurize the committed source rows not featurized yet (up to row ``upto``)."""
        source = self.state.scales[promotion_state.promotion.source]
        end = source.committed_rows if upto is None else min(upto, source.committed_rows)
        if source.x is None or promotion_state.featurized >= end:
            return
        from campaign.planner import featurize

        new = featurize(promotion_state.promotion,
                        source.x.values[promotion_state.featurized:end],
                        promotion_state.featurizer)
        promotion_state.add_features(new, end - promotion_state.featurized)

    def _plan_round(self, round_index: int) -> None:
        """Submit the parts of round ``round_index`` that have no tasks yet."""
        self._refresh_params()
        for name, held in self.state.scales.items():
            if held.walkers and not self.stop.stopping and not self.ledger.has_tasks(
                    name, round_index):
                left = self._tasks_left(name)
                running = [i for i, w in enumerate(held.walkers) if w.ended is None]
                count = len(running) if left is None else min(left, len(running))
                chosen = running[:count]
                self._submit(name, [round_index] * count, [held.walkers[w].position.copy()
                                                           for w in chosen], [-1] * count, chosen)
        for promotion_state in self.state.promotions:
            if not self.stop.stopping and not self.ledger.has_tasks(
                    promotion_state.promotion.target, round_index):
                self._promote_round(promotion_state, round_index)

    def _promote_round(self, promotion_state: PromotionState, round_index: int) -> None:
        promotion = promotion_state.promotion
        left = self._tasks_left(promotion.target)
        if self.state.scales[promotion.source].committed_rows == 0 or left == 0:
            return
        X, y = promotion_state.training_set(before_round=round_index)
        k = promotion.batch_size if left is None else min(left, promotion.batch_size)
        record: dict[str, Any] = {}
        if len(y) == 0:
            k = min(promotion.seed_design_size, k if left is None else left)
            record.update(n_train=0)
        else:
            fitted = self._fit_now(promotion_state, X, y, before_round=round_index)
            if self.stop.stopping:  # asked to stop while fitting: submit nothing new
                return
            self._install_model(promotion_state, fitted, round_index, len(y), record)
        rng = np.random.default_rng([self.spec.seed, round_index, 7919])
        selection = select_batch(snapshot(self.state, promotion_state, k, rng,
                                          use_model=len(y) > 0, before_round=round_index))
        source = self.state.scales[promotion.source]
        if source.committed_rows > promotion_state.featurized:
            promotion_state.add_features(selection.new_features,
                                         source.committed_rows - promotion_state.featurized)
        record.update(selection.record)
        chosen = [int(r) for r in selection.chosen]
        record["chosen_rows"] = chosen
        promotion_state.last_record = record
        self.ledger.record_round(round_index, promotion.name, record)
        inputs = [mapped_input(promotion, self.state, row) for row in chosen]
        self._submit(promotion.target, [round_index] * len(chosen), inputs, chosen,
                     [None] * len(chosen))

    def _wait_round(self) -> None:
        """Ingest until the round's tasks (and their retries) are all in, committing in
        task order; while stopping, commit what is ready at once."""
        while self.in_flight and not self.stop.stop_now:
            done, _ = concurrent.futures.wait(
                list(self.in_flight), timeout=POLL_SECONDS,
                return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                self._complete(future)
            self._expire_deadlines()
            if self.stop.stopping or self.buffer.rows >= COMMIT_EVERY_ROWS:
                self._flush()
            self._record_processes()
            self._report_progress()
        self._flush()

    def _score_round(self, round_index: int) -> None:
        """Error and calibration of the model that chose this round's points on those
        points, measured before it is trained on them: an honest, prospective estimate."""
        for promotion_state in self.state.promotions:
            if not promotion_state.fitted or promotion_state.generation != round_index:
                continue
            rounds = np.asarray(promotion_state.train_round, dtype=np.int64)
            new = np.flatnonzero(rounds == round_index)
            if len(new) == 0:
                continue
            rows = np.asarray(promotion_state.train_rows, np.int64)[new]
            values = np.asarray(promotion_state.train_y)[new]
            self._score(promotion_state, round_index, rows, values)

    # -- progress --------------------------------------------------------------------
    def progress_snapshot(self) -> dict[str, Any]:
        """Where the running campaign stands, as plain JSON-able values (steering thread).

        Returns ``{"elapsed_seconds", "mode", "scales", "promotions", "budget_used",
        "seconds_left", "stop_reason"}``:

        * ``scales``: per scale ``{"name", "committed_rows", "tasks", "budget",
          "monitor"}``; ``tasks`` counts ``submitted`` (every task recorded, whatever
          became of it), ``running`` (attempts in flight: queued or running on the
          executor), ``done`` and ``quarantined`` (outcomes committed), ``failed``
          (failed attempts retried by this driver); ``budget`` is the scale's task
          budget (None: none); ``monitor`` its segment monitor's ``{"restart", "stop"}``
          counts (None: not monitored).
        * ``promotions``: per promotion ``{"name", "generation", "n_train",
          "fit_seconds", "reference_rmse", "prospective_rmse", "recorded", "scored"}``
          from its newest round record (``generation``: the newest model's index, None
          before the first; ``recorded``: whether it has a record at all); ``scored``
          is the newest prospectively scored model's ``{"model", "n", "rmse",
          "coverage_50", "coverage_90"}`` (None: none yet).
        * ``budget_used``: ``{"fraction", "what"}`` of the most used budget that ends
          the run (None: no such budget); ``seconds_left``: the time left that fraction
          implies at the pace so far (None: nothing used yet).
        * ``stop_reason``: why the campaign stops or stopped (None while it runs on).
        """
        scales = []
        for name, held in self.state.scales.items():
            monitor = None
            if held.monitor is not None:
                actions = held.monitor.actions
                monitor = {"restart": int(actions["restart"]), "stop": int(actions["stop"])}
            scales.append({
                "name": name, "committed_rows": int(held.committed_rows),
                "tasks": {"submitted": int(held.tasks_recorded),
                          "running": int(self.in_flight_by_scale[name]),
                          "done": int(held.tasks.get("done", 0)),
                          "failed": int(self.failed_attempts[name]),
                          "quarantined": int(held.tasks.get("quarantined", 0))},
                "budget": self.spec.budget.tasks.get(name), "monitor": monitor})
        promotions = []
        for promotion_state in self.state.promotions:
            record = promotion_state.last_record
            promotions.append({
                "name": promotion_state.name,
                "generation": promotion_state.generation if promotion_state.fitted else None,
                "n_train": _number(record.get("n_train"), int),
                **{key: _number(record.get(key), float)
                   for key in ("fit_seconds", "reference_rmse", "prospective_rmse")},
                "recorded": bool(record),
                "scored": self.scores.get(promotion_state.name)})
        elapsed = self._elapsed()
        used = self._budget_used()
        seconds_left = None
        if used is not None and used[0] > 0:
            seconds_left = elapsed * (1.0 - used[0]) / used[0]
        stop_reason = self.stop_reason or None
        if self.stop.stopping:
            stop_reason = f"interrupted by {self.stop.signal_name}"
        return {"elapsed_seconds": elapsed, "mode": self.mode, "scales": scales,
                "promotions": promotions,
                "budget_used": None if used is None else {"fraction": float(used[0]),
                                                          "what": used[1]},
                "seconds_left": seconds_left, "stop_reason": stop_reason}

    def _report_progress(self, *, final: bool = False) -> None:
        """Give ``on_progress`` a snapshot, at most every ``LIVE_SECONDS`` unless ``final``."""
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not final and now - self.last_live < LIVE_SECONDS:
            return
        self.last_live = now
        try:
            self.on_progress(self.progress_snapshot())
        except Exception as error:  # a display must never end a campaign
            logger.warning("progress callback %r failed (%s: %s); not calling it again",
                           self.on_progress, type(error).__name__, error)
            self.on_progress = None

    def _budget_used(self) -> tuple[float, str] | None:
        """The most used of the budgets that end the run: (fraction, which)."""
        budget = self.spec.budget
        used: list[tuple[float, str]] = []
        ending = self._ending_scales()
        for name in ending:
            if name in budget.tasks:
                done = self.state.scales[name].tasks_recorded
                used.append((min(1.0, done / budget.tasks[name]),
                             f"{name} {done}/{budget.tasks[name]} tasks"))
        if budget.wall_time is not None:
            used.append((min(1.0, self._elapsed() / budget.wall_time),
                         f"wall time of {budget.wall_time:g} s"))
        if budget.core_seconds is not None:
            spent = sum(held.core_seconds for held in self.state.scales.values())
            used.append((min(1.0, spent / budget.core_seconds),
                         f"{spent:.0f} of {budget.core_seconds:g} core-seconds"))
        return max(used) if used else None

    def _log_round(self, round_index: int) -> None:
        logger.info("round %d | %s", round_index,
                    " | ".join(_progress_parts(self.progress_snapshot())))

    def _log_progress(self) -> None:
        snapshot = self.progress_snapshot()
        logger.info("%.0f s | %s", snapshot["elapsed_seconds"],
                    " | ".join(_progress_parts(snapshot)))


def _progress_parts(snapshot: dict[str, Any]) -> list[str]:
    """One grep-able progress line's parts: per scale rows, tasks (of the budget),
    running and quarantined; per promotion the newest model's errors; the budget used
    and the time left it implies."""
    parts = []
    for scale in snapshot["scales"]:
        tasks, limit, extra = scale["tasks"], scale["budget"], ""
        if tasks["quarantined"]:
            extra += f", {tasks['quarantined']} quarantined"
        if scale["monitor"] is not None:
            actions = scale["monitor"]
            extra += f", monitor: {actions['restart']} restarts, {actions['stop']} stops"
        parts.append(f"{scale['name']} {scale['committed_rows']} rows ({tasks['submitted']}"
                     f"{'' if limit is None else f'/{limit}'} tasks, "
                     f"{tasks['running']} running{extra})")
    for promotion in snapshot["promotions"]:
        if promotion["recorded"]:
            parts.append(f"{promotion['name']}{_error_text(promotion)}")
    used, left = snapshot["budget_used"], snapshot["seconds_left"]
    if used is not None and left is not None:
        parts.append(f"budget {100 * used['fraction']:.0f}% used ({used['what']}), "
                     f"~{left:.0f} s left")
    return parts


def _warmed(name: str, future: concurrent.futures.Future[Any]) -> None:
    try:
        result = future.result()
    except Exception as error:  # the train executor went away: the real fit will say so
        logger.debug("%s: warm-up fit did not run (%s)", name, error)
        return
    if result["problem"]:
        logger.debug("%s: warm-up fit on random targets failed (%s); no harm done", name,
                    result["problem"])
    else:
        logger.debug("%s: warm-up fit took %.2f s (ended %.3f)", name, result["seconds"],
                     result["ended"])


def _number(value: Any, kind: type) -> Any:
    """``value`` as a plain int or float (JSON-able), None if missing."""
    return None if value is None else kind(value)


def _score_of(record: dict[str, Any], model_index: int) -> dict[str, Any]:
    """The prospective score in a round record that has a ``calibration`` entry."""
    calibration = record["calibration"]
    return {"model": int(model_index), "n": int(calibration["n"]),
            "rmse": float(calibration["rmse"]),
            "coverage_50": float(calibration["coverage_50"]),
            "coverage_90": float(calibration["coverage_90"])}


def _posterior_std(learner: Any) -> Any:
    """Model thread: the posterior standard deviation of ``learner`` at features."""
    def std(features: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(learner.posterior(features).variance, 0.0))
    return std


def _columns_text(columns: dict[str, tuple[Any, tuple[int, ...]]]) -> str:
    return "{" + ", ".join(f"{name}: {dtype}{list(shape)}"
                           for name, (dtype, shape) in sorted(columns.items())) + "}"


def _prospective(learner: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Calibration of ``learner`` on points it was not trained on (model thread in async
    mode). A learner of structured observations (``observation_posterior``, e.g. the
    gradient windows of ``learners.GradientGP``) is scored on what they measured."""
    if hasattr(learner, "observation_posterior"):
        posterior, observed = learner.observation_posterior(X, y)
        return calibration_metrics(posterior, observed)
    return calibration_metrics(learner.posterior(X), y)


def _error_text(record: dict[str, Any]) -> str:
    text = ""
    if record.get("fit_seconds") is not None:
        text += f" fit {record['fit_seconds']:.2f} s"
    if record.get("reference_rmse") is not None:
        text += f" reference rmse {record['reference_rmse']:.3g}"
    if record.get("prospective_rmse") is not None:
        text += f" prospective rmse {record['prospective_rmse']:.3g}"
    return text
