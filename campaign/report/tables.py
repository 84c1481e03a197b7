"""The report's tables as rows of plain values: counts and costs per scale, quarantine
reasons, and one row per fitted model."""

from __future__ import annotations

from typing import Any

import numpy as np

from campaign.ledger import Ledger
from campaign.store import Store

APP_FAILURES = ("failed", "quarantined")  # attempt outcomes the app is charged with


def counts_table(ledger: Ledger, store: Store) -> list[dict[str, Any]]:
    """Per scale: tasks by status, attempts, failed attempts (outcomes in
    ``APP_FAILURES``), committed rows, busy seconds; and one ``attempts <outcome>`` column
    per other outcome the ledger holds (e.g. attempts lost to the infrastructure, counted
    apart from the app's failures)."""
    counts = ledger.task_counts()
    attempts = ledger.attempts()
    busy = ledger.core_seconds()
    others = sorted({a["outcome"] for a in attempts} - {"done", *APP_FAILURES})
    rows = []
    for scale in sorted(set(counts) | set(store.scales())):
        mine = [a for a in attempts if a["scale"] == scale]
        by_status = counts.get(scale, {})
        row = {
            "scale": scale,
            "done": by_status.get("done", 0),
            "quarantined": by_status.get("quarantined", 0),
            "unfinished": by_status.get("submitted", 0),
            "attempts": len(mine),
            "failed attempts": sum(a["outcome"] in APP_FAILURES for a in mine),
        }
        row.update({f"attempts {outcome}": sum(a["outcome"] == outcome for a in mine)
                    for outcome in others})
        row.update({"rows": store.rows(scale), "busy seconds": round(busy.get(scale, 0.0), 3)})
        rows.append(row)
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


# Optional per-pick columns of a target's meta (written by engines that record them);
# the first name present is read, and a run without any shows no picks table.
GENERATION_NAMES = ("model", "model_generation", "generation")
STALENESS_NAMES = ("staleness", "pick_staleness")


def _optional(meta: dict[str, np.ndarray], names: tuple[str, ...]) -> np.ndarray | None:
    for name in names:
        if name in meta:
            return np.asarray(meta[name]).reshape(len(meta[name]), -1)[:, 0]
    return None


def picks_table(store: Store, promotions: list[str]) -> list[dict[str, Any]]:
    """Per promotion and model generation that chose rows: how many picks it made and,
    where the store records it, their staleness (mean and max). Reads the optional meta
    arrays named in ``GENERATION_NAMES`` / ``STALENESS_NAMES`` of each target; empty when
    a target has neither."""
    rows = []
    for name in promotions:
        target = name.split("-to-")[1]
        meta = store.read(target).meta if target in store.scales() else {}
        generation = _optional(meta, GENERATION_NAMES)
        staleness = _optional(meta, STALENESS_NAMES)
        if generation is None and staleness is None:
            continue
        if generation is None:
            generation = np.asarray(meta["round"])
        for value in np.unique(generation):
            mine = generation == value
            row: dict[str, Any] = {"promotion": name, "model generation": int(value),
                                   "picks": int(mine.sum())}
            known = mine & (staleness >= 0) if staleness is not None else None
            if known is not None and known.any():  # -1: no model chose it, or unknown
                row["mean staleness"] = _number(np.mean(staleness[known]))
                row["max staleness"] = _number(np.max(staleness[known]))
            rows.append(row)
    return rows


def _number(value: Any) -> Any:
    return None if value is None else float(f"{float(value):.4g}")
