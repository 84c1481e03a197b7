"""What a person looks at after a run: ``report.png`` and ``summary.json``.

The figure shows (1) surrogate error against the number of finer-scale simulations,
this campaign against the same campaign with random selection (run on demand into
``<run>/baseline-random`` when the spec gives a reference), (2) the candidate pool in
feature space with the points chosen each round, (3) every task on a timeline.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from campaign.ledger import Ledger
from campaign.spec import CampaignSpec
from campaign.store import Store

logger = logging.getLogger(__name__)

BASELINE_DIR = "baseline-random"


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


def sims_to_reach(n: np.ndarray, error: np.ndarray, target: float) -> int | None:
    """First number of simulations at which ``error <= target`` (None if never)."""
    reached = np.flatnonzero(error <= target)
    return int(n[reached[0]]) if len(reached) else None


def run_random_baseline(run_dir: Path, spec: CampaignSpec) -> Path:
    """Run ``spec`` again with random selection in every promotion, on threads."""
    from campaign.engine import Engine
    from learners.acquisition import Random

    promotions = [p.model_copy(update={"acquisition": Random()}) for p in spec.promotions]
    baseline = spec.model_copy(update={"promotions": promotions})
    out = run_dir / BASELINE_DIR
    logger.info("running the random-selection baseline into %s", out)
    Engine(baseline, out, site="threads", overwrite=True).run()
    return out


def summarize(run_dir: str | Path, spec: CampaignSpec | None = None,
              baseline: bool = False) -> dict[str, Any]:
    """Write ``report.png`` and ``summary.json`` into ``run_dir``; returns the summary.

    With ``baseline`` and a ``spec`` whose promotions have a reference, the random
    baseline is run first if ``<run>/baseline-random`` does not hold it yet.
    """
    run_dir = Path(run_dir)
    ledger, store = open_run(run_dir)
    try:
        promotions = [p["source"] + "-to-" + p["target"]
                      for p in ledger.fact("spec", {}).get("promotions", [])]
        has_reference = any(learning_curve(ledger, p)[0].size for p in promotions)
        baseline_ledger = None
        if baseline and spec is not None and has_reference:
            if not (run_dir / BASELINE_DIR / "ledger.sqlite").exists() or (
                Ledger(run_dir / BASELINE_DIR / "ledger.sqlite").fact("stop_reason") is None
            ):
                run_random_baseline(run_dir, spec)
        if (run_dir / BASELINE_DIR / "ledger.sqlite").exists():
            baseline_ledger = Ledger(run_dir / BASELINE_DIR / "ledger.sqlite")
        summary = _summary(ledger, store, promotions, baseline_ledger)
        if baseline_ledger is not None:  # what the comparison cost
            summary["baseline"] = {
                "tasks": sum(sum(c.values()) for c in baseline_ledger.task_counts().values()),
                "wall_seconds": float(baseline_ledger.fact("wall_seconds", 0.0) or 0.0)}
        _plot(run_dir / "report.png", ledger, store, promotions, baseline_ledger)
        summary["extra_reports"] = _extra_reports(run_dir, spec)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if baseline_ledger is not None:
            baseline_ledger.close()
        return summary
    finally:
        ledger.close()


def _extra_reports(run_dir: Path, spec: CampaignSpec | None) -> list[str]:
    """Run the spec's own report hooks; a failing hook is logged, not fatal."""
    written = []
    for hook in spec.reports if spec is not None else []:
        name = getattr(hook, "__name__", type(hook).__name__)
        try:
            path = hook(run_dir)
        except Exception as error:  # a user's figure must not lose the main report
            logger.warning("report hook %s failed: %s: %s", name, type(error).__name__, error)
            continue
        if path is not None:
            written.append(str(path))
    return written


def _summary(ledger: Ledger, store: Store, promotions: list[str],
             baseline: Ledger | None) -> dict[str, Any]:
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
        if baseline is not None:
            n_random, error_random = learning_curve(baseline, name)
            entry["random_curve"] = {"n_simulations": n_random.tolist(),
                                     "reference_rmse": error_random.tolist()}
            if len(error_random) and len(error):
                target = float(error_random[-1])
                ours = sims_to_reach(n, error, target)
                entry["target_rmse"] = target
                entry["sims_to_target"] = {"campaign": ours,
                                           "random": sims_to_reach(n_random, error_random,
                                                                   target)}
                entry["ratio_vs_random"] = (entry["sims_to_target"]["random"] / ours
                                            if ours else None)
        summary["promotions"][name] = entry
    return summary


def _plot(path: Path, ledger: Ledger, store: Store, promotions: list[str],
          baseline: Ledger | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    _plot_learning_curves(axes[0], ledger, promotions, baseline)
    _plot_pool(axes[1], ledger, store, promotions)
    _plot_timeline(axes[2], ledger)
    figure.suptitle(f"campaign '{ledger.fact('name')}': {ledger.fact('stop_reason') or 'running'}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_learning_curves(axis: Any, ledger: Ledger, promotions: list[str],
                          baseline: Ledger | None) -> None:
    plotted = False
    for name in promotions:
        for source, label, style in ((ledger, "this campaign", "o-"),
                                     (baseline, "random selection", "s--")):
            if source is None:
                continue
            n, error = learning_curve(source, name)
            if not len(n):
                n, error = learning_curve(source, name, "prospective_rmse")
                label += " (prospective error)"
            if len(n):
                axis.plot(n, error, style, label=f"{name}: {label}", markersize=4)
                plotted = True
    axis.set_xlabel("finer-scale simulations (training points)")
    axis.set_ylabel("surrogate RMSE vs reference")
    axis.set_title("learning curve")
    if plotted:
        axis.set_yscale("log")
        axis.legend(fontsize=8)
    else:
        axis.text(0.5, 0.5, "no scored rounds yet", ha="center", transform=axis.transAxes)


def _plot_pool(axis: Any, ledger: Ledger, store: Store, promotions: list[str]) -> None:
    axis.set_title("candidate pool and chosen points")
    if not promotions:
        return
    source = promotions[0].split("-to-")[0]
    pool = store.read(source)
    if len(pool) == 0 or pool.x.shape[1] < 2:
        axis.text(0.5, 0.5, "pool has fewer than 2 columns", ha="center",
                  transform=axis.transAxes)
        return
    axis.scatter(pool.x[:, 0], pool.x[:, 1], s=2, c="0.75", label=f"{source} rows")
    records = [r for r in ledger.rounds(promotions[0]) if r.get("chosen_rows")]
    colours = matplotlib_colours(len(records))
    for colour, record in zip(colours, records, strict=True):
        rows = np.asarray(record["chosen_rows"])
        axis.scatter(pool.x[rows, 0], pool.x[rows, 1], s=18, color=colour,
                     edgecolors="k", linewidths=0.3)
    if records:
        import matplotlib.cm as cm
        from matplotlib.colors import Normalize

        mappable = cm.ScalarMappable(norm=Normalize(0, records[-1]["round"]), cmap="viridis")
        axis.figure.colorbar(mappable, ax=axis, label="round chosen")
    axis.set_xlabel(f"{source} x[0]")
    axis.set_ylabel(f"{source} x[1]")


def matplotlib_colours(n: int) -> list[Any]:
    import matplotlib.pyplot as plt

    return [plt.get_cmap("viridis")(i / max(1, n - 1)) for i in range(n)]


def _plot_timeline(axis: Any, ledger: Ledger) -> None:
    tasks = [t for t in ledger.tasks() if t["started"] is not None and t["ended"] is not None]
    axis.set_title("tasks over time")
    if not tasks:
        return
    start = min(t["submitted"] for t in tasks)
    scales = sorted({t["scale"] for t in tasks})
    colours = dict(zip(scales, matplotlib_colours(len(scales)), strict=True))
    for lane, task in enumerate(tasks):
        axis.plot([task["started"] - start, task["ended"] - start], [lane, lane],
                  color=colours[task["scale"]], linewidth=2)
    for scale in scales:
        axis.plot([], [], color=colours[scale], label=scale)
    span = max(t["ended"] for t in tasks) - start
    busy = sum(t["ended"] - t["started"] for t in tasks)
    axis.set_xlabel(f"seconds (busy {busy:.1f} s over {span:.1f} s: {busy / max(span, 1e-9):.2f}"
                    " workers on average)")
    axis.set_ylabel("task")
    axis.legend(fontsize=8)
    if math.isfinite(span):
        axis.set_xlim(0, span * 1.02)
