"""What a person looks at after a run: ``report.html`` (self-contained, with its PNGs),
``report.png`` (the three main panels in one image) and ``summary.json``.

The page shows the learning curve (this campaign against random selection, N seeds run
on demand into ``<run>/baseline-random[-i]``, their median and range), where the learner
sampled (a 2-D projection of the source rows with the chosen points per model
generation, and the surrogate's mean and standard deviation behind them when the spec
is given and the rows are 2-D), parity and calibration of the surrogate on results it
had not been trained on, every attempt on a timeline per worker with utilization and
resume gaps, and tables of counts, costs and quarantine reasons.
"""

from __future__ import annotations

import base64
import copy
import html
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from campaign.ledger import Ledger
from campaign.spec import CampaignSpec
from campaign.store import Store

logger = logging.getLogger(__name__)

BASELINE_DIR = "baseline-random"
HTML_NAME = "report.html"
GAP_FACTOR = 10.0  # a gap between attempt starts this many times the median is marked
GAP_MIN_SECONDS = 1.0  # ... and only if it is at least this long
GRID = 60  # points per axis of the surrogate background
UTILIZATION_BINS = 120


class ReportError(RuntimeError):
    """The directory is not a campaign run, or the report cannot be made."""


@dataclass(frozen=True)
class Figure:
    """One figure of the page: its element id, PNG file (in the run directory), caption."""

    id: str
    file: str
    caption: str


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


def baseline_dir(run_dir: Path, index: int) -> Path:
    """Where the random baseline of seed offset ``index`` lives: ``baseline-random`` for
    the first (the campaign's own seed), ``baseline-random-<index>`` after it."""
    return run_dir / (BASELINE_DIR if index == 0 else f"{BASELINE_DIR}-{index}")


def _baseline_complete(path: Path) -> bool:
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
    while _baseline_complete(baseline_dir(run_dir, len(found))):
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


def summarize(run_dir: str | Path, spec: CampaignSpec | None = None,
              baseline: int | bool = 0) -> dict[str, Any]:
    """Write ``report.html`` with its PNGs, ``report.png`` and ``summary.json`` into
    ``run_dir``; returns the summary.

    With ``baseline`` = N > 0 and a ``spec`` whose promotions have a reference, random
    baselines of seeds ``spec.seed`` ... ``spec.seed + N - 1`` are run first where
    ``<run>/baseline-random[-i]`` does not hold a finished one yet (``True`` means 1).
    Every finished baseline found is compared: the learning curve shows their median and
    range, and the summary's ``sims_to_target`` the median over seeds. With a ``spec``,
    saved models are loaded for the surrogate map and the parity plot.
    """
    run_dir = Path(run_dir)
    count = int(baseline)
    if count < 0:
        raise ReportError(f"baseline must be a number of seeds >= 0, got {baseline!r}")
    ledger, store = open_run(run_dir)
    baselines: list[Ledger] = []
    try:
        promotions = [p["source"] + "-to-" + p["target"]
                      for p in ledger.fact("spec", {}).get("promotions", [])]
        has_reference = any(learning_curve(ledger, p)[0].size for p in promotions)
        if count and spec is not None and has_reference:
            for index in range(count):
                if not _baseline_complete(baseline_dir(run_dir, index)):
                    run_random_baseline(run_dir, spec, index)
        baselines = [Ledger(path / "ledger.sqlite") for path in completed_baselines(run_dir)]
        summary = _summary(ledger, store, promotions, baselines)
        if baselines:  # what the comparison cost
            summary["baseline"] = {
                "seeds": len(baselines),
                "tasks": sum(sum(sum(c.values()) for c in b.task_counts().values())
                             for b in baselines),
                "wall_seconds": sum(float(b.fact("wall_seconds", 0.0) or 0.0)
                                    for b in baselines)}
        _plot(run_dir / "report.png", ledger, store, promotions, baselines)
        summary["extra_reports"] = _extra_reports(run_dir, spec)
        figures, notes = _figures(run_dir, ledger, store, promotions, baselines, spec)
        figures += _extra_figures(run_dir, summary["extra_reports"])
        (run_dir / HTML_NAME).write_text(
            render_html(run_dir, ledger, store, figures, notes, summary), encoding="utf-8")
        summary["html"] = HTML_NAME
        summary["figures"] = {figure.id: figure.file for figure in figures}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary
    finally:
        for opened in baselines:
            opened.close()
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


def _extra_figures(run_dir: Path, paths: list[str]) -> list[Figure]:
    """The PNGs the spec's report hooks wrote, as figures of the page."""
    figures = []
    for path in paths:
        file = Path(path) if Path(path).is_absolute() else run_dir / path
        if file.suffix.lower() == ".png" and file.is_file():
            figures.append(Figure(f"extra-{file.stem}", str(file),
                                  f"{file.name}: written by the campaign's own report hook."))
    return figures


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


def _summary(ledger: Ledger, store: Store, promotions: list[str],
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


# -- figures -------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot(path: Path, ledger: Ledger, store: Store, promotions: list[str],
          baselines: list[Ledger]) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    _plot_learning_curves(axes[0], ledger, promotions, baselines)
    if promotions:
        _plot_sampling(axes[1], ledger, store, promotions[0])
    else:
        _no_data(axes[1], "no promotions")
    _plot_timeline(axes[2], _attempt_spans(ledger), [], [])
    figure.suptitle(f"campaign '{ledger.fact('name')}': {ledger.fact('stop_reason') or 'running'}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _save(figure: Any, run_dir: Path, figure_id: str, caption: str) -> Figure:
    file = run_dir / f"report-{figure_id}.png"
    figure.tight_layout()
    figure.savefig(file, dpi=100)
    _pyplot().close(figure)
    return Figure(figure_id, str(file), caption)


def _figures(run_dir: Path, ledger: Ledger, store: Store, promotions: list[str],
             baselines: list[Ledger], spec: CampaignSpec | None
             ) -> tuple[list[Figure], dict[str, str]]:
    """Write the page's PNGs; returns the figures and, per section, a note saying what
    could not be shown and why."""
    plt = _pyplot()
    figures: list[Figure] = []
    notes: dict[str, str] = {}
    columns = max(1, len(promotions))

    figure, axes = plt.subplots(1, columns, figsize=(6.4 * columns, 4.4), squeeze=False)
    for axis, name in zip(axes[0], promotions or [""], strict=True):
        _plot_learning_curves(axis, ledger, [name] if name else [], baselines)
    if not baselines:
        about = ("No random baseline in this run (campaign report DIR --baseline N runs N "
                 "seeds of it, each the same budget again).")
    elif len(baselines) == 1:
        about = ("Dashed: the same campaign with random selection, one seed "
                 f"({BASELINE_DIR}/), so no spread between seeds is shown "
                 "(--baseline N runs N seeds).")
    else:
        about = (f"Dashed: the median of {len(baselines)} seeds of the same campaign with "
                 f"random selection ({BASELINE_DIR}*/), shaded: their range (min to max), "
                 "each seed interpolated linearly between its fits, over the simulation "
                 "counts every seed reached.")
    figures.append(_save(figure, run_dir, "learning-curve",
                         "Surrogate RMSE against the reference after each model fit, "
                         "against the number of finer-scale simulations it was trained on. "
                         + about))

    figure, axes = plt.subplots(1, columns, figsize=(6.4 * columns, 4.8), squeeze=False)
    for axis, name in zip(axes[0], promotions or [""], strict=True):
        if name:
            _plot_sampling(axis, ledger, store, name)
        else:
            _no_data(axis, "no promotions")
    figures.append(_save(figure, run_dir, "sampling",
                         "Source rows (grey; projected on their first two principal "
                         "components when they have more than two columns) and the rows "
                         "chosen for the finer scale, coloured by the round or model "
                         "generation that chose them (0: the seed design); x: quarantined."))

    surrogate = _surrogate_figure(run_dir, store, spec, promotions)
    if isinstance(surrogate, Figure):
        figures.append(surrogate)
    else:
        notes["surrogate"] = surrogate

    parity = _parity_figure(run_dir, ledger, store, spec, promotions)
    if isinstance(parity, Figure):
        figures.append(parity)
    else:
        notes["parity"] = parity

    calibrated = [(name, [r for r in ledger.rounds(name) if r.get("calibration")])
                  for name in promotions]
    calibrated = [(name, records) for name, records in calibrated if records]
    if calibrated:
        figure, axes = plt.subplots(1, len(calibrated), figsize=(6.4 * len(calibrated), 4),
                                    squeeze=False)
        for axis, (name, records) in zip(axes[0], calibrated, strict=True):
            _plot_calibration(axis, name, records)
        figures.append(_save(figure, run_dir, "calibration",
                             "Fraction of the new finer-scale results inside each model's "
                             "central 50% and 90% predictive intervals, measured before the "
                             "model was trained on them (the rounds' prospective calibration "
                             "records; n: results scored). Dotted: the nominal levels."))
    else:
        notes["calibration"] = ("No prospective calibration recorded (a model is scored on "
                                "results that arrive after it was fitted).")

    spans = _attempt_spans(ledger)
    fits = _fit_spans(ledger, promotions)
    resumed = int(ledger.fact("resumed", 0) or 0)
    sessions = ledger.fact("sessions")
    if sessions is not None:  # recorded driver start times: the gaps are exact
        gaps = resume_gaps(sessions, ledger.attempts(), fits)
        gap_text = (f"Shaded: the {len(gaps)} resume gap(s), from the last event the "
                    "previous driver recorded (an attempt submitted, started or ended, or a "
                    "fit ended) to the first attempt started after the next driver began "
                    "(the ledger records when each driver started).")
        resume_text = "" if resumed else " The run was never resumed."
    else:  # a run recorded before driver start times were kept
        gaps = find_gaps([span["started"] for span in spans])
        gap_text = (f"Shaded: gaps between attempt starts longer than {GAP_FACTOR:g}x the "
                    f"median and at least {GAP_MIN_SECONDS:g} s ({len(gaps)} here; this run's "
                    "ledger predates recorded driver start times).")
        resume_text = (f" The ledger records {resumed} resume(s)." if resumed
                       else " The run was never resumed.")
    lanes = len({span["worker"] for span in spans}) + (1 if fits else 0)
    figure, axis = plt.subplots(figsize=(11, max(3.0, min(14.0, 1.2 + 0.28 * lanes))))
    _plot_timeline(axis, spans, fits, gaps)
    figures.append(_save(figure, run_dir, "timeline",
                         "Every attempt, one lane per worker (host/pid/thread), coloured by "
                         "scale; red edge: an attempt that failed or was quarantined; "
                         "the lane 'train' holds the model fits. " + gap_text + resume_text))

    figure, axis = plt.subplots(figsize=(11, 3.6))
    utilization = _plot_utilization(axis, spans, gaps)
    figures.append(_save(figure, run_dir, "utilization",
                         "Mean number of attempts running in each of "
                         f"{UTILIZATION_BINS} time bins, per scale and in all, against the "
                         f"number of workers seen; busy time / (workers x span) = "
                         f"{utilization:.2f}. " + gap_text))
    return figures, notes


def _no_data(axis: Any, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center", transform=axis.transAxes)
    axis.set_xticks([])
    axis.set_yticks([])


def _plot_learning_curves(axis: Any, ledger: Ledger, promotions: list[str],
                          baselines: list[Ledger]) -> None:
    plotted = False
    for name in promotions:
        label, key = "this campaign", "reference_rmse"
        n, error = learning_curve(ledger, name)
        if not len(n):
            key = "prospective_rmse"
            n, error = learning_curve(ledger, name, key)
            label += " (prospective error)"
        if len(n):
            axis.plot(n, error, "o-", label=f"{name}: {label}", markersize=4)
            plotted = True
        curves = [learning_curve(b, name, key) for b in baselines]
        grid, median, low, high = random_band(curves)
        if len(grid):
            seeds = sum(1 for c in curves if len(c[0]))
            what = "random selection" + (f" (median of {seeds} seeds)" if seeds > 1 else "")
            line, = axis.plot(grid, median, "s--", label=f"{name}: {what}", markersize=4)
            if seeds > 1:
                axis.fill_between(grid, low, high, alpha=0.2, color=line.get_color(),
                                  label=f"{name}: random range (min to max)")
            plotted = True
    axis.set_xlabel("finer-scale simulations (training points)")
    axis.set_ylabel("surrogate RMSE vs reference")
    axis.set_title("learning curve" + (f": {promotions[0]}" if len(promotions) == 1 else ""))
    if plotted:
        axis.set_yscale("log")
        axis.legend(fontsize=8)
    else:
        axis.text(0.5, 0.5, "no scored rounds yet", ha="center", transform=axis.transAxes)


def project_2d(x: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``x`` (n, d) as (n, 2): as it is for d <= 2 (a zero column added for d = 1), else
    its first two principal components (numpy SVD of the centred rows); with axis labels."""
    x = np.asarray(x, np.float64)
    if x.shape[1] == 1:
        return np.column_stack([x[:, 0], np.zeros(len(x))]), ["x[0]", ""]
    if x.shape[1] == 2:
        return x, ["x[0]", "x[1]"]
    centred = x - x.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    share = singular**2 / max(float(np.sum(singular**2)), 1e-300)
    return centred @ vt[:2].T, [f"PC{i + 1} ({share[i]:.0%} of variance)" for i in range(2)]


def _chosen(ledger: Ledger, target: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source row, round, quarantined?) of every task promoted into ``target``."""
    tasks = [t for t in ledger.tasks(scale=target) if t["parent_row"] >= 0]
    return (np.asarray([t["parent_row"] for t in tasks], np.int64),
            np.asarray([t["round"] for t in tasks], np.int64),
            np.asarray([t["status"] == "quarantined" for t in tasks], bool))


def _integer_colours(rounds: np.ndarray) -> tuple[Any, Any, list[int]]:
    """A discrete colour map and norm with one colour per integer in ``rounds``' range."""
    from matplotlib.colors import BoundaryNorm

    plt = _pyplot()
    low, high = (int(rounds.min()), int(rounds.max())) if len(rounds) else (0, 0)
    cmap = plt.get_cmap("viridis", high - low + 1)
    norm = BoundaryNorm(np.arange(low - 0.5, high + 1.5), cmap.N)
    step = max(1, math.ceil((high - low + 1) / 12))
    return cmap, norm, list(range(low, high + 1, step))


def _plot_sampling(axis: Any, ledger: Ledger, store: Store, promotion: str,
                   background: tuple[np.ndarray, np.ndarray, np.ndarray, str] | None = None
                   ) -> None:
    source, target = promotion.split("-to-")
    axis.set_title(f"where {promotion} sampled")
    pool = store.read(source)
    if len(pool) == 0:
        _no_data(axis, f"no committed {source} rows")
        return
    points, labels = project_2d(pool.x)
    if background is not None:
        gx, gy, values, label = background
        mesh = axis.pcolormesh(gx, gy, values, shading="auto", cmap="magma", alpha=0.85)
        axis.figure.colorbar(mesh, ax=axis, label=label)
    axis.scatter(points[:, 0], points[:, 1], s=2, c="0.7", label=f"{source} rows",
                 rasterized=True)
    rows, rounds, quarantined = _chosen(ledger, target)
    rows_ok = rows < len(points)
    rows, rounds, quarantined = rows[rows_ok], rounds[rows_ok], quarantined[rows_ok]
    if len(rows):
        cmap, norm, ticks = _integer_colours(rounds)
        done = ~quarantined
        scatter = axis.scatter(points[rows[done], 0], points[rows[done], 1], c=rounds[done],
                               cmap=cmap, norm=norm, s=28, edgecolors="k", linewidths=0.4,
                               label=f"chosen for {target}")
        if quarantined.any():
            axis.scatter(points[rows[quarantined], 0], points[rows[quarantined], 1],
                         marker="x", c="red", s=30, label="quarantined")
        mode = ledger.fact("mode") or "rounds"
        axis.figure.colorbar(scatter, ax=axis, ticks=ticks,
                             label="round chosen" if mode == "rounds" else "model generation")
    axis.set_xlabel(f"{source} {labels[0]}")
    axis.set_ylabel(f"{source} {labels[1]}")
    axis.legend(fontsize=7, loc="best")


def _promotion_spec(spec: CampaignSpec, name: str) -> Any:
    return next((p for p in spec.promotions if p.name == name), None)


def _load_learner(store: Store, promotion: Any, model: int) -> Any:
    learner = copy.deepcopy(promotion.learner)
    learner.load_state_dict(store.load_model(promotion.name, model))
    return learner


def _surrogate_figure(run_dir: Path, store: Store, spec: CampaignSpec | None,
                      promotions: list[str]) -> Figure | str:
    """The newest saved model's mean and standard deviation over the source rows' box,
    behind the sampled points: for promotions whose source rows have one or two columns."""
    from campaign.resume import saved_models

    if spec is None:
        return ("The surrogate map needs the campaign spec (campaign report loads it from "
                "the run's script when it was started from one).")
    ledger = store.ledger
    drawn: list[tuple[str, int, Any]] = []
    reasons = []
    for name in promotions:
        promotion = _promotion_spec(spec, name)
        models = saved_models(store, name)
        pool = store.read(name.split("-to-")[0])
        if promotion is None or not models or len(pool) == 0:
            reasons.append(f"{name}: no saved model or no source rows")
            continue
        if pool.x.shape[1] != 2:
            reasons.append(f"{name}: the source rows have {pool.x.shape[1]} columns "
                           "(a map needs 2)")
            continue
        try:
            learner = _load_learner(store, promotion, models[-1])
            low, high = pool.x.min(axis=0), pool.x.max(axis=0)
            pad = 0.05 * np.maximum(high - low, 1e-12)
            gx, gy = np.meshgrid(np.linspace(low[0] - pad[0], high[0] + pad[0], GRID),
                                 np.linspace(low[1] - pad[1], high[1] + pad[1], GRID))
            grid = np.column_stack([gx.ravel(), gy.ravel()])
            posterior = learner.posterior(np.asarray(promotion.features(grid), np.float64))
        except Exception as error:  # a user's featurizer or learner: report, not crash
            logger.warning("surrogate map of %s: %s: %s", name, type(error).__name__, error)
            reasons.append(f"{name}: {type(error).__name__}: {error}")
            continue
        mean = posterior.mean.reshape(gx.shape)
        std = np.sqrt(np.maximum(posterior.variance, 0.0)).reshape(gx.shape)
        drawn.append((name, models[-1], (gx, gy, mean, std)))
    if not drawn:
        return "No surrogate map: " + "; ".join(reasons) + "."
    plt = _pyplot()
    figure, axes = plt.subplots(len(drawn), 2, figsize=(12.8, 4.8 * len(drawn)), squeeze=False)
    for row, (name, model, (gx, gy, mean, std)) in enumerate(drawn):
        _plot_sampling(axes[row, 0], ledger, store, name, (gx, gy, mean, "surrogate mean"))
        _plot_sampling(axes[row, 1], ledger, store, name, (gx, gy, std, "surrogate std"))
        axes[row, 0].set_title(f"{name}: mean of model {model}")
        axes[row, 1].set_title(f"{name}: standard deviation of model {model}")
    return _save(figure, run_dir, "surrogate",
                 "The newest saved model's predictive mean (left) and standard deviation of "
                 "the latent function (right) over the source rows' range, with the sampled "
                 "points on top." + (" " + "; ".join(reasons) + "." if reasons else ""))


def parity_points(store: Store, promotion: Any) -> dict[str, np.ndarray]:
    """Prospective predictions of the finer scale's results, recomputed from saved models.

    Result ``i`` (the i-th committed row of the target, the i-th training point) is
    predicted by the newest saved model trained on fewer than ``i + 1`` points, i.e. the
    first ``n_train`` results only: the model the engine scores it with. Results the
    first model was trained on have no such model and are left out.

    Returns ``{"row", "model", "observed", "mean", "sd"}``, each (m,); ``sd`` is the
    predictive standard deviation (latent variance plus observation noise).
    """
    from campaign.resume import saved_models

    empty = {key: np.zeros(0) for key in ("row", "model", "observed", "mean", "sd")}
    target = store.read(promotion.target)
    source = store.read(promotion.source)
    if len(target) == 0 or len(source) == 0:
        return empty
    quantity = promotion.quantity or (next(iter(target.y)) if len(target.y) == 1 else None)
    if quantity not in target.y:
        return empty
    observed_rows = np.asarray(target.y[quantity], np.float64).reshape(len(target), -1)
    observed = observed_rows[:, 0]
    parents = np.asarray(target.meta["parent_row"], np.int64)
    models = [(m, int(store.group[f"models/{promotion.name}/{m}"].attrs["n_train"]))
              for m in saved_models(store, promotion.name)]
    out: dict[str, list[Any]] = {key: [] for key in empty}
    for index, (model, n_train) in enumerate(models):
        following = [n for _, n in models[index + 1:] if n > n_train]
        end = min(following) if following else len(target)
        rows = np.arange(n_train, min(end, len(target)))
        rows = rows[parents[rows] < len(source)] if len(rows) else rows
        if n_train == 0 or len(rows) == 0:
            continue
        learner = _load_learner(store, promotion, model)
        features = np.asarray(promotion.features(source.x[parents[rows]]), np.float64)
        if hasattr(learner, "observation_posterior"):  # structured observations
            posterior, measured = learner.observation_posterior(features, observed_rows[rows])
            rows = np.repeat(rows, len(measured) // len(rows))
        else:
            posterior, measured = learner.posterior(features), observed[rows]
        out["row"].append(rows)
        out["model"].append(np.full(len(rows), model))
        out["observed"].append(measured)
        out["mean"].append(posterior.mean)
        out["sd"].append(np.sqrt(np.maximum(posterior.variance + posterior.noise_variance,
                                            0.0)))
    return {key: np.concatenate(values) if values else empty[key]
            for key, values in out.items()}


def _parity_figure(run_dir: Path, ledger: Ledger, store: Store, spec: CampaignSpec | None,
                   promotions: list[str]) -> Figure | str:
    if spec is None:
        return ("Parity is not shown: per-result predictions are not recorded in the run; "
                "they are recomputed from the saved models, which needs the campaign spec. "
                "The rounds table gives the recorded prospective RMSE.")
    drawn = []
    for name in promotions:
        promotion = _promotion_spec(spec, name)
        if promotion is None:
            continue
        try:
            points = parity_points(store, promotion)
        except Exception as error:  # a user's featurizer or learner: report, not crash
            logger.warning("parity of %s: %s: %s", name, type(error).__name__, error)
            continue
        if len(points["row"]):
            drawn.append((name, points))
    if not drawn:
        return ("Parity is not shown: no finer-scale result arrived after a saved model "
                "that was not trained on it.")
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(drawn), figsize=(5.6 * len(drawn), 5), squeeze=False)
    for axis, (name, points) in zip(axes[0], drawn, strict=True):
        cmap, norm, ticks = _integer_colours(points["model"].astype(np.int64))
        axis.errorbar(points["observed"], points["mean"], yerr=2 * points["sd"], fmt="none",
                      ecolor="0.6", elinewidth=0.8, zorder=1)
        scatter = axis.scatter(points["observed"], points["mean"], c=points["model"],
                               cmap=cmap, norm=norm, s=24, edgecolors="k", linewidths=0.4,
                               zorder=2)
        figure.colorbar(scatter, ax=axis, ticks=ticks, label="model that predicted it")
        both = np.concatenate([points["observed"], points["mean"]])
        low, high = float(both.min()), float(both.max())
        axis.plot([low, high], [low, high], "k:", linewidth=1)
        rmse = float(np.sqrt(np.mean((points["mean"] - points["observed"]) ** 2)))
        axis.set_title(f"{name}: {len(points['row'])} results, RMSE {rmse:.3g}")
        axis.set_xlabel("observed (finer scale)")
        axis.set_ylabel("predicted mean (+/- 2 sd)")
    return _save(figure, run_dir, "parity",
                 "Each finer-scale result against the prediction of the newest saved model "
                 "that had not been trained on it (recomputed from the saved models: the "
                 "run records per-model prospective RMSE, not per-result predictions). "
                 "Results the first model was trained on are not shown.")


def _plot_calibration(axis: Any, name: str, records: list[dict[str, Any]]) -> None:
    generations = [r["round"] for r in records]
    for key, nominal, style in (("coverage_50", 0.5, "o-"), ("coverage_90", 0.9, "s-")):
        line = axis.plot(generations, [r["calibration"][key] for r in records], style,
                         label=f"{int(nominal * 100)}% interval")[0]
        axis.axhline(nominal, color=line.get_color(), linestyle=":", linewidth=1)
    for record in records:
        axis.annotate(f"n={int(record['calibration']['n'])}",
                      (record["round"], record["calibration"]["coverage_90"]),
                      textcoords="offset points", xytext=(0, 6), fontsize=7, ha="center")
    axis.set_ylim(-0.05, 1.1)
    axis.set_xticks(generations)
    axis.set_xlabel("model (round or generation)")
    axis.set_ylabel("coverage of new results")
    axis.set_title(f"calibration: {name}")
    axis.legend(fontsize=8)


def _attempt_spans(ledger: Ledger) -> list[dict[str, Any]]:
    """Attempts that started and ended (times as recorded, seconds since the epoch)."""
    return [{"worker": a["worker"] or "unknown", "scale": a["scale"],
             "started": float(a["started"]), "ended": float(a["ended"]),
             "failed": a["outcome"] != "done"}
            for a in ledger.attempts() if a["started"] is not None and a["ended"] is not None]


def _fit_spans(ledger: Ledger, promotions: list[str]) -> list[tuple[float, float]]:
    return [(float(r["fit_started"]), float(r["fit_ended"]))
            for name in promotions for r in ledger.rounds(name)
            if r.get("fit_started") is not None and r.get("fit_ended") is not None]


def resume_gaps(sessions: list[float], attempts: list[dict[str, Any]],
                fits: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(from, to) of each resume's downtime: from the last event recorded before a driver
    started (an attempt submitted, started or ended, a fit ended) to the first attempt
    that started after it (the driver's own start if none did)."""
    events = np.sort(np.asarray(
        [a[key] for a in attempts for key in ("submitted", "started", "ended")
         if a.get(key) is not None] + [end for _, end in fits], np.float64))
    starts = np.sort(np.asarray([a["started"] for a in attempts
                                 if a.get("started") is not None], np.float64))
    gaps = []
    for began in sorted(sessions)[1:]:
        before = events[events < began]
        if not len(before):
            continue
        after = starts[starts >= began]
        gaps.append((float(before[-1]), float(after[0]) if len(after) else float(began)))
    return gaps


def find_gaps(starts: list[float], factor: float = GAP_FACTOR,
              minimum: float = GAP_MIN_SECONDS) -> list[tuple[float, float]]:
    """(from, to) of each interval between consecutive attempt starts longer than
    ``factor`` times the median interval and at least ``minimum`` seconds."""
    times = np.sort(np.asarray(starts, np.float64))
    if len(times) < 3:
        return []
    intervals = np.diff(times)
    threshold = max(factor * float(np.median(intervals)), minimum)
    return [(float(times[i]), float(times[i + 1]))
            for i in np.flatnonzero(intervals > threshold)]


def _scale_colours(scales: list[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {scale: cmap(i % 10) for i, scale in enumerate(sorted(scales))}


def _plot_timeline(axis: Any, spans: list[dict[str, Any]], fits: list[tuple[float, float]],
                   gaps: list[tuple[float, float]]) -> None:
    axis.set_title("attempts per worker")
    if not spans:
        _no_data(axis, "no attempt has run yet")
        return
    start = min(span["started"] for span in spans)
    workers = sorted({span["worker"] for span in spans})
    lane = {worker: i for i, worker in enumerate(workers)}
    colours = _scale_colours(list({span["scale"] for span in spans}))
    grouped: dict[tuple[str, str, bool], list[tuple[float, float]]] = {}
    for span in spans:  # one call per lane and kind: thousands of bars stay fast
        grouped.setdefault((span["worker"], span["scale"], span["failed"]), []).append(
            (span["started"] - start, span["ended"] - span["started"]))
    for (worker, scale, failed), bars in grouped.items():
        axis.broken_barh(bars, (lane[worker] - 0.35, 0.7), facecolors=colours[scale],
                         edgecolors="red" if failed else "none", linewidth=1.0)
    labels = list(workers)
    if fits:
        axis.broken_barh([(low - start, high - low) for low, high in fits],
                         (len(workers) - 0.35, 0.7), facecolors="0.3")
        labels.append("train")
    for low, high in gaps:
        axis.axvspan(low - start, high - start, color="orange", alpha=0.25)
    from matplotlib.patches import Patch

    handles = [Patch(color=colour, label=scale) for scale, colour in colours.items()]
    if any(span["failed"] for span in spans):
        handles.append(Patch(facecolor="white", edgecolor="red", label="failed attempt"))
    if len(labels) <= 40:
        axis.set_yticks(range(len(labels)), labels, fontsize=6)
    axis.set_ylabel("worker")
    end = max([span["ended"] for span in spans] + [f[1] for f in fits])
    axis.set_xlabel("seconds since the first attempt started")
    if math.isfinite(end - start):
        axis.set_xlim(0, max(end - start, 1e-6) * 1.02)
    axis.legend(handles=handles, fontsize=7, loc="upper right")


def _plot_utilization(axis: Any, spans: list[dict[str, Any]],
                      gaps: list[tuple[float, float]]) -> float:
    """Mean attempts running per time bin; returns busy / (workers x span)."""
    axis.set_title("utilization")
    if not spans:
        _no_data(axis, "no attempt has run yet")
        return 0.0
    start = min(span["started"] for span in spans)
    end = max(span["ended"] for span in spans)
    workers = len({span["worker"] for span in spans})
    colours = _scale_colours(list({span["scale"] for span in spans}))

    edges = np.linspace(0.0, max(end - start, 1e-9), UTILIZATION_BINS + 1)

    def mean_running(selected: list[dict[str, Any]]) -> np.ndarray:
        """Mean number of ``selected`` attempts running in each bin (exact: the integral
        of the running count, piecewise linear between events, read at the bin edges)."""
        times = np.asarray([s["started"] for s in selected] + [s["ended"] for s in selected])
        steps = np.asarray([1] * len(selected) + [-1] * len(selected))
        order = np.argsort(times, kind="stable")
        times, count = times[order] - start, np.cumsum(steps[order])
        area = np.concatenate([[0.0], np.cumsum(count[:-1] * np.diff(times))])
        return np.diff(np.interp(edges, times, area)) / np.diff(edges)

    for scale, colour in colours.items():
        axis.stairs(mean_running([s for s in spans if s["scale"] == scale]), edges,
                    color=colour, label=scale, linewidth=1)
    axis.stairs(mean_running(spans), edges, color="k", label="all", linewidth=1.4)
    axis.axhline(workers, color="0.5", linestyle="--", linewidth=1, label=f"{workers} workers")
    for low, high in gaps:
        axis.axvspan(low - start, high - start, color="orange", alpha=0.25)
    axis.set_xlabel("seconds since the first attempt started")
    axis.set_ylabel(f"attempts running (mean over {edges[1]:.3g} s)")
    axis.legend(fontsize=7, loc="upper right")
    busy = sum(s["ended"] - s["started"] for s in spans)
    return busy / max(workers * (end - start), 1e-9)


# -- the page --------------------------------------------------------------------------
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


def _table(table_id: str, rows: list[dict[str, Any]], empty: str) -> str:
    if not rows:
        return f'<p class="note" id="{table_id}">{html.escape(empty)}</p>'
    header = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{'' if v is None else html.escape(str(v))}</td>"
                         for v in row.values()) + "</tr>" for row in rows)
    return (f'<table id="{table_id}"><thead><tr>{header}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def _figure_html(figure: Figure) -> str:
    data = base64.b64encode(Path(figure.file).read_bytes()).decode("ascii")
    return (f'<figure id="{html.escape(figure.id)}"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(figure.id)}"><figcaption>{html.escape(figure.caption)}'
            f" ({html.escape(Path(figure.file).name)})</figcaption></figure>")


STYLE_SHEET = """
body { font-family: sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #444; max-width: 75em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th { background: #f2f2f2; } td:first-child, th:first-child { text-align: left; }
.note { color: #8a5a00; }
"""


def render_html(run_dir: Path, ledger: Ledger, store: Store, figures: list[Figure],
                notes: dict[str, str], summary: dict[str, Any]) -> str:
    """The page: one self-contained HTML document (PNGs as base64, inline CSS only)."""
    by_id = {figure.id: figure for figure in figures}
    promotions = list(summary["promotions"])
    name = html.escape(str(summary.get("name")))
    wall = summary.get("wall_seconds")
    facts = [{"fact": "campaign", "value": summary.get("name")},
             {"fact": "site", "value": summary.get("site")},
             {"fact": "mode", "value": ledger.fact("mode")},
             {"fact": "stop reason", "value": summary.get("stop_reason") or "running"},
             {"fact": "wall seconds", "value": None if wall is None else round(wall, 1)},
             {"fact": "resumed", "value": int(ledger.fact("resumed", 0) or 0)},
             {"fact": "run directory", "value": str(run_dir)}]
    if summary.get("baseline"):
        seeds = summary["baseline"]["seeds"]
        facts.append({"fact": f"random baseline ({seeds} seed{'s' if seeds > 1 else ''})",
                      "value": f"{summary['baseline']['tasks']} tasks, "
                               f"{summary['baseline']['wall_seconds']:.0f} s"})

    def section(title: str, ids: list[str], extra: str = "") -> str:
        parts = [f"<h2>{html.escape(title)}</h2>"]
        for figure_id in ids:
            if figure_id in by_id:
                parts.append(_figure_html(by_id[figure_id]))
            if figure_id in notes:
                parts.append(f'<p class="note" id="{figure_id}-note">'
                             f"{html.escape(notes[figure_id])}</p>")
        return "<section>" + "".join(parts) + extra + "</section>"

    extras = [figure.id for figure in figures if figure.id.startswith("extra-")]
    body = [
        f"<h1>Campaign report: {name}</h1>",
        _table("facts", facts, ""),
        section("Learning curve", ["learning-curve"]),
        section("Where the learner sampled", ["sampling", "surrogate"]),
        section("Parity and calibration", ["parity", "calibration"],
                _table("rounds", rounds_table(ledger, promotions), "No model was fitted.")),
        section("Tasks over time", ["timeline", "utilization"]),
        section("Counts and costs", [],
                _table("counts", counts_table(ledger, store), "No tasks.")
                + "<h3>Quarantine reasons</h3>"
                + _table("quarantine", quarantine_table(ledger), "No task was quarantined.")),
    ]
    if extras:
        body.append(section("The campaign's own figures", extras))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Campaign report: {name}</title><style>{STYLE_SHEET}</style></head>"
            "<body>" + "\n".join(body) + "</body></html>\n")
