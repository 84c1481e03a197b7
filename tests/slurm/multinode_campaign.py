"""The campaign tests/test_slurm_multinode.py runs inside the controller's namespace.

    python tests/slurm/multinode_campaign.py OUT PROGRAM ARTIFACTS

Coarse: Langevin walkers on a 2-node block (srun starts a worker pool on each node).
Fine: PROGRAM (tests' mpi_energy) as an MPI task of 2 ranks over 2 nodes, launched by
srun from Parsl's MPI mode. Prints the run summary as one JSON line.
"""

import json
import sys
from pathlib import Path

from apps import toy
from apps.external import external_app
from campaign import Budget, Campaign, Promotion, Scale
from campaign.resources import Resources
from learners import ExactGP
from learners.acquisition import MaxVariance

CONTROLLER = "10.77.0.1"  # the bridge in the controller's namespace (multinode_setup.sh)


def main() -> None:
    out, program, artifacts = (Path(arg) for arg in sys.argv[1:4])
    fine = external_app([program, "input.txt", "output.txt"], name="mpi_energy",
                        template="x = $x\n", outputs=["energy", "ranks"], mpi=True,
                        workdir_root=artifacts, timeout=120)
    spread = Resources(ranks=2, nodes=2)
    campaign = Campaign(
        name="multinode",
        scales=[Scale("coarse", app=toy.langevin, params={"n_steps": 400, "stride": 100},
                      walkers=toy.initial_walkers(4)),
                Scale("fine", app=fine, resources=spread, timeout=300)],
        promotions=[Promotion(source="coarse", target="fine", features=toy.positions,
                              learner=ExactGP(restarts=1, iterations=20),
                              acquisition=MaxVariance(), batch_size=2, quantity="energy")],
        budget=Budget(fine=4, coarse=16),
    )
    summary = campaign.run(
        site="slurm", out=out, address=CONTROLLER, exclusive=False, walltime="00:10:00",
        strategy_period=1.0, cmd_timeout=30, resources={"fine": spread},
        overrides={"sim-coarse": {"nodes_per_block": 2}, "sim-fine": {"nodes_per_block": 2}})
    print(json.dumps({"rows": summary.rows, "task_counts": summary.task_counts,
                      "stop_reason": summary.stop_reason,
                      "failed": bool(summary.failed)}, default=str))


if __name__ == "__main__":
    main()
