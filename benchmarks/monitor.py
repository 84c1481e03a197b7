"""What a segment monitor saves: coarse compute to the same fine-scale error, and to the
first visit of the rare region, with and without the monitor.

The problem is :mod:`apps.landscapes`' ``channel``: two broad basins and a narrow deep
trough above them that Langevin walkers started in the basins rarely reach
(:func:`apps.landscapes.in_rare_region`). One campaign per (method, coarse budget, seed),
async mode on the ``threads`` site (2 threads per executor): 4 walkers of ``sampler``
segments (400 steps, 20 frames each, paced to take at least 0.05 s so that coarse
sampling goes on while models are fitted, as in a real campaign; unpaced, a few hundred
segments finish before the first model exists), the fine scale ``smeared_energy``
(2,000 samples) learned by an ``ExactGP`` with ``MaxVariance`` in batches of 8,
``Budget(coarse=C, fine=F)``. Methods:

- ``none``: no monitor (every walker continues from its last frame);
- ``stop``: ``NoveltyMonitor(restart=False)``: a walker whose segments stay crowded
  (novelty below 0.5 twice in a row) stops, so a campaign may end below its coarse
  budget;
- ``restart``: ``NoveltyMonitor()``: such a walker restarts from the most novel frame
  seen so far (DeepDriveMD's outlier restarts);
- ``confidence``: ``ConfidenceMonitor(std_below=0.5)``: a walker whose segments the
  newest surrogate already knows (posterior sd below 0.5, half the target error, twice
  in a row) restarts from the frame it was least sure of.

Measured per run, from its store and ledger: ``coarse_segments`` (coarse tasks run),
``segments_to_rare`` (coarse segments committed up to and including the first one with a
frame in the rare region, in commit order; censored at the segments run when none did),
``rare_fraction`` (coarse frames in the rare region), ``final_rmse`` (the final model's
RMSE against the exact smeared energy on the reference grid), ``restarts`` and
``stops``. Derived per method: ``coarse_to_target``, the smallest coarse budget of the
sweep whose median final RMSE over seeds is at most the target (censored: none did).

Records: ``{"metric", "method", "coarse_budget", "seed", "value"}`` per run and
``{"metric", "method", "value", "baseline", "ratio"}`` summaries against ``none``.
Nothing is tuned to a seed; every seed of the sweep is reported.

Run: ``python -m benchmarks.monitor [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

QUICK = {"seeds": [0, 1, 2], "coarse_budgets": [40, 80, 160], "fine": 48}
FULL = {"seeds": [0, 1, 2, 3, 4], "coarse_budgets": [40, 80, 160, 320], "fine": 64}
TARGET_RMSE = 1.0  # kT units of the channel landscape's smeared energy
METHODS = ("none", "stop", "restart", "confidence")


SEGMENT_SECONDS = 0.05


def paced_sampler(x: np.ndarray, *, seed: int, seconds: float = SEGMENT_SECONDS,
                  **params: Any) -> dict[str, np.ndarray]:
    """``apps.landscapes.sampler`` taking at least ``seconds`` (a costlier coarse model)."""
    from apps import landscapes

    started = time.perf_counter()
    result = landscapes.sampler(x, seed=seed, **params)
    time.sleep(max(0.0, seconds - (time.perf_counter() - started)))
    return result


def make_campaign(method: str, coarse_budget: int, fine_budget: int, seed: int) -> Any:
    from apps import landscapes
    from campaign import Budget, Campaign, Promotion, Scale
    from learners import ExactGP
    from learners.acquisition import MaxVariance
    from learners.monitor import ConfidenceMonitor, NoveltyMonitor

    monitor = {"none": None, "stop": NoveltyMonitor(restart=False),
               "restart": NoveltyMonitor(),
               "confidence": ConfidenceMonitor(std_below=0.5)}[method]
    return Campaign(
        name=f"monitor_{method}", seed=seed,
        scales=[Scale("coarse", app=paced_sampler,
                      walkers=landscapes.initial_walkers(4),
                      params={"landscape": "channel", "n_steps": 400}, monitor=monitor),
                Scale("fine", app=landscapes.smeared_energy,
                      params={"landscape": "channel", "n_samples": 2000})],
        promotions=[Promotion(source="coarse", target="fine",
                              features=landscapes.coordinates, learner=ExactGP(),
                              acquisition=MaxVariance(), batch_size=8, quantity="energy",
                              reference=landscapes.reference)],
        budget=Budget(coarse=coarse_budget, fine=fine_budget))


def measure_run(run_dir: Path, summary: Any) -> dict[str, float]:
    """Per-run figures from the store (see the module docstring)."""
    import zarr

    from apps import landscapes

    group = zarr.open_group(run_dir / "store.zarr", mode="r")
    x = group["coarse/x"][:]
    task_ids = group["coarse/meta/task_id"][:]
    segments = len(np.unique(task_ids))
    rare = landscapes.in_rare_region(x, "channel")
    if rare.any():
        first = int(np.argmax(rare))
        to_rare = len(np.unique(task_ids[:first + 1]))
        censored = 0.0
    else:
        to_rare, censored = segments, 1.0
    actions = {"restart": 0.0, "stop": 0.0}
    if "monitor" in group["coarse/meta"]:
        codes = group["coarse/meta/monitor"][:]
        _, first_rows = np.unique(task_ids, return_index=True)
        counts = np.bincount(codes[first_rows].astype(np.int64), minlength=3)
        actions = {"stop": float(counts[1]), "restart": float(counts[2])}
    curve = summary.curves["coarse-to-fine"]
    return {"coarse_segments": float(segments), "segments_to_rare": float(to_rare),
            "rare_censored": censored, "rare_fraction": float(rare.mean()),
            "final_rmse": float(curve[-1]["reference_rmse"]), **actions}


def run_sweep(settings: dict[str, Any], workdir: Path, progress: bool = True) -> list[dict]:
    from campaign.engine import Engine

    records = []
    for coarse_budget in settings["coarse_budgets"]:
        for seed in settings["seeds"]:
            for method in METHODS:
                run_dir = workdir / f"{method}-{coarse_budget}-{seed}"
                spec = make_campaign(method, coarse_budget, settings["fine"], seed)
                started = time.time()
                summary = Engine(spec, run_dir, site="threads", overwrite=True).run()
                figures = measure_run(run_dir, summary)
                figures["wall_seconds"] = time.time() - started
                for metric, value in figures.items():
                    records.append({"metric": metric, "method": method,
                                    "coarse_budget": coarse_budget, "seed": seed,
                                    "value": value})
                if progress:
                    print(f"  {method:8s} C={coarse_budget:4d} seed={seed}: "
                          f"rmse {figures['final_rmse']:.3f}, segments "
                          f"{figures['coarse_segments']:.0f}, to rare "
                          f"{figures['segments_to_rare']:.0f}"
                          f"{' (censored)' if figures['rare_censored'] else ''}, "
                          f"restarts {figures['restart']:.0f}, stops {figures['stop']:.0f}, "
                          f"{figures['wall_seconds']:.1f} s", file=sys.stderr, flush=True)
    return records


def summarize(records: list[dict], settings: dict[str, Any]) -> list[dict]:
    """Per method: median figures over seeds and coarse budgets, against ``none``."""
    def values(metric: str, method: str, budget: int | None = None) -> list[float]:
        return [r["value"] for r in records if r["metric"] == metric and r["method"] == method
                and (budget is None or r["coarse_budget"] == budget)]

    largest = max(settings["coarse_budgets"])
    out = []
    for method in METHODS:
        summary: dict[str, float] = {}
        reached = [b for b in settings["coarse_budgets"]
                   if statistics.median(values("final_rmse", method, b)) <= TARGET_RMSE]
        summary["coarse_to_target"] = float(min(reached)) if reached else float("nan")
        summary["segments_to_rare"] = statistics.median(
            values("segments_to_rare", method, largest))
        summary["rare_found_fraction"] = 1.0 - statistics.mean(
            values("rare_censored", method, largest))
        summary["rare_fraction"] = statistics.median(values("rare_fraction", method, largest))
        summary["coarse_segments"] = statistics.median(
            values("coarse_segments", method, largest))
        for budget in settings["coarse_budgets"]:
            summary[f"final_rmse_C{budget}"] = statistics.median(
                values("final_rmse", method, budget))
        for metric, value in summary.items():
            out.append({"metric": metric, "method": method, "value": value})
    for record in out:
        base = next(r["value"] for r in out
                    if r["metric"] == record["metric"] and r["method"] == "none")
        record["baseline"] = base
        record["ratio"] = (record["value"] / base if base and np.isfinite(base)
                           and np.isfinite(record["value"]) else float("nan"))
    return out


def table(summary: list[dict]) -> str:
    metrics = list(dict.fromkeys(r["metric"] for r in summary))
    lines = [f"{'metric':24s}" + "".join(f"{m:>12s}" for m in METHODS)]
    for metric in metrics:
        row = {r["method"]: r["value"] for r in summary if r["metric"] == metric}
        lines.append(f"{metric:24s}" + "".join(f"{row[m]:12.3g}" for m in METHODS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 3 coarse budgets")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--workdir", type=Path, help="run directories here (default: temp)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or Path(temporary)
        records = run_sweep(settings, workdir)
    summary = summarize(records, settings)
    report = {"benchmark": "monitor", "quick": args.quick, "settings": settings,
              "target_rmse": TARGET_RMSE, "summary": summary, "runs": records}
    print(table(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
