"""Ingest: turn a completed Parsl future into checked rows, and commit rows in batches.

Owns: the record of a task in flight (:class:`SubmittedTask`), checking what a task
returned (:func:`check_completion`: an exception, a timeout, a lost worker, NaN/inf or a
misshapen result is a *problem*, never rows), and the commit buffer
(:class:`CommitBuffer`), which appends rows to zarr and records the committed count and
task outcomes in the ledger under the commit rule (``Store.commit``). Deciding whether a
problem is retried or quarantined is the engine's; a completion says whether its
problem is *deterministic* (a misshapen result, or an app error such as ``TypeError``
that a new seed would repeat).

When a batch is committed (:meth:`CommitBuffer.due`): at ``COMMIT_EVERY_ROWS`` rows;
when the steering is idle (its last wait brought nothing); or when the oldest result has
waited the durability window, ``COMMIT_EVERY_SECONDS`` or, where commits are slow,
``COMMIT_COST_FACTOR`` times the last commit's duration (at most
``COMMIT_MAX_SECONDS``): a busy driver then spends at most about 1/``COMMIT_COST_FACTOR``
of its time committing, however fast results arrive, since a commit's cost barely grows
with its rows. A killed driver loses only what was not committed: those tasks are
recorded as submitted and run again on resume.
"""

from __future__ import annotations

import concurrent.futures
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from campaign import clock
from campaign.failures import describe_failure
from campaign.faults import fault_point
from campaign.ledger import TaskOutcome
from campaign.store import Rows, Store
from campaign.task import BadResultError, check_result

# app errors that say the code or the input is wrong, not that this attempt was unlucky:
# a new seed fails the same way, so the task is quarantined at once instead of retried
DETERMINISTIC_ERRORS = (TypeError, NameError, AttributeError, ImportError, SyntaxError,
                        NotImplementedError)
# Parsl's names for an attempt the infrastructure lost: not the app's doing
INFRASTRUCTURE_ERRORS = frozenset({
    "WorkerLost", "ManagerLost", "ScalingFailed", "SubmitException", "InterchangeLost",
    "ExecutorError", "BadStateException"})
# ... and those that say the executor can run nothing at all (no block could start)
FATAL_ERRORS = frozenset({"BadStateException", "ScalingFailed", "SubmitException"})
# Parsl's text of blocks that failed to start: "Executor L failed due to: Error 1:
# Failed to start block 0: <why; a refused submission ends stderr=<its stderr>>" (Error 2:)
BLOCK_FAILURE = re.compile(
    r"Failed to start block \S+: (.*?)(?=\s*Error \d+:\s*Failed to start block|\Z)", re.S)
EXECUTOR_LABEL = re.compile(r"Executor (\S+) failed")
# a SubmitException's own message: "Cannot launch job J: <message>; recode=..."
LAUNCH_MESSAGE = re.compile(r"Cannot launch job \S+: (.*?); recode=")
COMMIT_EVERY_ROWS = 10_000
COMMIT_EVERY_SECONDS = 0.25  # the durability window of async mode, where commits are cheap
COMMIT_COST_FACTOR = 20.0  # ... else this many times the last commit's wall seconds
COMMIT_MAX_SECONDS = 5.0  # ... but never longer


@dataclass
class SubmittedTask:
    """A task in flight: its ledger id and what the engine needs when it completes."""

    task_id: int
    scale: str
    round_index: int
    parent_row: int
    submitted: float
    task_input: np.ndarray
    attempt: int = 1
    walker: int | None = None
    seed: int = 0
    failures: int = 0  # earlier attempts the app failed (losses to the infrastructure not)
    chosen_by: int = -1  # the model generation that chose a promoted row (-1: none)
    staleness: int = -1  # committed target results that model had not seen (-1: unknown)


@dataclass
class Completion:
    """A checked result: rows (or a problem) plus the attempt's timeline entry."""

    task: SubmittedTask
    rows: Rows | None
    problem: str | None
    started: float | None = None
    ended: float | None = None
    worker: str | None = None
    deterministic: bool = False  # retrying with a new seed would fail the same way
    kind: str = "app"  # or 'infrastructure' (lost, not the app's), 'fatal' (nothing runs)

    def outcome(self, status: str, reason: str | None = None) -> TaskOutcome:
        return TaskOutcome(self.task.task_id, status, self.started, self.ended,
                           rows=0 if self.rows is None else len(self.rows), reason=reason,
                           attempt=self.task.attempt, submitted=self.task.submitted,
                           worker=self.worker,
                           parent_row=self.task.parent_row if self.task.parent_row >= 0
                           else None)


def check_completion(future: concurrent.futures.Future[Any],
                     task: SubmittedTask) -> Completion:
    """What one attempt produced: rows, or the problem that makes it a failure."""
    try:
        returned = future.result()
    except Exception as error:  # the app raised, timed out, or its worker died
        text = str(error).strip()
        if type(error).__name__ == "AppTimeout":  # where it was raised says nothing
            problem = f"AppTimeout: scale '{task.scale}' " + (
                text or "app ran past its timeout (Parsl's AppTimeout, raised as the "
                "attempt was ending)")
        elif error_kind(type(error).__name__) == "app":
            # an app's own error keeps where it was raised (file:line of innermost frames)
            problem = describe_failure(error)
        else:
            problem = f"{type(error).__name__}: {infrastructure_message(text)}"
        return Completion(task, None, problem,
                          deterministic=isinstance(error, DETERMINISTIC_ERRORS),
                          kind=error_kind(problem))
    started, ended = returned["started"], returned["ended"]
    worker = returned.get("worker")
    try:
        arrays = check_result(returned["outputs"])
    except BadResultError as error:  # a misshapen result is the app's; NaN may be luck
        return Completion(task, None, f"bad result: {error}", started, ended, worker,
                          deterministic="non-finite" not in str(error))
    x = arrays.pop("x")
    meta = Rows.meta_for(task.task_id, x.shape[0], task.parent_row, task.round_index,
                         task.submitted, started, ended)
    return Completion(task, Rows(x=x, y=arrays, meta=meta), None, started, ended, worker)


def infrastructure_message(text: str) -> str:
    """Parsl's account of an infrastructure failure as one line. Where blocks could not
    start, the executor's label, how many blocks, and why, in the submit command's own
    words where Parsl quotes them (its stderr, e.g. ``sbatch: error: Batch job
    submission failed: ...``), instead of Parsl's per-block wrapping of them.

    >>> infrastructure_message("Executor sim-fine failed due to: Error 1:\\n\\tFailed "
    ...     "to start block 0: Cannot launch job j: Could not read job ID from submit "
    ...     "command standard output; recode=1, stdout=, stderr=sbatch: error: refused\\n")
    'executor sim-fine could not start its workers (1 block): sbatch: error: refused'
    """
    reasons = [" ".join(reason.split()) for reason in BLOCK_FAILURE.findall(text)]
    if not reasons:
        return " ".join(text.split())
    said: list[str] = []
    for reason in reasons:
        words = reason.rpartition("stderr=")[2].strip() if "stderr=" in reason else reason
        if words in ("", "None"):  # no stderr: the submit error's own message says why
            launch = LAUNCH_MESSAGE.search(reason)
            words = launch.group(1) if launch else reason
        if words and words not in said:
            said.append(words)
    executor = EXECUTOR_LABEL.search(text)
    who = f"executor {executor.group(1)}" if executor else "the executor"
    blocks = f"{len(reasons)} block{'s' if len(reasons) > 1 else ''}"
    others = len(said) - 1
    more = f" (and {others} other message{'s' if others > 1 else ''})" if others else ""
    return f"{who} could not start its workers ({blocks}): {said[0] if said else ''}{more}"


def error_kind(problem: str) -> str:
    """'fatal', 'infrastructure' or 'app', from a problem text ``"Type: message"``."""
    name = problem.split(":", 1)[0].strip().rsplit(".", 1)[-1]
    if name in FATAL_ERRORS:
        return "fatal"
    return "infrastructure" if name in INFRASTRUCTURE_ERRORS else "app"


CommitListener = Callable[[str, Rows | None, list[TaskOutcome]], None]


class CommitBuffer:
    """Results waiting to be committed, per scale.

    ``ordered`` commits in task order (rounds mode: the same seed gives the same store,
    whatever order tasks complete in); otherwise in completion order. ``on_commit`` is
    told every committed batch (the in-memory state follows the store through it)."""

    def __init__(self, store: Store, on_commit: CommitListener, *, ordered: bool) -> None:
        self.store = store
        self.on_commit = on_commit
        self.ordered = ordered
        self._entries: dict[str, list[tuple[int, Rows | None, TaskOutcome]]] = {}
        self._rows = 0
        self._oldest: float | None = None
        self.last_commit_seconds = 0.0  # wall seconds of the last flush's store commits

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._entries.values())

    @property
    def rows(self) -> int:
        """Rows buffered, all scales."""
        return self._rows

    def add(self, scale: str, rows: Rows | None, outcome: TaskOutcome) -> None:
        self._entries.setdefault(scale, []).append((outcome.task_id, rows, outcome))
        self._rows += 0 if rows is None else len(rows)
        if self._oldest is None:
            self._oldest = clock.now()

    def holds(self, scale: str) -> bool:
        """Whether results of ``scale`` wait to be committed."""
        return bool(self._entries.get(scale))

    @property
    def window(self) -> float:
        """Seconds the oldest buffered result may wait while the steering is busy."""
        return min(COMMIT_MAX_SECONDS,
                   max(COMMIT_EVERY_SECONDS, COMMIT_COST_FACTOR * self.last_commit_seconds))

    def due(self, *, idle: bool = False) -> bool:
        """Results wait and: enough rows, the steering is ``idle`` (its last wait brought
        nothing: a commit delays nothing), or the oldest has waited :attr:`window`."""
        if self._oldest is None:
            return False
        return (self._rows >= COMMIT_EVERY_ROWS or idle
                or clock.now() - self._oldest >= self.window)

    def flush(self, before: dict[str, int | None] | None = None) -> None:
        """Commit everything, or (``before``) per scale only tasks numbered below a
        still-running task of that scale, leaving the rest buffered."""
        seconds = 0.0
        for scale, entries in self._entries.items():
            if self.ordered:
                entries.sort(key=lambda entry: entry[0])
            limit = None if before is None else before.get(scale)
            ready = [e for e in entries if limit is None or e[0] < limit]
            if not ready:
                continue
            batches = [rows for _, rows, _ in ready if rows is not None]
            rows = Rows.concatenate(batches) if batches else None
            outcomes = [outcome for _, _, outcome in ready]
            began = time.perf_counter()
            self.store.commit(scale, rows, outcomes)
            seconds += time.perf_counter() - began
            fault_point("after-commit")
            del entries[:len(ready)]
            self._rows -= 0 if rows is None else len(rows)
            self.on_commit(scale, rows, outcomes)
        if seconds:
            self.last_commit_seconds = seconds
        self._oldest = clock.now() if len(self) else None
