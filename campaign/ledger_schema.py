"""What the ledger holds: its SQLite schema, the records written to it (a planned task,
an attempt, a task's outcome) and the statements that insert them.

Owns: :data:`SCHEMA`, :class:`PlannedTask`, :class:`Attempt`, :class:`TaskOutcome`, and
creating a ledger file with its tables already in it. :class:`campaign.ledger.Ledger`
owns the transactions.

    >>> TaskOutcome(7, "done", rows=3).status
    'done'
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PLAN_ROWS_PER_STATEMENT", "SCHEMA", "TASK_COLUMNS", "TASK_STATUSES", "Attempt",
           "PlannedTask", "TaskOutcome", "create_with_schema", "insert_attempts",
           "insert_tasks"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task_id INTEGER PRIMARY KEY,
    scale TEXT NOT NULL,
    round INTEGER NOT NULL,
    status TEXT NOT NULL,
    seed INTEGER NOT NULL,
    parent_row INTEGER NOT NULL,
    input TEXT NOT NULL,
    submitted REAL NOT NULL,
    started REAL,
    ended REAL,
    rows INTEGER,
    reason TEXT,
    walker INTEGER,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS tasks_by_scale ON tasks (scale, status);
CREATE INDEX IF NOT EXISTS tasks_by_round ON tasks (scale, round);
CREATE TABLE IF NOT EXISTS attempts (
    task_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    submitted REAL,
    started REAL,
    ended REAL,
    worker TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    PRIMARY KEY (task_id, attempt)
);
CREATE TABLE IF NOT EXISTS committed (scale TEXT PRIMARY KEY, rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS planned_rounds (round INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER NOT NULL,
    promotion TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (round, promotion)
);
"""

TASK_STATUSES = ("submitted", "done", "quarantined")
TASK_COLUMNS = {"task_id", "scale", "round", "status", "seed", "parent_row", "input",
                "submitted", "started", "ended", "rows", "reason", "walker", "attempts"}


@dataclass(frozen=True)
class TaskOutcome:
    """What happened to one task, recorded when its rows are committed.

    ``attempt``, ``submitted`` and ``worker`` (``host/pid/thread``) describe the last
    attempt for the task timeline; ``parent_row`` is the promoted source row (if any)."""

    task_id: int
    status: str
    started: float | None = None
    ended: float | None = None
    rows: int = 0
    reason: str | None = None
    attempt: int = 1
    submitted: float | None = None
    worker: str | None = None
    parent_row: int | None = None


@dataclass(frozen=True)
class Attempt:
    """One attempt of one task, for the timeline (``attempts`` table)."""

    task_id: int
    attempt: int
    submitted: float | None
    started: float | None
    ended: float | None
    worker: str | None
    outcome: str
    reason: str | None = None


PLAN_ROWS_PER_STATEMENT = 100  # 8 values a row: far below SQLite's variable limit


def insert_tasks(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """One multi-row INSERT of planned tasks (task_id, scale, round, seed, parent_row,
    input, submitted, walker)."""
    values = ", ".join(["(?, ?, ?, 'submitted', ?, ?, ?, ?, ?)"] * len(rows))
    db.execute("INSERT INTO tasks (task_id, scale, round, status, seed, parent_row, input, "
               f"submitted, walker) VALUES {values}", [v for row in rows for v in row])


def insert_attempts(db: sqlite3.Connection, attempts: Iterable[Attempt]) -> None:
    db.executemany("INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   [(a.task_id, a.attempt, a.submitted, a.started, a.ended, a.worker,
                     a.outcome, a.reason) for a in attempts])


@dataclass(frozen=True)
class PlannedTask:
    """A task to record before it is submitted (see :meth:`Ledger.plan`)."""

    scale: str
    round_index: int
    parent_row: int
    task_input: list[float]
    walker: int | None = None


def create_with_schema(path: Path) -> None:
    """Create a new ledger at ``path`` with its tables already in it: written beside it
    and renamed into place, so a reader (``campaign status`` on a driver that is starting)
    never finds a ledger file without its tables."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.new")
    partial.unlink(missing_ok=True)
    db = sqlite3.connect(partial, isolation_level=None)
    try:
        db.executescript(SCHEMA)
    finally:
        db.close()
    os.replace(partial, path)
