"""Alanine dipeptide scale bridging: a force-matched CG model proposes, AA MD decides.

CG scale: four Langevin walkers of a 5-bead backbone model (the C, N, CA, C, N atoms that
define phi and psi) in OpenMM. Its force field is a Boltzmann-inverted bonded prior plus a
Fourier correction in (phi, psi), refitted before every round by force matching to the
mapped forces of all AA frames so far (AA -> CG). AA scale: each chosen CG frame is
backmapped (template placement + restrained minimization, CG -> AA) and simulated for
5 ps with phi and psi restrained (amber14 + OBC2 implicit solvent); the quantity learned
is the window's mean potential energy (kJ/mol). An exact GP on (sin, cos) of phi and psi
predicts it with uncertainty; greedy max-variance batches choose what AA simulates. The
reference is the same AA quantity on a 6 x 6 grid over (phi, psi).

Run it:  campaign run examples/alanine_dipeptide.py --site local --out runs/ala
"""

import functools

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np

from apps import cg, md
from apps.backmap import Backmapper
from apps.featurize import RowDihedrals
from apps.mapping import ALANINE_BACKBONE, bead_map
from apps.molecular_report import ramachandran_report
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import MaxVariance

BEADS = bead_map(mda.Universe(md.ALANINE_DIPEPTIDE_PDB), ALANINE_BACKBONE)
START = BEADS.positions(mda.Universe(md.ALANINE_DIPEPTIDE_PDB).atoms.positions)
PRIOR = cg.chain_force_field(BEADS.masses, START, order=2, names=BEADS.names)
PHI_PSI = RowDihedrals([(0, 1, 2, 3), (1, 2, 3, 4)])
ATOMS = [atoms[0] for atoms in BEADS.atom_indices]
AA_PARAMS = {"dihedrals": np.array([ATOMS[0:4], ATOMS[1:5]]), "n_steps": 2500, "stride": 50,
             "equilibration": 500, "bead_weights": BEADS.position_weights,
             "bead_force_weights": BEADS.force_weights}


@functools.cache
def reference(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """AA mean energies on an n x n (phi, psi) grid: (features (n*n, 4), kJ/mol (n*n,))."""
    backmapper = Backmapper(BEADS)
    grid = np.linspace(-np.pi, np.pi, n, endpoint=False) + np.pi / n
    rows, values = [], []
    for k, (phi, psi) in enumerate((a, b) for a in grid for b in grid):
        aa = backmapper.template_at([phi, psi])
        rows.append(BEADS.positions(aa).ravel())
        values.append(md.restrained_window(aa.ravel(), seed=10_000 + k, **AA_PARAMS)["energy"][0])
    return PHI_PSI(np.array(rows)), np.array(values)


campaign = Campaign(
    name="alanine_dipeptide",
    scales=[
        Scale("cg", app=cg.langevin, walkers=cg.initial_walkers(START, BEADS.masses, 4),
              params={"force_field": PRIOR.to_params(), "n_steps": 10_000, "stride": 250},
              refresh_params=cg.ForceMatchingRefresh(PRIOR, source="aa")),
        Scale("aa", app=md.restrained_window, params=AA_PARAMS),
    ],
    promotions=[
        Promotion(source="cg", target="aa", features=PHI_PSI, learner=ExactGP(),
                  acquisition=MaxVariance(), batch_size=4, quantity="energy",
                  mapping=Backmapper(BEADS), reference=reference),
    ],
    budget=Budget(aa=24),
    reports=[ramachandran_report],
    seed=0,
)

if __name__ == "__main__":
    campaign.run(site="local", out="runs/ala")
