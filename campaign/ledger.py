"""The ledger: task lifecycle, committed row counts and campaign facts, in SQLite.

The zarr store holds the large append-only arrays; the ledger holds the small mutable
facts, changed in transactions. The commit rule (DESIGN): rows are written to zarr
first, then :meth:`Ledger.commit` records the new committed row count together with
the status of the tasks those rows came from, in one transaction. A row beyond the
committed count was never committed and is cut back when the store is opened.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from campaign.ledger_schema import (
    PLAN_ROWS_PER_STATEMENT,
    SCHEMA,
    TASK_COLUMNS,
    TASK_STATUSES,
    Attempt,
    PlannedTask,
    TaskOutcome,
    create_with_schema,
    insert_attempts,
    insert_tasks,
)

__all__ = ["PLAN_ROWS_PER_STATEMENT", "SCHEMA", "TASK_COLUMNS", "TASK_STATUSES", "Attempt",
           "Ledger", "LedgerError", "PlannedTask", "TaskOutcome"]


class LedgerError(RuntimeError):
    """The ledger file is unreadable or not a campaign ledger."""


class Ledger:
    """SQLite ledger of one campaign run directory (WAL mode, one writer).

    ``read_only`` opens an existing ledger without writing anything (no schema, no WAL
    switch): for inspecting a directory before taking its lock, and for ``status``.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._next_task_id: int | None = None  # plan()'s, read from the tasks table once
        try:
            if read_only:
                if not self.path.is_file():
                    raise LedgerError(f"{self.path} does not exist")
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                           isolation_level=None, timeout=30)
                self._db.execute("SELECT COUNT(*) FROM facts").fetchone()
                self._db.execute("SELECT COUNT(*) FROM tasks").fetchone()
            else:
                if not self.path.exists():
                    create_with_schema(self.path)
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
                self._check_columns()
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"{self.path} is not a readable campaign ledger ({error})") from None
        self._check_columns()

    def _check_columns(self) -> None:
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
        missing = TASK_COLUMNS - columns
        if columns and missing:
            self._db.close()
            raise LedgerError(f"{self.path} was written by an incompatible version (tasks lack "
                              f"{', '.join(sorted(missing))}); start a new run directory")

    def check_integrity(self) -> None:
        """Raise :class:`LedgerError` if SQLite finds the file damaged."""
        try:
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as error:
            raise LedgerError(f"{self.path} is corrupted ({error})") from None
        if problems != ["ok"]:
            raise LedgerError(f"{self.path} is corrupted ({problems[0]})")

    def close(self) -> None:
        if not self.read_only:
            # back to a single file: readers (status, resume checks) then create no
            # -wal/-shm files; the next writer switches WAL on again
            try:
                self._db.execute("PRAGMA journal_mode=DELETE")
            except sqlite3.OperationalError:  # another connection still reading
                pass
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic transaction: everything inside commits together or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- campaign facts ------------------------------------------------------------
    def set_fact(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (key, json.dumps(value)))

    def set_facts(self, facts: dict[str, Any]) -> None:
        """Record several facts in one transaction (all or none)."""
        with self.transaction() as db:
            for key, value in facts.items():
                db.execute("INSERT OR REPLACE INTO facts VALUES (?, ?)", (key, json.dumps(value)))

    def fact(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM facts WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -- tasks ---------------------------------------------------------------------
    def submit(self, scale: str, round_index: int, seed: int, parent_row: int,
               task_input: list[float], walker: int | None = None) -> int:
        """Record one task as submitted with a given seed and return its id."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO tasks (scale, round, status, seed, parent_row, input, submitted, "
                "walker) VALUES (?, ?, 'submitted', ?, ?, ?, ?, ?)",
                (scale, round_index, seed, parent_row, json.dumps(task_input), time.time(),
                 walker),
            )
            self._next_task_id = None
            return int(cursor.lastrowid)

    def plan(self, tasks: list[PlannedTask], seed_for: Callable[[int, int], int]) -> list[int]:
        """Record ``tasks`` as submitted, all or none, and return their ids;
        ``seed_for(task_id, attempt)`` gives each task's seed.

        A batch of up to ``PLAN_ROWS_PER_STATEMENT`` tasks is one multi-row ``INSERT``
        (a single statement is atomic on its own: no ``BEGIN``/``COMMIT`` round trips,
        each of which gives up the GIL to Parsl's threads); a larger one is a
        transaction of such statements. The next id is kept in memory (one writer); if
        another connection took it, the statement fails as a whole and is retried
        with the id read afresh."""
        if not tasks:
            return []
        for _ in range(2):
            if self._next_task_id is None:
                self._next_task_id = int(self._db.execute(
                    "SELECT COALESCE(MAX(task_id), 0) + 1 FROM tasks").fetchone()[0])
            first, submitted = self._next_task_id, time.time()
            rows = [(first + offset, task.scale, task.round_index, seed_for(first + offset, 1),
                     task.parent_row, json.dumps(task.task_input), submitted, task.walker)
                    for offset, task in enumerate(tasks)]
            chunks = [rows[i:i + PLAN_ROWS_PER_STATEMENT]
                      for i in range(0, len(rows), PLAN_ROWS_PER_STATEMENT)]
            try:
                if len(chunks) == 1:
                    insert_tasks(self._db, chunks[0])
                else:
                    with self.transaction() as db:
                        for chunk in chunks:
                            insert_tasks(db, chunk)
            except sqlite3.IntegrityError as error:
                if "tasks.task_id" not in str(error):  # a bad row: nothing was written
                    raise
                self._next_task_id = None  # another writer took these ids
                continue
            self._next_task_id = first + len(tasks)
            return [row[0] for row in rows]
        raise LedgerError(f"{self.path}: task ids taken by another writer twice in a row")

    def retry(self, task_id: int, seed: int, reason: str,
              failed: Attempt | None = None) -> int:
        """Count one more attempt of ``task_id`` with a new seed (recording the ``failed``
        attempt for the timeline); returns the new attempt number."""
        with self.transaction() as db:
            if failed is not None:
                insert_attempts(db, [failed])
            db.execute("UPDATE tasks SET attempts = attempts + 1, seed = ?, reason = ? "
                       "WHERE task_id = ?", (seed, reason, task_id))
            return int(db.execute("SELECT attempts FROM tasks WHERE task_id = ?",
                                  (task_id,)).fetchone()[0])

    def mark_planned(self, round_index: int) -> None:
        """Every task of ``round_index`` has been recorded (a resumed run re-plans a round
        that lacks this mark, and only the parts of it that have no tasks yet)."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO planned_rounds VALUES (?)", (round_index,))

    def planned(self, round_index: int) -> bool:
        return self._db.execute("SELECT 1 FROM planned_rounds WHERE round = ?",
                                (round_index,)).fetchone() is not None

    def last_round(self) -> int | None:
        """The highest round with a task, a round record or a plan mark (None if none)."""
        row = self._db.execute(
            "SELECT MAX(r) FROM (SELECT MAX(round) AS r FROM tasks UNION ALL "
            "SELECT MAX(round) FROM rounds UNION ALL SELECT MAX(round) FROM planned_rounds)"
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def commit(self, scale: str, committed_rows: int, outcomes: Iterable[TaskOutcome]) -> None:
        """Record the committed row count of ``scale`` and the outcomes of the tasks
        whose rows were just written, in one transaction."""
        outcomes = list(outcomes)
        for outcome in outcomes:
            if outcome.status not in TASK_STATUSES:
                raise ValueError(f"unknown task status {outcome.status!r}")
        with self.transaction() as db:  # executemany: one statement per table, not per row
            db.execute("INSERT OR REPLACE INTO committed VALUES (?, ?)", (scale, committed_rows))
            db.executemany(
                # a done task keeps the reason of its last failed attempt, if any
                "UPDATE tasks SET status = ?, started = ?, ended = ?, rows = ?, "
                "reason = COALESCE(?, reason) WHERE task_id = ?",
                [(o.status, o.started, o.ended, o.rows, o.reason, o.task_id)
                 for o in outcomes])
            insert_attempts(db, [Attempt(o.task_id, o.attempt, o.submitted, o.started,
                                          o.ended, o.worker, o.status, o.reason)
                                  for o in outcomes])

    def committed_rows(self, scale: str) -> int:
        row = self._db.execute("SELECT rows FROM committed WHERE scale = ?", (scale,)).fetchone()
        return 0 if row is None else int(row[0])

    def tasks(self, scale: str | None = None, status: str | None = None,
              round_index: int | None = None) -> list[dict[str, Any]]:
        """Tasks as dicts, oldest first, optionally filtered by scale, status and round."""
        query = "SELECT * FROM tasks WHERE 1=1"
        arguments: list[Any] = []
        if round_index is not None:
            query += " AND round = ?"
            arguments.append(round_index)
        if scale is not None:
            query += " AND scale = ?"
            arguments.append(scale)
        if status is not None:
            query += " AND status = ?"
            arguments.append(status)
        cursor = self._db.execute(query + " ORDER BY task_id", arguments)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def task_counts(self) -> dict[str, dict[str, int]]:
        """``{scale: {status: count}}`` over all tasks."""
        counts: dict[str, dict[str, int]] = {}
        for scale, status, count in self._db.execute(
            "SELECT scale, status, COUNT(*) FROM tasks GROUP BY scale, status"
        ):
            counts.setdefault(scale, {})[status] = count
        return counts

    def has_tasks(self, scale: str, round_index: int) -> bool:
        """Whether ``scale`` has any task in ``round_index`` (one indexed lookup)."""
        return self._db.execute("SELECT 1 FROM tasks WHERE scale = ? AND round = ? LIMIT 1",
                                (scale, round_index)).fetchone() is not None

    def attempts(self) -> list[dict[str, Any]]:
        """Every recorded attempt (the task timeline), with its task's scale."""
        cursor = self._db.execute(
            "SELECT a.*, t.scale FROM attempts a JOIN tasks t USING (task_id) "
            "ORDER BY a.submitted, a.task_id, a.attempt")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def walker_tasks(self) -> list[dict[str, Any]]:
        """Per (scale, walker): segments recorded, newest task id and its status."""
        cursor = self._db.execute(
            "SELECT t.scale, t.walker, w.segments, t.task_id, t.status FROM tasks t JOIN "
            "(SELECT scale, walker, COUNT(*) AS segments, MAX(task_id) AS newest FROM tasks "
            " WHERE walker IS NOT NULL GROUP BY scale, walker) w ON t.task_id = w.newest")
        names = ["scale", "walker", "segments", "task_id", "status"]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def newest_done_walker_tasks(self) -> list[tuple[str, int, int]]:
        """(scale, walker, newest done task id) per walker."""
        return [(scale, int(walker), int(task_id)) for scale, walker, task_id in self._db.execute(
            "SELECT scale, walker, MAX(task_id) FROM tasks WHERE walker IS NOT NULL AND "
            "status = 'done' GROUP BY scale, walker")]

    def promoted_rows(self, scale: str) -> list[tuple[int, str]]:
        """(parent row, status) of every task of the promoted scale ``scale``."""
        return [(int(row), status) for row, status in self._db.execute(
            "SELECT parent_row, status FROM tasks WHERE scale = ? AND parent_row >= 0",
            (scale,))]

    def core_seconds(self) -> dict[str, float]:
        """Busy seconds of every finished attempt, per scale."""
        return {scale: float(total or 0.0) for scale, total in self._db.execute(
            "SELECT t.scale, SUM(a.ended - a.started) FROM attempts a JOIN tasks t "
            "USING (task_id) WHERE a.ended IS NOT NULL AND a.started IS NOT NULL "
            "GROUP BY t.scale")}

    def durations(self) -> dict[str, tuple[int, float]]:
        """(finished attempts, longest busy seconds) per scale: what the engine-side
        deadline derives from, so a resumed run has one from its first task on."""
        return {scale: (int(count), float(longest or 0.0))
                for scale, count, longest in self._db.execute(
                    "SELECT t.scale, COUNT(*), MAX(a.ended - a.started) FROM attempts a "
                    "JOIN tasks t USING (task_id) WHERE a.ended IS NOT NULL AND "
                    "a.started IS NOT NULL GROUP BY t.scale")}

    # -- rounds --------------------------------------------------------------------
    def record_round(self, round_index: int, promotion: str, record: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO rounds VALUES (?, ?, ?)",
                       (round_index, promotion, json.dumps(record)))

    def round_record(self, round_index: int, promotion: str) -> dict[str, Any] | None:
        """The record of one round (or model generation) of ``promotion``, if any."""
        row = self._db.execute("SELECT record FROM rounds WHERE round = ? AND promotion = ?",
                               (round_index, promotion)).fetchone()
        return None if row is None else json.loads(row[0])

    def rounds(self, promotion: str | None = None) -> list[dict[str, Any]]:
        """Round records (dicts with ``round`` and ``promotion`` added), in order."""
        query = "SELECT round, promotion, record FROM rounds"
        arguments: tuple[Any, ...] = ()
        if promotion is not None:
            query += " WHERE promotion = ?"
            arguments = (promotion,)
        records = []
        for round_index, name, record in self._db.execute(query + " ORDER BY round", arguments):
            records.append({"round": round_index, "promotion": name, **json.loads(record)})
        return records
