"""One writer per run directory: an exclusive ``flock`` on ``<run>/campaign.lock``.

The kernel drops a ``flock`` when its process dies, so a lock left by a killed driver
is free again without any clean-up; the file only tells who holds it now. The holder
writes ``{"host", "pid", "started", "started_at", "create_time"}`` into it and empties it
on :meth:`RunLock.release`, so a record left in the file names a driver that is still
running or one that died without releasing (SIGKILL, out of memory, a lost node).

>>> import tempfile
>>> run_dir = tempfile.mkdtemp()
>>> with RunLock(run_dir) as lock:
...     holder = read_holder(run_dir)
...     holder["pid"] == os.getpid(), holder_alive(holder)
(True, True)
>>> read_holder(run_dir) is None  # released: the record is emptied
True
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

LOCK_NAME = "campaign.lock"
SAME_START_SECONDS = 1.0
"""Largest difference between a live process's create time and the recorded one for it to
be the same process (as in :mod:`campaign.processes`)."""


class RunLockedError(RuntimeError):
    """Another live process is driving this run directory."""


def _create_time(pid: int) -> float | None:
    """The process's start time (seconds since the epoch, psutil's), None if unknown."""
    try:
        import psutil

        return float(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - psutil missing, or the process is gone
        return None


class RunLock:
    """Exclusive lock on a run directory, held until :meth:`release` (or process exit)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._file: IO[str] | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown holder"
            handle.close()
            raise RunLockedError(f"{self.path.parent} is in use by another campaign driver "
                            f"({holder}); wait for it or stop it first") from None
        handle.seek(0)
        handle.truncate()
        now = time.time()
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                 "started": started, "started_at": now,
                                 "create_time": _create_time(os.getpid())}))
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(run_dir: str | Path) -> dict[str, Any] | None:
    """The record the lock's holder wrote (``host``, ``pid``, ``started``; ``started_at``
    and ``create_time`` from this version on), or None when the file is missing, empty
    (released) or unreadable. Reads only: it never takes the lock."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text().strip()
    except OSError:
        return None
    try:
        record = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None


def holder_alive(record: dict[str, Any]) -> bool | None:
    """Whether the process a lock record names is still running: True or False on the
    host that wrote it, None on another host (its pids cannot be checked from here).

    "Running" means the pid exists, is not a zombie and, where the record has a
    ``create_time``, started then (within :data:`SAME_START_SECONDS`): a pid the system
    has since given to another process does not count."""
    if record.get("host") != socket.gethostname():
        return None
    pid = int(record["pid"])
    try:
        import psutil
    except ImportError:  # no psutil: the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        recorded = record.get("create_time")
        return recorded is None or abs(process.create_time() - float(recorded)) \
            <= SAME_START_SECONDS
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # another user's live process
        return True
