"""Fault-injection points for testing crash safety (``benchmarks.faults``).

Inert unless the environment variable ``CAMPAIGN_FAULT_POINT`` is ``<point>:<n>``: then
the n-th time the driver passes ``<point>`` it SIGKILLs itself, as a node failure or an
OOM kill would, at exactly the moment that is hardest to survive. Points:

``between-store-and-ledger``  rows written to zarr, ledger not yet committed (torn write)
``during-fit``                a learner is being fitted on the train executor
``after-plan``                a batch is recorded in the ledger, not yet submitted
``after-commit``              a commit just finished, mid-ingest
"""

from __future__ import annotations

import os
import signal
from collections import Counter

FAULT_POINTS = ("between-store-and-ledger", "during-fit", "after-plan", "after-commit")
_passes: Counter[str] = Counter()


def fault_point(name: str) -> None:
    """SIGKILL this process if ``CAMPAIGN_FAULT_POINT`` asks for its n-th pass of ``name``."""
    wanted = os.environ.get("CAMPAIGN_FAULT_POINT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _passes[name] += 1
    if _passes[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
