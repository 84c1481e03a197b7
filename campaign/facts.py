"""What a run records about itself in the ledger's facts, as it starts and as it ends.

Owns: the facts of a start (spec, script, site, versions, mode; on resume the session
list and the count of resumes) and of an end (wall time, stop reason, whether it
failed or was interrupted), each written in one transaction; and :class:`RunSummary`,
what a run reports to its caller when it ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign.ledger import Ledger
from campaign.lifecycle import versions
from campaign.spec import CampaignSpec


def record_start(ledger: Ledger, spec: CampaignSpec, start: str, script: str | None,
                 site: str) -> None:
    """One transaction: a driver killed while starting leaves all or nothing."""
    facts: dict[str, Any] = {"spec": spec.describe(), "script": script, "site": site,
                             "versions": versions(), "mode": spec.mode}
    now = time.time()
    if start == "resume":  # sessions: when each driver started (the report's gaps)
        facts.update(resumed=ledger.fact("resumed", 0) + 1, interrupted=None,
                     stop_reason=None, failed=None,
                     sessions=[*ledger.fact("sessions", []), now])
    else:
        facts.update(name=spec.name, created=now, wall_seconds=0.0, sessions=[now])
    ledger.set_facts(facts)


def record_end(ledger: Ledger, wall: float, stop_reason: str, failed_reason: str,
               interrupted: bool) -> None:
    """The run's wall time and why it stopped (or that it was interrupted)."""
    ledger.set_fact("wall_seconds", wall)
    if interrupted:
        ledger.set_fact("interrupted", stop_reason)
    else:
        ledger.set_facts({"stop_reason": stop_reason, "failed": failed_reason or None})


@dataclass
class RunSummary:
    """What a run reports: where it is, what ran, why it stopped."""

    run_dir: Path
    name: str
    rounds: int
    stop_reason: str
    wall_seconds: float
    task_counts: dict[str, dict[str, int]]
    rows: dict[str, int]
    interrupted: bool = False
    unfinished: int = 0
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    mode: str = "async"
    failed: bool = False  # stopped because it could not progress
