"""What both steerers share: launching tasks and the reactions to what comes back.

Owns: recording a batch in the ledger (one transaction) before submitting it through
the dispatcher; the reactions to a simulation that finished, expired or was lost
(checked against its scale, buffered for commit, retried, resubmitted or quarantined
by the retry policy); the walkers (a returned segment, a monitor's judgement); the
commit buffer, whose commits the state follows; and scale parameters refreshed from
data. The async and rounds steerers (``campaign.steer_async``, ``campaign.steer_rounds``)
add their own reactions and loop.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from campaign.dispatcher import Dispatcher
from campaign.events import Event, SegmentJudged, TaskExpired, TaskFinished, TaskLost
from campaign.faults import fault_point
from campaign.ingest import CommitBuffer, Completion, SubmittedTask
from campaign.ledger import Attempt, Ledger, PlannedTask, TaskOutcome
from campaign.models import ModelKeeper
from campaign.retry import LOST_STREAK, RetryPolicy, task_seed
from campaign.signals import StopRequest
from campaign.spec import CampaignSpec
from campaign.state import CampaignState, learned_values
from campaign.store import Rows, Store
from campaign.task import BadResultError

logger = logging.getLogger(__name__)

FAILURE_STREAK = 20  # quarantined tasks in a row that stop a campaign


class Steerer:
    """The reactions both modes share; a subclass adds its loop (:meth:`steer`)."""

    def __init__(self, spec: CampaignSpec, state: CampaignState, store: Store, ledger: Ledger,
                 dispatcher: Dispatcher, keeper: ModelKeeper, policy: RetryPolicy,
                 stop: StopRequest, elapsed: Callable[[], float]) -> None:
        self.spec, self.state, self.store, self.ledger = spec, state, store, ledger
        self.dispatcher, self.keeper, self.policy = dispatcher, keeper, policy
        self.stop, self.elapsed = stop, elapsed
        self.buffer = CommitBuffer(store, self.on_commit, ordered=spec.mode == "rounds")
        self.refreshed_params: dict[str, dict[str, Any]] = {}
        self.reactions: dict[type, Callable[[Any], None]] = {
            TaskFinished: self.task_finished, TaskExpired: self.task_expired,
            TaskLost: self.task_lost, SegmentJudged: self.segment_judged}

    def steer(self) -> tuple[int, str]:
        """Run to the end: (rounds or models, stop reason)."""
        raise NotImplementedError

    def react(self, events: list[Event]) -> None:
        for event in events:
            self.reactions[type(event)](event)

    # -- launching -------------------------------------------------------------------
    def submit(self, scale_name: str, rounds: list[int], inputs: list[np.ndarray],
               parents: list[int], walkers: list[int | None], *, chosen_by: int = -1,
               staleness: int = -1) -> list[SubmittedTask]:
        """Record a batch in the ledger (one transaction), then submit it. ``rounds``
        is each task's round (async: a walker's segment number, or the generation of
        the model that chose a promoted row, ``chosen_by``, which had not seen
        ``staleness`` committed results of the target)."""
        if not inputs:
            return []
        planned = [PlannedTask(scale_name, round_index, parent,
                               task_input.ravel().tolist() if walker is not None else [],
                               walker)
                   for round_index, task_input, parent, walker in zip(
                       rounds, inputs, parents, walkers, strict=True)]
        ids = self.ledger.plan(planned, self.seed_for)
        fault_point("after-plan")
        held = self.state.scales[scale_name]
        held.tasks["submitted"] += len(ids)
        held.rounds_with_tasks.update(rounds)
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
                                 1, walker, self.seed_for(task_id, 1),
                                 chosen_by=chosen_by, staleness=staleness)
            self.launch(task)
            tasks.append(task)
        return tasks

    def seed_for(self, task_id: int, attempt: int) -> int:
        return task_seed(self.spec.seed, task_id, attempt)

    def launch(self, task: SubmittedTask) -> None:
        scale = self.spec.scale(task.scale)
        self.dispatcher.launch(task, {**scale.params,
                                      **self.refreshed_params.get(scale.name, {})})
        self.state.scales[task.scale].in_flight += 1

    def resubmit(self, unfinished: list[SubmittedTask]) -> int:
        """Submit again every task recorded but never committed (same id and seed)."""
        for task in unfinished:
            self.launch(task)
        if unfinished:
            logger.info("resuming: %d unfinished tasks submitted again", len(unfinished))
        return len(unfinished)

    # -- completions -----------------------------------------------------------------
    def task_finished(self, event: TaskFinished) -> None:
        """One attempt returned: buffer its rows, or let the policy retry it."""
        completion = event.completion
        task = completion.task
        held = self.state.scales[task.scale]
        held.in_flight -= 1
        held.lost_streak = 0
        held.lost_since_result.clear()
        self._count_compute(completion)
        if completion.problem is None:
            self._check_against_scale(completion)
        if completion.problem is not None:
            self.failed(completion, completion.problem)
            return
        held.failure_streak = 0
        assert completion.rows is not None
        if self.state.promotion_into(task.scale) is not None:
            n = len(completion.rows)
            completion.rows.meta["model"] = np.full(n, task.chosen_by, np.int64)
            completion.rows.meta["staleness"] = np.full(n, task.staleness, np.int64)
        if task.walker is not None and held.monitor is not None:
            self._judge_segment(completion)
            return
        self.buffer.add(task.scale, completion.rows, completion.outcome("done"))
        if task.walker is not None:
            self.walker_returned(task, completion.rows.x[-1])

    def task_expired(self, event: TaskExpired) -> None:
        task = event.task
        self.state.scales[task.scale].in_flight -= 1
        self.failed(Completion(task, None, None),
                    f"DeadlineExceeded: no result {event.ran_seconds:.1f} s after the attempt "
                    f"started (engine-side deadline of scale '{task.scale}')")

    def task_lost(self, event: TaskLost) -> None:
        """The infrastructure lost an attempt: resubmitted with the same seed, no retry
        used, recorded with outcome ``lost``. An executor that can start nothing, or
        ``LOST_STREAK`` repeat losses (a task lost again) with no result of the scale
        between them, stop the campaign (nothing quarantined: the tasks stay
        ``submitted`` for a resume, on another site if need be). Only repeats count: a
        block that ends at its walltime loses every attempt running on it at once, and
        their resubmissions run on the next block."""
        task = event.task
        held = self.state.scales[task.scale]
        held.in_flight -= 1
        held.lost_attempts += 1
        if task.task_id in held.lost_since_result:
            held.lost_streak += 1
        held.lost_since_result.add(task.task_id)
        if event.fatal or held.lost_streak >= LOST_STREAK:
            self.state.status.fail(f"scale '{task.scale}' cannot run tasks on this site: "
                                   f"{event.problem[:500]}")
            return
        if self.stop.stopping:
            return
        decision = self.policy.after_loss(task, event.problem)
        lost = Attempt(task.task_id, task.attempt, task.submitted, None, None, None, "lost",
                       event.problem[:2000])
        attempt = self.ledger.retry(task.task_id, task.seed, event.problem[:2000], lost)
        logger.warning("task %d (%s) attempt %d lost to the infrastructure (%s); "
                       "resubmitted, no retry used", task.task_id, task.scale, task.attempt,
                       event.problem[:300])
        self.launch(_again(task, attempt, decision.seed, task.failures))

    def failed(self, completion: Completion, problem: str) -> None:
        """Retry with a new seed while retries are left, else quarantine. While
        stopping, the task stays 'submitted' for resume."""
        task = completion.task
        if self.stop.stopping:
            return
        decision = self.policy.after_failure(task, problem,
                                             deterministic=completion.deterministic)
        if decision.action == "retry":
            failed = Attempt(task.task_id, task.attempt, task.submitted, completion.started,
                             completion.ended, completion.worker, "failed", problem[:2000])
            attempt = self.ledger.retry(task.task_id, decision.seed, problem[:2000], failed)
            self.state.scales[task.scale].failed_attempts += 1
            logger.warning("task %d (%s) attempt %d failed: %s; retrying", task.task_id,
                           task.scale, task.attempt, problem)
            self.launch(_again(task, attempt, decision.seed, task.failures + 1))
            return
        logger.warning("task %d (%s) quarantined %s", task.task_id, task.scale,
                       decision.reason)
        self.buffer.add(task.scale, None,
                        completion.outcome("quarantined", decision.reason[:2000]))
        held = self.state.scales[task.scale]
        held.failure_streak += 1
        if task.walker is not None and held.walkers[task.walker].latest_task == task.task_id:
            held.walkers[task.walker].ended = "quarantined"
        if held.failure_streak >= FAILURE_STREAK:
            self.state.status.fail(f"scale '{task.scale}' failed {held.failure_streak} "
                                   f"tasks in a row (last: {problem[:300]})")

    def _check_against_scale(self, completion: Completion) -> None:
        """A promotion target's result must hold the learned quantity, one number per
        row, and every result the columns (dtype, row shape) of the scale's earlier
        rows: otherwise the problem is deterministic. A quantity the target does not
        return is the spec's mistake: it ends the run."""
        task, rows = completion.task, completion.rows
        assert rows is not None
        held = self.state.scales[task.scale]
        promotion_state = self.state.promotion_into(task.scale)
        if promotion_state is not None:
            try:
                promotion_state.quantity_of(rows.y)
            except BadResultError as error:
                completion.problem, completion.deterministic = f"bad result: {error}", True
                self.state.status.fail(str(error) + _did_you_mean(
                    promotion_state.promotion.quantity, list(rows.y)))
                return
            try:
                learned_values(promotion_state, rows.y)
            except BadResultError as error:
                completion.problem, completion.deterministic = f"bad result: {error}", True
                return
        columns = {"x": (rows.x.dtype, rows.x.shape[1:])}
        columns.update({f"y/{k}": (v.dtype, v.shape[1:]) for k, v in rows.y.items()})
        if held.columns is None:  # the scale's first result (resume read the store's)
            held.columns = columns
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

    # -- commits ---------------------------------------------------------------------
    def on_commit(self, scale: str, rows: Rows | None, outcomes: list[TaskOutcome]) -> None:
        """The store just committed ``rows``: the in-memory state follows it."""
        if rows is None:
            self.state.committed(scale, np.zeros((0, 0)), {}, {}, outcomes)
        else:
            self.state.committed(scale, rows.x, rows.y, rows.meta, outcomes)

    def flush(self) -> None:
        self.buffer.flush()

    # -- walkers ---------------------------------------------------------------------
    def walker_returned(self, task: SubmittedTask, position: np.ndarray) -> bool:
        """A walker's segment returned: it goes on from ``position``. False for an
        older segment (resubmitted on resume): its successor is already out."""
        walker = self.state.scales[task.scale].walkers[task.walker]
        if walker.latest_task != task.task_id:
            return False
        walker.position = np.asarray(position, dtype=np.float64).reshape(walker.position.shape)
        return True

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
            self.segment_judged(SegmentJudged(completion, held.monitor.judge(request)))
            return
        self.dispatcher.on_model_thread(held.monitor.judge, (request,),
                                        lambda judged: SegmentJudged(completion, judged))

    def segment_judged(self, event: SegmentJudged) -> None:
        """Apply a monitor's decision: the rows carry it in ``meta``; the walker goes on
        from its last frame or a restart frame, or stops."""
        completion, judgement = event.completion, event.judgement
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
        self.walker_returned(task, start)

    # -- parameters from data --------------------------------------------------------
    def refresh_params(self) -> None:
        """Let scales with a ``refresh_params`` hook update their parameters from data
        (the hook reads the whole store: only campaigns that ask for it pay)."""
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


def _again(task: SubmittedTask, attempt: int, seed: int | None,
           failures: int) -> SubmittedTask:
    """The next attempt of ``task``."""
    return SubmittedTask(task.task_id, task.scale, task.round_index, task.parent_row, 0.0,
                         task.task_input, attempt, task.walker,
                         task.seed if seed is None else seed, failures=failures,
                         chosen_by=task.chosen_by, staleness=task.staleness)


def _posterior_std(learner: Any) -> Any:
    """Model thread: the posterior standard deviation of ``learner`` at features."""
    def std(features: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(learner.posterior(features).variance, 0.0))
    return std


def _did_you_mean(wanted: str | None, names: list[str]) -> str:
    """``"; did you mean 'energy'?"`` for a name close to ``wanted`` ('' if none)."""
    match = difflib.get_close_matches(wanted or "", names, n=1, cutoff=0.6)
    return f"; did you mean '{match[0]}'?" if match else ""


def _columns_text(columns: dict[str, tuple[Any, tuple[int, ...]]]) -> str:
    return "{" + ", ".join(f"{name}: {dtype}{list(shape)}"
                           for name, (dtype, shape) in sorted(columns.items())) + "}"
