"""Stand-in outputs: what answers for an app that a simulated site does not run.

Owns: :class:`StandIn` (the protocol the simulated dispatcher calls), :class:`UserFunction`
(a user's ``f(x, seed) -> outputs``), :class:`Recorded` (replays real outputs: an
earlier run's store, :func:`recorded_from_run`, or the first real calls of this run),
:class:`SurrogateDraw` (a promoted scale's quantity drawn from the current surrogate, its
other outputs replayed from real calls), and :func:`default_stand_in`, what a scale found
not cheap gets.

A simulated run with any stand-in is a *dry run*: its stored results are placeholders,
its models are trained on them, and nothing it learns is science. It is for timing an
allocation (``campaign plan``), not for results.

A stand-in is asked ``wants_real()`` before each attempt: while it is true, the
simulated dispatcher runs the real app and gives its outputs to ``record``; so a
stand-in that replays real outputs starts from real ones, with their columns and shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Recorded", "StandIn", "SurrogateDraw", "UserFunction", "default_stand_in",
           "recorded_from_run"]


class StandIn:
    """Answers ``stand_in(task, state, rng) -> outputs`` (the dict an app returns) for a
    ``campaign.ingest.SubmittedTask`` with the run's ``campaign.state.CampaignState``."""

    def wants_real(self) -> bool:
        """Whether the next attempt should run the real app (and be recorded)."""
        return False

    def record(self, outputs: dict[str, Any]) -> None:
        """The outputs of a real call of the app (after ``wants_real``)."""

    def __call__(self, task: Any, state: Any, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> str:
        """The stand-in in a few words, as a plan prints it."""
        return repr(self)


class UserFunction(StandIn):
    """A user's stand-in: ``function(x, seed) -> outputs`` (as the app would return)."""

    def __init__(self, function: Callable[[np.ndarray, int], dict[str, Any]]) -> None:
        self.function = function

    def __call__(self, task: Any, state: Any, rng: np.random.Generator) -> dict[str, Any]:
        return self.function(np.asarray(task.task_input, dtype=np.float64), task.seed)

    def describe(self) -> str:
        return f"user function {getattr(self.function, '__name__', repr(self.function))}"


class Recorded(StandIn):
    """Replays recorded outputs in turn (cycling): ``outputs`` given (an earlier run's,
    :func:`recorded_from_run`), then the first ``real_calls`` real calls of this run."""

    def __init__(self, outputs: list[dict[str, Any]] | None = None, *, real_calls: int = 1,
                 source: str = "real calls of this run") -> None:
        self.outputs = [_copy(o) for o in outputs or []]
        self.real_calls = real_calls
        self.source = source
        self._next = 0

    def wants_real(self) -> bool:
        return len(self.outputs) < self.real_calls

    def record(self, outputs: dict[str, Any]) -> None:
        self.outputs.append(_copy(outputs))

    def next_recorded(self) -> dict[str, Any]:
        if not self.outputs:
            raise RuntimeError("a recorded stand-in has no outputs to replay")
        outputs = _copy(self.outputs[self._next % len(self.outputs)])
        self._next += 1
        return outputs

    def __call__(self, task: Any, state: Any, rng: np.random.Generator) -> dict[str, Any]:
        return self.next_recorded()

    def describe(self) -> str:
        return f"replay of {len(self.outputs)} recorded outputs ({self.source})"


class SurrogateDraw(Recorded):
    """A promoted scale's stand-in: the promotion's quantity is one draw from the current
    surrogate's posterior (mean + standard deviation x N(0, 1)) at the features of the
    task's source row; the other outputs (and ``x``) are replayed from recorded real
    calls. Before the first model is fitted, and for a quantity with several values per
    row (a learner of gradient windows), the recorded quantity is replayed as it is."""

    def __call__(self, task: Any, state: Any, rng: np.random.Generator) -> dict[str, Any]:
        outputs = self.next_recorded()
        held = state.promotion_into(task.scale)
        if held is None or not held.fitted or held.features is None:
            return outputs
        quantity = held.quantity_of({k: v for k, v in outputs.items() if k != "x"})
        values = np.asarray(outputs[quantity], dtype=np.float64)
        one_per_row = values.ndim == 1 or values.shape[1:] == (1,)
        if not one_per_row or not 0 <= task.parent_row < len(held.features):
            return outputs
        features = held.features.values[task.parent_row:task.parent_row + 1]
        posterior = held.learner.posterior(features)
        draw = float(posterior.mean[0]) + float(
            np.sqrt(max(float(posterior.variance[0]), 0.0))) * float(rng.standard_normal())
        outputs[quantity] = np.full(values.shape, draw)
        return outputs

    def describe(self) -> str:
        return (f"draws from the current surrogate ({len(self.outputs)} recorded real "
                "outputs for the other columns)")


def default_stand_in(spec: Any, scale: str, *, real_calls: int = 1) -> StandIn:
    """A promoted scale's quantity drawn from its surrogate; any other scale's outputs
    replayed from its first ``real_calls`` real calls."""
    if any(promotion.target == scale for promotion in spec.promotions):
        return SurrogateDraw(real_calls=real_calls)
    return Recorded(real_calls=real_calls)


def recorded_from_run(run_dir: str | Path, scale: str) -> Recorded:
    """The committed outputs of ``scale`` in an earlier run, one entry per task (in the
    order they were committed), to replay."""
    from campaign.ledger import Ledger
    from campaign.store import Store

    run_dir = Path(run_dir)
    if not (run_dir / "ledger.sqlite").is_file():
        raise FileNotFoundError(f"no ledger at {run_dir / 'ledger.sqlite'}: is {run_dir} a "
                                "campaign run directory?")
    ledger = Ledger(run_dir / "ledger.sqlite", read_only=True)
    try:
        data = Store(run_dir, ledger, read_only=True).read(scale)
    finally:
        ledger.close()
    if len(data) == 0:
        raise ValueError(f"{run_dir} has no committed rows of scale '{scale}' to replay")
    task_ids = np.asarray(data.meta["task_id"])
    outputs = []
    for task_id in dict.fromkeys(task_ids.tolist()):
        rows = task_ids == task_id
        outputs.append({"x": np.asarray(data.x[rows]),
                        **{name: np.asarray(values[rows]) for name, values in data.y.items()}})
    return Recorded(outputs, real_calls=0, source=f"store of {run_dir}")


def _copy(outputs: dict[str, Any]) -> dict[str, Any]:
    return {name: np.array(value, copy=True) for name, value in outputs.items()}
