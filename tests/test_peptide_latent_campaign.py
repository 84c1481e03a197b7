"""The deca-alanine latent-space campaign end to end, shortened: CA-bead CG walkers, a
refitted autoencoder latent space as the promotion's features, AA windows from learned
(else template) backmapping, the backmapper and CG model refreshed between rounds."""

import sys
from pathlib import Path

import numpy as np
import pytest

from campaign.report import open_run


@pytest.mark.slow
def test_short_latent_campaign_runs_and_reports(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    import peptide_latent as example

    from apps.backmap import BackmapRefresh
    from apps.bridging import learned_backmapper
    from apps.molecular_report import latent_figure
    from campaign import Budget

    cg = example.campaign.scale("cg")
    aa = example.campaign.scale("aa")
    quick_learner = learned_backmapper(n_members=2, hidden=32, steps=150, warm_steps=50)
    scales = [cg.model_copy(update={"params": {**cg.params, "n_steps": 1000, "stride": 100}}),
              aa.model_copy(update={
                  "params": {**aa.params, "n_steps": 50, "stride": 25, "equilibration": 0},
                  "refresh_params": BackmapRefresh(quick_learner, source="aa", min_frames=4)})]
    spec = example.campaign.model_copy(update={"scales": scales, "budget": Budget(aa=8)})
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert "budget" in summary.stop_reason
    ledger, store = open_run(tmp_path / "run")
    try:
        aa_rows = store.read("aa")
        rounds = ledger.rounds("cg-to-aa")
    finally:
        ledger.close()
    assert len(aa_rows) == 8
    helicity = np.asarray(aa_rows.y["helicity"]).ravel()
    assert np.all((helicity >= 0) & (helicity <= 1))
    learned = np.asarray(aa_rows.y["backmap_learned"]).ravel()
    # round 0 has no AA data: the template method; later rounds get the refitted model
    rounds_of = np.asarray(aa_rows.meta["round"])
    assert np.all(learned[rounds_of == 0] == 0)
    # the latent featurizer was refitted before the fit (the engine records it)
    fitted = [r for r in rounds if r.get("n_train")]
    assert fitted and all(r.get("features_refit_on", 0) > 0 for r in fitted)
    figure = latent_figure(tmp_path / "run", tmp_path / "latent.png")
    assert figure.stat().st_size > 10_000
