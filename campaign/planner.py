"""The planner: which source rows a promotion sends to its finer scale next.

Owns: one selection (:func:`select_batch`) from a snapshot of a promotion's state
(:class:`SelectionRequest`): featurize the source rows not featurized yet, take the
candidates (committed, never promoted), ask the newest model's posterior over the
candidates and the pending points, and let the acquisition choose ``k`` conditioned on
the pending ones (quarantined rows count as pending for good; so do committed rows the
model has not seen yet, in async mode, when its learner cannot take them in at once).
Without a model, a space-filling design (:func:`space_filling`: greedy maximin in
feature space) picks rows far from each other and from every row promoted already. A
selection touches no Parsl, store or ledger, so the async
engine runs it off the steering thread while results keep arriving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from campaign.spec import Promotion
from campaign.state import CampaignState, PromotionState


@dataclass
class SelectionRequest:
    """A snapshot: everything a selection reads, safe to use from another thread."""

    promotion: Promotion
    learner: Any | None  # None: seed design (random picks)
    known_features: np.ndarray  # features of source rows [0, featurized)
    new_source_x: np.ndarray  # source rows [featurized, committed) to featurize
    taken: np.ndarray  # source rows already promoted
    pending: np.ndarray  # promoted rows without a result yet, and quarantined rows
    eligible_rounds: np.ndarray | None  # rounds mode: row round tags (pool = < round)
    before_round: int | None
    k: int
    rng: np.random.Generator
    featurizer: Any = None  # what known_features came from (None: promotion.features)


@dataclass
class Selection:
    """What a selection chose, with the features it computed and a record for the ledger."""

    chosen: np.ndarray
    new_features: np.ndarray
    record: dict[str, Any]


def snapshot(state: CampaignState, promotion_state: PromotionState, k: int,
             rng: np.random.Generator, *, use_model: bool,
             before_round: int | None = None,
             also_pending: list[int] | None = None) -> SelectionRequest:
    """Copy out what :func:`select_batch` needs (O(new rows + promoted rows)).
    ``also_pending``: rows fantasized like pending ones (async: committed rows the model
    has not seen, and picks chosen but not submitted yet)."""
    source = state.scales[promotion_state.promotion.source]
    featurized = promotion_state.featurized
    assert source.x is not None or source.committed_rows == 0
    new_x = (np.zeros((0, 0)) if source.x is None
             else source.x.values[featurized:source.committed_rows].copy())
    known = (np.zeros((0, 0)) if promotion_state.features is None
             else promotion_state.features.values)
    rounds = None
    if before_round is not None and source.row_round is not None:
        rounds = source.row_round.values[:source.committed_rows]
    pending = sorted(promotion_state.pending | promotion_state.quarantined
                     | set(also_pending or ()))
    return SelectionRequest(
        promotion=promotion_state.promotion,
        learner=promotion_state.learner if use_model else None,
        known_features=known, new_source_x=new_x,
        taken=np.fromiter(promotion_state.promoted, dtype=np.int64),
        pending=np.asarray(pending, dtype=np.int64), eligible_rounds=rounds,
        before_round=before_round, k=k, rng=rng, featurizer=promotion_state.featurizer)


def featurize(promotion: Promotion, x: np.ndarray, featurizer: Any = None) -> np.ndarray:
    """Features of source rows ``x`` by ``featurizer`` (default: ``promotion.features``;
    refittable features: the promotion's newest refit), an empty (0, 0) array for no rows."""
    if len(x) == 0:
        return np.zeros((0, 0))
    features = promotion.features if featurizer is None else featurizer
    return np.asarray(features(x), dtype=np.float64)


def select_batch(request: SelectionRequest) -> Selection:
    """Choose up to ``request.k`` source rows (see the module docstring)."""
    new_features = featurize(request.promotion, request.new_source_x, request.featurizer)
    if len(new_features) and new_features.shape[0] != len(request.new_source_x):
        # checked again, with a clear error, when the engine stores the features
        return Selection(np.zeros(0, np.int64), new_features, {})
    if len(request.known_features) == 0:
        features = new_features
    elif len(new_features) == 0:
        features = request.known_features
    else:
        features = np.concatenate([request.known_features, new_features])
    eligible = np.ones(len(features), dtype=bool)
    if request.eligible_rounds is not None and request.before_round is not None:
        eligible &= request.eligible_rounds[:len(features)] < request.before_round
    pool = int(np.count_nonzero(eligible))
    eligible[request.taken[request.taken < len(features)]] = False
    candidates = np.flatnonzero(eligible)
    record: dict[str, Any] = {"n_pool": pool, "n_candidates": int(len(candidates)),
                              "n_pending": int(len(request.pending))}
    if len(candidates) == 0 or request.k == 0:
        return Selection(np.zeros(0, np.int64), new_features, record)
    k = min(request.k, len(candidates))
    if request.learner is None:
        chosen = space_filling(features, candidates, request.taken[request.taken < len(
            features)], k, request.rng)
        record.update(policy="space-filling design (maximin)")
        return Selection(chosen, new_features, record)
    started = time.time()
    points = np.concatenate([features[candidates], features[request.pending]])
    posterior = request.learner.posterior(points)
    pending_positions = np.arange(len(candidates), len(points), dtype=np.int64)
    positions = np.asarray(request.promotion.acquisition.select(
        posterior, k, pending_positions, request.rng), dtype=np.int64)
    # no summary of the chosen variances: that would compute the variance of every
    # candidate, which large-pool policies avoid (measured: 0.4 s at 70k candidates)
    record.update(policy=type(request.promotion.acquisition).__name__,
                  select_seconds=time.time() - started)
    return Selection(candidates[positions], new_features, record)


def space_filling(features: np.ndarray, candidates: np.ndarray, taken: np.ndarray, k: int,
                  rng: np.random.Generator) -> np.ndarray:
    """``k`` of ``candidates`` chosen greedily, each the farthest (in features scaled
    to unit spread) from the rows ``taken`` and those chosen before it; the first, with
    nothing taken, at random. O(k x candidates x features)."""
    points = np.asarray(features[candidates], np.float64).reshape(len(candidates), -1)
    spread = points.std(axis=0)
    scale = np.where(spread > 0, spread, 1.0)
    points = points / scale
    nearest = np.full(len(points), np.inf)
    for row in taken:
        anchor = np.asarray(features[row], np.float64).reshape(-1) / scale
        nearest = np.minimum(nearest, np.sum((points - anchor) ** 2, axis=1))
    chosen: list[int] = []
    for _ in range(k):
        if np.isinf(nearest).all():
            position = int(rng.integers(len(points)))
        else:
            position = int(np.argmax(nearest))
        chosen.append(position)
        nearest = np.minimum(nearest, np.sum((points - points[position]) ** 2, axis=1))
        nearest[position] = -1.0  # never twice
    return candidates[np.asarray(chosen, np.int64)]
