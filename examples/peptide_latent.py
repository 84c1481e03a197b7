"""Deca-alanine: CG walkers propose, a learned latent space chooses, AA MD decides.

CG scale: four Langevin walkers of a one-bead-per-residue (CA) model of deca-alanine in
OpenMM, its bonded prior and separable torsion correction force-matched to short AA runs
(``apps/data/deca_alanine_cg.json``, ``python -m apps.peptide fit-cg``) and refitted
before every round to the mapped forces of the campaign's own AA windows
(``ForceMatchingRefresh``). Started extended, the walkers rarely reach the helix.

AA scale (``apps.bridging.aa_from_cg``): each chosen CG frame is backmapped by the learned
backmapper (``apps.backmap.LearnedBackmapper``, an ensemble of per-residue MLPs retrained
before every round on the campaign's own AA frames and their CA beads by
``BackmapRefresh``), falling back to the template method (helix template + restrained
minimization) where the ensemble is uncertain or before it has data; then 1 ps of AA MD
(amber14 + OBC2, 4 fs with hydrogen mass repartitioning). The learned quantity is the
window's helicity (fraction of residues 2-9 in the alpha region).

Selection: the promotion's features are the latent space of an autoencoder on the CG
frames' CA distances (``apps.latent.LatentFeatures``), refitted on the whole CG pool
before every fit; the DeepDriveMD rule (local outlier factor in the latent space) picks
what AA simulates. The report adds ``latent.png``: the pool in the latent space coloured
by the round each AA frame was chosen in and by its AA helicity.

Run it:  campaign run examples/peptide_latent.py --site local --out runs/peptide
"""

from apps import cg
from apps.backmap import BackmapRefresh
from apps.bridging import aa_from_cg, learned_backmapper
from apps.latent import LatentFeatures
from apps.molecular_report import latent_report
from apps.peptide import ca_map, cg_start, load_cg_model
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import LocalOutlier

BEADS = ca_map()
CG_MODEL = load_cg_model()

campaign = Campaign(
    name="peptide_latent",
    scales=[
        Scale("cg", app=cg.langevin,
              walkers=cg.initial_walkers(cg_start(), CG_MODEL.masses, 4),
              params={"force_field": CG_MODEL.to_params(), "n_steps": 5_000, "stride": 250},
              refresh_params=cg.ForceMatchingRefresh(CG_MODEL, source="aa", min_frames=40)),
        Scale("aa", app=aa_from_cg, params={"backmapper": None},
              refresh_params=BackmapRefresh(learned_backmapper(), source="aa")),
    ],
    promotions=[
        Promotion(source="cg", target="aa", features=LatentFeatures(BEADS.n_beads),
                  learner=ExactGP(), acquisition=LocalOutlier(), batch_size=4,
                  quantity="helicity"),
    ],
    budget=Budget(aa=24),
    reports=[latent_report],
    seed=0,
)

if __name__ == "__main__":
    campaign.run(site="local", out="runs/peptide")
