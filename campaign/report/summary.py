"""``summary.json``: the run's facts and counts and, per promotion, its learning curve
and the comparison with the random baseline."""

from __future__ import annotations

from typing import Any

from campaign.ledger import Ledger
from campaign.report.headline import compare_with_random, headline_lines
from campaign.report.records import attempt_spans, learning_curve
from campaign.report.timeline import utilization_by_scale
from campaign.store import Store


def simulated_note(simulated: dict[str, Any], dry_run: bool) -> str:
    """One sentence for a person: the run was on a simulated site, and whether its
    outputs came from stand-ins (a dry run: nothing in it is science)."""
    text = ("A simulated site: every time in this run is virtual (campaign.simulated), "
            "from duration models, not measured on a machine.")
    if dry_run:
        stood_in = ", ".join(sorted(simulated.get("stand_ins") or {})) or "some scales"
        text += (f" DRY RUN: the outputs of {stood_in} came from stand-ins, so its models "
                 "and errors are not science.")
    return text


def summary_record(ledger: Ledger, store: Store, promotions: list[str],
                   baselines: list[Ledger]) -> dict[str, Any]:
    """The content of ``summary.json``: facts, counts, rows, and per promotion the
    learning curve, the comparison with random (:mod:`campaign.report.headline`) where
    baselines ran, and the headline sentences."""
    summary: dict[str, Any] = {
        "name": ledger.fact("name"),
        "site": ledger.fact("site"),
        "stop_reason": ledger.fact("stop_reason"),
        "wall_seconds": ledger.fact("wall_seconds"),
        "tasks": ledger.task_counts(),
        "rows": {scale: store.rows(scale) for scale in store.scales()},
        "versions": ledger.fact("versions"),
        "utilization": {row["scale"]: row["utilization"]
                        for row in utilization_by_scale(attempt_spans(ledger))},
        "promotions": {},
    }
    simulated = ledger.fact("simulated")
    if simulated:
        summary["simulated"] = simulated
        summary["dry_run"] = bool(ledger.fact("dry_run"))
        summary["simulated_note"] = simulated_note(simulated, summary["dry_run"])
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
            entry.update(compare_with_random(n, error, curves) or {})
        entry["headline"] = headline_lines(name, entry)
        summary["promotions"][name] = entry
    return summary
