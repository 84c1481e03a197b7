"""``summary.json``: the run's facts and counts and, per promotion, its learning curve
and the comparison with the random baseline."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from campaign.ledger import Ledger
from campaign.report.baseline import sims_to_reach
from campaign.report.records import learning_curve
from campaign.store import Store


def summary_record(ledger: Ledger, store: Store, promotions: list[str],
             baselines: list[Ledger]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "name": ledger.fact("name"),
        "site": ledger.fact("site"),
        "stop_reason": ledger.fact("stop_reason"),
        "wall_seconds": ledger.fact("wall_seconds"),
        "tasks": ledger.task_counts(),
        "rows": {scale: store.rows(scale) for scale in store.scales()},
        "versions": ledger.fact("versions"),
        "promotions": {},
    }
    for name in promotions:
        n, error = learning_curve(ledger, name)
        entry: dict[str, Any] = {
            "error_metric": "RMSE of the surrogate mean against the reference values",
            "curve": {"n_simulations": n.tolist(), "reference_rmse": error.tolist()},
            "final_reference_rmse": float(error[-1]) if len(error) else None,
        }
        prospective = [r["prospective_rmse"] for r in ledger.rounds(name)
                       if r.get("prospective_rmse") is not None]
        entry["last_prospective_rmse"] = prospective[-1] if prospective else None
        curves = [learning_curve(b, name) for b in baselines]
        if curves:
            entry["random_curves"] = [{"seed_offset": i, "n_simulations": n_r.tolist(),
                                       "reference_rmse": e_r.tolist()}
                                      for i, (n_r, e_r) in enumerate(curves)]
            finals = [float(e_r[-1]) for _, e_r in curves if len(e_r)]
            if finals and len(error):
                # the target is the median seed's final error; each seed's count to it
                target = float(np.median(finals))
                ours = sims_to_reach(n, error, target)
                per_seed = [sims_to_reach(n_r, e_r, target) for n_r, e_r in curves]
                # a seed that never reached the target counts as more than any count
                counts = [math.inf if count is None else count for count in per_seed]
                random_median = float(np.median(counts))
                random_median = None if math.isinf(random_median) else random_median
                entry["target_rmse"] = target
                entry["random_final_rmse"] = {"median": target, "min": min(finals),
                                              "max": max(finals), "seeds": len(finals)}
                entry["sims_to_target"] = {"campaign": ours, "random": random_median,
                                           "random_per_seed": per_seed}
                entry["ratio_vs_random"] = (random_median / ours
                                            if ours and random_median is not None else None)
        summary["promotions"][name] = entry
    return summary
