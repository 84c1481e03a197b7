"""The alanine dipeptide campaign end to end, shortened: CG walkers, promotion through
backmapping to restrained AA windows, force-matching refresh, Ramachandran figure."""

import functools

import numpy as np
import pytest

from campaign.report import open_run


@pytest.mark.slow
def test_short_alanine_campaign_runs_and_reports(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    import alanine_dipeptide as example

    from apps.molecular_report import ramachandran_figure
    from campaign import Budget

    scales = [example.campaign.scale("cg").model_copy(update={"params": {
                  **example.campaign.scale("cg").params, "n_steps": 2000, "stride": 100}}),
              example.campaign.scale("aa").model_copy(update={"params": {
                  **example.AA_PARAMS, "n_steps": 500, "stride": 25, "equilibration": 100}})]
    promotion = example.campaign.promotions[0].model_copy(
        update={"reference": functools.partial(example.reference.__wrapped__, 2)})
    spec = example.campaign.model_copy(update={"scales": scales, "promotions": [promotion],
                                               "budget": Budget(aa=8)})
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert "budget" in summary.stop_reason
    ledger, store = open_run(tmp_path / "run")
    try:
        aa = store.read("aa")
        assert len(aa) == 8 and aa.x.shape == (8, 66)
        assert aa.y["bead_forces"].shape == (8, 20, 15)
        assert np.all(np.isfinite(aa.y["energy"]))
        pool = store.read("cg")
        assert pool.x.shape[1] == 30
        rounds = [r for r in ledger.rounds("cg-to-aa") if r.get("reference_rmse") is not None]
        assert rounds
    finally:
        ledger.close()
    refreshed = example.campaign.scale("cg").refresh_params({"aa": aa})["force_field"]
    assert np.any(refreshed["weights"] != 0)
    figure = ramachandran_figure(tmp_path / "run", tmp_path / "rama.png")
    assert figure.stat().st_size > 10_000
    # the campaign's own report hook writes the Ramachandran plot beside report.png
    from campaign.report import summarize

    written = summarize(tmp_path / "run", spec, baseline=False)["extra_reports"]
    assert written == [str(tmp_path / "run" / "ramachandran.png")]
    assert (tmp_path / "run" / "report.png").is_file()
