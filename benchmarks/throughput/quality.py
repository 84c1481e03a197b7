"""Part 5 of the throughput benchmark: time and fine simulations to a fixed reference
error on the Müller-Brown demo, each async variant against rounds mode.

**Time to quality** (``time_to_target``, ``sims_to_target``). The built-in
Müller-Brown demo (``examples/muller_brown.py``, ``Budget(fine=120, coarse=64)``;
``--quick``: both scaled by 40/120, ``Budget(fine=40, coarse=21)``) on
``local``, rounds mode first, then each async variant of ``VARIANTS``. Target fixed
before the runs: 1.5 x the rounds-mode run's final reference RMSE. From
``Ledger.rounds("coarse-to-fine")``: the first model (by ``fit_ended``) with
``reference_rmse <= target``: seconds from the first task's submission to that fit's
end, and its ``n_train`` (fine simulations).
A run that never reaches it reports its totals with ``reached: false`` (lower bounds).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.throughput.records import GOALS, VARIANTS, record
from benchmarks.throughput.runs import finished_ledger, measured, scratch_dir

TARGET_FACTOR = 1.5  # the target: this times the rounds-mode run's final reference RMSE


def quality_curve(run_dir: Path, promotion: str) -> dict[str, Any]:
    """A finished run's models of ``promotion`` in the order they were fitted (training
    size, reference RMSE, fit end), its first submission ``t0`` and final RMSE."""
    with finished_ledger(run_dir) as ledger:
        curve = [r for r in ledger.rounds(promotion)
                 if r.get("reference_rmse") is not None and r.get("fit_ended") is not None]
        attempts = ledger.attempts()
    curve.sort(key=lambda r: r["fit_ended"])
    return {"curve": [{"n_train": r["n_train"], "reference_rmse": r["reference_rmse"],
                       "fit_ended": r["fit_ended"]} for r in curve],
            "t0": min(a["submitted"] for a in attempts),
            "final_rmse": curve[-1]["reference_rmse"] if curve else math.nan}


def reach(curve: dict[str, Any], target: float) -> dict[str, Any]:
    """The first model at or under ``target``: seconds since the first submission and
    fine simulations trained on; else the run's totals (lower bounds)."""
    for point in curve["curve"]:
        if point["reference_rmse"] <= target:
            return {"reached": True, "seconds": point["fit_ended"] - curve["t0"],
                    "sims": point["n_train"]}
    last = curve["curve"][-1]
    return {"reached": False, "seconds": last["fit_ended"] - curve["t0"],
            "sims": last["n_train"]}


def time_to_quality(spec: Any, *, workdir: Path, site: str = "local",
                    site_params: dict[str, Any] | None = None
                    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rounds first (it fixes the target), then each async variant of :data:`VARIANTS`,
    same spec, same site."""
    promotion = spec.promotions[0].name
    curves: dict[str, dict[str, Any]] = {}
    for mode in ("rounds", *(m for m in VARIANTS if m != "rounds")):
        engine_mode = VARIANTS[mode]
        with scratch_dir(f"quality-{mode}-", workdir) as out:
            with measured() as cost:
                summary = spec.model_copy(update={"mode": engine_mode}).run(
                    site=site, out=out, overwrite=True, **(site_params or {}))
            curves[mode] = quality_curve(out, promotion)
            curves[mode].update(wall=cost["wall"], stop_reason=summary.stop_reason,
                                rows=summary.rows,
                                fine_done=summary.task_counts.get(
                                    spec.promotions[0].target, {}).get("done", 0))
    target = TARGET_FACTOR * curves["rounds"]["final_rmse"]
    hit = {mode: reach(curves[mode], target) for mode in curves}
    n = spec.budget.tasks.get(spec.promotions[0].target, 0)
    records = []
    for mode in curves:
        if mode == "rounds":
            continue
        extra = {"target_rmse": target, "reached": hit[mode]["reached"],
                 "baseline_reached": hit["rounds"]["reached"]}
        records += [
            record("time_to_target", mode, n, hit[mode]["seconds"], hit["rounds"]["seconds"],
                   "s", goal=GOALS["time_to_target"],
                   meets_goal=bool(hit[mode]["seconds"] < hit["rounds"]["seconds"]), **extra),
            record("sims_to_target", mode, n, hit[mode]["sims"], hit["rounds"]["sims"],
                   "fine sims", goal=GOALS["sims_to_target"],
                   meets_goal=bool(hit[mode]["sims"] <= 1.1 * hit["rounds"]["sims"]), **extra),
            record("final_reference_rmse", mode, n, curves[mode]["final_rmse"],
                   curves["rounds"]["final_rmse"], "energy"),
            record("quality_run_wall", mode, n, curves[mode]["wall"],
                   curves["rounds"]["wall"], "s", note="whole Campaign.run, start-up included"),
        ]
    return records, {"target_rmse": target, "runs": curves, "reach": hit}

