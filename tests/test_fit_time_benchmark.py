"""The fit-time benchmark: tiny settings give the promised records, and ``--quick`` runs."""

from __future__ import annotations

import json

import pytest

from benchmarks import fit_time

TINY = {"sizes": [40], "budget": 0.5, "cap": 30.0, "pool": 300, "known": 30, "k": 5,
        "features": 3, "old_warm": [40]}


def test_tiny_run_records_cold_and_warm_fits_and_both_selections():
    report = fit_time.run(TINY, names=["ExactGP", "DeepEnsemble"])
    fits = report["fits"]
    assert {(r["learner"], r["fit"]) for r in fits} == {
        ("ExactGP", "cold"), ("ExactGP", "warm"), ("ExactGP(warm_restarts=2)", "warm"),
        ("DeepEnsemble", "cold"), ("DeepEnsemble", "warm")}
    for r in fits:
        assert {"learner", "n", "fit", "seconds", "steps", "rmse"} <= set(r)
        assert r["n"] == 40 and r["n_train"] in ((40, 44) if r["fit"] == "cold" else (44,))
        assert r["seconds"] > 0 and r["steps"] >= 1 and r["rmse"] >= 0
        assert r["warm_started"] == (r["fit"] == "warm")
    # Each learner: cold on n, warm on 1.1 n, and the cold reference on 1.1 n.
    assert [(r["fit"], r["n_train"]) for r in fits if r["learner"] == "DeepEnsemble"] == [
        ("cold", 40), ("warm", 44), ("cold", 44)]
    assert [r["same_picks"] for r in report["selection"]] == [True, True]
    assert "LocalOutlier" in fit_time.table(report)
    json.dumps(report)


@pytest.mark.slow
def test_quick_mode_runs(tmp_path, capsys):
    path = tmp_path / "fit_time.json"
    fit_time.main(["--quick", "--json", str(path)])
    report = json.loads(path.read_text())
    assert report["quick"] and {r["n"] for r in report["fits"]} == {100, 300}
    assert {r["learner"] for r in report["fits"]} >= {"ExactGP", "DeepEnsemble"}
    assert "ExactGP" in capsys.readouterr().out
