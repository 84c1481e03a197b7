"""The validated description of a campaign: scales, promotions between them, budgets.

A spec holds the science by name (apps, featurizers, learners, acquisitions are plain
objects the user imports); it knows nothing of Parsl, zarr or molecules. Every
validation error is one line naming the field that is wrong::

    >>> from campaign.spec import Scale, SpecError
    >>> try:
    ...     Scale("coarse", app=print, params={"seed": 1})
    ... except SpecError as error:
    ...     print(error)
    invalid Scale: params: 'seed' is set by the engine per task (got {'seed': 1})
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from campaign.resources import Resources
from campaign.spec_errors import SpecError as SpecError  # raised by every spec model
from campaign.spec_errors import SpecModel
from learners import default_learner, learner_by_name
from learners.acquisition import Acquisition, acquisition_by_name, default_acquisition
from learners.base import Learner
from learners.stopping import StoppingRule

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ValueError("must start with a letter and hold only letters, digits and '_'")
    return name


class Scale(SpecModel):
    """One simulation scale.

    ``app(x, *, seed, **params) -> dict`` is a plain function returning ``{"x": (n, d),
    <output>: (n, ...)}``: the configurations the task produced or evaluated and one
    array per named output. A scale with ``walkers`` (shape (n_walkers, d) start inputs)
    is sampled broadly: every round each walker runs one task from the last
    configuration it produced. A scale without walkers runs only what a promotion
    chooses for it.

    ``refresh_params(data) -> dict``, if given, is called by the engine with
    ``{scale name: committed rows}`` (``campaign.store.ScaleData``) before every round in
    rounds mode, and at the start and after each model fit in async mode; its result is
    merged into ``params`` for the tasks submitted after it: the way a scale's own model
    (e.g. a coarse-grained force field fitted to finer results) is retrained as data
    arrives. It runs in the engine process; keep it quick or make it a promotion.

    A task that raises, exceeds ``timeout`` seconds, loses its worker or returns NaN, inf
    or misshapen output is run again with a new seed up to ``retries`` times, then
    quarantined with its reason in the ledger. The engine also keeps its own deadline
    per task (``timeout`` plus a margin, or, without one, a multiple of the longest
    duration seen so far), so a task that hangs inside the executor is retried too.

    In async mode the engine keeps ``max_in_flight`` tasks of this scale submitted
    (default: four times the workers of the scale's executor, read from the Parsl config), so
    no worker waits for the steering loop.

    ``resources`` (``campaign.resources.Resources``, a dict of its fields, or None) is what
    one task needs: cores, GPUs, MPI ranks, nodes, memory, priority. The site maps it to
    its executor layout, the Parsl session submits each task with it, and
    ``resources.cores`` (default 1) is what one task's seconds count in a
    ``Budget(core_seconds=...)``.

    ``monitor`` (a ``learners.monitor.Monitor``; walker scales, async mode) judges each
    segment as it returns: the walker continues, stops (its rows so far stay, marked in
    ``meta/monitor``) or restarts from the most novel earlier frame. It works in the
    features of the promotion that draws from this scale (the raw rows if none does).
    """

    name: str
    app: Callable[..., dict[str, Any]]
    params: dict[str, Any] = Field(default_factory=dict)
    refresh_params: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    walkers: np.ndarray | None = None
    retries: int = Field(default=2, ge=0)
    timeout: float | None = Field(default=None, gt=0)
    executor: str | None = None
    resources: Resources = Field(default_factory=Resources)
    max_in_flight: int | None = Field(default=None, ge=1)
    monitor: Any = None

    def __init__(self, name: str, /, **data: Any) -> None:
        super().__init__(name=name, **data)

    _name = field_validator("name")(_check_name)

    @field_validator("params")
    @classmethod
    def _params_leave_seed_to_engine(cls, params: dict[str, Any]) -> dict[str, Any]:
        if "seed" in params:
            raise ValueError("'seed' is set by the engine per task")
        return params

    @field_validator("resources", mode="before")
    @classmethod
    def _are_resources(cls, resources: Any) -> Resources:
        return Resources.coerce(resources)

    @field_validator("walkers", mode="before")
    @classmethod
    def _walkers_are_rows(cls, walkers: Any) -> np.ndarray | None:
        if walkers is None:
            return None
        try:
            array = np.asarray(walkers, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("must be an array of start inputs with shape (n_walkers, d)") from None
        if array.ndim != 2 or array.shape[0] < 1:
            raise ValueError("must be an array of start inputs with shape (n_walkers, d)")
        if not np.all(np.isfinite(array)):
            raise ValueError("must be finite")
        return array

    @field_validator("monitor")
    @classmethod
    def _is_monitor(cls, monitor: Any) -> Any:
        if monitor is not None and not (callable(getattr(monitor, "decide", None))
                                        and hasattr(monitor, "needs_model")):
            raise ValueError("must implement decide(segment) -> Decision and needs_model "
                             "(see learners.monitor)")
        return monitor

    @property
    def executor_label(self) -> str:
        """Parsl executor label this scale's tasks run on (default ``sim-<name>``)."""
        return self.executor or f"sim-{self.name}"


def refittable(features: Any) -> bool:
    """Whether a promotion's ``features`` follows the refittable protocol (see
    :class:`Promotion`): it has a callable ``refit(x_source) -> features``."""
    return callable(getattr(features, "refit", None))


class Promotion(SpecModel):
    """Choose configurations of scale ``source`` to run at the finer scale ``target``.

    ``learner`` and ``acquisition`` are objects or registered names (``"exact_gp"``,
    ``"max_variance"``, see ``learners.LEARNERS`` and ``learners.acquisition.ACQUISITIONS``);
    left out (or None) they are ``learners.default_learner()`` and
    ``learners.acquisition.default_acquisition()``.
    ``features(x_source) -> (n, f)`` turns source rows into learner inputs;
    the learner is fitted on the features of the promoted source rows (each target
    result is paired with ``features`` of the source row it was promoted from, also when
    a ``mapping`` changes the input or a target task returns several rows) against the
    target output ``quantity`` (default: the target app's only output); the acquisition picks
    ``batch_size`` candidates per round; ``mapping(x_source_row) -> target input``
    (default: the row itself) builds the finer scale's input. ``reference() ->
    (features, values)`` is optional ground truth used to measure surrogate error.

    **Refittable features.** ``features`` may also be an object with
    ``refit(x_source: np.ndarray) -> features``: a new featurizer (same protocol) fitted on
    the source rows given, not changing the old one, deterministic given the rows (e.g.
    ``apps.latent.LatentFeatures``, an autoencoder's latent space). Before every learner
    fit the engine refits it on the committed source rows and recomputes every stored
    feature (candidates and training inputs) with the new featurizer, so each model is
    trained and queried in the latent space it was fitted with. Rounds mode: the fit of
    round r uses ``features.refit(rows of rounds < r)``, always from the spec's
    featurizer, so a resumed run recomputes the same features; the seed design uses
    ``features`` as given. Async mode: the refit runs on the ``train`` executor in the
    same job as the learner fit, warm from the current featurizer, and the featurizer,
    the recomputed features and the model are swapped in together. With refittable
    features, ``reference()`` returns ``(source rows, values)``: the engine featurizes
    the rows with the featurizer of the model it measures. Monitors and ``campaign
    report`` use ``features`` as given (so a monitor that reads the surrogate is refused).

    In async mode the learner is refitted (on the ``train`` executor, while simulations
    go on) each time ``retrain_every`` new results of the target scale have been
    committed (default: ``batch_size``), or when results arrived and nothing of the
    target scale is still running; each selection then uses the newest fitted model.
    Every free slot of the target scale is filled as it frees (busy by default), by the
    newest posterior conditioned on every pending row (docs/engine.md).
    """

    source: str
    target: str
    features: Callable[[np.ndarray], np.ndarray]
    learner: Any = Field(default=None, validate_default=True)
    acquisition: Any = Field(default=None, validate_default=True)
    batch_size: int = Field(ge=1)
    quantity: str | None = None
    mapping: Callable[[np.ndarray], np.ndarray] | None = None
    reference: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    initial_design: int | None = Field(default=None, ge=1)
    retrain_every: int | None = Field(default=None, ge=1)

    @field_validator("learner", mode="before")
    @classmethod
    def _is_learner(cls, learner: Any) -> Any:
        if learner is None:
            return default_learner()
        if isinstance(learner, str):
            learner = learner_by_name(learner)
        if not isinstance(learner, Learner):
            raise ValueError("must implement fit(X, y), posterior(X), state_dict(), "
                             "load_state_dict(state)")
        return learner

    @field_validator("acquisition", mode="before")
    @classmethod
    def _is_acquisition(cls, acquisition: Any) -> Any:
        if acquisition is None:
            return default_acquisition()
        if isinstance(acquisition, str):
            acquisition = acquisition_by_name(acquisition)
        if not isinstance(acquisition, Acquisition):
            raise ValueError("must implement select(posterior, k, pending, rng)")
        return acquisition

    @property
    def name(self) -> str:
        """Stable name used in the store and ledger, e.g. ``coarse-to-fine``."""
        return f"{self.source}-to-{self.target}"

    @property
    def refits_features(self) -> bool:
        """Whether ``features`` is refittable (has ``refit(x_source) -> features``)."""
        return refittable(self.features)

    @property
    def retrain_after(self) -> int:
        """New target results that trigger a refit in async mode."""
        return self.retrain_every or self.batch_size

    @property
    def seed_design_size(self) -> int:
        """Random picks made before the learner has any data (default: one batch)."""
        return self.initial_design or self.batch_size


class Budget(SpecModel):
    """When the campaign ends: at most ``tasks[scale]`` tasks per scale, ``rounds``
    rounds, ``wall_time`` seconds, ``core_seconds`` of task compute (busy seconds of
    every attempt times the scale's ``resources["cores"]``). ``Budget(fine=120)`` limits
    the fine scale to 120 tasks; a campaign ends when every promotion target has spent
    its budget. In async mode there are no rounds: ``rounds=N`` allows the same work as
    N rounds (N segments per walker, N batches of each promotion)."""

    tasks: dict[str, int] = Field(default_factory=dict)
    rounds: int | None = Field(default=None, ge=1)
    wall_time: float | None = Field(default=None, gt=0)
    core_seconds: float | None = Field(default=None, gt=0)

    def __init__(self, rounds: int | None = None, wall_time: float | None = None,
                 core_seconds: float | None = None, **tasks: int) -> None:
        super().__init__(tasks=tasks, rounds=rounds, wall_time=wall_time,
                         core_seconds=core_seconds)

    @field_validator("tasks")
    @classmethod
    def _positive(cls, tasks: dict[str, int]) -> dict[str, int]:
        for scale, count in tasks.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError(f"tasks for scale '{scale}' must be a positive integer")
        return tasks


class CampaignSpec(SpecModel):
    """Scales (cheapest first), promotions between them, budget, stopping rules, seed.

    ``stopping`` rules (``learners.stopping``: uncertainty below a threshold over the
    candidate pool, DP-GEN's accurate ratio, a plateau of held-out error, ...) are
    checked before every round; the campaign ends when, for every promotion, one of
    them fires (or a budget ends it). The rule that ended it is recorded in the ledger.
    ``reports`` are extra figures: ``fn(run_dir) -> path`` called by ``campaign report``
    (e.g. a Ramachandran plot of the chosen configurations).

    ``mode="async"`` (the default) steers by events: a walker's next segment goes out
    when its last returns, fits run while simulations go on, selections use the newest
    model and condition on pending points. ``mode="rounds"`` is round-locked and exactly
    reproducible: the same seed gives the same store, through kills and resumes.
    """

    name: str
    scales: list[Scale] = Field(min_length=1)
    promotions: list[Promotion] = Field(default_factory=list)
    budget: Budget = Field(default_factory=Budget)
    stopping: list[Any] = Field(default_factory=list)
    reports: list[Callable[[Path], Any]] = Field(default_factory=list)
    seed: int = 0
    mode: Literal["async", "rounds"] = "async"

    @field_validator("stopping")
    @classmethod
    def _are_rules(cls, rules: list[Any]) -> list[Any]:
        for index, rule in enumerate(rules):
            if not isinstance(rule, StoppingRule):
                raise ValueError(f"item {index} must implement check(state) -> reason | None "
                                 "(see learners.stopping)")
        return rules

    _name = field_validator("name")(_check_name)

    @model_validator(mode="after")
    def _consistent(self) -> CampaignSpec:
        names = [scale.name for scale in self.scales]
        if len(set(names)) != len(names):
            raise ValueError(f"scale names must be unique (got {names})")
        position = {name: index for index, name in enumerate(names)}
        targets: set[str] = set()
        for index, promotion in enumerate(self.promotions):
            for end in ("source", "target"):
                if getattr(promotion, end) not in position:
                    raise ValueError(f"promotions.{index}.{end}: unknown scale "
                                     f"'{getattr(promotion, end)}'; scales: {', '.join(names)}")
            if position[promotion.source] >= position[promotion.target]:
                raise ValueError(f"promotions.{index}: source '{promotion.source}' must be a "
                                 f"cheaper (earlier) scale than target '{promotion.target}'")
            if promotion.target in targets:
                raise ValueError(f"promotions.{index}: scale '{promotion.target}' is already "
                                 "the target of another promotion")
            targets.add(promotion.target)
        for scale in self.scales:
            if scale.walkers is None and scale.name not in targets:
                raise ValueError(f"scale '{scale.name}' has no walkers and no promotion feeds it")
            if scale.walkers is not None and scale.name in targets:
                raise ValueError(f"scale '{scale.name}' has walkers and is a promotion target; "
                                 "choose one")
            if scale.monitor is not None and scale.walkers is None:
                raise ValueError(f"scale '{scale.name}': a monitor judges walker segments; "
                                 "this scale has no walkers")
            if scale.monitor is not None and self.mode == "rounds":
                raise ValueError(f"scale '{scale.name}': a monitor decides as segments "
                                 "return, which rounds mode's exact replay cannot follow; "
                                 "use mode='async'")
            drawing = next((p for p in self.promotions if p.source == scale.name), None)
            if (scale.monitor is not None and getattr(scale.monitor, "needs_model", False)
                    and drawing is not None and drawing.refits_features):
                raise ValueError(f"scale '{scale.name}': its monitor reads the surrogate in "
                                 "the features as given, but promotion "
                                 f"'{drawing.name}' refits its features; use a monitor "
                                 "that needs no model (e.g. NoveltyMonitor)")
        for scale in self.budget.tasks:
            if scale not in position:  # a misspelled limit (wall_tme) lands here too
                limits = ["rounds", "wall_time", "core_seconds"]
                match = difflib.get_close_matches(scale, [*names, *limits], n=1, cutoff=0.6)
                hint = f"did you mean '{match[0]}'? " if match else ""
                raise ValueError(f"budget names unknown scale '{scale}'; {hint}"
                                 f"scales: {', '.join(names)}; limits: {', '.join(limits)}")
        budget = self.budget
        if budget.rounds is None and budget.wall_time is None and budget.core_seconds is None:
            for promotion in self.promotions:
                if promotion.target not in budget.tasks:
                    raise ValueError(f"no budget ends the campaign: give Budget({promotion.target}"
                                     "=N), rounds=N, wall_time=seconds or core_seconds=N")
            walking = [s.name for s in self.scales if s.walkers is not None]
            if not self.promotions and not all(name in budget.tasks for name in walking):
                raise ValueError("no budget ends the campaign: give rounds=N, wall_time=seconds, "
                                 "core_seconds=N or a task budget for every walker scale")
        return self

    def scale(self, name: str) -> Scale:
        """The scale called ``name`` (KeyError if there is none)."""
        for scale in self.scales:
            if scale.name == name:
                return scale
        raise KeyError(name)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description recorded in the ledger (names, not code)."""

        def qualified(obj: Any) -> str:
            target = obj if callable(obj) and hasattr(obj, "__qualname__") else type(obj)
            return f"{target.__module__}.{target.__qualname__}"

        return {
            "name": self.name,
            "seed": self.seed,
            "mode": self.mode,
            "scales": [
                {"name": s.name, "app": qualified(s.app), "params": repr(s.params),
                 "walkers": None if s.walkers is None else int(s.walkers.shape[0]),
                 "executor": s.executor_label,
                 **({} if s.monitor is None else {"monitor": repr(s.monitor)})}
                for s in self.scales
            ],
            "promotions": [
                {"source": p.source, "target": p.target, "features": qualified(p.features),
                 "learner": repr(p.learner), "acquisition": repr(p.acquisition),
                 "batch_size": p.batch_size, "quantity": p.quantity}
                for p in self.promotions
            ],
            "budget": {"tasks": self.budget.tasks, "rounds": self.budget.rounds,
                       "wall_time": self.budget.wall_time,
                       "core_seconds": self.budget.core_seconds,
                       "stopping": [repr(rule) for rule in self.stopping]},
        }

