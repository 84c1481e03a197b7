"""The headline: this campaign against random selection, in numbers that hold.

Two comparisons, both against the random baseline's seeds:

- simulations to reach *and stay* below random's final error (the median seed's): the
  first count after which every later model's error is at or below it, not the first
  crossing, which a curve that dips once and rises again would give too early;
- the ratio of errors at equal simulations: each seed's error over the campaign's, both
  read (linearly between fits) at the smaller of their final counts, with the seeds'
  median and range.

Every text here is for a person: a count that was never reached reads "never", a missing
figure reads what is missing, never ``None`` or ``-1``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["compare_with_random", "headline_lines", "sims_to_stay_below"]


def sims_to_stay_below(n: np.ndarray, error: np.ndarray, target: float) -> int | None:
    """The first ``n[i]`` with ``error[j] <= target`` for every ``j >= i``; None when the
    last error is above ``target`` (or there is none)."""
    error = np.asarray(error, np.float64)
    if not len(error):
        return None
    above = np.flatnonzero(~(error <= target))  # NaN counts as above
    if not len(above):
        return int(n[0])
    after = above[-1] + 1
    return int(n[after]) if after < len(n) else None


def compare_with_random(n: np.ndarray, error: np.ndarray,
                        curves: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any] | None:
    """The campaign's curve ``(n, error)`` against the random seeds' ``curves``; None when
    either side has no scored model.

    Returns ``target_rmse`` (the median seed's final error), ``random_final_rmse``
    (median, min, max, seeds), ``sims_to_stay_below`` (``campaign``, ``random`` (the
    median over seeds; a seed that never stays below counts as more than any count, and a
    median among those is None), ``random_per_seed``), ``ratio_vs_random`` (random's
    median count over the campaign's, None where either is None) and
    ``error_ratio_at_equal_sims`` (``median``, ``min``, ``max`` of each seed's error over
    the campaign's, and ``per_seed`` with the count and both errors).
    """
    curves = [(np.asarray(n_r), np.asarray(e_r, np.float64)) for n_r, e_r in curves]
    scored = [(n_r, e_r) for n_r, e_r in curves if len(e_r)]
    if not len(error) or not scored:
        return None
    finals = [float(e_r[-1]) for _, e_r in scored]
    target = float(np.median(finals))
    ours = sims_to_stay_below(n, error, target)
    per_seed = [sims_to_stay_below(n_r, e_r, target) for n_r, e_r in curves]
    counts = [math.inf if count is None else count for count in per_seed]
    random_median: float | None = float(np.median(counts))
    if random_median is not None and math.isinf(random_median):
        random_median = None
    equal = []
    for n_r, e_r in scored:
        at = int(min(n[-1], n_r[-1]))
        ours_at = float(np.interp(at, n, error))
        theirs_at = float(np.interp(at, n_r, e_r))
        equal.append({"n_simulations": at, "campaign_rmse": ours_at, "random_rmse": theirs_at,
                      "ratio": theirs_at / ours_at if ours_at > 0 else None})
    ratios = [e["ratio"] for e in equal if e["ratio"] is not None and math.isfinite(e["ratio"])]
    return {
        "target_rmse": target,
        "random_final_rmse": {"median": target, "min": min(finals), "max": max(finals),
                              "seeds": len(finals)},
        "sims_to_stay_below": {"campaign": ours, "random": random_median,
                               "random_per_seed": per_seed},
        "ratio_vs_random": (random_median / ours
                            if ours and random_median is not None else None),
        "error_ratio_at_equal_sims": {
            "median": float(np.median(ratios)) if ratios else None,
            "min": min(ratios) if ratios else None,
            "max": max(ratios) if ratios else None,
            "per_seed": equal},
    }


def _sims(count: float | None) -> str:
    return "never" if count is None else f"{count:g}"


def headline_lines(name: str, entry: dict[str, Any]) -> list[str]:
    """One promotion's headline as sentences, from its ``summary.json`` entry."""
    final = entry.get("final_reference_rmse")
    if final is None:
        prospective = entry.get("last_prospective_rmse")
        if prospective is None:
            return [f"{name}: no model was scored yet."]
        return [f"{name}: newest prospective RMSE {prospective:.3g} (no reference values, so "
                "no comparison with random selection)."]
    curve = entry.get("curve", {}).get("n_simulations") or []
    last = f" after {curve[-1]} simulations" if curve else ""
    lines = [f"{name}: final reference RMSE {final:.3g}{last}."]
    comparison = entry if "sims_to_stay_below" in entry else None
    if comparison is None:
        lines.append("No random baseline to compare with (campaign report DIR --baseline N "
                     "runs N seeds of it).")
        return lines
    seeds = comparison["random_final_rmse"]["seeds"]
    of_seeds = f"the median of {seeds} seeds" if seeds > 1 else "1 seed"
    reached = comparison["sims_to_stay_below"]
    per_seed = ", ".join(_sims(c) for c in reached["random_per_seed"])
    ours = reached["campaign"]
    lines.append(
        f"Random selection's final RMSE ({of_seeds}): {comparison['target_rmse']:.3g}. "
        + (f"This campaign reached it and stayed below after {ours} simulations"
           if ours is not None else "This campaign did not end below it")
        + "; random selection "
        + (f"after {reached['random']:g}" if reached["random"] is not None else "never")
        + (f" (median over seeds; per seed: {per_seed})." if seeds > 1 else "."))
    equal = comparison["error_ratio_at_equal_sims"]
    if equal["median"] is not None:
        at = sorted({e["n_simulations"] for e in equal["per_seed"]})
        where = f"{at[0]}" if len(at) == 1 else f"{at[0]}-{at[-1]}"
        spread = (f" (seeds' range {equal['min']:.2g}x to {equal['max']:.2g}x)"
                  if seeds > 1 else "")
        ratio = equal["median"]
        lines.append(f"At equal simulations ({where}): random's RMSE / this campaign's = "
                     f"{ratio:.2g}x{spread}"
                     + (", i.e. this campaign's error is lower." if ratio > 1 else
                        ", i.e. this campaign's error is not lower."))
    return lines
