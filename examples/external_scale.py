"""Two-scale Müller-Brown campaign whose fine scale is an external program.

Coarse scale: three overdamped Langevin walkers (Python, ``apps.toy.langevin``) propose
configurations. Fine scale: ``apps/data/muller_brown.sh``, a POSIX sh + awk program
standing in for a Fortran/C++ code, LAMMPS or GROMACS. For every chosen configuration
``apps.external`` makes a fresh work directory, renders ``input.txt`` from the template
(the coordinates written exactly), runs the program there with a timeout, and reads
``energy``, ``gx`` and ``gy`` from its ``output.txt``. The program returns three
outputs, so the promotion names the one to learn (``quantity="energy"``). The exact
Müller-Brown energy on a grid is the reference that measures the surrogate's error.

Run it:  campaign run examples/external_scale.py --site threads --out runs/ext
Each task's work directory (input, output, stdout, stderr) stays under
runs/artifacts/muller_brown/task-<seed>-<hash>/.
"""

from functools import partial

from apps import toy
from apps.external import MULLER_BROWN, external_app
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import MaxVariance

muller_brown = external_app(
    [MULLER_BROWN, "input.txt", "output.txt"],  # run in the task's work directory
    name="muller_brown",
    template="# Müller-Brown point (written by apps.external)\nx = $x0\ny = $x1\n",
    outputs=["energy", "gx", "gy"],  # key = value lines of output.txt
    workdir_root="runs/artifacts/muller_brown",  # relative to where the script is loaded
    timeout=30,  # seconds; then the program's whole process group is killed
)

campaign = Campaign(
    name="external_scale",
    scales=[
        Scale("coarse", app=toy.langevin, params={"n_steps": 2000, "stride": 100},
              walkers=toy.initial_walkers(3)),
        Scale("fine", app=muller_brown),
    ],
    promotions=[
        Promotion(source="coarse", target="fine", features=toy.positions,
                  learner=ExactGP(restarts=1, iterations=60), acquisition=MaxVariance(),
                  batch_size=4, quantity="energy",
                  reference=partial(toy.reference, width=0.0, resolution=25)),
    ],
    budget=Budget(fine=16, coarse=6),
    seed=0,
)

if __name__ == "__main__":
    campaign.run(site="threads", out="runs/external_scale")
