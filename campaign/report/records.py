"""What the report reads from a run's ledger: opening a run read-only, the learning
curve of a promotion, the attempts' and fits' time spans."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from campaign.ledger import Ledger
from campaign.store import Store


class ReportError(RuntimeError):
    """The directory is not a campaign run, or the report cannot be made."""


def open_run(run_dir: str | Path) -> tuple[Ledger, Store]:
    """Open a run directory read-only (no cut-back, no lock): for status and reports."""
    run_dir = Path(run_dir)
    if not (run_dir / "ledger.sqlite").exists():
        raise ReportError(f"{run_dir} is not a campaign run directory (no ledger.sqlite)")
    ledger = Ledger(run_dir / "ledger.sqlite")
    return ledger, Store(run_dir, ledger, read_only=True)


def learning_curve(ledger: Ledger, promotion: str, key: str = "reference_rmse"
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(number of training points, error) for each round whose model was scored."""
    points = [(r["n_train"], r[key]) for r in ledger.rounds(promotion)
              if r.get(key) is not None and r.get("n_train")]
    if not points:
        return np.zeros(0, np.int64), np.zeros(0)
    n, error = zip(*points, strict=True)
    return np.asarray(n, np.int64), np.asarray(error, np.float64)


def attempt_spans(ledger: Ledger) -> list[dict[str, Any]]:
    """Attempts that started and ended (times as recorded, seconds since the epoch)."""
    return [{"worker": a["worker"] or "unknown", "scale": a["scale"],
             "started": float(a["started"]), "ended": float(a["ended"]),
             "failed": a["outcome"] != "done"}
            for a in ledger.attempts() if a["started"] is not None and a["ended"] is not None]


def fit_spans(ledger: Ledger, promotions: list[str]) -> list[tuple[float, float]]:
    return [(float(r["fit_started"]), float(r["fit_ended"]))
            for name in promotions for r in ledger.rounds(name)
            if r.get("fit_started") is not None and r.get("fit_ended") is not None]
