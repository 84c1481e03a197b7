"""Validate the simulated site against a real run: run a campaign on a real site, replay
its recorded task durations on the virtual clock, and compare makespan and per-scale
utilization (``campaign.simulated``, issue: allocation scale on a virtual clock).

    python -m benchmarks.replay [--site local] [--tasks 48] [--json PATH]

The workload is ``benchmarks.throughput``'s utilization campaign (heavy-tailed sleep
tasks on two scales, a GP refitted in the loop), so task durations are the apps' own and
the comparison measures the steering and the executor, not the apps.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from campaign.durations import parse_durations
from campaign.plan import utilization_from_ledger

__all__ = ["compare", "makespan", "replay_run"]


def makespan(run_dir: Path) -> float:
    """First attempt start to last attempt end, from a run's ledger."""
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        low, high = db.execute("SELECT MIN(started), MAX(ended) FROM attempts "
                               "WHERE started IS NOT NULL AND ended IS NOT NULL").fetchone()
    finally:
        db.close()
    return float(high - low)


def replay_run(spec: Any, real_dir: Path, sim_dir: Path, workers: dict[str, int]) -> Any:
    """Run ``spec`` simulated, each scale's attempts taking the durations ``real_dir``'s
    ledger recorded, in the order they were submitted."""
    from campaign.engine import Engine
    from campaign.simulated import Simulation

    simulation = Simulation(workers=workers, durations=parse_durations(real_dir))
    return Engine(spec, sim_dir, overwrite=True, simulation=simulation).run()


def compare(real_dir: Path, sim_dir: Path, workers_by_scale: dict[str, int]
            ) -> dict[str, Any]:
    """Makespan and per-scale utilization of the two runs, and their ratios."""
    real = utilization_from_ledger(real_dir, workers_by_scale)
    simulated = utilization_from_ledger(sim_dir, workers_by_scale)
    out: dict[str, Any] = {"makespan": {"real": makespan(real_dir),
                                        "simulated": makespan(sim_dir)}}
    out["makespan"]["ratio"] = out["makespan"]["simulated"] / out["makespan"]["real"]
    for scale in workers_by_scale:
        pair = {"real": real[scale]["utilization"], "simulated": simulated[scale]["utilization"]}
        pair["ratio"] = pair["simulated"] / pair["real"]
        out[f"utilization_{scale}"] = pair
    return out


def run(site: str, tasks: int, workdir: Path, duration_scale: float) -> dict[str, Any]:
    from benchmarks.throughput import utilization_spec
    from campaign.engine import Engine

    spec = utilization_spec(tasks, "async", duration_scale=duration_scale)
    began = time.time()
    engine = Engine(spec, workdir / "real", site=site, overwrite=True)
    summary = engine.run()
    real_seconds = time.time() - began
    workers = {s.executor_label: engine.parsl.workers[s.name] for s in spec.scales}
    began = time.time()
    replay_run(spec, workdir / "real", workdir / "simulated", {**workers, "train": 1})
    result = compare(workdir / "real", workdir / "simulated",
                     {s.name: engine.parsl.workers[s.name] for s in spec.scales})
    result.update(site=site, tasks=tasks, real_seconds=real_seconds,
                  simulated_seconds=time.time() - began, workers=workers,
                  stop_reason=summary.stop_reason)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", default="local")
    parser.add_argument("--tasks", type=int, default=48)
    parser.add_argument("--duration-scale", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("runs/bench/replay"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs = []
    for repeat in range(args.repeats):
        result = run(args.site, args.tasks, args.workdir / f"r{repeat}", args.duration_scale)
        runs.append(result)
        print(f"repeat {repeat}: " + ", ".join(
            f"{key} real {value['real']:.3g} simulated {value['simulated']:.3g} "
            f"({value['ratio']:.3f}x)" for key, value in result.items()
            if isinstance(value, dict) and "ratio" in value), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
