"""Retries and deadlines: what becomes of an attempt that did not bring rows.

Owns: the one policy (like Parsl's ``retry_handler``) that decides, for an attempt
that failed, expired or was lost, whether it is retried with a new seed, resubmitted
as it was, or quarantined; and the engine-side deadline of an attempt.

* **Queue time is not app time.** An attempt's deadline runs from when it *started*
  on a worker, which the worker tells by writing a start marker
  (``<run>/started/<task>-<attempt>``, written by ``campaign.task.run_app``). An
  attempt that never started is never charged to the app, however long its block
  waits in the scheduler's queue. (The marker needs the run directory on a file
  system the workers share, as Parsl's own run directory does.)
* **Infrastructure losses are their own kind.** A lost worker or manager, a block
  that hit its walltime, a lost interchange, a refused submission
  (``campaign.ingest.INFRASTRUCTURE_ERRORS``) are resubmitted with the same seed and use none of
  the task's ``retries``; the ledger records the attempt with outcome ``lost``. An
  executor that can start nothing at all (``FATAL_ERRORS``) ends the campaign with
  the scheduler's message and quarantines no task for it.
"""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from campaign.ingest import SubmittedTask
from campaign.spec import CampaignSpec
from campaign.state import ScaleState

DEADLINE_MARGIN = 2.0  # seconds past 2 x timeout (result transfer, a loaded machine)
DEADLINE_MULTIPLE = 10.0  # without a timeout: x the longest duration seen ...
DEADLINE_MIN = 60.0  # ... and never less than this
DEADLINE_OBSERVED = 3  # durations seen before a derived deadline applies
START_CHECK_SECONDS = 1.0  # how often an attempt with no start marker is looked at again
LOST_STREAK = 50  # repeat losses (a task lost again), no result between, that stop a campaign
MARKERS = "started"  # the run directory's folder of start markers


def task_seed(campaign_seed: int, task_id: int, attempt: int) -> int:
    """The seed of one attempt of one task: reproducible across kills and resumes."""
    return int(np.random.SeedSequence([campaign_seed, task_id, attempt]).generate_state(1)[0])


@dataclass(frozen=True)
class Decision:
    """What becomes of an attempt: ``retry`` (a new seed, one retry used), ``resubmit``
    (the same seed, no retry used: the infrastructure lost it), or ``quarantine``."""

    action: str
    seed: int | None = None
    reason: str = ""


class RetryPolicy:
    """Deadlines from start markers, and the retry decision of every failed attempt."""

    def __init__(self, spec: CampaignSpec, markers: Path | None) -> None:
        self.spec = spec
        self.markers = None if markers is None else markers.resolve()  # workers' cwd differs
        if self.markers is not None:  # an earlier driver's markers name other attempts
            shutil.rmtree(self.markers, ignore_errors=True)
            self.markers.mkdir(parents=True, exist_ok=True)

    # -- deadlines -------------------------------------------------------------------
    def marker(self, task: SubmittedTask) -> str | None:
        """Where the worker marks that this attempt started (None: no markers)."""
        if self.markers is None:
            return None
        return str(self.markers / f"{task.task_id}-{task.attempt}")

    def limit(self, held: ScaleState) -> float | None:
        """Seconds an attempt of this scale may run, from its start (None: no limit)."""
        if held.scale.timeout is not None:
            return 2 * held.scale.timeout + DEADLINE_MARGIN
        if held.durations_seen >= DEADLINE_OBSERVED:
            return max(DEADLINE_MIN, DEADLINE_MULTIPLE * held.longest_duration)
        return None

    def first_check(self, task: SubmittedTask, held: ScaleState) -> float | None:
        """The earliest time the attempt can be past its deadline (it cannot have
        started before it was submitted)."""
        limit = self.limit(held)
        return None if limit is None else task.submitted + limit

    def started(self, task: SubmittedTask) -> tuple[float, str | None] | None:
        """When the attempt started and on which ``host pid`` (None: not started)."""
        path = self.marker(task)
        if path is None:
            return None
        try:
            with open(path) as marker:
                text = marker.read().split()
            return float(text[0]), " ".join(text[1:3]) or None
        except (OSError, ValueError, IndexError):
            return None

    def has_started(self, task: SubmittedTask) -> bool:
        """Whether a worker marked the attempt started (True without markers)."""
        path = self.marker(task)
        return path is None or os.path.exists(path)

    def forget(self, task: SubmittedTask) -> None:
        """The attempt returned: its marker is no longer needed."""
        path = self.marker(task)
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass

    def check(self, task: SubmittedTask, held: ScaleState,
              now: float) -> tuple[str | None, float | None]:
        """Look at an attempt past its first check: ``(verdict, next check)``. The
        verdict is None while it has time (or has not started: never charged),
        'lost' if its worker on this host is gone, 'expired' past the deadline counted
        from its start; next check None: never again."""
        limit = self.limit(held)
        if limit is None:
            return None, None
        started = self.started(task)
        if started is None:
            return None, now + START_CHECK_SECONDS
        began, where = started
        if where is not None and _dead_here(where):
            return "lost", None
        if now > began + limit:
            return "expired", None
        return None, min(began + limit, now + START_CHECK_SECONDS * 10)

    # -- decisions -------------------------------------------------------------------
    def after_failure(self, task: SubmittedTask, problem: str, *,
                      deterministic: bool) -> Decision:
        """An attempt failed with ``problem`` (an app error, a bad result, a deadline)."""
        retries = self.spec.scale(task.scale).retries
        failures = task.failures + 1  # app failures of this task, this one included
        if deterministic:
            problem = f"{problem} (not retried: a new seed fails the same way)"
        elif failures <= retries:
            return Decision("retry", task_seed(self.spec.seed, task.task_id, failures + 1),
                            problem)
        return Decision("quarantine", reason=f"after {failures} attempt"
                        f"{'s' if failures > 1 else ''}: {problem}")

    def after_loss(self, task: SubmittedTask, problem: str) -> Decision:
        """The infrastructure lost the attempt: the same seed again, no retry used."""
        return Decision("resubmit", task.seed, problem)


def started_task_ids(run_dir: Path) -> set[int]:
    """The tasks of a running driver with an attempt a worker has started and not
    returned yet: those with a start marker in ``<run_dir>/started``."""
    try:
        names = os.listdir(run_dir / MARKERS)
    except OSError:
        return set()
    return {int(name.split("-", 1)[0]) for name in names
            if name.split("-", 1)[0].isdigit()}


def _dead_here(where: str) -> bool:
    """Whether ``"host pid"`` names a process of this host that no longer exists."""
    host, _, pid = where.partition(" ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False

