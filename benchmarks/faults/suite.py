"""The fault suite, per mode: an uninterrupted reference (rounds mode), the faulty run,
the audit; and whether a mode's result keeps the suite's promises (:func:`failures`).
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.faults.audit import audit
from benchmarks.faults.drivers import (
    SCRIPT,
    campaign_command,
    kill_session,
    launch,
    wait_for,
)
from benchmarks.faults.faulty import run_faulty
from benchmarks.faults.schedule import MODES, kill_plan, refusal_starts, worker_kill_plan


def run_mode(mode: str, folder: Path, kills: int, site: str, budget: int, seed: int,
             worker_kills: int, driver_timeout: float = 900.0,
             refusals: int = 0) -> dict[str, Any]:
    """One mode: (rounds) an uninterrupted reference, then the faulty run, then the audit."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "fault_campaign.py"
    script.write_text(SCRIPT.format(budget=budget, mode=mode))
    log = folder / "campaign.log"
    started = time.time()
    reference_seconds = None
    if mode == "rounds":
        reference = launch(campaign_command("run", str(script), "--site", site, "--out",
                                            str(folder / "reference"), "--no-report"), log)
        try:
            code = wait_for(reference, driver_timeout, log)
        finally:
            kill_session(reference.pid)
        if code != 0:
            raise RuntimeError(f"reference run failed; see {log}")
        reference_seconds = time.time() - started
    rng = random.Random(seed)
    faulty = run_faulty(script, folder / "faulty", site, kill_plan(kills, rng), budget, log,
                        worker_kill_plan(worker_kills, rng) if site == "local" else [],
                        random.Random(seed + 1), driver_timeout, refusals)
    result = {"mode": mode, "site": site, "budget": budget, "seed": seed,
              "planned_kills": kills, "kills": faulty.pop("driver_kills"),
              "planned_refusals": len(refusal_starts(refusals)) if site == "local" else 0,
              "reference_seconds": reference_seconds, **faulty}
    result.update(audit(folder / "faulty", budget,
                        folder / "reference" if mode == "rounds" else None))
    result["wall_seconds"] = time.time() - started
    return result


def run_suite(kills: int, site: str = "threads", budget: int = 24, seed: int = 0,
              workdir: Path | None = None, mode: str = "both",
              worker_kills: int = 0, driver_timeout: float = 900.0,
              refusals: int = 0) -> dict[str, Any]:
    """The suite in ``workdir`` (a temporary folder by default). One mode returns its
    result; ``mode="both"`` returns ``{"async": ..., "rounds": ...}``."""
    modes = MODES if mode == "both" else (mode,)
    if any(m not in MODES for m in modes):
        raise ValueError(f"mode must be one of {MODES} or 'both', got {mode!r}")
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        folder = Path(workdir or scratch)
        results = {m: run_mode(m, folder / m, kills, site, budget, seed, worker_kills,
                               driver_timeout, refusals) for m in modes}
    return results if mode == "both" else results[mode]


def failures(result: dict[str, Any]) -> list[str]:
    """What a mode's result breaks of the suite's promises (empty: it passed)."""
    broken = [key for key in ("lost", "duplicated", "torn", "unfinished",
                              "trained_on_quarantined", "quarantined_for_infrastructure",
                              "infrastructure_charged_to_app", "leftover_processes",
                              "final_exit_code") if result[key] != 0]
    if result.get("aborted"):
        broken.append(f"aborted: {result['aborted']}")
    broken += [f"fired at {point}: 0" for point, count in result["points_fired"].items()
               if count == 0]
    if not result["refusals_handled"] == result["refusals"] == result["planned_refusals"]:
        broken.append(f"refusals made {result['refusals']}, handled "
                      f"{result['refusals_handled']}, of {result['planned_refusals']}")
    if result["mode"] == "rounds" and not result["identical_to_uninterrupted"]:
        broken.append("not identical to the uninterrupted run")
    return broken


def passed(result: dict[str, Any]) -> bool:
    """Nothing lost, duplicated, torn or left unfinished, nothing quarantined trained on,
    every fault point fired, every refusal stopped its start, no infrastructure fault
    charged to the app, no process left, the last exit 0, and (rounds) the same store
    as the uninterrupted run."""
    return not failures(result)
