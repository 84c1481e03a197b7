"""The campaign's clock: wall time on a real site, virtual time on a simulated one.

Owns: :func:`now`, the one time source of the steering (deadlines, commit cadence,
budgets, elapsed time, ledger times of the driver's own records), and
:class:`VirtualClock`, which a simulated site installs with :func:`using` for the
length of a run. Code that measures real CPU (the simulated site charging the driver)
uses ``time`` directly; everything that *decides* uses :func:`now`.

>>> clock = VirtualClock(start=100.0)
>>> with using(clock):
...     clock.advance(2.5)
...     now()
102.5
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

__all__ = ["VirtualClock", "now", "using"]


class VirtualClock:
    """Time that moves only when told: by the driver's measured CPU, or to the next
    event of a simulated site."""

    def __init__(self, start: float = 0.0) -> None:
        self.time = float(start)

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self.time += seconds

    def advance_to(self, when: float) -> None:
        self.time = max(self.time, float(when))


_installed: VirtualClock | None = None


def now() -> float:
    """Seconds since the epoch on a real site; the virtual clock's time on a simulated
    one."""
    return time.time() if _installed is None else _installed.time


@contextlib.contextmanager
def using(clock: VirtualClock) -> Iterator[VirtualClock]:
    """Make ``clock`` the campaign's time source inside the block (one at a time)."""
    global _installed
    if _installed is not None:
        raise RuntimeError("a virtual clock is already installed: one simulated run at a time")
    _installed = clock
    try:
        yield clock
    finally:
        _installed = None
