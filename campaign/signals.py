"""Graceful stop on SIGTERM / SIGINT (walltime ending, Ctrl-C).

The first signal asks the engine to submit nothing new and to wait up to a grace period
for running tasks, committing what completes; a second signal stops the wait at once.
Either way nothing committed is lost and unfinished tasks stay ``submitted`` in the
ledger, to be run again by ``campaign resume``.

>>> stop = StopRequest(grace_period=0.0)
>>> stop.stopping
False
>>> stop.request("test")  # what a first SIGTERM does, from code
>>> stop.stopping, stop.stop_now  # plan nothing new; a zero grace period is over at once
(True, True)
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Counts stop signals while installed (main thread only; elsewhere it is inert)."""

    def __init__(self, grace_period: float) -> None:
        self.grace_period = grace_period
        self.count = 0
        self.first_at: float | None = None
        self.signal_name = ""
        self._announced = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _handle(self, number: int, frame: FrameType | None) -> None:
        # only set flags here: logging from a signal handler can deadlock on the very
        # lock the interrupted code holds; the engine calls announce() from its loops
        self.count += 1
        self.signal_name = signal.Signals(number).name
        if self.first_at is None:
            self.first_at = time.monotonic()

    def announce(self) -> None:
        """Log what the signals received so far mean (once each; call from the loop)."""
        if self.count >= 1 and self._announced < 1:
            logger.warning("%s: submitting nothing new; waiting up to %g s for running tasks "
                           "(send it again to stop now)", self.signal_name, self.grace_period)
        if self.count >= 2 and self._announced < 2:
            logger.warning("%s again: stopping now", self.signal_name)
        self._announced = max(self._announced, min(self.count, 2))

    def request(self, name: str = "request") -> None:
        """Ask for a stop from code (tests, or an embedding application)."""
        self.count += 1
        self.signal_name = name
        if self.first_at is None:
            self.first_at = time.monotonic()

    @property
    def stopping(self) -> bool:
        """A stop was asked for: plan nothing new."""
        self.announce()
        return self.count > 0

    @property
    def stop_now(self) -> bool:
        """Stop waiting for running tasks: a second signal, or the grace period is over."""
        self.announce()
        if self.count >= 2:
            return True
        return self.first_at is not None and (
            time.monotonic() - self.first_at >= self.grace_period)
