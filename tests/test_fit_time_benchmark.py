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


def test_tiny_scaling_records_fit_condition_memory_and_references():
    settings = {**TINY, "scaling_sizes": [40], "full_exact": [40], "cholesky_sizes": [40],
                "compare": [40], "condition_repeats": 2}
    seen = []
    records = fit_time.scaling(settings, on_record=lambda r: seen.append(len(r)))
    assert seen == [1, 1]  # after the size, and after its full exact fit
    (r,) = records
    assert r["n"] == 40 and r["regime"] == "exact" and r["n_fit_points"] == 40
    assert r["fit_seconds"] > 0 and r["condition_seconds"] > 0
    assert len(r["condition_seconds_all"]) == 2 and r["peak_mib"] > 0
    assert r["rmse"] >= 0 and r["full_exact_rmse"] >= 0 and r["cholesky_seconds"] > 0
    assert r["other"]["learner"].startswith("SparseGP") and r["other"]["rmse"] >= 0
    assert "default n=40 exact" in fit_time.table({"fits": [], "scaling": records})
