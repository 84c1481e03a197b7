"""Three scales in a chain, like MuMMI's macro -> CG -> AA, on the Müller-Brown landscape.

Macro scale: four long-stride Langevin walkers sample broadly. CG scale: short, finely
strided Langevin runs started from macro frames that farthest-point sampling chooses
(MuMMI's rule); every frame they produce joins the pool of the next promotion. Fine
scale: the thermally smeared energy at CG frames that an exact GP's integrated variance
chooses. Each promotion has its own learner; the engine knows only that three scales
feed each other.

Run it:  campaign run examples/three_scales.py --site local --out runs/three-scales
"""

from apps import toy
from campaign import Budget, Campaign, Promotion, Scale
from learners import ExactGP
from learners.acquisition import FarthestPoint, IntegratedVariance

campaign = Campaign(
    name="three_scales",
    scales=[
        Scale("macro", app=toy.langevin, walkers=toy.initial_walkers(4),
              params={"n_steps": 4000, "stride": 200}),
        Scale("cg", app=toy.langevin, params={"n_steps": 500, "stride": 50}),
        Scale("fine", app=toy.smeared_energy, params={"n_samples": 2**16}),
    ],
    promotions=[
        Promotion(source="macro", target="cg", features=toy.positions,
                  learner=ExactGP(), acquisition=FarthestPoint(), batch_size=4,
                  quantity="energy"),
        Promotion(source="cg", target="fine", features=toy.positions,
                  learner=ExactGP(), acquisition=IntegratedVariance(), batch_size=8,
                  quantity="energy", reference=toy.reference),
    ],
    budget=Budget(macro=40, cg=16, fine=48),
    seed=0,
)

if __name__ == "__main__":
    campaign.run(site="local", out="runs/three-scales")
