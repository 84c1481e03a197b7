"""A mixed campaign on local MPI mode: do a 1-rank coarse and a 2-rank fine scale keep 4
core slots busy?

    python -m benchmarks.mpi_utilization [--coarse 96] [--fine 32] [--json PATH]

Both scales share one ``MPIExecutor`` of 4 core slots (``local`` site, ``mpi_slots=4``):
the coarse scale's walkers sleep a heavy-tailed time (``benchmarks.throughput.sleep_walker``,
one slot each), the fine scale runs ``apps/data/mpi_energy.c`` (compiled here with mpicc)
under ``mpiexec`` with 2 ranks that each sleep ``--fine-seconds`` (two slots), promoted by a
GP (async mode, busy by default). Fine tasks go first when both wait (priority 1 against 2).

Reported from the ledger's attempts, over the window from the first start to the last end:
``slot_utilization`` = slot-seconds busy (duration x slots) / (4 x window), and
``ideal_ratio`` = the ideal makespan (``max(slot-seconds / 4, longest task)``, a lower
bound no schedule beats) / the window. The goal is ``ideal_ratio >= 0.9``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

SLOTS = 4
SOURCE = Path(__file__).resolve().parents[1] / "apps" / "data" / "mpi_energy.c"


def mixed_spec(program: Path, artifacts: Path, *, coarse: int, fine: int,
               fine_seconds: float, walkers: int) -> Any:
    """The campaign: 1-rank coarse walkers and a 2-rank fine MPI scale on one executor."""
    from apps import toy
    from apps.external import external_app
    from benchmarks.throughput import sleep_walker
    from campaign import Budget, Campaign, Promotion, Scale
    from campaign.resources import Resources
    from learners import ExactGP
    from learners.acquisition import MaxVariance

    fine_app = external_app([program, "input.txt", "output.txt", repr(fine_seconds)],
                            name="mpi_energy", template="x = $x\n",
                            outputs=["energy", "ranks"], mpi=True, workdir_root=artifacts,
                            timeout=120, keep_workdir=False)
    return Campaign(
        name="mpi_mixed",
        scales=[Scale("coarse", app=sleep_walker, walkers=toy.initial_walkers(walkers),
                      executor="sim-fine", resources=Resources(ranks=1)),
                Scale("fine", app=fine_app, resources=Resources(ranks=2))],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=1, iterations=30),
                              acquisition=MaxVariance(), batch_size=2, quantity="energy")],
        budget=Budget(coarse=coarse, fine=fine), seed=0)


def slot_figures(attempts: list[dict[str, Any]], slots_of: dict[str, int]) -> dict[str, Any]:
    """Slot utilization and the ideal ratio of the attempts (see the module)."""
    timed = [a for a in attempts if a["started"] is not None and a["ended"] is not None]
    first = min(a["started"] for a in timed)
    last = max(a["ended"] for a in timed)
    window = last - first
    busy = sum((a["ended"] - a["started"]) * slots_of[a["scale"]] for a in timed)
    longest = max(a["ended"] - a["started"] for a in timed)
    ideal = max(busy / SLOTS, longest)
    per_scale = {scale: sum(1 for a in timed if a["scale"] == scale) for scale in slots_of}
    return {"tasks": per_scale, "window_s": window, "slot_seconds": busy,
            "slot_utilization": busy / (SLOTS * window), "ideal_makespan_s": ideal,
            "ideal_ratio": ideal / window, "longest_task_s": longest}


def run(*, coarse: int, fine: int, fine_seconds: float, walkers: int,
        workdir: Path) -> dict[str, Any]:
    from campaign.ledger import Ledger

    program = workdir / "mpi_energy"
    subprocess.run(["mpicc", "-O2", "-o", str(program), str(SOURCE)], check=True, timeout=120)
    spec = mixed_spec(program, workdir / "artifacts", coarse=coarse, fine=fine,
                      fine_seconds=fine_seconds, walkers=walkers)
    started = time.perf_counter()
    summary = spec.run(site="local", out=workdir / "run", mpi_slots=SLOTS,
                       resources={"fine": spec.scale("fine").resources})
    wall = time.perf_counter() - started
    ledger = Ledger(workdir / "run" / "ledger.sqlite", read_only=True)
    try:
        attempts = ledger.attempts()
        counts = ledger.task_counts()
    finally:
        ledger.close()
    figures = slot_figures(attempts, {"coarse": 1, "fine": 2})
    return {"benchmark": "mpi_utilization", "slots": SLOTS, "coarse_budget": coarse,
            "fine_budget": fine, "fine_seconds": fine_seconds, "walkers": walkers,
            "stop_reason": summary.stop_reason, "task_counts": counts, "campaign_wall_s": wall,
            **figures, "goal": "ideal_ratio >= 0.9",
            "meets_goal": bool(figures["ideal_ratio"] >= 0.9)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coarse", type=int, default=96)
    parser.add_argument("--fine", type=int, default=32)
    parser.add_argument("--fine-seconds", type=float, default=1.0)
    parser.add_argument("--walkers", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not shutil.which("mpicc"):
        raise SystemExit("mpicc not found: install MPICH (apt-get install mpich libmpich-dev)")
    with tempfile.TemporaryDirectory(prefix="mpi-utilization-") as folder:
        result = run(coarse=args.coarse, fine=args.fine, fine_seconds=args.fine_seconds,
                     walkers=args.walkers, workdir=Path(folder))
    print(f"{result['tasks']} tasks in {result['window_s']:.1f} s on {SLOTS} slots: "
          f"slot utilization {result['slot_utilization']:.3f}, ideal makespan "
          f"{result['ideal_makespan_s']:.1f} s, ideal/actual {result['ideal_ratio']:.3f} "
          f"(goal >= 0.9: {'met' if result['meets_goal'] else 'not met'})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
