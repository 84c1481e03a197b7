"""The dispatcher: the one owner of futures, which it turns into typed events.

Owns: the simulation attempts in flight on Parsl (each with its next deadline check,
``campaign.retry``), the jobs on the ``train`` executor, and the model thread, one
thread on which every posterior, selection, score and install preparation runs, so
the steering thread keeps ingesting (and a fit thread, for a first fit made here while
no ``train`` worker is up). :meth:`Dispatcher.wait` returns what completed as
``campaign.events`` values; a steerer never holds a future. The state's counts of
what is in flight are the steerer's to keep (it reacts to the events).
"""

from __future__ import annotations

import concurrent.futures
import logging
import time
from collections.abc import Callable
from typing import Any

from campaign.events import Event, TaskExpired, TaskFinished, TaskLost
from campaign.ingest import SubmittedTask, check_completion
from campaign.retry import RetryPolicy
from campaign.spec import CampaignSpec
from campaign.state import CampaignState

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
WAITING_SECONDS = 1.0  # how often attempts not started yet are counted (one stat each)
# an attempt not started while its executor's workers are up and no attempt of its
# scale started or ended for this long was lost by the executor (seen: a pool whose
# workers were killed and restarted never started a task again), and the pools holding
# tasks are replaced
STALL_SECONDS = 120.0


class Dispatcher:
    """Submits simulations, fits and model-thread jobs; reports their completions.

    ``parsl`` is a ``campaign.lifecycle.ParslSession`` (``sim_apps``, ``train_app``,
    ``refit_app``, ``warm_app``)."""

    def __init__(self, parsl: Any, spec: CampaignSpec, state: CampaignState,
                 policy: RetryPolicy) -> None:
        self.parsl = parsl
        self.spec = spec
        self.state = state
        self.policy = policy
        self.sims: dict[concurrent.futures.Future[Any], SubmittedTask] = {}
        self.checks: dict[concurrent.futures.Future[Any], float] = {}
        # each job: the function that makes its event, and whether it takes the future
        # (a fit: its error is part of the event) or the result (an error is a bug)
        self.jobs: dict[concurrent.futures.Future[Any], tuple[Callable[[Any], Event], bool]] = {}
        self.model_thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="campaign-model")
        self.fit_thread: concurrent.futures.ThreadPoolExecutor | None = None
        self.counted_waiting = float("-inf")
        self.progress_at: dict[str, float] = {}  # executor -> last start, run or end seen

    # -- submitting ------------------------------------------------------------------
    def launch(self, task: SubmittedTask, params: dict[str, Any]) -> None:
        """Submit one attempt of a simulation task with the app parameters ``params``."""
        scale = self.spec.scale(task.scale)
        limits = {} if scale.timeout is None else {"walltime": scale.timeout}
        task.submitted = time.time()
        future = self.parsl.sim_apps[scale.name](
            scale.app, task.task_input, task.seed, params,
            started_marker=self.policy.marker(task), **limits)
        self.sims[future] = task
        self.progress_at.setdefault(scale.executor_label, task.submitted)
        first = self.policy.first_check(task, self.state.scales[task.scale])
        if first is not None:
            self.checks[future] = first

    def on_train(self, app: str, args: tuple[Any, ...],
                 then: Callable[[concurrent.futures.Future[Any]], Event]) -> None:
        """Run ``parsl.<app>(*args)`` on the train executor; ``then(future)`` is its event."""
        self.jobs[getattr(self.parsl, app)(*args)] = (then, True)

    def on_model_thread(self, fn: Callable[..., Any], args: tuple[Any, ...],
                        then: Callable[[Any], Event]) -> None:
        """Run ``fn(*args)`` on the model thread; ``then(result)`` is its event. A job
        that raises is a bug of the engine: its error surfaces in :meth:`wait`."""
        self.jobs[self.model_thread.submit(fn, *args)] = (then, False)

    def fit_here(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 then: Callable[[concurrent.futures.Future[Any]], Event]) -> None:
        """A fit in this process, on a thread of its own (no ``train`` worker is up
        yet), so selections go on meanwhile; its errors are part of its event."""
        if self.fit_thread is None:
            self.fit_thread = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="campaign-fit")
        self.jobs[self.fit_thread.submit(fn, *args)] = (then, True)

    # -- what is under way -----------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.sims or self.jobs)

    def in_flight(self) -> list[SubmittedTask]:
        return list(self.sims.values())

    # -- completions -----------------------------------------------------------------
    def wait(self, timeout: float = POLL_SECONDS, *, sims_only: bool = False) -> list[Event]:
        """Wait up to ``timeout`` for completions; return them (and expired or lost
        attempts) as events, simulations first."""
        waitables = [*self.sims] if sims_only else [*self.sims, *self.jobs]
        if waitables:
            done, _ = concurrent.futures.wait(waitables, timeout=timeout,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
        else:
            done = set()
            time.sleep(timeout / 10)
        events: list[Event] = []
        for future in [f for f in done if f in self.sims]:
            task = self.sims.pop(future)
            self.checks.pop(future, None)
            self.policy.forget(task)
            self.progress_at[self._label(task)] = time.time()
            completion = check_completion(future, task)
            if completion.problem is not None and completion.kind != "app":
                events.append(TaskLost(task, completion.problem, completion.kind == "fatal"))
            else:
                events.append(TaskFinished(completion))
        for future in [f for f in done if f in self.jobs]:
            then, takes_future = self.jobs.pop(future)
            events.append(then(future if takes_future else future.result()))
        events.extend(self._past_deadlines())
        if time.monotonic() - self.counted_waiting >= WAITING_SECONDS:
            events.extend(self._count_waiting())
        return events

    def _count_waiting(self) -> list[Event]:
        """Per scale, the attempts in flight no worker has started yet (queued, or
        their block not started): ``ScaleState.waiting``, shown by progress; and the
        ones the executor lost without saying so (:data:`STALL_SECONDS`)."""
        now = time.time()
        self.counted_waiting = time.monotonic()
        waiting = dict.fromkeys(self.state.scales, 0)
        unstarted: dict[str, list[concurrent.futures.Future[Any]]] = {}
        for future, task in self.sims.items():
            if self.policy.has_started(task):  # running: its executor is making progress
                self.progress_at[self._label(task)] = now
            else:
                waiting[task.scale] += 1
                unstarted.setdefault(self._label(task), []).append(future)
        for name, count in waiting.items():
            self.state.scales[name].waiting = count
        events: list[Event] = []
        for label, futures in unstarted.items():
            if now - self.progress_at.get(label, now) > STALL_SECONDS and self._workers_up(
                    label):
                self._replace_stuck_blocks(label)  # before the attempts go out again
                events.extend(self._stalled(futures, now))
                self.progress_at[label] = now
        return events

    def _label(self, task: SubmittedTask) -> str:
        return self.spec.scale(task.scale).executor_label

    def _workers_up(self, executor_label: str) -> bool:
        """Whether the executor has worker pools connected (HTEX); False when it cannot
        say (a thread pool, blocks still queued at the scheduler)."""
        try:
            managers = self.parsl.dfk.executors[executor_label].connected_managers()
        except Exception:  # not an HTEX, or its interchange is not answering
            return False
        return any(m.get("active", True) and m.get("worker_count", 0) > 0 for m in managers)

    def _replace_stuck_blocks(self, executor_label: str) -> list[str]:
        """Ask Parsl to end the executor's blocks whose pools hold tasks and start none
        (as many as there are such blocks; Parsl's ``scale_in`` ends the longest idle
        first), so its scaling starts fresh ones in their place (``min_blocks``). A pool
        in which a worker was SIGKILLed while it waited for a task (holding the lock of
        the pool's task queue) never starts a task again, restarted workers or not
        (Parsl 2026.10). Returns the block ids ended ([] when it cannot say)."""
        try:
            executor = self.parsl.dfk.executors[executor_label]
            stuck = {m["block_id"] for m in executor.connected_managers()
                     if m.get("active", True) and m.get("tasks", 0) > 0}
            if not stuck:
                return []
            ended = list(executor.scale_in_facade(len(stuck)) or [])
        except Exception as error:  # not an HTEX, or no answer: the resubmission goes on
            log.warning("could not replace the stalled blocks of executor %s: %s",
                        executor_label, error)
            return []
        log.warning("executor %s started no attempt for %.0f s while its workers were up: "
                    "ended its block%s %s (Parsl starts new ones)", executor_label,
                    STALL_SECONDS, "s" if len(ended) != 1 else "", ", ".join(map(str, ended)))
        return ended

    def _stalled(self, futures: list[concurrent.futures.Future[Any]],
                 now: float) -> list[Event]:
        events: list[Event] = []
        for future in futures:
            task = self.sims.pop(future)
            self.checks.pop(future, None)
            self.policy.forget(task)
            events.append(TaskLost(task, f"WorkerLost: attempt {task.attempt} of task "
                                         f"{task.task_id} was not started in "
                                         f"{now - task.submitted:.0f} s while the "
                                         f"executor's workers were up and idle of it"))
        return events

    def _past_deadlines(self) -> list[Event]:
        """Attempts past their deadline (from their start) count as failed: the executor
        may never report them; a late result of an abandoned attempt is ignored."""
        now = time.time()
        events: list[Event] = []
        for future, when in list(self.checks.items()):
            if now < when or future.done():
                continue
            task = self.sims[future]
            verdict, later = self.policy.check(task, self.state.scales[task.scale], now)
            if verdict is None:
                if later is None:
                    del self.checks[future]
                else:
                    self.checks[future] = later
                continue
            del self.checks[future], self.sims[future]
            started = self.policy.started(task)
            self.policy.forget(task)
            ran = now - (started[0] if started is not None else task.submitted)
            if verdict == "lost":
                events.append(TaskLost(task, f"WorkerLost: the worker running task "
                                             f"{task.task_id} is gone"))
            else:
                events.append(TaskExpired(task, ran))
        return events

    def close(self) -> None:
        self.model_thread.shutdown(wait=True, cancel_futures=True)
        if self.fit_thread is not None:
            self.fit_thread.shutdown(wait=True, cancel_futures=True)

