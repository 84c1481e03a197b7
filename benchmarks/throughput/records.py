"""What one figure of the throughput benchmark is: the record format (:func:`record`),
the goals records are judged against (:data:`GOALS`), and the engine variants that the
utilization and time-to-quality parts compare (:data:`VARIANTS`, their one definition).
"""

from __future__ import annotations

import math
from typing import Any

# What the utilization and time-to-quality parts compare, by name: the engine mode.
# "async": busy by default (every free fine slot is filled by the newest posterior,
# conditioned on the pending rows); "rounds": the engine's rounds mode (the baseline).
VARIANTS = {"async": "async", "rounds": "rounds"}
# what each record is judged against (its "goal"; "meets_goal" says whether it did)
GOALS = {
    "throughput": ">= 0.9x raw Parsl at 10^4 and 10^5",
    "round_trip": "<= 1.2x raw Parsl",
    "cpu_per_task_growth": "< 1.5x from 10^3 to 10^5",
    "utilization": ">= 95% (async)",
    "makespan": "within 5% of ideal (async)",
    "ingest": ">= 50,000 rows/s",
    "time_to_target": "async < rounds",
    "sims_to_target": "async <= 1.1x rounds",
}


def record(metric: str, mode: str, n_tasks: int, value: float, baseline: float, unit: str,
           **extra: Any) -> dict[str, Any]:
    """One result: ``ratio = value / baseline``."""
    value, baseline = float(value), float(baseline)
    ratio = value / baseline if baseline != 0 else math.inf
    return {"metric": metric, "mode": mode, "n_tasks": int(n_tasks), "value": value,
            "baseline": baseline, "ratio": ratio, "unit": unit, **extra}

