"""A simulated site: the real engine against a discrete-event dispatcher on a virtual clock.

Owns :class:`SimulatedSession` (stands where ``campaign.lifecycle.ParslSession`` stands: no
Parsl) and :class:`SimulatedDispatcher`, which replaces ``campaign.dispatcher.Dispatcher``
behind the same methods; the site they run, :class:`Simulation`, is described in
``campaign.simulation`` (re-exported here). Everything else is the real engine: steering, learners,
selection, store and ledger.

How time moves. The clock (``campaign.clock``) stands still while the driver works
and moves by the CPU time the steering thread spent, measured with
``time.thread_time``: every event reaction, selection request, commit and ledger write
is charged, so a driver that cannot keep up shows as idle workers, as it would on the
machine. Work that would run elsewhere is executed inline but *not* charged to the
driver: an app (its virtual duration comes from the scale's duration model), a fit on
``train`` (charged its measured CPU time times ``fit_speed`` to a train worker), and a
model-thread job (charged its measured CPU time to the one model thread). When the
driver waits, the clock jumps to the next completion.

Outputs: by default each app runs for real (cheap analytic scales). ``outputs`` may give
a stand-in per scale (``campaign.stand_ins``: a user's ``f(x, seed) -> dict``, replayed
outputs, or draws from the current surrogate), and with ``cheap_seconds`` a scale whose
real call took longer is stood in from then on (``default_stand_in``); a run with a
stand-in is a *dry run*: its results are placeholders, not science.

Faults: an attempt's app fails (``failure_rate``) or its worker is lost (``loss_rate``)
at random; with ``block_walltime`` the workers of a label run in blocks that end at
their walltime, losing the attempts still running on them (resubmitted, no retry used),
and are replaced at once (no queue wait).
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from campaign import clock
from campaign.events import Event, TaskFinished, TaskLost
from campaign.ingest import SubmittedTask, check_completion
from campaign.simulation import Simulation, record_simulation
from campaign.stand_ins import StandIn, default_stand_in
from campaign.task import fit_features_and_learner, fit_learner, warm_learner

logger = logging.getLogger(__name__)

__all__ = ["InjectedAppError", "Simulation", "SimulatedDispatcher", "SimulatedSession",
           "record_simulation"]

TRAIN_LABEL = "train"
FIT_THREAD_LABEL = "fit-thread"  # the driver's own fit thread (Dispatcher.fit_here)
TRAIN_FUNCTIONS = {"train_app": fit_learner, "refit_app": fit_features_and_learner}


class InjectedAppError(RuntimeError):
    """An injected failure of the app itself."""


class SimulatedSession:
    """Stands where the Parsl session stands: worker counts, and train apps that run
    inline and return finished futures."""

    dfk = None
    shutdown_incomplete = False

    def __init__(self, simulation: Simulation, spec: Any) -> None:
        self.simulation = simulation
        self.fit_seconds = 0.0  # CPU of the fits the driver waited for
        self.uncharged = 0.0  # CPU of warm-ups, which no clock is charged with
        self.workers = {scale.name: simulation.workers_of(scale.executor_label)
                        for scale in spec.scales}

    @staticmethod
    def _done(fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args))
        except Exception as error:  # the event carries it, as a Parsl future would
            future.set_exception(error)
        return future

    def _fit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """A fit the driver waits for (rounds mode, the final fit): it runs inline, so
        the driver's clock is charged with it, as a real driver waits for it."""
        begin = time.thread_time()
        future = self._done(fn, *args)
        self.fit_seconds += time.thread_time() - begin
        return future

    def train_app(self, *args: Any) -> concurrent.futures.Future[Any]:
        return self._fit(fit_learner, *args)

    def refit_app(self, *args: Any) -> concurrent.futures.Future[Any]:
        return self._fit(fit_features_and_learner, *args)

    def warm_app(self, learner: Any, X: np.ndarray, seed: int) -> concurrent.futures.Future[Any]:
        """The train worker's warm-up fit, run here so the first measured fit does not pay
        the imports (a real worker pays them before its first fit); charged to nothing."""
        begin = time.thread_time()
        future = self._done(warm_learner, learner, X, seed)
        self.uncharged += time.thread_time() - begin
        return future

    def close(self) -> None:
        return None


@dataclass(order=True)
class _Due:
    when: float
    order: int
    kind: str = field(compare=False)  # 'sim' | 'job'
    key: Any = field(compare=False)


class SimulatedDispatcher:
    """``campaign.dispatcher.Dispatcher``'s methods on a virtual clock (module docstring).

    ``sims`` maps a handle to each attempt in flight (queued or running), as the real
    dispatcher's futures do."""

    def __init__(self, session: SimulatedSession, spec: Any, state: Any, policy: Any,
                 virtual: clock.VirtualClock) -> None:
        self.session, self.spec, self.state, self.policy = session, spec, state, policy
        self.simulation = session.simulation
        self.clock = virtual
        self.rng = np.random.default_rng(self.simulation.seed)
        self.sims: dict[int, SubmittedTask] = {}
        self.jobs: dict[int, tuple[Callable[[Any], Event], bool]] = {}
        self._results: dict[int, concurrent.futures.Future[Any]] = {}
        self._due: list[_Due] = []
        self._order = itertools.count()
        self._queued: dict[str, deque[tuple[int, float, float]]] = {}
        self._free: dict[str, list[int]] = {}  # idle worker slots per executor label
        self._model_free_at = 0.0
        self._mark = time.thread_time()
        self._excluded = 0.0
        self._uncharged_seen = 0.0
        self.charged = {"driver": 0.0, "apps": 0.0, "fits": 0.0, "model_thread": 0.0}
        self.idle_seconds = 0.0  # virtual time the driver spent waiting
        self.model_jobs: dict[str, tuple[int, float]] = {}  # kind -> (jobs, CPU seconds)
        # decision latency: virtual seconds from a worker freeing with nothing queued for
        # it to the next task starting on it, per executor label
        self.latencies: dict[str, list[float]] = {}
        self._idle_since: dict[tuple[str, int], float] = {}
        self.began = virtual.now()  # blocks with a walltime start here, and again at it
        self.measured: dict[str, list[float]] = {}  # CPU of each scale's real calls

    # -- the driver's clock ----------------------------------------------------------
    def _measure(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        """Run ``fn`` inline; its CPU time is not the driver's."""
        begin = time.thread_time()
        future = SimulatedSession._done(fn, *args)
        spent = time.thread_time() - begin
        self._excluded += spent
        return future, spent

    def _charge_driver(self) -> None:
        uncharged, self._uncharged_seen = (self.session.uncharged - self._uncharged_seen,
                                           self.session.uncharged)
        spent = max(0.0, time.thread_time() - self._mark - self._excluded - uncharged)
        self.charged["driver"] += spent
        self.clock.advance(spent * self.simulation.driver_slowdown)

    def _restart_meter(self) -> None:
        self._mark, self._excluded = time.thread_time(), 0.0

    # -- submitting ------------------------------------------------------------------
    def launch(self, task: SubmittedTask, params: dict[str, Any]) -> None:
        scale = self.spec.scale(task.scale)
        task.submitted = self.clock.now()
        handle = next(self._order)
        self.sims[handle] = task
        stand_in = self.simulation.outputs.get(scale.name)
        if stand_in is not None and not stand_in.wants_real():
            outputs, spent = self._measure(stand_in, task, self.state, self.rng)
        else:
            begin = _cpu_seconds()
            outputs, spent = self._measure(_call_app, scale.app, task.task_input, task.seed,
                                           params)
            real = _cpu_seconds() - begin
            self.measured.setdefault(scale.name, []).append(real)
            if outputs.exception() is None:
                stand_in = stand_in or self._stood_in_after(scale.name)
                if stand_in is not None:
                    stand_in.record(outputs.result())
        self.charged["apps"] += spent
        self._results[handle] = outputs
        model = self.simulation.durations.get(scale.name)
        seconds = (model(task.task_input, self.rng) if model is not None
                   else max(float(np.mean(self.measured.get(scale.name, [spent]))), 1e-3))
        delay = self.simulation.start_delays.get(scale.name)
        self._enqueue(scale.executor_label, handle, seconds,
                      delay(task.task_input, self.rng) if delay is not None else 0.0)

    def _stood_in_after(self, scale: str) -> StandIn | None:
        """A stand-in for a scale whose last two real calls (a first call may pay
        one-time imports) each took more than ``cheap_seconds``."""
        cheap, calls = self.simulation.cheap_seconds, self.measured[scale]
        if (cheap is None or len(calls) < 2 or min(calls[-2:]) <= cheap
                or scale in self.simulation.real_apps):
            return None
        spent = calls[-1]
        stand_in = default_stand_in(self.spec, scale)
        self.simulation.outputs[scale] = stand_in
        logger.info("scale %s took %.2f s here (over %g s): a dry run from now on, its "
                    "outputs %s", scale, spent, cheap, stand_in.describe())
        return stand_in

    def _enqueue(self, label: str, handle: int, seconds: float, delay: float = 0.0) -> None:
        if label not in self._free:
            self._free[label] = list(range(self.simulation.workers_of(label)))[::-1]
        if self._free[label]:
            slot = self._free[label].pop()
            freed = self._idle_since.pop((label, slot), None)
            if freed is not None:
                self.latencies.setdefault(label, []).append(self.clock.now() - freed)
            self._start(label, slot, handle, seconds, self.clock.now() + delay)
        else:
            self._queued.setdefault(label, deque()).append((handle, seconds, delay))

    def _start(self, label: str, slot: int, handle: int, seconds: float, when: float) -> None:
        """``handle`` runs on ``slot`` from ``when`` for ``seconds``."""
        kind = "sim" if handle in self.sims else "job"
        ends, lost = when + seconds, False
        walltime = self.simulation.block_walltime.get(label)
        if walltime is not None and kind == "sim":  # the block ends before the task?
            block_ends = self.began + walltime * (math.floor((when - self.began)
                                                              / walltime) + 1)
            ends, lost = min(ends, block_ends), ends > block_ends
        heapq.heappush(self._due, _Due(ends, next(self._order), kind,
                                       (label, slot, handle, when, lost)))

    def _worker_freed(self, label: str, slot: int, when: float) -> None:
        queue = self._queued.get(label)
        if queue:  # a decision made earlier: the slot waits for nothing
            handle, seconds, delay = queue.popleft()
            self.latencies.setdefault(label, []).append(0.0)
            self._start(label, slot, handle, seconds, when + delay)
        else:
            self._free[label].append(slot)
            self._idle_since[(label, slot)] = when

    def on_train(self, app: str, args: tuple[Any, ...],
                 then: Callable[[concurrent.futures.Future[Any]], Event]) -> None:
        self._fit_on(TRAIN_LABEL, TRAIN_FUNCTIONS[app], args, then, self.simulation.fit_speed)

    def fit_here(self, fn: Callable[..., Any], args: tuple[Any, ...],
                 then: Callable[[concurrent.futures.Future[Any]], Event]) -> None:
        """A fit in the driver's process on a thread of its own (no train worker up)."""
        self._fit_on(FIT_THREAD_LABEL, fn, args, then, 1.0)

    def _fit_on(self, label: str, fn: Callable[..., Any], args: tuple[Any, ...],
                then: Callable[[concurrent.futures.Future[Any]], Event], speed: float) -> None:
        future, spent = self._measure(fn, *args)
        self.charged["fits"] += spent
        handle = next(self._order)
        self.jobs[handle] = (then, True)
        self._results[handle] = future
        replayed = self.simulation.fit_durations
        self._enqueue(label, handle, replayed(None, self.rng) if replayed is not None
                      else max(spent, 1e-6) * speed)

    def _on_model_thread(self, fn: Callable[..., Any], args: tuple[Any, ...],
                         then: Callable[[Any], Event]) -> None:
        future, spent = self._measure(fn, *args)
        self.charged["model_thread"] += spent
        name = getattr(fn, "__name__", type(fn).__name__)
        count, seconds = self.model_jobs.get(name, (0, 0.0))
        self.model_jobs[name] = (count + 1, seconds + spent)
        handle = next(self._order)
        self.jobs[handle] = (then, False)
        self._results[handle] = future
        start = max(self.clock.now(), self._model_free_at)
        self._model_free_at = start + spent * self.simulation.driver_slowdown
        heapq.heappush(self._due, _Due(self._model_free_at, next(self._order), "job",
                                       (None, 0, handle, start, False)))

    def on_model_thread(self, fn: Callable[..., Any], args: tuple[Any, ...],
                        then: Callable[[Any], Event]) -> None:
        self._on_model_thread(fn, args, then)

    # -- what is under way -----------------------------------------------------------
    def busy(self) -> bool:
        return bool(self.sims or self.jobs)

    def in_flight(self) -> list[SubmittedTask]:
        return list(self.sims.values())

    # -- completions -----------------------------------------------------------------
    def wait(self, timeout: float = 0.2, *, sims_only: bool = False) -> list[Event]:
        """Charge the driver's CPU since the last wait, then return what completed by
        now; with nothing due, the clock moves to the next completion."""
        self._charge_driver()
        now = self.clock.now()
        upcoming = self._next_time(sims_only)
        if upcoming is None:  # nothing under way: a real wait returns after ``timeout``
            self.idle_seconds += timeout
            self.clock.advance(timeout)
        elif upcoming > now:  # nothing happens before it: jump (a real driver would wake
            self.idle_seconds += upcoming - now  # every ``timeout`` to find nothing new)
            self.clock.advance_to(upcoming)
        events = self._pop_due(self.clock.now(), sims_only)
        self._restart_meter()
        return events

    def _next_time(self, sims_only: bool) -> float | None:
        if not sims_only:
            return self._due[0].when if self._due else None
        times = [d.when for d in self._due if d.kind == "sim"]
        return min(times) if times else None

    def _pop_due(self, now: float, sims_only: bool) -> list[Event]:
        sims: list[Event] = []
        jobs: list[Event] = []
        held: list[_Due] = []
        while self._due and self._due[0].when <= now:
            due = heapq.heappop(self._due)
            if sims_only and due.kind != "sim":
                held.append(due)
                continue
            label, slot, handle, started, lost = due.key
            if label is not None:
                self._worker_freed(label, slot, due.when)
            if lost:
                task = self.sims.pop(handle)
                self._results.pop(handle)
                sims.append(TaskLost(task, f"WorkerLost: the block of worker {label}/{slot} "
                                           "reached its walltime of "
                                           f"{self.simulation.block_walltime[label]:g} s"))
            elif due.kind == "sim":
                sims.append(self._sim_event(handle, started, due.when, f"{label}/{slot}"))
            else:
                then, takes_future = self.jobs.pop(handle)
                future = self._results.pop(handle)
                jobs.append(then(future if takes_future else future.result()))
        for due in held:
            heapq.heappush(self._due, due)
        return sims + jobs

    def _sim_event(self, handle: int, started: float, ended: float, worker: str) -> Event:
        task = self.sims.pop(handle)
        outputs = self._results.pop(handle)
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()
        draw = self.rng.random()
        loss = self.simulation.loss_rate.get(task.scale, 0.0)
        failure = self.simulation.failure_rate.get(task.scale, 0.0)
        if draw < loss:
            return TaskLost(task, f"WorkerLost: simulated loss of the worker running task "
                                  f"{task.task_id}")
        if draw < loss + failure:
            result.set_exception(InjectedAppError(f"simulated failure of task {task.task_id}"))
        elif outputs.exception() is not None:
            result.set_exception(outputs.exception())  # type: ignore[arg-type]
        else:
            result.set_result({"outputs": outputs.result(), "started": started,
                               "ended": ended, "worker": f"simulated/{worker}"})
        return TaskFinished(check_completion(result, task))

    def close(self) -> None:
        return None


def _cpu_seconds() -> float:
    """CPU of the calling thread and of this process's finished children (an external
    program's); other threads (an app's own, or the engine's) are not counted."""
    times = os.times()
    return time.thread_time() + times.children_user + times.children_system


def _call_app(app: Callable[..., dict[str, Any]], x: Any, seed: int,
              params: dict[str, Any]) -> dict[str, Any]:
    return app(np.asarray(x, dtype=np.float64), seed=seed, **params)
