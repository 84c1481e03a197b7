"""Recording the processes Parsl started, so a later run can end what a SIGKILL leaves,
and ending those a killed earlier driver left.

Owns: the schedule (right after load, while pools start at 3, 10 and 30 s, then every
5 minutes) and the thread the recording runs on: it reads /proc (seconds on a loaded
machine), so it never holds up the steering loop (``campaign.processes`` records).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from campaign.processes import end_leftovers, record_processes

logger = logging.getLogger(__name__)

SCHEDULE = (3.0, 10.0, 30.0)  # seconds after load
LATER_EVERY = 300.0


class ProcessRecorder:
    """Call :meth:`tick` often; it starts a recording when one is due."""

    def __init__(self, run_dir: Path, dfk: Any) -> None:
        self.run_dir, self.dfk = run_dir, dfk
        self.loaded = time.monotonic()
        self.next_record = 0.0
        self.thread: threading.Thread | None = None

    def tick(self) -> None:
        if self.dfk is None:  # a simulated site: no Parsl processes
            return
        since = time.monotonic() - self.loaded
        if since < self.next_record or (self.thread is not None and self.thread.is_alive()):
            return
        later = [t for t in SCHEDULE if t > since]
        self.next_record = later[0] if later else since + LATER_EVERY
        self.thread = threading.Thread(target=record_processes, args=(self.run_dir, self.dfk),
                                       name="campaign-processes", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def end_leftover_processes(run_dir: Path) -> None:
    """End the Parsl processes a killed earlier driver of ``run_dir`` left running."""
    ended = end_leftovers(run_dir)
    if ended:
        logger.warning("ended %d Parsl processes left running by a killed driver of this "
                       "run directory (pids %s)", len(ended), ", ".join(map(str, ended[:10])))
