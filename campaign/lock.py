"""One writer per run directory: an exclusive ``flock`` on ``<run>/campaign.lock``.

The kernel drops a ``flock`` when its process dies, so a lock left by a killed driver
is free again without any clean-up; the file only tells who holds it now.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO


class RunLockedError(RuntimeError):
    """Another live process is driving this run directory."""


class RunLock:
    """Exclusive lock on a run directory, held until :meth:`release` (or process exit)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / "campaign.lock"
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
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        handle.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                 "started": started}))
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
