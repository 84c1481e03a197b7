"""End-to-end campaigns on the threads site: what lands in the store and the ledger."""

import numpy as np
import pytest
import zarr
from conftest import tiny_campaign

from apps import toy
from campaign.engine import RunDirError
from campaign.ledger import Ledger
from campaign.store import Store
from learners.acquisition import Random


def open_run(run_dir):
    ledger = Ledger(run_dir / "ledger.sqlite")
    return ledger, Store(run_dir, ledger, read_only=True)


def test_campaign_runs_to_budget_and_stores_everything(tmp_path, tiny):
    summary = tiny.run(site="threads", out=tmp_path / "run")
    assert summary.stop_reason == "task budget spent (fine=12)"
    ledger, store = open_run(tmp_path / "run")
    coarse, fine = store.read("coarse"), store.read("fine")
    assert len(fine) == 12 and fine.x.dtype == np.float64
    assert ledger.task_counts()["fine"] == {"done": 12}
    assert len(coarse) == 20 * ledger.task_counts()["coarse"]["done"]
    # every fine row is a promoted coarse row, each promoted once, evaluated correctly
    parents = fine.meta["parent_row"]
    assert len(set(parents.tolist())) == 12
    np.testing.assert_array_equal(fine.x, coarse.x[parents])
    exact = toy.smeared_energy_exact(fine.x)
    assert np.max(np.abs(fine.y["energy"] - exact)) < 2.0  # 4,096-sample Monte Carlo
    # the walkers continue: round r's first frame follows round r-1's last frame
    assert np.all(np.diff(coarse.meta["round"]) >= 0)
    # rounds: seed design first, then fitted rounds with a model on disk
    rounds = ledger.rounds("coarse-to-fine")
    assert rounds[0]["policy"] == "space-filling design (maximin)" and rounds[0]["n_train"] == 0
    fitted = [r for r in rounds if r.get("n_train")]
    assert [r["n_train"] for r in fitted] == [4, 8, 12]
    assert fitted[-1]["policy"] == "final fit"
    for record in fitted:
        assert zarr.open_group(tmp_path / "run" / "store.zarr", mode="r")[record["model"]]
        assert record["reference_rmse"] > 0
    assert fitted[-1]["reference_rmse"] < fitted[0]["reference_rmse"]
    assert all("prospective_rmse" in r for r in fitted[:-1])
    assert ledger.fact("spec")["promotions"][0]["batch_size"] == 4
    ledger.close()


def test_same_seed_gives_the_same_store(tmp_path):
    first = tiny_campaign(budget=__import__("campaign").Budget(fine=8))
    second = tiny_campaign(budget=__import__("campaign").Budget(fine=8))
    first.run(site="threads", out=tmp_path / "a")
    second.run(site="threads", out=tmp_path / "b")
    stores = [open_run(tmp_path / name)[1] for name in ("a", "b")]
    for scale in ("coarse", "fine"):
        np.testing.assert_array_equal(stores[0].read(scale).x, stores[1].read(scale).x)


def test_learner_in_the_spec_is_not_fitted_in_place(tmp_path, tiny):
    tiny.run(site="threads", out=tmp_path / "run")
    assert not hasattr(tiny.promotions[0].learner, "n_train_") or \
        getattr(tiny.promotions[0].learner, "n_train_", None) is None


def flaky_fine_app(x, *, seed, n_samples):
    """Always fails in some regions (raise, NaN, wrong shape), sometimes elsewhere."""
    if x[1] > 1.0:  # the top basin always blows up
        raise RuntimeError("simulation blew up")
    if x[0] > 0.3:  # the right basin always returns NaN
        return {"x": np.atleast_2d(x), "energy": np.array([np.nan])}
    if x[0] < -0.9:
        return {"x": np.atleast_2d(x), "energy": np.zeros(3)}
    if seed % 3 == 0:  # a transient failure: a new seed on retry usually passes
        raise RuntimeError("transient node failure")
    return toy.smeared_energy(x, seed=seed, n_samples=n_samples)


def test_failures_are_retried_then_quarantined_never_trained_on(tmp_path):
    spec = tiny_campaign(fine_app=flaky_fine_app,
                         budget=__import__("campaign").Budget(fine=16))
    summary = spec.run(site="threads", out=tmp_path / "run")
    ledger, store = open_run(tmp_path / "run")
    tasks = ledger.tasks("fine")
    counts = ledger.task_counts()["fine"]
    assert len(tasks) == 16 and set(counts) <= {"done", "quarantined"}
    assert counts.get("quarantined", 0) >= 1 and counts.get("done", 0) >= 1
    fine = store.read("fine")
    assert len(fine) == counts["done"]
    assert np.all(np.isfinite(fine.y["energy"]))
    for task in tasks:
        if task["status"] == "quarantined":
            if "not retried" in task["reason"]:  # a misshapen result: the same again
                assert task["attempts"] == 1 and "bad result" in task["reason"]
            else:
                assert task["attempts"] == 3 and task["reason"].startswith("after 3 attempts: ")
            assert not np.isin(task["parent_row"], fine.meta["parent_row"])
    reasons = " ".join(t["reason"] for t in tasks if t["status"] == "quarantined")
    assert "RuntimeError: simulation blew up" in reasons or "non-finite" in reasons
    done = [t for t in tasks if t["status"] == "done"]
    assert all(t["attempts"] <= 3 for t in done)
    # only committed rows are trained on: the final fit saw exactly the done rows
    final = ledger.rounds("coarse-to-fine")[-1]
    assert final["n_train"] == counts["done"]
    # quarantined inputs are pending for good: the acquisition conditions on them
    for record in ledger.rounds("coarse-to-fine")[:-1]:
        earlier = [t for t in tasks if t["round"] < record["round"]
                   and t["status"] == "quarantined"]
        assert record["n_pending"] == len(earlier)
    assert summary.rows["fine"] == counts["done"]
    ledger.close()


def test_retries_zero_quarantines_at_once_and_timeouts_count_as_failures(tmp_path):
    from campaign import Budget, Campaign, Scale

    spec = Campaign(name="slow", scales=[
        Scale("coarse", app=sleepy_app, walkers=[[0.0], [5.0]], timeout=0.5, retries=0)],
        budget=Budget(rounds=1))
    spec.run(site="threads", out=tmp_path / "run")
    ledger, store = open_run(tmp_path / "run")
    by_walker = {t["walker"]: t for t in ledger.tasks("coarse")}
    assert by_walker[0]["status"] == "done"
    assert by_walker[1]["status"] == "quarantined"
    assert "AppTimeout" in by_walker[1]["reason"] and by_walker[1]["attempts"] == 1
    assert ("AppTimeout: scale 'coarse' app ran past its timeout of 0.5 s"  # what, how long
            in by_walker[1]["reason"])
    assert store.rows("coarse") == 1
    ledger.close()


def sleepy_app(x, *, seed):
    """Sleeps x[0] seconds in small steps (so Parsl's timeout can interrupt it)."""
    import time

    deadline = time.time() + float(x[0])
    while time.time() < deadline:
        time.sleep(0.01)
    return {"x": np.atleast_2d(x), "slept": np.array([float(x[0])])}


def test_random_policy_also_runs(tmp_path):
    spec = tiny_campaign(promotion={"acquisition": Random()})
    spec.run(site="threads", out=tmp_path / "run")
    ledger, store = open_run(tmp_path / "run")
    assert store.rows("fine") == 12
    assert ledger.rounds("coarse-to-fine")[1]["policy"] == "Random"
    ledger.close()


def test_run_dir_holding_another_campaign_is_refused(tmp_path, tiny):
    tiny.run(site="threads", out=tmp_path / "run")
    other = tiny_campaign(name="other")
    with pytest.raises(RunDirError, match="holds campaign 'tiny', not 'other'"):
        other.run(site="threads", out=tmp_path / "run")
    with pytest.raises(RunDirError, match="already holds a run of 'tiny'"):
        tiny.run(site="threads", out=tmp_path / "run")
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "thesis.tex").write_text("precious")
    with pytest.raises(RunDirError, match="not a campaign run directory"):
        tiny.run(site="threads", out=tmp_path / "notes")
    assert (tmp_path / "notes" / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    written_earlier = ["report.html", "report-timeline.png", "summary.json", "report.png"]
    for name in written_earlier:  # what the previous run's report and baselines left
        (tmp_path / "run" / name).write_text("old")
    (tmp_path / "run" / "baseline-random-2").mkdir()
    (tmp_path / "run" / "my-notes.txt").write_text("mine")
    summary = tiny.run(site="threads", out=tmp_path / "run", overwrite=True)
    assert summary.rows["fine"] == 12
    left = {p.name for p in (tmp_path / "run").iterdir()}
    assert not left & {*written_earlier, "baseline-random-2"}, left
    assert (tmp_path / "run" / "my-notes.txt").read_text() == "mine"  # not the run's: kept


def test_unknown_site_is_refused_before_anything_is_written(tmp_path, tiny):
    from site_configs import UnknownSiteError

    with pytest.raises(UnknownSiteError, match="known sites: .*local.*threads"):
        tiny.run(site="summit-2", out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_round_budget_and_walker_only_campaign(tmp_path):
    from campaign import Budget, Campaign, Scale

    spec = Campaign(name="sampling", scales=[
        Scale("coarse", app=toy.langevin, params={"n_steps": 1000, "stride": 100},
              walkers=toy.initial_walkers(3))], budget=Budget(rounds=2))
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert summary.stop_reason == "round budget reached (2 rounds)"
    assert summary.rows == {"coarse": 60}


def test_refresh_params_hook_updates_a_scale_from_data(tmp_path):
    from campaign import Budget, Campaign, Scale

    seen = []

    def longer_segments_once_data_exists(data):
        seen.append(len(data["coarse"]))
        return {"n_steps": 2000} if len(data["coarse"]) else {}

    spec = Campaign(name="hooked", scales=[
        Scale("coarse", app=toy.langevin, params={"n_steps": 1000, "stride": 100},
              walkers=toy.initial_walkers(1), refresh_params=longer_segments_once_data_exists)],
        budget=Budget(rounds=3), mode="rounds")
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert seen == [0, 10, 30]
    assert summary.rows == {"coarse": 10 + 20 + 20}


def test_learner_and_acquisition_by_name(tmp_path):
    spec = tiny_campaign(promotion={"learner": "exact_gp", "acquisition": "random"},
                         budget=__import__("campaign").Budget(fine=4))
    assert type(spec.promotions[0].acquisition).__name__ == "Random"
    spec.run(site="threads", out=tmp_path / "run")
    from campaign import SpecError

    with pytest.raises(SpecError, match="unknown acquisition 'best'"):
        tiny_campaign(promotion={"acquisition": "best"})


def test_stopping_rule_ends_the_campaign_and_is_recorded(tmp_path):
    from learners.stopping import AccurateRatio, UncertaintyBelow

    spec = tiny_campaign(budget=__import__("campaign").Budget(fine=200),
                         stopping=[UncertaintyBelow(absolute=1e9)])
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert summary.stop_reason.startswith("stopping rule UncertaintyBelow: uncertainty below")
    assert summary.rows["fine"] < 200
    ledger, _ = open_run(tmp_path / "run")
    assert ledger.fact("stop_rule")[0].startswith("UncertaintyBelow")
    ledger.close()
    never = tiny_campaign(budget=__import__("campaign").Budget(fine=8),
                          stopping=[AccurateRatio(ratio=1.0, lower=1e-12)])
    assert never.run(site="threads", out=tmp_path / "never").stop_reason.startswith(
        "task budget spent")


def test_stopping_items_must_be_rules():
    from campaign import SpecError

    with pytest.raises(SpecError, match=r"stopping: .*item 0 must implement check"):
        tiny_campaign(stopping=["uncertainty"])


def test_calibration_is_recorded_per_round_in_ledger_and_store(tmp_path, tiny):
    tiny.run(site="threads", out=tmp_path / "run")
    ledger, store = open_run(tmp_path / "run")
    scored = [r for r in ledger.rounds("coarse-to-fine") if r.get("calibration")]
    assert scored
    for record in scored:
        calibration = record["calibration"]
        assert 0.0 <= calibration["coverage_50"] <= calibration["coverage_90"] <= 1.0
        assert calibration["n"] == record["n_scored"] == 4
        attrs = store.group[f"models/coarse-to-fine/{record['round']}"].attrs["calibration"]
        assert attrs["z_std"] == pytest.approx(calibration["z_std"])
    ledger.close()
