"""The engine: runs one campaign spec into one run directory on one Parsl site.

Owns: the facade around the steering. :meth:`Engine.run` takes the run directory's
lock, starts or resumes the run directory, loads Parsl, restores the in-memory state
(``campaign.resume``), chooses a steerer for the spec's mode and returns the run's
summary. Who owns what else:

* ``campaign.state``: all in-memory state; decisions read only it.
* ``campaign.dispatcher``: every future (simulations, ``train``, the model thread),
  turned into ``campaign.events``; ``campaign.retry``: deadlines and retries.
* ``campaign.steering`` with ``campaign.steer_async`` (``mode="async"``, the default:
  every worker busy, every pick from the newest posterior) and
  ``campaign.steer_rounds`` (``mode="rounds"``: exactly reproducible): the reactions.
* ``campaign.models``: fits, installs and scores; ``campaign.budget``: budgets and
  stop rules as functions of (spec, state, clock); ``campaign.progress``: progress.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from campaign import clock
from campaign.budget import quarantine_reason
from campaign.dispatcher import Dispatcher
from campaign.facts import RunSummary, record_end, record_start
from campaign.ledger import Ledger
from campaign.lifecycle import ParslSession, RunDirError, clear_run, inspect_run_dir
from campaign.lock import RunLock
from campaign.models import ModelKeeper
from campaign.pids import ProcessRecorder, end_leftover_processes
from campaign.policy import IN_FLIGHT_PER_WORKER, in_flight_limits
from campaign.progress import ProgressReporter, progress_snapshot
from campaign.resume import restore_state, unfinished_tasks
from campaign.retry import MARKERS, RetryPolicy, task_seed
from campaign.signals import StopRequest
from campaign.simulated import SimulatedDispatcher, SimulatedSession
from campaign.spec import CampaignSpec
from campaign.steer_async import AsyncSteerer
from campaign.steer_rounds import RoundsSteerer
from campaign.store import Store

__all__ = ["IN_FLIGHT_PER_WORKER", "Engine", "RunDirError", "RunSummary", "task_seed"]

logger = logging.getLogger(__name__)


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
                 on_progress: Callable[[dict[str, Any]], None] | None = None,
                 simulation: Any = None) -> None:
        if overwrite and resume:
            raise ValueError("choose one of overwrite and resume")
        if mode not in (None, "async", "rounds"):
            raise ValueError(f"mode must be 'async' or 'rounds', got {mode!r}")
        self.spec = spec if mode is None else spec.model_copy(update={"mode": mode})
        self.run_dir, self.site, self.site_params = Path(run_dir), site, site_params or {}
        self.script, self.overwrite, self.resume = script, overwrite, resume
        self.stop = StopRequest(grace_period)
        self.torch_threads = torch_threads
        self.shutdown_incomplete = False
        self.progress = ProgressReporter(on_progress, self.progress_snapshot)
        self.simulation = simulation  # a campaign.simulated.Simulation: a virtual clock
        self.virtual = clock.VirtualClock(time.time()) if simulation is not None else None
        self.started, self.earlier_wall = time.time(), 0.0

    @property
    def mode(self) -> str:
        return self.spec.mode

    def run(self) -> RunSummary:
        from site_configs import get_config

        # each scale's resources shape its executor; a site parameter given by hand wins
        config = None if self.simulation is not None else get_config(
            self.site, scales=[s.name for s in self.spec.scales],
            run_dir=str(self.run_dir / "parsl"),
            **{"resources": {s.name: s.resources for s in self.spec.scales},
               **self.site_params})
        inspect_run_dir(self.run_dir, self.spec, overwrite=self.overwrite, resume=self.resume)
        _set_torch_threads(self.torch_threads)
        with RunLock(self.run_dir):
            start = inspect_run_dir(self.run_dir, self.spec, overwrite=self.overwrite,
                                    resume=self.resume)
            end_leftover_processes(self.run_dir)  # of a killed earlier driver
            if start == "overwrite":
                clear_run(self.run_dir)
            self.ledger = Ledger(self.run_dir / "ledger.sqlite")
            try:
                self.store = Store(self.run_dir, self.ledger)
                record_start(self.ledger, self.spec, start, self.script, self.site)
                if self.simulation is not None and self.simulation.options is not None:
                    self.ledger.set_fact("simulate_options", self.simulation.options)
                # a copy: the spec's learner stays unfitted (a thread executor fits in place)
                learners = [copy.deepcopy(p.learner) for p in self.spec.promotions]
                self.state = restore_state(self.spec, self.store, self.ledger, learners)
                with self.stop:
                    self.parsl = (ParslSession(config, self.spec) if config is not None
                                  else SimulatedSession(self.simulation, self.spec))
                    self.recorder = ProcessRecorder(self.run_dir, self.parsl.dfk)
                    self.recorder.tick()
                    try:
                        if self.virtual is None:
                            return self._steer()
                        with clock.using(self.virtual):
                            return self._steer()
                    finally:
                        self.recorder.join(10.0)
                        self.parsl.close()
                        self.shutdown_incomplete = self.parsl.shutdown_incomplete
            finally:
                self.ledger.close()

    def _steerer(self) -> AsyncSteerer | RoundsSteerer:
        """The steerer of the spec's mode, with its dispatcher, policy and keeper."""
        policy = RetryPolicy(self.spec, self.run_dir / MARKERS)
        dispatcher = (Dispatcher(self.parsl, self.spec, self.state, policy)
                      if self.virtual is None else SimulatedDispatcher(
                          self.parsl, self.spec, self.state, policy, self.virtual))
        self.dispatcher = dispatcher
        keeper = ModelKeeper(self.spec, self.state, self.store, self.ledger, self.parsl,
                             dispatcher, self.stop, self.progress.report)
        parts = (self.spec, self.state, self.store, self.ledger, dispatcher, keeper, policy,
                 self.stop, self._elapsed)
        if self.mode == "rounds":
            steerer: AsyncSteerer | RoundsSteerer = RoundsSteerer(*parts)
            steerer.log_round = self.progress.log_round  # type: ignore[method-assign]
        else:
            steerer = AsyncSteerer(*parts, max_in_flight=in_flight_limits(
                self.spec, self.state, self.parsl.workers))
            steerer.log_progress = self.progress.log_progress  # type: ignore[method-assign]
        steerer.start(unfinished_tasks(self.spec, self.state, self.ledger))
        return steerer

    def _steer(self) -> RunSummary:
        self.started = clock.now()
        self.earlier_wall = float(self.ledger.fact("wall_seconds", 0.0) or 0.0)
        status = self.state.status
        rounds, stop_reason = self._steerer().steer(on_tick=self._tick)
        if not self.stop.stopping and not status.failed_reason:
            status.failed_reason = quarantine_reason(self.state)
            if status.failed_reason:
                stop_reason = f"{stop_reason}; but {status.failed_reason}"
        wall, unfinished = self._elapsed(), 0
        if self.stop.stopping:
            unfinished = len(self.ledger.tasks(status="submitted"))
            stop_reason = f"interrupted by {self.stop.signal_name}"
            logger.warning("%s: everything completed is committed; %d tasks unfinished",
                           stop_reason, unfinished)
        else:
            logger.info("campaign %s stopped: %s", self.spec.name, stop_reason)
        record_end(self.ledger, wall, stop_reason, status.failed_reason, self.stop.stopping)
        status.stop_reason = stop_reason
        self.progress.report(final=True)
        return RunSummary(
            run_dir=self.run_dir, name=self.spec.name, rounds=rounds,
            stop_reason=stop_reason, wall_seconds=wall,
            task_counts=self.ledger.task_counts(),
            rows={name: held.committed_rows for name, held in self.state.scales.items()},
            interrupted=self.stop.stopping, unfinished=unfinished,
            curves={p.name: self.ledger.rounds(p.name) for p in self.spec.promotions},
            mode=self.mode, failed=bool(status.failed_reason))

    def _tick(self) -> None:
        self.recorder.tick()
        self.progress.report()

    def _elapsed(self) -> float:
        return self.earlier_wall + clock.now() - self.started

    def progress_snapshot(self) -> dict[str, Any]:
        """Where the running campaign stands (``campaign.progress.progress_snapshot``)."""
        stop_reason = self.state.status.stop_reason or None
        if self.stop.stopping:
            stop_reason = f"interrupted by {self.stop.signal_name}"
        return progress_snapshot(self.spec, self.state, self._elapsed(), stop_reason)


def _set_torch_threads(threads: int) -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)
