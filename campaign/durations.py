"""How long a task takes on a simulated site: one duration model per scale.

Owns: the duration models of the virtual-clock site (:class:`Fixed`, :class:`LogNormal`,
:class:`FromInput`, :class:`Replayed`), reading an earlier run's attempt durations from
its ledger, and :func:`parse_durations`, which turns what a user writes (``fixed:60``,
``lognormal:60,0.5``, a run directory, a JSON file) into models.

A model is called once per attempt: ``model(x, rng) -> seconds`` (> 0) for the attempt's
input row ``x``. Models are plain picklable objects and know nothing of the engine.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> Fixed(60.0)(np.zeros(2), rng)
60.0
>>> round(float(np.mean([LogNormal(60.0, 0.5)(None, rng) for _ in range(20000)])))
60
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DurationModel", "Fixed", "FromInput", "LogNormal", "Replayed", "assumed_durations",
           "ledger_durations", "parse_durations"]

MIN_SECONDS = 1e-6  # a duration is never 0: the clock must move for a task to end
FINEST_ASSUMED_SECONDS = 600.0  # an assumed fine task: 10 minutes
LADDER_STEP = 10.0  # each coarser scale's assumed task is this much shorter


class DurationModel:
    """Base of the duration models: ``model(x, rng) -> seconds``."""

    def __call__(self, x: Any, rng: np.random.Generator) -> float:
        raise NotImplementedError

    @property
    def mean(self) -> float:
        """The mean duration in seconds (for planning and for the ideal schedule)."""
        raise NotImplementedError

    def describe(self) -> str:
        """The model in a few words, as a plan prints it."""
        return repr(self)


@dataclass(frozen=True)
class Fixed(DurationModel):
    """Every attempt takes ``seconds``."""

    seconds: float

    def __post_init__(self) -> None:
        if not self.seconds > 0:
            raise ValueError(f"a fixed duration must be > 0 s; got {self.seconds}")

    def __call__(self, x: Any, rng: np.random.Generator) -> float:
        return float(self.seconds)

    @property
    def mean(self) -> float:
        return float(self.seconds)

    def describe(self) -> str:
        return f"fixed {self.seconds:g} s"


@dataclass(frozen=True)
class LogNormal(DurationModel):
    """Lognormal durations with the given ``mean`` (s) and coefficient of variation ``cv``
    (standard deviation / mean)."""

    mean_seconds: float
    cv: float

    def __post_init__(self) -> None:
        if not self.mean_seconds > 0:
            raise ValueError(f"a lognormal mean must be > 0 s; got {self.mean_seconds}")
        if not self.cv >= 0:
            raise ValueError(f"a lognormal cv must be >= 0; got {self.cv}")

    def __call__(self, x: Any, rng: np.random.Generator) -> float:
        sigma2 = math.log1p(self.cv ** 2)
        mu = math.log(self.mean_seconds) - sigma2 / 2
        return max(MIN_SECONDS, float(rng.lognormal(mu, math.sqrt(sigma2))))

    @property
    def mean(self) -> float:
        return float(self.mean_seconds)

    def describe(self) -> str:
        return f"lognormal, mean {self.mean_seconds:g} s, cv {self.cv:g}"


@dataclass(frozen=True)
class FromInput(DurationModel):
    """The duration is a function of the input row: ``function(x) -> seconds``, times
    ``scale``. ``typical`` is its mean over the inputs a campaign sees (for planning)."""

    function: Callable[[Any], float]
    typical: float
    scale: float = 1.0

    def __call__(self, x: Any, rng: np.random.Generator) -> float:
        seconds = float(self.function(x)) * self.scale
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"the duration function gave {seconds} s; it must be > 0")
        return seconds

    @property
    def mean(self) -> float:
        return float(self.typical) * self.scale

    def describe(self) -> str:
        return f"a function of the input, typically {self.mean:g} s"


@dataclass
class Replayed(DurationModel):
    """Durations replayed in order from a list (an earlier run's attempts, oldest
    first), times ``scale``; past the end of the list they are drawn from it at random.

    Attempts are taken in the order they are asked for, so a replay of the same campaign
    gives its n-th attempt the n-th recorded duration."""

    seconds: list[float]
    scale: float = 1.0
    _next: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if not self.seconds:
            raise ValueError("a replay needs at least one recorded duration")
        if min(self.seconds) <= 0 or not self.scale > 0:
            raise ValueError("replayed durations and their scale must be > 0")

    def __call__(self, x: Any, rng: np.random.Generator) -> float:
        if self._next < len(self.seconds):
            value = self.seconds[self._next]
            self._next += 1
        else:
            value = self.seconds[int(rng.integers(len(self.seconds)))]
        return max(MIN_SECONDS, float(value) * self.scale)

    @property
    def mean(self) -> float:
        return float(np.mean(self.seconds)) * self.scale

    def describe(self) -> str:
        return (f"replayed from {len(self.seconds)} recorded attempts, mean {self.mean:.3g} s"
                + (f" (x {self.scale:g})" if self.scale != 1.0 else ""))


def assumed_durations(scales: list[str]) -> dict[str, Fixed]:
    """What a plan assumes for scales given no duration model, finest (last) first: a
    fixed 600 s for the finest scale and each coarser one ten times shorter (at least
    1 s). A guess to be replaced by ``--durations``; a plan says it made it.

    >>> assumed_durations(["macro", "cg", "fine"])
    {'macro': Fixed(seconds=6.0), 'cg': Fixed(seconds=60.0), 'fine': Fixed(seconds=600.0)}
    """
    last = len(scales) - 1
    return {name: Fixed(max(1.0, FINEST_ASSUMED_SECONDS / LADDER_STEP ** (last - index)))
            for index, name in enumerate(scales)}


def ledger_durations(run_dir: str | Path) -> dict[str, list[float]]:
    """Each scale's attempt durations (ended - started, s) from a run's ledger, in the
    order the attempts were submitted. Attempts that never started are left out."""
    path = Path(run_dir) / "ledger.sqlite"
    if not path.exists():
        raise FileNotFoundError(f"no ledger at {path}: is {run_dir} a campaign run directory?")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT t.scale, a.ended - a.started FROM attempts a JOIN tasks t USING (task_id)"
            " WHERE a.started IS NOT NULL AND a.ended IS NOT NULL AND a.ended > a.started"
            " ORDER BY a.submitted, a.task_id, a.attempt").fetchall()
    finally:
        connection.close()
    durations: dict[str, list[float]] = {}
    for scale, seconds in rows:
        durations.setdefault(scale, []).append(float(seconds))
    return durations


def _one(text: str) -> DurationModel:
    kind, _, args = text.partition(":")
    numbers = [float(part) for part in args.split(",") if part.strip()] if args else []
    if kind == "fixed" and len(numbers) == 1:
        return Fixed(numbers[0])
    if kind == "lognormal" and len(numbers) == 2:
        return LogNormal(numbers[0], numbers[1])
    raise ValueError(f"unknown duration model {text!r}: write fixed:SECONDS or "
                     "lognormal:MEAN,CV")


def parse_durations(source: str | Path | dict[str, Any], *, scale: float = 1.0
                    ) -> dict[str, DurationModel]:
    """Duration models per scale name from what a user gives:

    * a run directory (replays its ledger's attempts, times ``scale``);
    * a JSON file or a dict ``{"fine": "lognormal:600,0.3", "coarse": 5}`` (a number is
      fixed seconds);
    * one string ``"SCALE=MODEL"`` (e.g. ``"fine=fixed:600"``).
    """
    if isinstance(source, dict):
        entries = source
    else:
        text = str(source)
        path = Path(text)
        if path.is_dir():
            return {name: Replayed(seconds, scale)
                    for name, seconds in ledger_durations(path).items()}
        if path.suffix == ".json" and path.is_file():
            entries = json.loads(path.read_text())
        elif "=" in text:
            name, _, model = text.partition("=")
            entries = {name.strip(): model.strip()}
        else:
            raise ValueError(f"durations {text!r}: give a run directory, a JSON file, or "
                             "SCALE=MODEL (e.g. fine=lognormal:600,0.3)")
    models: dict[str, DurationModel] = {}
    for name, value in entries.items():
        models[name] = (Fixed(float(value)) if isinstance(value, int | float)
                        else _one(str(value)))
    return models
