"""A campaign never lies about success: errors that a new seed would repeat are
quarantined at once, a misspelled quantity stops the run at the first result, results
that change shape are quarantined instead of crashing the commit, and a run whose
promotion committed nothing (or that lost most tasks) is a failure."""

import numpy as np
from conftest import tiny_campaign

from apps import toy
from campaign import Budget
from campaign.ledger import Ledger


def wrong_shape(x, *, seed, **params):
    return {"x": np.atleast_2d(x), "energy": np.zeros(3)}  # 3 values for 1 row


def type_error(x, *, seed, **params):
    return toy.smeared_energy(x, seed=seed, n_samples="many")  # a bug, not bad luck


def shape_changes(x, *, seed, **params):
    out = toy.smeared_energy(x, seed=seed, n_samples=4096)
    if seed % 2:
        out["energy_stderr"] = np.stack([out["energy_stderr"]] * 2, axis=1)  # (1, 2)
    return out


def attempts_per_task(run_dir, scale):
    ledger = Ledger(run_dir / "ledger.sqlite")
    try:
        return [t["attempts"] for t in ledger.tasks(scale)], ledger.tasks(
            scale, status="quarantined")
    finally:
        ledger.close()


def test_a_misshapen_result_is_quarantined_at_once_and_the_run_fails(tmp_path):
    summary = tiny_campaign(mode="async", fine_app=wrong_shape,
                            budget=Budget(fine=8)).run(site="threads", out=tmp_path / "r")
    attempts, quarantined = attempts_per_task(tmp_path / "r", "fine")
    assert attempts and all(a == 1 for a in attempts)  # never retried
    assert all("not retried" in t["reason"] for t in quarantined)
    assert summary.failed and "committed no results" in summary.stop_reason


def test_a_type_error_in_the_app_is_not_retried(tmp_path):
    summary = tiny_campaign(mode="rounds", fine_app=type_error, fine_params={},
                            budget=Budget(fine=4)).run(site="threads", out=tmp_path / "r")
    attempts, quarantined = attempts_per_task(tmp_path / "r", "fine")
    assert attempts == [1] * 4 and len(quarantined) == 4
    assert quarantined[0]["reason"].startswith("after 1 attempt: TypeError")
    assert summary.failed


def test_a_misspelled_quantity_stops_at_the_first_result(tmp_path):
    spec = tiny_campaign(mode="async", promotion={"quantity": "enrgy"},
                         budget=Budget(fine=24))
    summary = spec.run(site="threads", out=tmp_path / "r")
    assert summary.failed
    assert "quantity 'enrgy' is not an output of scale 'fine'" in summary.stop_reason
    attempts, _ = attempts_per_task(tmp_path / "r", "fine")
    assert len(attempts) <= 8  # the seed design's batch at most, not the budget of 24


def test_a_result_that_changes_shape_is_quarantined_not_committed(tmp_path):
    summary = tiny_campaign(mode="rounds", fine_app=shape_changes, fine_params={},
                            budget=Budget(fine=8)).run(site="threads", out=tmp_path / "r")
    _, quarantined = attempts_per_task(tmp_path / "r", "fine")
    assert quarantined and all("differ from the scale's" in t["reason"] for t in quarantined)
    assert summary.rows["fine"] == 8 - len(quarantined) > 0  # the rest committed
    assert not summary.failed  # a minority lost: reported, not a failed run


def test_progress_lines_say_budget_used_and_quarantined(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="campaign.engine")
    tiny_campaign(mode="async", fine_app=shape_changes, fine_params={},
                  budget=Budget(fine=8)).run(site="threads", out=tmp_path / "r")
    last = [r.getMessage() for r in caplog.records if " s | coarse " in r.getMessage()][-1]
    assert "quarantined" in last.split("| fine")[1]
    assert "budget 100% used (fine 8/8 tasks), ~0 s left" in last
