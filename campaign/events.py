"""The events the dispatcher turns completions into, and the steerers react to.

Owns: one small dataclass per kind of completion. A steerer never sees a future: it
sees that a task finished, expired or was lost, that a fit returned, that a model is
ready to install, that a selection, a score, a segment judgement or a stopping-rule
check came back. Each event carries what its reaction needs and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from campaign.ingest import Completion, SubmittedTask
from campaign.planner import Selection
from campaign.state import PromotionState


@dataclass
class TaskFinished:
    """A simulation attempt returned: rows, or a problem (``completion.problem``)."""

    completion: Completion


@dataclass
class TaskExpired:
    """An attempt ran past its engine-side deadline, counted from when it started."""

    task: SubmittedTask
    ran_seconds: float


@dataclass
class TaskLost:
    """An attempt was lost to the infrastructure (worker, manager, block, interchange):
    not the app's failure, resubmitted without using a retry."""

    task: SubmittedTask
    problem: str
    fatal: bool = False  # the executor cannot run anything (e.g. no block could start)


@dataclass
class FitReturned:
    """A fit on ``train`` (or on the model thread) returned ``fitted``, or raised."""

    promotion: PromotionState
    n_train: int
    fitted: dict[str, Any] | None
    error: str | None = None


@dataclass
class ModelReady:
    """A fitted model is ready to install: ``scored`` holds its reference error."""

    promotion: PromotionState
    fitted: dict[str, Any]
    n_train: int
    scored: dict[str, Any]


@dataclass
class PosteriorConditioned:
    """The current model took in committed results (``learner.condition``)."""

    promotion: PromotionState
    learner: Any
    generation: int  # the model it was conditioned from
    seen: int  # training results its posterior now holds


@dataclass
class SelectionReady:
    """A selection came back from the model thread."""

    promotion: PromotionState
    selection: Selection
    committed_at_snapshot: int
    features_version: int
    generation: int  # the model that chose (-1: the space-filling design)
    seen: int  # training results that posterior had taken in (-1: no model)


@dataclass
class Scored:
    """Prospective error and calibration of model ``model_index``."""

    promotion: PromotionState
    model_index: int
    calibration: dict[str, float]


@dataclass
class SegmentJudged:
    """A monitored walker's segment was judged by its monitor."""

    completion: Completion
    judgement: Any


@dataclass
class RulesChecked:
    """The spec's stopping rules were checked: ``reason`` is '' if none fired."""

    reason: str
    rule_reasons: list[str]


Event = (TaskFinished | TaskExpired | TaskLost | FitReturned | ModelReady
         | PosteriorConditioned | SelectionReady | Scored | SegmentJudged | RulesChecked)
