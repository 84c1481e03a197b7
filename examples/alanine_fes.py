"""Alanine dipeptide free-energy surface from AA umbrella windows the surrogate chooses.

CG scale: four Langevin walkers of the 5-bead backbone model (C, N, CA, C, N), its
dihedral correction (a Fourier series in phi and psi, order 4) force-matched before every
round to the mapped forces of all AA windows so far (AA -> CG, MuMMI's feedback loop).
AA scale: each chosen CG frame is backmapped (template + restrained minimization) and run
as an umbrella window (amber14 + OBC2, phi and psi restrained at the frame's values with
k = 200 kJ/(mol rad^2), 1 ps equilibration + 4 ps; ``apps.fes.FES_WINDOW``). The window
measures the free-energy gradient (mean force) at its mean (phi, psi), with a block
standard error. A ``GradientGP`` (periodic in both angles) learns F(phi, psi) from those
gradients; ``IntegratedVariance`` picks the frames whose windows most reduce F's variance
over the CG pool's low-free-energy part, conditioned on the windows still running.

The reference is the MBAR FES of a 24 x 24 grid of 10 ps windows
(``apps/data/alanine_fes_reference.json``, ``python -m benchmarks.fes_reference``); the
engine records the model's RMSE on its bins with F <= 20 kJ/mol (constant aligned), and
the report adds ``fes.png``: the FES, its uncertainty, the error map, and the CG model's
own FES error as windows accrue.

Run it:  campaign run examples/alanine_fes.py --site local --out runs/ala_fes
"""

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention

from apps import cg, md
from apps.fes import alanine_backmapper, alanine_beads, fes_window, phi_psi, reference_grid
from apps.molecular_report import fes_report
from campaign import Budget, Campaign, Promotion, Scale
from learners import GradientGP
from learners.acquisition import IntegratedVariance

BEADS = alanine_beads()
START = BEADS.positions(mda.Universe(md.ALANINE_DIPEPTIDE_PDB).atoms.positions)
PRIOR = cg.chain_force_field(BEADS.masses, START, order=4, names=BEADS.names)
AA_PARAMS = {"bead_weights": BEADS.position_weights, "bead_force_weights": BEADS.force_weights}


def reference():
    """Reference F (kJ/mol) on its low-free-energy bins: ((m, 2) radians, (m,))."""
    points, fes, region = reference_grid()
    return points[region], fes[region]


campaign = Campaign(
    name="alanine_fes",
    scales=[
        Scale("cg", app=cg.langevin, walkers=cg.initial_walkers(START, BEADS.masses, 4),
              params={"force_field": PRIOR.to_params(), "n_steps": 10_000, "stride": 250},
              refresh_params=cg.ForceMatchingRefresh(PRIOR, source="aa")),
        Scale("aa", app=fes_window, params=AA_PARAMS),
    ],
    promotions=[
        Promotion(source="cg", target="aa", features=phi_psi(), learner=GradientGP(),
                  acquisition=IntegratedVariance(below=30.0), batch_size=4,
                  quantity="gradient_window", mapping=alanine_backmapper(),
                  reference=reference),
    ],
    budget=Budget(aa=48),
    reports=[fes_report],
    seed=0,
)

if __name__ == "__main__":
    campaign.run(site="local", out="runs/ala_fes")
