"""What a simulated site is: workers per executor, a duration model per scale, what
answers for the apps, injected faults, how fits are charged.

Owns: :class:`Simulation` (given to ``campaign.engine.Engine(simulation=...)``; run by
``campaign.simulated``) and :func:`record_simulation`, which labels a finished simulated
run in its ledger (the site, and whether it is a dry run).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from campaign.durations import DurationModel
from campaign.stand_ins import StandIn, UserFunction

__all__ = ["Simulation", "record_simulation"]


@dataclass
class Simulation:
    """What a simulated site is.

    Args:
        workers: executor label (``sim-<scale>``, ``train``) -> workers.
        durations: scale name -> duration model (seconds per attempt).
        outputs: scale name -> a stand-in (``campaign.stand_ins.StandIn``, or a plain
            ``f(x, seed) -> outputs``): a dry run. Missing: the scale's app runs for real.
            Stand-ins the run makes itself (``cheap_seconds``) are added to it, so a
            second run given the same dict replays what the first recorded.
        cheap_seconds: a scale without a stand-in whose last two real calls each took
            more CPU seconds than this here (on the calling thread, with the programs it
            ran) is stood in from then on (``default_stand_in``, recording the last
            call), unless named in ``real_apps``; None: apps always run for real.
        failure_rate: scale name -> probability that an attempt's app fails.
        loss_rate: scale name -> probability that an attempt's worker is lost (an
            infrastructure loss: resubmitted without using a retry).
        block_walltime: executor label -> its blocks' walltime (s): the blocks start
            with the run and end at every multiple of it, losing the attempts still
            running on their workers; new blocks take their place at once.
        fit_speed: multiplies the measured CPU time of a fit (a train node's speed
            relative to this machine).
        driver_slowdown: multiplies the measured CPU time of the driver's work (the
            steering and the model thread) before it is charged to the clock: wall
            seconds per CPU second of a driver that shares its cores.
        fit_durations: when given, a fit's virtual duration comes from it instead
            (e.g. an earlier run's recorded fit times, replayed in order).
        start_delays: scale name -> seconds from a worker taking an attempt to the
            attempt starting (an executor's dispatch latency, a cold worker's imports,
            a block not yet up); the worker is held meanwhile. Missing: 0.
        seed: seeds durations and injected faults.
        options: how to make this simulation again (``campaign run --simulate``'s
            arguments), recorded in the ledger so that ``campaign resume`` can.
    """

    workers: dict[str, int]
    durations: dict[str, DurationModel] = field(default_factory=dict)
    outputs: dict[str, StandIn | Callable[[np.ndarray, int], dict[str, Any]]] = field(
        default_factory=dict)
    cheap_seconds: float | None = None
    real_apps: set[str] = field(default_factory=set)
    failure_rate: dict[str, float] = field(default_factory=dict)
    loss_rate: dict[str, float] = field(default_factory=dict)
    block_walltime: dict[str, float] = field(default_factory=dict)
    fit_speed: float = 1.0
    driver_slowdown: float = 1.0
    fit_durations: DurationModel | None = None
    start_delays: dict[str, DurationModel] = field(default_factory=dict)
    seed: int = 0
    options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name, stand_in in list(self.outputs.items()):
            if not isinstance(stand_in, StandIn):
                self.outputs[name] = UserFunction(stand_in)
        if any(not seconds > 0 for seconds in self.block_walltime.values()):
            raise ValueError(f"a block walltime must be > 0 s; got {self.block_walltime}")

    @property
    def dry_run(self) -> bool:
        """Whether any scale's outputs are (or were) stand-ins."""
        return bool(self.outputs)

    def describe(self) -> dict[str, Any]:
        """What the simulated site was, for the ledger's facts."""
        return {"workers": dict(self.workers), "dry_run": self.dry_run,
                "stand_ins": {name: s.describe() for name, s in self.outputs.items()},
                "durations": {name: m.describe() for name, m in self.durations.items()},
                "failure_rate": self.failure_rate, "loss_rate": self.loss_rate,
                "block_walltime": self.block_walltime}

    def workers_of(self, label: str) -> int:
        return max(1, int(self.workers.get(label, 1)))


def record_simulation(run_dir: Path, simulation: Simulation) -> None:
    """Label a finished simulated run in its ledger: the simulated site (fact
    ``simulated``) and whether it is a dry run (fact ``dry_run``)."""
    from campaign.ledger import Ledger

    ledger = Ledger(Path(run_dir) / "ledger.sqlite")
    try:
        ledger.set_facts({"simulated": simulation.describe(), "dry_run": simulation.dry_run})
    finally:
        ledger.close()
