"""The fault suite's settings and schedules: what is killed or refused, and when.

Owns: the quick and full settings (:data:`QUICK`, :data:`FULL`), the driver-kill plan
(:func:`kill_plan`: every fault point first, then random moments and points in turn),
the driver starts whose block submission is refused (:func:`refusal_starts`) and the
worker-kill events (:func:`worker_kill_plan`). Deterministic per seed; no processes.
"""

from __future__ import annotations

import random
from typing import Any

from campaign.faults import FAULT_POINTS

MODES = ("async", "rounds")
# driver_timeout: seconds one driver start may take before the suite calls it hung
QUICK = {"site": "local", "kills": 6, "budget": 24, "worker_kills": 2, "refusals": 1,
         "driver_timeout": 300}
FULL = {"site": "local", "kills": 20, "budget": 48, "worker_kills": 8, "refusals": 2,
        "driver_timeout": 900}
# a point's pass number n is drawn from 1..PASSES[point]: commits and plans happen many
# times per start; a fit at least once in a start that gets to its end (the final fit)
PASSES = {"between-store-and-ledger": 3, "during-fit": 1, "after-plan": 3, "after-commit": 3}
WORKER_KILL_GAP = (2.0, 6.0)  # seconds between worker-kill events of one driver start
DOUBLE_KILL_WITHIN = 2.0  # a double worker kill: the second within this many seconds


def kill_plan(kills: int, rng: random.Random) -> list[dict[str, Any]]:
    """The driver kills, in order: one at each fault point first, then alternately a kill
    at a random moment and the next fault point of the cycle. Deterministic per ``rng``
    seed."""
    plan: list[dict[str, Any]] = []
    cycle = 0
    for index in range(kills):
        extra = index - len(FAULT_POINTS)
        if extra < 0 or extra % 2 == 1:
            point = FAULT_POINTS[cycle % len(FAULT_POINTS)]
            cycle += 1
            plan.append({"how": "fault point", "point": point,
                         "pass": rng.randint(1, PASSES[point])})
        else:
            # after this share of the fine tasks left has finished, plus a jitter
            plan.append({"how": "random moment", "share": rng.uniform(0.1, 0.5),
                         "jitter_s": rng.uniform(0.0, 0.5)})
    return plan


def refusal_starts(refusals: int) -> set[int]:
    """The driver starts (1-based) whose sim-fine block submission is refused: the
    2nd, 5th, 8th ...: each after a kill's resume, none the first start."""
    return {2 + 3 * index for index in range(refusals)}


def worker_kill_plan(kills: int, rng: random.Random) -> list[str]:
    """Worker-kill events totalling ``kills`` SIGKILLs: the first two workers of one pool
    within 2 s ('double'), then single or double at random."""
    events: list[str] = []
    total = 0
    while total < kills:
        kind = "double" if not events else rng.choice(("single", "single", "double"))
        if kind == "double" and total + 2 > kills:
            kind = "single"
        events.append(kind)
        total += 2 if kind == "double" else 1
    return events

