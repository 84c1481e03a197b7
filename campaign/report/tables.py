"""The report's tables as rows of plain values: counts and costs per scale, quarantine
reasons, and one row per fitted model."""

from __future__ import annotations

from typing import Any

from campaign.ledger import Ledger
from campaign.store import Store


def counts_table(ledger: Ledger, store: Store) -> list[dict[str, Any]]:
    """Per scale: tasks by status, attempts, failed attempts, committed rows, busy seconds."""
    counts = ledger.task_counts()
    attempts = ledger.attempts()
    busy = ledger.core_seconds()
    rows = []
    for scale in sorted(set(counts) | set(store.scales())):
        mine = [a for a in attempts if a["scale"] == scale]
        by_status = counts.get(scale, {})
        rows.append({
            "scale": scale,
            "done": by_status.get("done", 0),
            "quarantined": by_status.get("quarantined", 0),
            "unfinished": by_status.get("submitted", 0),
            "attempts": len(mine),
            "failed attempts": sum(a["outcome"] != "done" for a in mine),
            "rows": store.rows(scale),
            "busy seconds": round(busy.get(scale, 0.0), 3),
        })
    return rows


def quarantine_table(ledger: Ledger) -> list[dict[str, Any]]:
    """Per scale and reason, how many tasks were quarantined."""
    found: dict[tuple[str, str], int] = {}
    for task in ledger.tasks(status="quarantined"):
        key = (task["scale"], task["reason"] or "(no reason recorded)")
        found[key] = found.get(key, 0) + 1
    return [{"scale": scale, "reason": reason, "tasks": n}
            for (scale, reason), n in sorted(found.items())]


def rounds_table(ledger: Ledger, promotions: list[str]) -> list[dict[str, Any]]:
    """Per promotion and model: training points, errors, calibration, fit time."""
    rows = []
    for name in promotions:
        for record in ledger.rounds(name):
            calibration = record.get("calibration") or {}
            rows.append({
                "promotion": name, "model": record["round"],
                "policy": record.get("policy", ""),
                "n_train": record.get("n_train"),
                "reference RMSE": _number(record.get("reference_rmse")),
                "prospective RMSE": _number(record.get("prospective_rmse")),
                "n scored": record.get("n_scored"),
                "50% coverage": _number(calibration.get("coverage_50")),
                "90% coverage": _number(calibration.get("coverage_90")),
                "fit seconds": _number(record.get("fit_seconds")),
            })
    return rows


def _number(value: Any) -> Any:
    return None if value is None else float(f"{float(value):.4g}")
