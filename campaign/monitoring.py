"""Segment monitoring: what the engine keeps for a walker scale with a ``monitor``.

Owns: the scale's pool of frame features (every returned frame, in arrival order), the
frames a walker may restart from (the highest-scored ones, bounded), judging one segment
(:meth:`ScaleMonitor.judge`, pure: safe on the model thread with a snapshot) and applying
the decision on the steering thread (:meth:`ScaleMonitor.apply`: the pool grows, the
walker's next start and the ``meta/monitor`` and ``meta/monitor_score`` columns of the
segment's rows). The decision itself is the monitor's (``learners.monitor``); whether a
walker runs again is the engine's.

Resume rebuilds the pool from the committed rows and the restart frames from their
stored scores (:meth:`ScaleMonitor.restore`); a walker whose newest committed segment is
marked ``stop`` stays stopped. A restart's start is the next task's input in the ledger.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from campaign.state import GrowingArray, WalkerState

ACTIONS = ("continue", "stop", "restart")  # codes 0, 1, 2 of meta/monitor
RESTART_FRAMES_KEPT = 512  # highest-scored frames a walker may restart from
RESTART_FRAMES_RESCORED = 16  # of those, rescored against the pool of the moment
SCORES_KEPT = 8  # recent segment scores per walker (patience reads the newest)


@dataclass
class Judgement:
    """A segment's decision with the features it computed and, for a restart, the
    restart frame chosen (an id of :attr:`ScaleMonitor.restart_frames`)."""

    decision: Any  # learners.monitor.Decision
    features: np.ndarray
    restart_id: int | None = None


@dataclass
class JudgeRequest:
    """A snapshot of what :meth:`ScaleMonitor.judge` reads (safe on another thread)."""

    frames_x: np.ndarray
    pool: np.ndarray
    previous_scores: tuple[float, ...]
    uncertainty: Callable[[np.ndarray], np.ndarray] | None
    restart_options: list[tuple[int, np.ndarray]]  # (id, features), best first


@dataclass
class ScaleMonitor:
    """The monitor's state for one walker scale (see the module docstring)."""

    monitor: Any
    features: Callable[[np.ndarray], np.ndarray] | None  # None: the raw rows
    pool: GrowingArray | None = None
    actions: Counter[str] = field(default_factory=Counter)
    _restart_heap: list[tuple[float, int]] = field(default_factory=list)  # (score, id)
    restart_frames: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=itertools.count)

    def featurize(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        if self.features is None:
            return x
        return np.asarray(self.features(x), dtype=np.float64).reshape(len(x), -1)

    def request(self, walker: WalkerState, frames_x: np.ndarray,
                uncertainty: Callable[[np.ndarray], np.ndarray] | None) -> JudgeRequest:
        """Steering thread: snapshot the pool and the best restart frames."""
        pool = np.zeros((0, 0)) if self.pool is None else self.pool.values
        best = heapq.nlargest(RESTART_FRAMES_RESCORED, self._restart_heap)
        options = [(frame_id, self.restart_frames[frame_id][0]) for _, frame_id in best]
        return JudgeRequest(np.asarray(frames_x), pool, tuple(walker.scores), uncertainty,
                            options)

    def judge(self, request: JudgeRequest) -> Judgement:
        """Decide on one segment (any thread: reads only the snapshot)."""
        from learners.monitor import Segment

        features = self.featurize(request.frames_x)
        pool = request.pool if len(request.pool) else np.zeros((0, features.shape[1]))
        segment = Segment(features, pool, request.previous_scores, request.uncertainty)
        decision = self.monitor.decide(segment)
        restart_id = None
        if decision.action == "restart" and request.restart_options:
            candidates = np.stack([f for _, f in request.restart_options])
            scores = self.monitor.frame_scores(Segment(candidates, pool, (),
                                                       request.uncertainty))
            if scores is None:
                scores = np.zeros(len(candidates))
            restart_id = request.restart_options[int(np.argmax(scores))][0]
        return Judgement(decision, features, restart_id)

    def apply(self, walker: WalkerState | None, frames_x: np.ndarray,
              judgement: Judgement) -> tuple[str, np.ndarray, dict[str, np.ndarray]]:
        """Steering thread: grow the pool, keep the segment's best frames as restart
        options, and return (action taken, the walker's next start, meta columns).
        A restart with no restart frame left continues instead. ``walker`` None: an
        older segment run again on resume (its successor is out): recorded as
        ``continue``, the walker is not touched."""
        decision = judgement.decision
        features = judgement.features
        if self.pool is None:
            self.pool = GrowingArray(features.shape[1:], np.float64)
        self.pool.extend(features)
        action = decision.action if walker is not None else "continue"
        if walker is not None:
            walker.scores = [*walker.scores, float(decision.score)][-SCORES_KEPT:]
        start = np.asarray(frames_x[-1], dtype=np.float64)
        if action == "restart":
            frame = self._take_restart_frame(judgement.restart_id)
            if frame is None:
                action = "continue"
            else:
                start = frame
        self._keep_restart_frames(features, np.asarray(frames_x, dtype=np.float64),
                                  np.asarray(decision.frame_scores, dtype=np.float64))
        self.actions[action] += 1
        n = len(frames_x)
        meta = {"monitor": np.full(n, ACTIONS.index(action), dtype=np.int8),
                "monitor_score": np.asarray(decision.frame_scores, np.float64).reshape(n)}
        return action, start, meta

    def _keep_restart_frames(self, features: np.ndarray, x: np.ndarray,
                             scores: np.ndarray) -> None:
        for row in np.flatnonzero(np.isfinite(scores)):
            entry = (float(scores[row]), next(self._ids))
            if len(self._restart_heap) < RESTART_FRAMES_KEPT:
                heapq.heappush(self._restart_heap, entry)
            elif entry[0] > self._restart_heap[0][0]:
                dropped = heapq.heapreplace(self._restart_heap, entry)
                self.restart_frames.pop(dropped[1], None)
            else:
                continue
            self.restart_frames[entry[1]] = (features[row].copy(), x[row].copy())

    def _take_restart_frame(self, frame_id: int | None) -> np.ndarray | None:
        """The chosen restart frame, or (taken meanwhile) the best one left; each frame
        starts at most one restart."""
        if frame_id is None or frame_id not in self.restart_frames:
            if not self._restart_heap:
                return None
            frame_id = max(self._restart_heap)[1]
        self._restart_heap = [e for e in self._restart_heap if e[1] != frame_id]
        heapq.heapify(self._restart_heap)
        return self.restart_frames.pop(frame_id)[1]

    def restore(self, x: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        """Resume: the pool from every committed row, restart frames from stored scores."""
        if len(x) == 0:
            return
        features = self.featurize(x)
        self.pool = GrowingArray(features.shape[1:], np.float64)
        self.pool.extend(features)
        scores = meta.get("monitor_score")
        if scores is not None:
            self._keep_restart_frames(features, np.asarray(x, np.float64).reshape(len(x), -1),
                                      np.asarray(scores, np.float64))
        codes = meta.get("monitor")
        if codes is not None:
            task_ids = meta["task_id"]
            first = np.unique(task_ids, return_index=True)[1]
            for code in np.asarray(codes)[first]:
                self.actions[ACTIONS[int(code)]] += 1


def stopped_by_monitor(meta: dict[str, np.ndarray], row: int) -> bool:
    """Whether committed row ``row`` (a segment's last) is marked ``stop``."""
    codes = meta.get("monitor")
    return codes is not None and int(codes[row]) == ACTIONS.index("stop")
