"""The campaign state the engine decides from, held in memory and updated incrementally.

Owns: the run's status (:class:`RunStatus`: why it stops, why it failed); per scale,
tasks in flight, the rounds that have tasks, attempts failed and lost to the
infrastructure, the committed row count, the rows a promotion needs (inputs and the
round/segment tag of each row), walker positions and progress, task status counts and
the compute spent; per promotion, the features of the source rows seen so far (and the
featurizer they came from: a refittable one is swapped with them), which
source rows were promoted / are pending / were quarantined, the training set, and the
model slot (the newest model's generation, a fit or an install under way, the picks
each model made, what the posterior has seen). Ingest
calls :meth:`CampaignState.committed` after every commit; nothing here reads the store or
the ledger (``campaign.resume`` rebuilds this state from them once, when a run starts).

Every update costs time in proportion to the rows it adds, never to the rows already
held, so a decision costs the same at 10^3 and at 10^5 tasks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from campaign.spec import CampaignSpec, Promotion, Scale
from campaign.task import BadResultError


class GrowingArray:
    """An array that grows along its first axis in amortized O(rows added).

    >>> grown = GrowingArray((2,), np.float64)
    >>> grown.extend(np.ones((3, 2)))
    >>> grown.values.shape
    (3, 2)
    """

    def __init__(self, row_shape: tuple[int, ...], dtype: Any, capacity: int = 256) -> None:
        self._data = np.empty((capacity, *row_shape), dtype=dtype)
        self._length = 0

    def __len__(self) -> int:
        return self._length

    @property
    def values(self) -> np.ndarray:
        """A view of the rows held so far (not a copy: do not keep it across extends)."""
        return self._data[: self._length]

    def extend(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=self._data.dtype)
        if rows.shape[1:] != self._data.shape[1:]:
            raise ValueError(f"rows of shape {rows.shape[1:]} cannot join rows of shape "
                             f"{self._data.shape[1:]}")
        needed = self._length + len(rows)
        if needed > len(self._data):
            capacity = max(needed, 2 * len(self._data))
            grown = np.empty((capacity, *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self._length] = self._data[: self._length]
            self._data = grown
        self._data[self._length:needed] = rows
        self._length = needed


@dataclass
class WalkerState:
    """One walker of a broadly sampled scale (or a promoted, segmented one)."""

    position: np.ndarray
    segments: int = 0  # segment tasks recorded for this walker
    latest_task: int | None = None  # its newest task: only that one continues it
    ended: str | None = None  # why it runs no more segments (None while it runs)
    scores: list[float] = field(default_factory=list)  # recent monitor scores of its segments


@dataclass
class ScaleState:
    """What the engine knows about one scale."""

    scale: Scale
    committed_rows: int = 0
    tasks: Counter[str] = field(default_factory=Counter)  # status -> count
    walkers: list[WalkerState] = field(default_factory=list)
    keep_rows: bool = False  # a promotion reads this scale's rows: hold them
    x: GrowingArray | None = None
    row_round: GrowingArray | None = None
    core_seconds: float = 0.0
    failure_streak: int = 0  # consecutive quarantined tasks
    durations_seen: int = 0
    longest_duration: float = 0.0
    monitor: Any = None  # campaign.monitoring.ScaleMonitor of a monitored walker scale
    columns: dict[str, Any] | None = None  # x and y/<name>: (dtype, row shape) of its rows
    first_asked: float | None = None  # when a promoted scale first asked for slots (clock)
    in_flight: int = 0  # attempts submitted and not yet returned, expired or lost
    waiting: int = 0  # ... of which no worker has started yet (counted about every second)
    rounds_with_tasks: set[int] = field(default_factory=set)  # rounds mode: rounds begun
    failed_attempts: int = 0  # app failures retried by this driver
    lost_attempts: int = 0  # attempts lost to the infrastructure (resubmitted, no retry used)
    lost_streak: int = 0  # repeat losses (a task lost again) with no result between them
    lost_since_result: set[int] = field(default_factory=set)  # tasks lost since a result

    @property
    def tasks_recorded(self) -> int:
        return sum(self.tasks.values())

    def add_rows(self, x: np.ndarray, row_round: np.ndarray) -> None:
        """Hold committed rows (only for scales a promotion draws candidates from)."""
        if not self.keep_rows or len(x) == 0:
            return
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if self.x is None:
            self.x = GrowingArray(flat.shape[1:], np.float64)
            self.row_round = GrowingArray((), np.int64)
        assert self.row_round is not None
        self.x.extend(flat)
        self.row_round.extend(np.asarray(row_round, dtype=np.int64))

    def observe_duration(self, seconds: float) -> None:
        self.durations_seen += 1
        self.longest_duration = max(self.longest_duration, seconds)


@dataclass
class PromotionState:
    """What the engine knows about one promotion; ``learner`` is the newest fitted model."""

    promotion: Promotion
    learner: Any
    generation: int = 0  # models fitted so far (async mode); the round in rounds mode
    fitted: bool = False
    quantity: str | None = None
    features: GrowingArray | None = None  # features of source rows [0, len)
    promoted: set[int] = field(default_factory=set)  # source rows with a target task
    pending: set[int] = field(default_factory=set)  # ... not yet committed
    quarantined: set[int] = field(default_factory=set)
    train_rows: list[int] = field(default_factory=list)  # source row of each result
    train_y: list[Any] = field(default_factory=list)  # floats, or (k,) rows
    train_round: list[int] = field(default_factory=list)
    trained_on: int = 0  # training points the newest model (or its fit) saw
    reference: tuple[np.ndarray, np.ndarray] | None = None
    last_record: dict[str, Any] = field(default_factory=dict)
    featurizer: Any = None  # what ``features`` holds: the spec's, or its newest refit
    features_version: int = 0  # featurizer swaps so far (refittable features)
    # the model slot (async mode): what is under way and what each model chose
    fitting: bool = False  # a fit of this promotion runs on ``train`` (or the model thread)
    installing: bool = False  # a fitted model is being prepared for install
    selecting: bool = False  # a selection runs on the model thread
    conditioning: bool = False  # the posterior takes in committed results (model thread)
    seen: int = 0  # training results the current posterior has taken in (fit + condition)
    # the newest model as fitted, before it took in results through ``condition``: what a
    # prospective score measures (``learner`` may have seen the rows being scored)
    installed: Any = None
    picks: Counter[int] = field(default_factory=Counter)  # generation -> rows it chose
    # picks chosen but not submitted yet (their rows reserved in ``promoted``): (source
    # row, the generation that chose it (-1: the design), results its posterior had seen)
    ready: list[tuple[int, int, int]] = field(default_factory=list)
    exhausted_at: int | None = None  # source rows committed when no candidate was left
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # model -> its record
    scored: dict[str, Any] | None = None  # the newest prospective score (progress)

    def __post_init__(self) -> None:
        if self.featurizer is None:
            self.featurizer = self.promotion.features

    @property
    def name(self) -> str:
        return self.promotion.name

    def replace_features(self, featurizer: Any, features: np.ndarray) -> None:
        """Swap in a refitted featurizer with the features of source rows [0, len)
        it computed (refittable features)."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2:
            raise BadResultError(f"refitted features of promotion {self.name} must be (n, f), "
                                 f"got {features.shape}")
        self.featurizer = featurizer
        self.features = GrowingArray(features.shape[1:], np.float64,
                                     capacity=max(256, 2 * len(features)))
        self.features.extend(features)
        self.features_version += 1

    def add_features(self, new: np.ndarray, expected_rows: int) -> None:
        new = np.asarray(new, dtype=np.float64)
        if new.ndim != 2 or new.shape[0] != expected_rows:
            raise BadResultError(f"features of promotion {self.name} must return (n, f) for "
                                 f"n rows, got {new.shape} for {expected_rows} rows")
        if self.features is None:
            self.features = GrowingArray(new.shape[1:], np.float64)
        self.features.extend(new)

    @property
    def featurized(self) -> int:
        return 0 if self.features is None else len(self.features)

    def training_rows(self, before_round: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Source rows of the committed results and the results (only those from rounds
        before ``before_round`` when given)."""
        rows = np.asarray(self.train_rows, dtype=np.int64)
        values = np.asarray(self.train_y, dtype=np.float64)
        if before_round is not None:
            keep = np.asarray(self.train_round, dtype=np.int64) < before_round
            rows, values = rows[keep], values[keep]
        return rows, values

    def training_set(self, before_round: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Features of the promoted source rows with committed results, and the results
        (only those from rounds before ``before_round`` when given)."""
        rows, values = self.training_rows(before_round)
        if len(rows) == 0 or self.features is None:
            return np.zeros((0, 0)), np.zeros(0)
        return self.features.values[rows], values

    def quantity_of(self, outputs: dict[str, np.ndarray]) -> str:
        """The learned output's name, checked against what the target scale returns."""
        if self.quantity is None:
            wanted = self.promotion.quantity
            if wanted is None:
                if len(outputs) != 1:
                    raise BadResultError(f"promotion {self.name}: the target scale returns "
                                         f"{sorted(outputs)}; set quantity= to one")
                wanted = next(iter(outputs))
            if wanted not in outputs:
                raise BadResultError(f"promotion {self.name}: quantity '{wanted}' is not an "
                                     f"output of scale '{self.promotion.target}' "
                                     f"(outputs: {', '.join(sorted(outputs))})")
            self.quantity = wanted
        return self.quantity


def learned_values(state: PromotionState, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The quantity ``state`` learns: one number per row, (n,), or for a learner with
    ``multi_column_targets`` (e.g. ``learners.GradientGP``: gradient windows) one (k,)
    vector per row, (n, k). BadResultError otherwise."""
    quantity = state.quantity_of(outputs)
    values = np.asarray(outputs[quantity], dtype=np.float64)
    if values.ndim > 1:
        if getattr(state.learner, "multi_column_targets", False) and values.ndim == 2:
            return values
        if values.shape[1:] != (1,):
            raise BadResultError(f"quantity '{quantity}' must be one number per row to be "
                                 f"learned, got rows of shape {values.shape[1:]}")
        values = values[:, 0]
    return values


def target_list(values: np.ndarray) -> list[Any]:
    """Learned values as list items: floats, or (k,) rows for multi-column targets."""
    if values.ndim == 1:
        return [float(v) for v in values]
    return [np.array(row, dtype=np.float64) for row in values]


@dataclass
class RunStatus:
    """Why the run stops ('' while it goes on) and why it failed ('' if it did not)."""

    stop_reason: str = ""
    failed_reason: str = ""
    rule_reasons: list[str] = field(default_factory=list)  # stopping rules that fired

    def fail(self, reason: str) -> None:
        """Record the first reason the run cannot progress (later ones are effects)."""
        self.failed_reason = self.failed_reason or reason


class CampaignState:
    """The whole in-memory state: one :class:`ScaleState` per scale, one
    :class:`PromotionState` per promotion, who feeds whom, and the run's status."""

    def __init__(self, spec: CampaignSpec, learners: list[Any]) -> None:
        self.spec = spec
        self.status = RunStatus()
        self.scales = {scale.name: ScaleState(scale) for scale in spec.scales}
        self.promotions = [PromotionState(p, learner)
                           for p, learner in zip(spec.promotions, learners, strict=True)]
        self.feeding = {p.target: state for p, state in zip(spec.promotions, self.promotions,
                                                              strict=True)}
        for promotion in spec.promotions:
            self.scales[promotion.source].keep_rows = True
        for scale in spec.scales:
            if scale.walkers is not None:
                self.scales[scale.name].walkers = [WalkerState(w.copy()) for w in scale.walkers]

    def promotion_from(self, scale: str) -> PromotionState | None:
        """The first promotion drawing candidates from ``scale`` (None if none does)."""
        return next((p for p in self.promotions if p.promotion.source == scale), None)

    def promotion_into(self, scale: str) -> PromotionState | None:
        """The promotion whose target is ``scale`` (None for a broadly sampled scale)."""
        return self.feeding.get(scale)

    def committed(self, scale: str, x: np.ndarray, y: dict[str, np.ndarray],
                  meta: dict[str, np.ndarray], outcomes: list[Any]) -> list[int]:
        """Take in rows just committed to ``scale`` and the outcomes of their tasks.

        Returns the source rows that became training points (for promoted scales)."""
        held = self.scales[scale]
        held.committed_rows += len(x)
        for outcome in outcomes:
            held.tasks["submitted"] -= 1
            held.tasks[outcome.status] += 1
        if len(x):
            held.add_rows(x, meta["round"])
        target_of = self.promotion_into(scale)
        if target_of is None:
            return []
        for outcome in outcomes:
            if outcome.status == "quarantined" and outcome.parent_row is not None:
                target_of.pending.discard(outcome.parent_row)
                target_of.quarantined.add(outcome.parent_row)
        if not len(x):
            return []
        values = learned_values(target_of, y)
        parents = np.asarray(meta["parent_row"], dtype=np.int64)
        rounds = np.asarray(meta["round"], dtype=np.int64)
        for parent in np.unique(parents):
            target_of.pending.discard(int(parent))
        target_of.train_rows.extend(int(p) for p in parents)
        target_of.train_y.extend(target_list(values))
        target_of.train_round.extend(int(r) for r in rounds)
        return [int(p) for p in parents]

    def candidates(self, state: PromotionState, before_round: int | None = None) -> np.ndarray:
        """Source rows that may be promoted: committed, featurized, never promoted (and
        from rounds before ``before_round`` when given)."""
        source = self.scales[state.promotion.source]
        n = min(source.committed_rows, state.featurized)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        eligible = np.ones(n, dtype=bool)
        if before_round is not None and source.row_round is not None:
            eligible &= source.row_round.values[:n] < before_round
        taken = np.fromiter((r for r in state.promoted if r < n), dtype=np.int64)
        eligible[taken] = False
        return np.flatnonzero(eligible)
