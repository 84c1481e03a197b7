"""Segment monitors: after each segment of a walker, continue it, stop it, or restart it
from a novel frame.

A broadly sampled scale runs its walkers in segments. A monitor looks at the frames one
segment produced, in feature space, against the frames the scale produced before (the
*pool*), and decides what the walker does next:

- ``continue``: the next segment starts from the segment's last frame (no monitor);
- ``stop``: the walker runs no more segments (its rows so far stay in the store);
- ``restart``: the walker's next segment starts from the most promising earlier frame
  of the scale instead (DeepDriveMD's outlier-driven restarts; the walker count and
  each walker's segment count are kept, so a ``Budget(rounds=N)`` still bounds it).

Built-ins, both on the same rule (a segment *score* below ``stop_below`` for
``patience`` segments in a row stops or restarts the walker):

- :class:`NoveltyMonitor`: the walker stays where many frames already are. A frame's
  score is the fraction of pool frames whose own k-th-neighbour distance is smaller than
  the frame's distance to its k-th nearest pool frame (0: denser than every pool frame,
  1: farther out than all of them); a segment's score is the mean over its frames.
- :class:`ConfidenceMonitor`: the walker stays where the surrogate is already confident
  (the newest model's posterior standard deviation over the segment's frames, in units
  of the learned quantity). Before any model it always continues.

A monitor knows nothing of Parsl or the engine: it sees arrays and returns a
:class:`Decision`.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pool = rng.normal(size=(500, 2))              # one well, densely sampled
    >>> crowded = rng.normal(scale=0.3, size=(20, 2))  # a segment inside it
    >>> monitor = NoveltyMonitor(stop_below=0.5, patience=2)
    >>> first = monitor.decide(Segment(crowded, pool))
    >>> first.action, first.score < 0.5
    ('continue', True)
    >>> monitor.decide(Segment(crowded, pool, previous_scores=(first.score,))).action
    'restart'
    >>> far = rng.normal(loc=4.0, scale=0.3, size=(20, 2))  # a segment far outside
    >>> monitor.decide(Segment(far, pool, previous_scores=(0.1, 0.1))).action
    'continue'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ConfidenceMonitor", "Decision", "Monitor", "NoveltyMonitor", "Segment",
           "knn_distances"]

Action = Literal["continue", "stop", "restart"]
ACTIONS: tuple[Action, ...] = ("continue", "stop", "restart")
"""Actions by their code in the store's ``meta/monitor`` column (0, 1, 2)."""


@dataclass(frozen=True)
class Segment:
    """What a monitor sees of one finished segment.

    ``frames`` (n, f): features of the frames the segment produced. ``pool`` (m, f):
    features of the scale's frames that arrived before it (all walkers).
    ``previous_scores``: this walker's earlier segment scores, oldest first.
    ``uncertainty``: posterior standard deviation of the newest model at given features
    (None before the first model, or for monitors that do not ask for it)."""

    frames: np.ndarray
    pool: np.ndarray
    previous_scores: tuple[float, ...] = ()
    uncertainty: Callable[[np.ndarray], np.ndarray] | None = None


@dataclass(frozen=True)
class Decision:
    """What the walker does next, the segment's score and one score per frame (higher:
    more worth sampling; the engine restarts walkers from the highest-scored frames)."""

    action: Action
    score: float
    frame_scores: np.ndarray
    reason: str = ""


def knn_distances(points: np.ndarray, pool: np.ndarray, k: int, *,
                  exclude_self: bool = False, chunk: int = 1024) -> np.ndarray:
    """(n,) Euclidean distance from each point to its k-th nearest pool point (brute
    force in chunks: O(n m) time, O(chunk m) memory). ``exclude_self`` skips the nearest
    one (the point itself, when ``points`` are rows of ``pool``)."""
    points = np.asarray(points, dtype=np.float64)
    pool = np.asarray(pool, dtype=np.float64)
    rank = k if exclude_self else k - 1
    if len(pool) <= rank:
        raise ValueError(f"need more than {rank} pool points for k={k}; got {len(pool)}")
    pool_sq = np.einsum("ij,ij->i", pool, pool)
    out = np.empty(len(points))
    for start in range(0, len(points), chunk):
        block = points[start:start + chunk]
        squared = (np.einsum("ij,ij->i", block, block)[:, None] + pool_sq[None, :]
                   - 2.0 * block @ pool.T)
        kth = np.partition(squared, rank, axis=1)[:, rank]
        out[start:start + chunk] = np.sqrt(np.maximum(kth, 0.0))
    return out


class Monitor(ABC):
    """Scores a segment's frames and applies the stop rule shared by the built-ins.

    Subclasses implement :meth:`frame_scores`; ``stop_below``, ``patience`` and
    ``restart`` set the rule. ``needs_model`` asks the engine for ``uncertainty``."""

    needs_model: bool = False

    def __init__(self, *, stop_below: float, patience: int = 2, restart: bool = True) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1; got {patience}")
        self.stop_below = float(stop_below)
        self.patience = int(patience)
        self.restart = bool(restart)

    @abstractmethod
    def frame_scores(self, segment: Segment) -> np.ndarray | None:
        """(n,) scores of the segment's frames (higher: more worth sampling), or None
        when the monitor cannot judge yet (too few pool frames, no model)."""

    def decide(self, segment: Segment) -> Decision:
        """``restart`` (or ``stop``) when this and the ``patience - 1`` segments before
        scored below ``stop_below``, else ``continue``."""
        scores = self.frame_scores(segment)
        if scores is None or len(scores) == 0:
            return Decision("continue", float("nan"), np.full(len(segment.frames), np.nan),
                            "not judged yet")
        score = float(np.mean(scores))
        recent = [*segment.previous_scores[-(self.patience - 1):], score] \
            if self.patience > 1 else [score]
        low = len(recent) == self.patience and all(s < self.stop_below for s in recent)
        if not low:
            return Decision("continue", score, scores)
        action: Action = "restart" if self.restart else "stop"
        reason = (f"{type(self).__name__}: score below {self.stop_below:g} for "
                  f"{self.patience} segment{'s' if self.patience > 1 else ''} "
                  f"(last {score:.3g})")
        return Decision(action, score, scores, reason)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class NoveltyMonitor(Monitor):
    """Stop or restart a walker that stays where many frames already are.

    Args:
        k: neighbours for the distance (the k-th nearest pool frame).
        stop_below: segment score (mean frame novelty in [0, 1]) under which a segment
            counts as crowded; 0.5 means denser than the median pool frame.
        patience: crowded segments in a row before the walker stops or restarts.
        restart: restart from the most novel frame (True) or stop (False).
        min_pool: pool frames needed before the monitor judges (it continues until).
        max_pool: the pool is thinned to at most this many frames (every j-th) to bound
            the cost of a decision (O(frames x max_pool)).
        reference_points: pool frames whose k-th-neighbour distances form the reference
            distribution a frame is ranked against.
    """

    def __init__(self, k: int = 5, stop_below: float = 0.5, patience: int = 2,
                 restart: bool = True, min_pool: int = 200, max_pool: int = 8192,
                 reference_points: int = 256) -> None:
        super().__init__(stop_below=stop_below, patience=patience, restart=restart)
        if k < 1 or min_pool <= k or max_pool < min_pool or reference_points < 1:
            raise ValueError("need k >= 1, min_pool > k, max_pool >= min_pool and "
                             "reference_points >= 1")
        self.k = int(k)
        self.min_pool = int(min_pool)
        self.max_pool = int(max_pool)
        self.reference_points = int(reference_points)

    def frame_scores(self, segment: Segment) -> np.ndarray | None:
        pool = np.asarray(segment.pool, dtype=np.float64)
        if len(pool) < self.min_pool:
            return None
        if len(pool) > self.max_pool:
            pool = pool[:: -(-len(pool) // self.max_pool)]
        stride = max(1, len(pool) // self.reference_points)
        reference = np.sort(knn_distances(pool[::stride], pool, self.k, exclude_self=True))
        distances = knn_distances(segment.frames, pool, self.k)
        return np.searchsorted(reference, distances, side="left") / len(reference)


class ConfidenceMonitor(Monitor):
    """Stop or restart a walker that stays where the surrogate is already confident.

    Args:
        std_below: the newest model's posterior standard deviation (units of the learned
            quantity), averaged over a segment's frames, under which it counts as known.
        patience: confident segments in a row before the walker stops or restarts.
        restart: restart from the frame the model was least sure of (True) or stop.
    """

    needs_model = True

    def __init__(self, std_below: float, patience: int = 2, restart: bool = True) -> None:
        if std_below <= 0:
            raise ValueError(f"std_below must be > 0; got {std_below}")
        super().__init__(stop_below=std_below, patience=patience, restart=restart)

    def frame_scores(self, segment: Segment) -> np.ndarray | None:
        if segment.uncertainty is None:
            return None
        return np.asarray(segment.uncertainty(segment.frames), dtype=np.float64)
