"""How good the surrogate is on results it had not seen: parity of prospective
predictions (recomputed from the saved models) and interval calibration per model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from campaign.ledger import Ledger
from campaign.report.plotting import Figure, integer_colours, pyplot, save
from campaign.report.sampling import load_learner, promotion_spec
from campaign.spec import CampaignSpec
from campaign.store import Store

logger = logging.getLogger(__name__)

def learned_quantity(promotion: Any, outputs: dict[str, Any]) -> str | None:
    """The output the promotion's learner is trained on: its ``quantity``, or the
    target's only output."""
    return promotion.quantity or (next(iter(outputs)) if len(outputs) == 1 else None)


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
    quantity = learned_quantity(promotion, target.y)
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
        learner = load_learner(store, promotion, model)
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


def parity_figure(run_dir: Path, ledger: Ledger, store: Store, spec: CampaignSpec | None,
                  promotions: list[str]) -> tuple[Figure | str, dict[str, float]]:
    """The parity figure (or why there is none) and, per promotion drawn, the pooled
    prospective RMSE of its points."""
    if spec is None:
        return ("Parity is not shown: per-result predictions are not recorded in the run; "
                "they are recomputed from the saved models, which needs the campaign spec. "
                "The rounds table gives the recorded prospective RMSE."), {}
    drawn = []
    for name in promotions:
        promotion = promotion_spec(spec, name)
        if promotion is None:
            continue
        try:
            points = parity_points(store, promotion)
        except Exception as error:  # a user's featurizer or learner: report, not crash
            logger.warning("parity of %s: %s: %s", name, type(error).__name__, error)
            continue
        if len(points["row"]):
            outputs = store.read(promotion.target).y
            drawn.append((promotion, learned_quantity(promotion, outputs), points))
    if not drawn:
        return ("Parity is not shown: no finer-scale result arrived after a saved model "
                "that was not trained on it."), {}
    plt = pyplot()
    pooled: dict[str, float] = {}
    figure, axes = plt.subplots(1, len(drawn), figsize=(5.8 * len(drawn), 5.2),
                                squeeze=False)
    for axis, (promotion, quantity, points) in zip(axes[0], drawn, strict=True):
        models = points["model"].astype(np.int64)
        cmap, norm, ticks = integer_colours(models)
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
        pooled[promotion.name] = rmse
        first, last = int(models.min()), int(models.max())
        which = f"model {first}" if first == last else f"models {first}-{last}"
        axis.set_title(f"{promotion.name}: '{quantity}', prospective\n"
                       f"{len(points['row'])} results by {which}, pooled RMSE {rmse:.3g}",
                       fontsize=10)
        axis.set_xlabel(f"observed {quantity} ({promotion.target} scale)")
        axis.set_ylabel(f"predicted {quantity}: mean +/- 2 sd")
    return save(figure, run_dir, "parity",
                "Prospective parity: each finer-scale result against the prediction of "
                "the newest saved model that had not been trained on it (recomputed from "
                "the saved models: the run records per-model prospective RMSE, not "
                "per-result predictions). Results the first model was trained on are not "
                "shown. The RMSE in the title pools every point, each predicted by a "
                "different, older model; it is not the newest model's error (see the "
                "note under the models table)."), pooled


def plot_calibration(axis: Any, name: str, records: list[dict[str, Any]]) -> None:
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
