"""A simulated site: the real engine against a discrete-event dispatcher on a virtual clock.

Owns: :class:`Simulation` (what a simulated site is: workers per executor, a duration
model per scale, how outputs are made, injected faults, how fits are charged),
:class:`SimulatedSession` (stands where ``campaign.lifecycle.ParslSession`` stands: no
Parsl), and :class:`SimulatedDispatcher`, which replaces ``campaign.dispatcher.Dispatcher``
behind the same methods. Everything else is the real engine: steering, learners,
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
a stand-in function per scale, ``outputs[scale](x, seed) -> dict`` (as an app returns);
a run with a stand-in is a *dry run*: its results are placeholders, not science.
"""

from __future__ import annotations

import concurrent.futures
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from campaign import clock
from campaign.durations import DurationModel, Fixed
from campaign.events import Event, TaskFinished, TaskLost
from campaign.ingest import SubmittedTask, check_completion
from campaign.task import fit_features_and_learner, fit_learner

__all__ = ["InjectedAppError", "Simulation", "SimulatedDispatcher", "SimulatedSession"]

TRAIN_LABEL = "train"
FIT_THREAD_LABEL = "fit-thread"  # the driver's own fit thread (Dispatcher.fit_here)
TRAIN_FUNCTIONS = {"train_app": fit_learner, "refit_app": fit_features_and_learner}


class InjectedAppError(RuntimeError):
    """An injected failure of the app itself."""


@dataclass
class Simulation:
    """What a simulated site is.

    Args:
        workers: executor label (``sim-<scale>``, ``train``) -> workers.
        durations: scale name -> duration model (seconds per attempt).
        outputs: scale name -> stand-in ``f(x, seed) -> outputs`` (a dry run), or
            missing: the scale's app runs for real.
        failure_rate: scale name -> probability that an attempt's app fails.
        loss_rate: scale name -> probability that an attempt's worker is lost (an
            infrastructure loss: resubmitted without using a retry).
        fit_speed: multiplies the measured CPU time of a fit (a train node's speed
            relative to this machine).
        driver_slowdown: multiplies the measured CPU time of the driver's work (the
            steering and the model thread) before it is charged to the clock: wall
            seconds per CPU second of a driver that shares its cores.
        fit_durations: when given, a fit's virtual duration comes from it instead
            (e.g. an earlier run's recorded fit times, replayed in order).
        start_delays: scale name -> seconds from a worker taking an attempt to the
            attempt starting (an executor's dispatch latency, a cold worker's imports,
            a block not yet up); the worker is held meanwhile. Missing: 0.
        seed: seeds durations and injected faults.
    """

    workers: dict[str, int]
    durations: dict[str, DurationModel] = field(default_factory=dict)
    outputs: dict[str, Callable[[np.ndarray, int], dict[str, Any]]] = field(
        default_factory=dict)
    failure_rate: dict[str, float] = field(default_factory=dict)
    loss_rate: dict[str, float] = field(default_factory=dict)
    fit_speed: float = 1.0
    driver_slowdown: float = 1.0
    fit_durations: DurationModel | None = None
    start_delays: dict[str, DurationModel] = field(default_factory=dict)
    seed: int = 0

    @property
    def dry_run(self) -> bool:
        return bool(self.outputs)

    def workers_of(self, label: str) -> int:
        return max(1, int(self.workers.get(label, 1)))


class SimulatedSession:
    """Stands where the Parsl session stands: worker counts, and train apps that run
    inline and return finished futures."""

    dfk = None
    shutdown_incomplete = False

    def __init__(self, simulation: Simulation, spec: Any) -> None:
        self.simulation = simulation
        self.fit_seconds = 0.0  # CPU of the fits the driver waited for
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
        """No warm-up: a simulated train worker has no imports to pay for."""
        now = clock.now()
        return self._done(lambda: {"problem": None, "seconds": 0.0, "started": now,
                                   "ended": now, "worker": "simulated"})

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
        self.charged = {"driver": 0.0, "apps": 0.0, "fits": 0.0, "model_thread": 0.0}
        self.idle_seconds = 0.0  # virtual time the driver spent waiting
        self.model_jobs: dict[str, tuple[int, float]] = {}  # kind -> (jobs, CPU seconds)
        # decision latency: virtual seconds from a worker freeing with nothing queued for
        # it to the next task starting on it, per executor label
        self.latencies: dict[str, list[float]] = {}
        self._idle_since: dict[tuple[str, int], float] = {}

    # -- the driver's clock ----------------------------------------------------------
    def _measure(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
        """Run ``fn`` inline; its CPU time is not the driver's."""
        begin = time.thread_time()
        future = SimulatedSession._done(fn, *args)
        spent = time.thread_time() - begin
        self._excluded += spent
        return future, spent

    def _charge_driver(self) -> None:
        spent = max(0.0, time.thread_time() - self._mark - self._excluded)
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
        if stand_in is not None:
            outputs, spent = self._measure(stand_in, task.task_input, task.seed)
        else:
            outputs, spent = self._measure(_call_app, scale.app, task.task_input, task.seed,
                                           params)
        self.charged["apps"] += spent
        self._results[handle] = outputs
        model = self.simulation.durations.get(scale.name, Fixed(max(spent, 1e-3)))
        seconds = model(task.task_input, self.rng)
        delay = self.simulation.start_delays.get(scale.name)
        self._enqueue(scale.executor_label, handle, seconds,
                      delay(task.task_input, self.rng) if delay is not None else 0.0)

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
        heapq.heappush(self._due, _Due(when + seconds, next(self._order), kind,
                                       (label, slot, handle, when)))

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
                                       (None, 0, handle, start)))

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
            label, slot, handle, started = due.key
            if label is not None:
                self._worker_freed(label, slot, due.when)
            if due.kind == "sim":
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


def _call_app(app: Callable[..., dict[str, Any]], x: Any, seed: int,
              params: dict[str, Any]) -> dict[str, Any]:
    return app(np.asarray(x, dtype=np.float64), seed=seed, **params)
