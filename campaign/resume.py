"""Resume: rebuild the in-memory campaign state from the store and the ledger, once.

Owns: reading a run directory back into a :class:`~campaign.state.CampaignState` when a
run starts (committed rows of the scales promotions draw from, training sets, walker
positions and progress, which rows were promoted, pending or quarantined, task counts,
compute spent, the durations the engine-side deadline derives from), the tasks recorded
but never committed (submitted again under the same id and seed) and the newest saved
model of each promotion. After this, the engine never reads the store or scans the
ledger to decide anything.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

import numpy as np

from campaign.ingest import SubmittedTask
from campaign.ledger import Ledger
from campaign.monitoring import ScaleMonitor, stopped_by_monitor
from campaign.planner import featurize
from campaign.progress import score_of
from campaign.spec import CampaignSpec, Promotion
from campaign.state import CampaignState, PromotionState, learned_values, target_list
from campaign.store import Store

logger = logging.getLogger(__name__)


def restore_state(spec: CampaignSpec, store: Store, ledger: Ledger,
                  learners: list[Any]) -> CampaignState:
    """The state of a run directory (an empty state for a new run)."""
    state = CampaignState(spec, learners)
    for name, held in state.scales.items():
        if held.scale.monitor is not None:
            drawing = state.promotion_from(name)
            held.monitor = ScaleMonitor(held.scale.monitor,
                                        None if drawing is None else drawing.promotion.features)
    counts = ledger.task_counts()
    spent = ledger.core_seconds()
    durations = ledger.durations()
    for name, held in state.scales.items():
        held.durations_seen, held.longest_duration = durations.get(name, (0, 0.0))
        held.tasks = Counter(counts.get(name, {}))
        held.committed_rows = store.rows(name)
        held.columns = store.columns(name)  # what its next results must look like
        held.core_seconds = spent.get(name, 0.0) * _cores(held.scale.resources)
        if held.keep_rows and held.committed_rows:
            data = store.read(name)
            held.add_rows(data.x, data.meta["round"])
    _restore_walkers(state, store, ledger)
    for promotion_state in state.promotions:
        _restore_promotion(state, promotion_state, store, ledger)
    return state


def _cores(resources: dict[str, Any]) -> float:
    return float(resources.get("cores", 1))


def _restore_walkers(state: CampaignState, store: Store, ledger: Ledger) -> None:
    """Progress from the ledger; each walker's position is the last row of its newest
    done task (its start if it has none). A monitored scale's pool is rebuilt, and a
    walker whose newest done segment the monitor stopped stays stopped."""
    newest_done: dict[str, dict[int, int]] = {}
    for record in ledger.walker_tasks():
        held = state.scales.get(record["scale"])
        if held is None or record["walker"] >= len(held.walkers):
            continue
        walker = held.walkers[record["walker"]]
        walker.segments = record["segments"]
        walker.latest_task = record["task_id"]
        if record["status"] == "quarantined":
            walker.ended = "quarantined"
    for task in ledger.newest_done_walker_tasks():
        newest_done.setdefault(task[0], {})[task[1]] = task[2]
    for scale, by_walker in newest_done.items():
        data = store.read(scale)
        if len(data) == 0:
            continue
        task_ids = data.meta["task_id"]
        # index of the last row of each task id
        reversed_ids = task_ids[::-1]
        unique, first_in_reversed = np.unique(reversed_ids, return_index=True)
        last_row = dict(zip(unique.tolist(), (len(task_ids) - 1 - first_in_reversed).tolist(),
                            strict=True))
        held = state.scales[scale]
        if held.monitor is not None:
            held.monitor.restore(data.x, data.meta)
        for walker_index, task_id in by_walker.items():
            if task_id in last_row:
                walker = held.walkers[walker_index]
                walker.position = data.x[last_row[task_id]].reshape(walker.position.shape)
                if (walker.latest_task == task_id
                        and stopped_by_monitor(data.meta, last_row[task_id])):
                    walker.ended = "stopped by monitor"


def _restore_promotion(state: CampaignState, promotion_state: PromotionState, store: Store,
                       ledger: Ledger) -> None:
    promotion = promotion_state.promotion
    source = state.scales[promotion.source]
    if source.x is not None and len(source.x):
        promotion_state.add_features(featurize(promotion, source.x.values), len(source.x))
    for parent, status in ledger.promoted_rows(promotion.target):
        promotion_state.promoted.add(parent)
        if status == "submitted":
            promotion_state.pending.add(parent)
        elif status == "quarantined":
            promotion_state.quarantined.add(parent)
    target = store.read(promotion.target) if store.rows(promotion.target) else None
    if target is not None and len(target):
        values = learned_values(promotion_state, target.y)
        promotion_state.train_rows = [int(r) for r in target.meta["parent_row"]]
        promotion_state.train_y = target_list(values)
        promotion_state.train_round = [int(r) for r in target.meta["round"]]
    records = ledger.rounds(promotion_state.name)
    promotion_state.records = {int(r["round"]): {k: v for k, v in r.items()
                                                 if k not in ("round", "promotion")}
                               for r in records}
    if records:
        promotion_state.last_record = promotion_state.records[int(records[-1]["round"])]
        if promotion_state.last_record.get("calibration"):
            promotion_state.scored = score_of(promotion_state.last_record,
                                              int(records[-1]["round"]))


def saved_models(store: Store, promotion: str) -> list[int]:
    """Rounds (or generations) with a saved model of ``promotion``, ascending."""
    if f"models/{promotion}" not in store.group:
        return []
    models = store.group[f"models/{promotion}"]
    # ``n_train`` is written last: a model group without it was cut short by a kill
    return sorted(int(r) for r in models.group_keys() if "n_train" in models[r].attrs)


def restore_learner(store: Store, promotion_state: PromotionState, model: int) -> None:
    """Load saved model ``model`` into the promotion's learner."""
    promotion_state.learner.load_state_dict(store.load_model(promotion_state.name, model))
    promotion_state.installed = promotion_state.learner
    promotion_state.generation = model
    promotion_state.fitted = True
    node = store.group[f"models/{promotion_state.name}/{model}"]
    promotion_state.trained_on = int(node.attrs.get("n_train", 0))
    promotion_state.seen = promotion_state.trained_on
    logger.info("%s: learner restored from saved model %d", promotion_state.name, model)


def unfinished_tasks(spec: CampaignSpec, state: CampaignState,
                     ledger: Ledger) -> list[SubmittedTask]:
    """Every task recorded but never committed, to be submitted again (same id, seed),
    with its app failures so far (attempts lost to the infrastructure do not count) and
    the model that chose it: in rounds mode the round's, if it had one, and no model
    had missed a result; in async mode the generation its round holds, staleness
    unknown (-1)."""
    unfinished = []
    submitted = ledger.tasks(status="submitted")
    failures: Counter[int] = Counter()
    if submitted:
        failures.update(a["task_id"] for a in ledger.attempts() if a["outcome"] == "failed")
    for task in submitted:
        if task["parent_row"] >= 0:
            promotion = next(p for p in spec.promotions if p.target == task["scale"])
            task_input = mapped_input(promotion, state, task["parent_row"])
        else:
            task_input = np.asarray(json.loads(task["input"]), np.float64)
        chosen_by, staleness = -1, -1
        if task["parent_row"] >= 0 and spec.mode == "rounds":
            held = state.promotion_into(task["scale"])
            if held is not None and held.records.get(task["round"], {}).get("n_train"):
                chosen_by, staleness = task["round"], 0
        elif task["parent_row"] >= 0 and task["round"] > 0:
            chosen_by = task["round"]
        unfinished.append(SubmittedTask(task["task_id"], task["scale"], task["round"],
                                        task["parent_row"], 0.0, task_input,
                                        task["attempts"], task["walker"], task["seed"],
                                        failures=failures[task["task_id"]],
                                        chosen_by=chosen_by, staleness=staleness))
    return unfinished


def mapped_input(promotion: Promotion, state: CampaignState, source_row: int) -> np.ndarray:
    """The finer scale's input for one source row (through the promotion's mapping)."""
    source = state.scales[promotion.source]
    assert source.x is not None
    row = source.x.values[source_row]
    if promotion.mapping is None:
        return np.array(row, dtype=np.float64)
    return np.asarray(promotion.mapping(row))
