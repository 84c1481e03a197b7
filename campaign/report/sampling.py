"""Where the learner sampled: the source rows projected to 2-D with the chosen rows per
model generation, and the surrogate's mean and standard deviation behind them."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from campaign.ledger import Ledger
from campaign.report.plotting import Figure, integer_colours, no_data, pyplot, save
from campaign.spec import CampaignSpec
from campaign.store import Store

logger = logging.getLogger(__name__)

MAX_ROWS = 4000  # source rows predicted for a map of more (or fewer) than 2 columns
GRID = 60  # points per axis of the surrogate background


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


def plot_sampling(axis: Any, ledger: Ledger, store: Store, promotion: str,
                  background: tuple[Any, ...] | None = None) -> None:
    """The source rows (projected, :func:`project_2d`) and the rows chosen for the target,
    coloured by the model that chose them. ``background``: ``(gx, gy, values, label)``,
    a grid drawn behind them, or ``(rows, values, label)``, those source rows coloured by
    ``values`` instead of grey."""
    source, target = promotion.split("-to-")
    axis.set_title(f"where {promotion} sampled")
    pool = store.read(source)
    if len(pool) == 0:
        no_data(axis, f"no committed {source} rows")
        return
    points, labels = project_2d(pool.x)
    if background is not None and len(background) == 4:
        gx, gy, values, label = background
        mesh = axis.pcolormesh(gx, gy, values, shading="auto", cmap="magma", alpha=0.85)
        axis.figure.colorbar(mesh, ax=axis, label=label)
    if background is not None and len(background) == 3:
        shown, values, label = background
        coloured = axis.scatter(points[shown, 0], points[shown, 1], s=6, c=values,
                                cmap="magma", label=f"{source} rows", rasterized=True)
        axis.figure.colorbar(coloured, ax=axis, label=label)
    else:
        axis.scatter(points[:, 0], points[:, 1], s=2, c="0.7", label=f"{source} rows",
                     rasterized=True)
    rows, rounds, quarantined = _chosen(ledger, target)
    rows_ok = rows < len(points)
    rows, rounds, quarantined = rows[rows_ok], rounds[rows_ok], quarantined[rows_ok]
    if len(rows):
        cmap, norm, ticks = integer_colours(rounds)
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


def promotion_spec(spec: CampaignSpec, name: str) -> Any:
    return next((p for p in spec.promotions if p.name == name), None)


def load_learner(store: Store, promotion: Any, model: int) -> Any:
    learner = copy.deepcopy(promotion.learner)
    learner.load_state_dict(store.load_model(promotion.name, model))
    return learner


def _grid_view(promotion: Any, learner: Any, x: np.ndarray) -> tuple[Any, ...]:
    """Two columns: mean and std over a grid of the rows' box (pcolormesh input)."""
    low, high = x.min(axis=0), x.max(axis=0)
    pad = 0.05 * np.maximum(high - low, 1e-12)
    gx, gy = np.meshgrid(np.linspace(low[0] - pad[0], high[0] + pad[0], GRID),
                         np.linspace(low[1] - pad[1], high[1] + pad[1], GRID))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    posterior = learner.posterior(np.asarray(promotion.features(grid), np.float64))
    std = np.sqrt(np.maximum(posterior.variance, 0.0))
    return (gx, gy, posterior.mean.reshape(gx.shape), std.reshape(gx.shape))


def _rows_view(promotion: Any, learner: Any, x: np.ndarray) -> tuple[Any, ...]:
    """Other column counts: mean and std at the source rows themselves (at most
    MAX_ROWS of them, evenly spaced), for a scatter on their 2-D projection."""
    shown = np.unique(np.linspace(0, len(x) - 1, min(len(x), MAX_ROWS)).astype(np.int64))
    posterior = learner.posterior(np.asarray(promotion.features(x[shown]), np.float64))
    return (shown, posterior.mean, np.sqrt(np.maximum(posterior.variance, 0.0)))


def surrogate_figure(run_dir: Path, store: Store, spec: CampaignSpec | None,
                     promotions: list[str]) -> Figure | str:
    """The newest saved model's mean and standard deviation behind the sampled points:
    over a grid of the source rows' box when they have two columns, else at the source
    rows themselves, on their projection (:func:`project_2d`: principal components for
    more than two columns)."""
    from campaign.resume import saved_models

    if spec is None:
        return ("The surrogate map needs the campaign spec (campaign report loads it from "
                "the run's script when it was started from one).")
    ledger = store.ledger
    drawn: list[tuple[str, int, Any]] = []
    reasons = []
    for name in promotions:
        promotion = promotion_spec(spec, name)
        models = saved_models(store, name)
        pool = store.read(name.split("-to-")[0])
        if promotion is None or not models or len(pool) == 0:
            reasons.append(f"{name}: no saved model or no source rows")
            continue
        try:
            learner = load_learner(store, promotion, models[-1])
            view = (_grid_view if pool.x.shape[1] == 2 else _rows_view)(
                promotion, learner, pool.x)
        except Exception as error:  # a user's featurizer or learner: report, not crash
            logger.warning("surrogate map of %s: %s: %s", name, type(error).__name__, error)
            reasons.append(f"{name}: {type(error).__name__}: {error}")
            continue
        drawn.append((name, models[-1], view))
    if not drawn:
        return "No surrogate map: " + "; ".join(reasons) + "."
    plt = pyplot()
    figure, axes = plt.subplots(len(drawn), 2, figsize=(12.8, 4.8 * len(drawn)), squeeze=False)
    for row, (name, model, view) in enumerate(drawn):
        *where, mean, std = view
        plot_sampling(axes[row, 0], ledger, store, name, (*where, mean, "surrogate mean"))
        plot_sampling(axes[row, 1], ledger, store, name, (*where, std, "surrogate std"))
        at = "" if len(where) == 2 else " at the source rows"
        axes[row, 0].set_title(f"{name}: mean of model {model}{at}")
        axes[row, 1].set_title(f"{name}: standard deviation of model {model}{at}")
    return save(figure, run_dir, "surrogate",
                "The newest saved model's predictive mean (left) and standard deviation of "
                "the latent function (right), with the sampled points on top: over the "
                "source rows' range where they have two columns, else at the source rows "
                f"themselves (at most {MAX_ROWS}, evenly spaced), on the same projection as "
                "the sampling figure (principal components for more than two columns)."
                + (" " + "; ".join(reasons) + "." if reasons else ""))
