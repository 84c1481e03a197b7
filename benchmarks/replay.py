"""Validate the simulated site against a real run: run a campaign on a real site, replay
what its ledger and its driver recorded on the virtual clock, and compare makespan and
per-scale utilization (``campaign.simulated``, issue: allocation scale on a virtual clock).

    python -m benchmarks.replay [--site local|slurm] [--tasks 48] [--repeats N] [--json PATH]

The workload is ``benchmarks.throughput``'s utilization campaign (heavy-tailed sleep
tasks on two scales, a GP refitted in the loop), so task durations are the apps' own and
the comparison measures the steering and the executor, not the apps. ``--site slurm``
runs it on the test suite's private one-node Slurm (tests/slurm/setup.sh, root only;
``SLURM_CONF`` names another), one 2-core batch job per executor label.

Replays of each real run (:data:`REPLAYS`):

* ``durations``: each scale's attempts take the recorded durations in submission order;
  workers take an attempt the moment it is submitted; the driver and the fits cost the
  CPU time they take in the replay.
* ``latencies``: also what happens between the durations. Each attempt first waits its
  recorded start delay (:func:`start_delays`: a worker coming up, i.e. its batch job's
  queue wait and start and a cold worker's imports, then dispatch), each fit takes the
  real fit's turnaround (submission to result, :class:`DriverMeter`), and the driver's
  CPU is charged times the real driver's wall seconds per CPU second
  (:func:`driver_slowdown`).
* ``delays`` and ``delays+fits``: the first one or two of those, to say what each adds.

The replays run the same campaign with ``duration_scale=0``: the apps return the same
outputs from the same seeds without sleeping, and each attempt's virtual duration comes
from the ledger.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from campaign.durations import MIN_SECONDS, Replayed, parse_durations
from campaign.plan import utilization_from_ledger

__all__ = ["REPLAYS", "SLURM_PARAMS", "DriverMeter", "compare", "driver_meter", "driver_slowdown",
           "makespan", "private_slurm", "replay_run", "run", "start_delays"]

SLURM_SCRIPTS = Path(__file__).resolve().parents[1] / "tests" / "slurm"
# the test suite's private one-node Slurm (tests/test_slurm.py): one 2-core job per label
SLURM_PARAMS: dict[str, Any] = {"address": "127.0.0.1", "cores_per_node": 2,
                                "exclusive": False, "walltime": "00:10:00",
                                "strategy_period": 1.0, "cmd_timeout": 30}
SITE_PARAMS: dict[str, dict[str, Any]] = {"local": {}, "slurm": SLURM_PARAMS}
# the replays of each real run: name -> what it replays besides the durations (start
# delays, fit turnarounds, the driver's wall seconds per CPU second); "latencies" is all
REPLAYS: dict[str, tuple[str, ...]] = {
    "durations": (), "delays": ("delays",), "delays+fits": ("delays", "fits"),
    "latencies": ("delays", "fits", "slowdown")}


def makespan(run_dir: Path) -> float:
    """First attempt start to last attempt end, from a run's ledger."""
    low, high = window(run_dir)
    return high - low


def start_delays(run_dir: Path) -> dict[str, list[float]]:
    """Each scale's attempt start delays from a run's ledger: the seconds from the
    attempt being in hand and its worker free (the later of its submission and the end of
    the worker's previous attempt) to its start. That is the executor's part of the wait;
    the driver's part (deciding what to submit) comes before the submission and is the
    simulated driver's own.

    First, one per worker, the workers coming up (a block's queue wait and start, a cold
    worker's imports): the k-th worker to start its first attempt started it this long
    after the scale's k-th attempt was submitted. A replay gives them to the scale's
    first attempts, which take the free simulated workers as they are submitted, so
    those come up when the real ones did, even a real worker that came up so late that
    its first attempt was submitted long after the others. Then every other attempt's
    delay (dispatch), in submission order."""
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT t.scale, a.worker, a.submitted, a.started, a.ended FROM attempts a "
            "JOIN tasks t USING (task_id) WHERE a.started IS NOT NULL AND a.ended IS NOT "
            "NULL AND a.ended > a.started ORDER BY a.submitted, a.task_id, a.attempt"
        ).fetchall()  # the rows and order of campaign.durations.ledger_durations
    finally:
        db.close()
    free_at: dict[str, float] = {}  # worker -> end of its latest attempt so far
    delay = [0.0] * len(rows)
    firsts: dict[str, list[int]] = {}  # scale -> its workers' first attempts, by start
    for index in sorted(range(len(rows)), key=lambda i: rows[i][3]):  # in start order
        scale, worker, submitted, started, ended = rows[index]
        if worker not in free_at:
            firsts.setdefault(scale, []).append(index)
        delay[index] = max(started - max(submitted, free_at.get(worker, submitted)),
                           MIN_SECONDS)
        free_at[worker] = ended
    delays: dict[str, list[float]] = {}
    for scale, first in firsts.items():
        taken = set(first)
        mine = [i for i, row in enumerate(rows) if row[0] == scale]  # in submission order
        coming_up = [max(rows[i][3] - rows[k][2], MIN_SECONDS)
                     for i, k in zip(first, mine, strict=False)]
        delays[scale] = coming_up + [delay[i] for i in mine if i not in taken]
    return delays


@dataclass
class DriverMeter:
    """What :func:`driver_meter` saw of a real driver, in order: each
    ``Dispatcher.wait`` call (wall and thread CPU clocks on entry, then on return:
    between two calls the driver works, inside one it waits), and each fit it handed off
    (``on_train`` or ``fit_here``: wall clock at submission, and when its result
    reached the driver, or None)."""

    waits: list[tuple[float, float, float, float]] = field(default_factory=list)
    fits: list[list[float | None]] = field(default_factory=list)

    def fit_turnarounds(self) -> list[float]:
        """Seconds from each fit's submission to its result reaching the driver (the
        train worker's queue and start, the fit, the way back), in submission order;
        a fit still out when the run ended is left out."""
        return [back - sent for sent, back in self.fits
                if sent is not None and back is not None]


@contextlib.contextmanager
def driver_meter() -> Iterator[DriverMeter]:
    """While open, :class:`DriverMeter` records what the drivers in this process do
    (``campaign.dispatcher.Dispatcher``'s ``wait``, ``on_train`` and ``fit_here``,
    wrapped)."""
    from campaign.dispatcher import Dispatcher

    meter = DriverMeter()
    originals = {name: getattr(Dispatcher, name) for name in ("wait", "on_train", "fit_here")}

    def wait(self: Any, *args: Any, **kwargs: Any) -> Any:
        entered = (time.time(), time.thread_time())
        try:
            return originals["wait"](self, *args, **kwargs)
        finally:
            meter.waits.append((*entered, time.time(), time.thread_time()))

    def handing_off(name: str) -> Callable[..., None]:
        def hand_off(self: Any, what: Any, args: tuple[Any, ...],
                     then: Callable[[Any], Any]) -> None:
            times: list[float | None] = [time.time(), None]
            meter.fits.append(times)

            def returned(future: Any) -> Any:
                times[1] = time.time()
                return then(future)

            originals[name](self, what, args, returned)
        return hand_off

    Dispatcher.wait = wait  # type: ignore[method-assign]
    Dispatcher.on_train = handing_off("on_train")  # type: ignore[method-assign]
    Dispatcher.fit_here = handing_off("fit_here")  # type: ignore[method-assign]
    try:
        yield meter
    finally:
        for name, original in originals.items():
            setattr(Dispatcher, name, original)


def driver_work(calls: list[tuple[float, float, float, float]],
                window: tuple[float, float]) -> tuple[float, float]:
    """Wall and CPU seconds of the driver's work between its waits (from
    :func:`driver_meter`) inside ``window`` (wall clock)."""
    wall = cpu = 0.0
    for (_, _, left_wall, left_cpu), (back_wall, back_cpu, _, _) in itertools.pairwise(calls):
        if window[0] <= left_wall and back_wall <= window[1]:
            wall += back_wall - left_wall
            cpu += back_cpu - left_cpu
    return wall, cpu


def driver_slowdown(calls: list[tuple[float, float, float, float]],
                    window: tuple[float, float]) -> float:
    """Wall seconds per CPU second of the driver's work between its waits inside
    ``window`` (:func:`driver_work`): 1 on an idle machine, more where the driver shares
    its cores (or waits on its disk)."""
    wall, cpu = driver_work(calls, window)
    return wall / cpu if cpu > 0 else 1.0


def window(run_dir: Path) -> tuple[float, float]:
    """First attempt start and last attempt end, from a run's ledger."""
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        low, high = db.execute("SELECT MIN(started), MAX(ended) FROM attempts "
                               "WHERE started IS NOT NULL AND ended IS NOT NULL").fetchone()
    finally:
        db.close()
    return float(low), float(high)


def replay_run(spec: Any, real_dir: Path, sim_dir: Path, workers: dict[str, int], *,
               delays: bool = False, fits: list[float] | None = None,
               slowdown: float = 1.0) -> dict[str, float]:
    """Run ``spec`` simulated, each scale's attempts taking the durations ``real_dir``'s
    ledger recorded, in the order they were submitted. With ``delays``, each attempt
    first waits its recorded :func:`start_delays` (else a worker takes it at once); with
    ``fits``, each fit takes the real run's turnarounds in order
    (:meth:`DriverMeter.fit_turnarounds`; else the CPU time it takes here); the driver's
    CPU is charged times ``slowdown`` (:func:`driver_slowdown` of the real run). Returns
    the CPU seconds the simulated dispatcher measured (``driver``, ``apps``, ``fits``,
    ``model_thread``)."""
    from campaign.engine import Engine
    from campaign.simulated import Simulation

    simulation = Simulation(workers=workers, durations=parse_durations(real_dir),
                            fit_durations=Replayed(fits) if fits else None,
                            driver_slowdown=slowdown)
    if delays:
        simulation.start_delays = {scale: Replayed(seconds)
                                   for scale, seconds in start_delays(real_dir).items()}
    engine = Engine(spec, sim_dir, overwrite=True, simulation=simulation)
    engine.run()
    return dict(engine.dispatcher.charged)


def compare(real_dir: Path, sim_dir: Path, workers_by_scale: dict[str, int]
            ) -> dict[str, Any]:
    """Makespan and per-scale utilization (busy / (workers x makespan), as ``campaign
    plan`` reports it) of the two runs, each scale's own span (its first start to its
    last end), and their ratios (simulated / real)."""
    real = utilization_from_ledger(real_dir, workers_by_scale)
    simulated = utilization_from_ledger(sim_dir, workers_by_scale)
    out: dict[str, Any] = {"makespan": {"real": makespan(real_dir),
                                        "simulated": makespan(sim_dir)}}
    out["makespan"]["ratio"] = out["makespan"]["simulated"] / out["makespan"]["real"]
    for scale in workers_by_scale:
        pair = {"real": real[scale]["utilization"], "simulated": simulated[scale]["utilization"]}
        pair["ratio"] = pair["simulated"] / pair["real"]
        out[f"utilization_{scale}"] = pair
        pair = {"real": scale_span(real_dir, scale), "simulated": scale_span(sim_dir, scale)}
        pair["ratio"] = pair["simulated"] / pair["real"]
        out[f"span_{scale}"] = pair
    return out


def scale_span(run_dir: Path, scale: str) -> float:
    """A scale's first attempt start to its last attempt end, from a run's ledger."""
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        low, high = db.execute(
            "SELECT MIN(a.started), MAX(a.ended) FROM attempts a JOIN tasks t USING "
            "(task_id) WHERE t.scale = ? AND a.started IS NOT NULL AND a.ended IS NOT NULL",
            (scale,)).fetchone()
    finally:
        db.close()
    return float(high - low)


@contextlib.contextmanager
def private_slurm(parent: Path) -> Iterator[Path]:
    """The Slurm named by ``SLURM_CONF``, or else a private one-node Slurm that
    tests/slurm/setup.sh starts in a new folder under ``parent`` (root only: its state
    is that cluster's own) and teardown.sh stops."""
    if os.environ.get("SLURM_CONF"):
        yield Path(os.environ["SLURM_CONF"])
        return
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="slurm-", dir=parent))
    try:
        subprocess.run([SLURM_SCRIPTS / "setup.sh", folder], check=True, timeout=300)
        os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
        yield folder / "slurm.conf"
    finally:
        os.environ.pop("SLURM_CONF", None)
        subprocess.run([SLURM_SCRIPTS / "teardown.sh", folder], timeout=120, check=False)


def run(site: str, tasks: int, workdir: Path, duration_scale: float,
        replays: tuple[str, ...] = tuple(REPLAYS)) -> dict[str, Any]:
    """A real run of the utilization campaign on ``site`` (``local``, or ``slurm`` with
    :data:`SLURM_PARAMS`: ``SLURM_CONF`` must name a running Slurm), its simulated
    replays (names in :data:`REPLAYS`), and :func:`compare` of each with it."""
    from benchmarks.throughput import utilization_spec
    from campaign.engine import Engine

    spec = utilization_spec(tasks, "async", duration_scale=duration_scale)
    began = time.time()
    engine = Engine(spec, workdir / "real", site=site, site_params=SITE_PARAMS[site],
                    overwrite=True)
    with driver_meter() as meter:
        summary = engine.run()
    real_seconds = time.time() - began
    driver_wall, driver_cpu = driver_work(meter.waits, window(workdir / "real"))
    slowdown = driver_slowdown(meter.waits, window(workdir / "real"))
    workers = {s.executor_label: engine.parsl.workers[s.name] for s in spec.scales}
    delays = start_delays(workdir / "real")
    result: dict[str, Any] = {
        "site": site, "tasks": tasks, "real_seconds": real_seconds, "workers": workers,
        "stop_reason": summary.stop_reason, "driver_slowdown": slowdown,
        "driver_seconds": {"wall": driver_wall, "cpu": driver_cpu},
        "start_delays": {scale: {"first": seconds[0], "max": max(seconds),
                                 "median": statistics.median(seconds)}
                         for scale, seconds in delays.items()},
        "fit_turnarounds": meter.fit_turnarounds(), "load_average": os.getloadavg(),
        "replays": {}}
    # the same campaign whose apps do not sleep: the same outputs from the same seeds,
    # while each attempt's virtual duration comes from the real run's ledger
    replayed_spec = utilization_spec(tasks, "async", duration_scale=0.0)
    for name in replays:
        began = time.time()
        sim_dir = workdir / f"simulated-{name}"
        charged = replay_run(replayed_spec, workdir / "real", sim_dir,
                             {**workers, "train": 1}, delays="delays" in REPLAYS[name],
                             fits=meter.fit_turnarounds() if "fits" in REPLAYS[name] else None,
                             slowdown=slowdown if "slowdown" in REPLAYS[name] else 1.0)
        result["replays"][name] = {
            **compare(workdir / "real", sim_dir,
                      {s.name: engine.parsl.workers[s.name] for s in spec.scales}),
            "simulated_seconds": time.time() - began, "simulated_cpu": charged}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", default="local", choices=sorted(SITE_PARAMS))
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--duration-scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/replay"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs = []
    with (private_slurm(args.workdir / "slurm") if args.site == "slurm"
          else contextlib.nullcontext()):
        for repeat in range(args.repeats):
            result = run(args.site, args.tasks, args.workdir / f"r{repeat}",
                         args.duration_scale)
            runs.append(result)
            for name, replayed in result["replays"].items():
                print(f"repeat {repeat}, replay of {name}: " + ", ".join(
                    f"{key} real {value['real']:.3g} simulated {value['simulated']:.3g} "
                    f"({value['ratio']:.3f}x)" for key, value in replayed.items()
                    if isinstance(value, dict) and "ratio" in value), flush=True)
            if args.json:  # after every repeat: an interrupted series keeps what ran
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
