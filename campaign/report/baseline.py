"""The random-selection baseline: where its runs live, running the missing seeds, and
the band of their learning curves."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from campaign.ledger import Ledger
from campaign.spec import CampaignSpec

logger = logging.getLogger(__name__)

BASELINE_DIR = "baseline-random"


def sims_to_reach(n: np.ndarray, error: np.ndarray, target: float) -> int | None:
    """First number of simulations at which ``error <= target`` (None if never)."""
    reached = np.flatnonzero(error <= target)
    return int(n[reached[0]]) if len(reached) else None


def baseline_dir(run_dir: Path, index: int) -> Path:
    """Where the random baseline of seed offset ``index`` lives: ``baseline-random`` for
    the first (the campaign's own seed), ``baseline-random-<index>`` after it."""
    return run_dir / (BASELINE_DIR if index == 0 else f"{BASELINE_DIR}-{index}")


def baseline_complete(path: Path) -> bool:
    """A baseline run that ended (a killed one has no stop reason and is run again)."""
    if not (path / "ledger.sqlite").exists():
        return False
    ledger = Ledger(path / "ledger.sqlite")
    try:
        return ledger.fact("stop_reason") is not None
    finally:
        ledger.close()


def completed_baselines(run_dir: Path) -> list[Path]:
    """The finished random baselines of a run, first seed first (a gap ends the list)."""
    found = []
    while baseline_complete(baseline_dir(run_dir, len(found))):
        found.append(baseline_dir(run_dir, len(found)))
    return found


def run_random_baseline(run_dir: Path, spec: CampaignSpec, index: int = 0) -> Path:
    """Run ``spec`` again with random selection in every promotion, on threads, with seed
    ``spec.seed + index``, into :func:`baseline_dir` ``(run_dir, index)``."""
    from campaign.engine import Engine
    from learners.acquisition import Random

    promotions = [p.model_copy(update={"acquisition": Random()}) for p in spec.promotions]
    baseline = spec.model_copy(update={"promotions": promotions, "seed": spec.seed + index})
    out = baseline_dir(run_dir, index)
    logger.info("running the random-selection baseline %d (seed %d) into %s", index + 1,
                spec.seed + index, out)
    Engine(baseline, out, site="threads", overwrite=True).run()
    return out


def random_band(curves: list[tuple[np.ndarray, np.ndarray]]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n, median, low, high) of several learning curves: each curve linearly
    interpolated onto the union of their n, over the range every curve covers."""
    curves = [(n, e) for n, e in curves if len(n)]
    if not curves:
        empty = np.zeros(0)
        return np.zeros(0, np.int64), empty, empty, empty
    first = max(int(n[0]) for n, _ in curves)
    last = min(int(n[-1]) for n, _ in curves)
    grid = np.unique(np.concatenate([n for n, _ in curves]))
    grid = grid[(grid >= first) & (grid <= last)]
    values = np.vstack([np.interp(grid, n, e) for n, e in curves])
    return grid, np.median(values, axis=0), values.min(axis=0), values.max(axis=0)
