"""The fixed-pool policy benchmark at its smallest size (``--mode tiny``): pools from the
coarse apps, labels from the fine apps, curves, levels, discovery and calibration; the
summary is recomputed here from the curves."""

import json

import numpy as np
import pytest

from benchmarks.policies import LEVELS, SETTINGS, coarse_pool, main, summarize


def test_coarse_pool_is_walkers_times_segments_and_deterministic():
    from benchmarks.policies import _problems

    problem = _problems()["channel4d"]
    a, b = coarse_pool(problem, 2, seed=3), coarse_pool(problem, 2, seed=3)
    assert a.shape == (4 * 2 * 100, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, coarse_pool(problem, 2, seed=4))


@pytest.mark.slow
def test_tiny_policies_benchmark_records_match_the_curves(tmp_path):
    out = tmp_path / "policies.json"
    assert main(["--mode", "tiny", "--problems", "channel4d,muller_brown", "--json",
                 str(out)]) == 0
    result = json.loads(out.read_text())
    settings = SETTINGS["tiny"]
    runs = result["curves"]
    assert {(r["problem"], r["policy"]) for r in runs} == {
        (p, q) for p in ("channel4d", "muller_brown") for q in settings["policies"]}
    for r in runs:
        assert r["n_labels"][-1] == settings["budget"]
        assert len(r["pool_rmse"]) == len(r["uniform_rmse"]) == len(r["n_labels"])
        assert all(np.isfinite(r["pool_rmse"]))
        assert 0.0 <= r["coverage_90_raw"] <= 1.0
        assert 0.0 <= r["coverage_90_recalibrated"] <= 1.0
        if r["problem"] == "muller_brown":
            assert r["first_rare"] is None and r["pool_rare_fraction"] is None
        else:
            assert r["pool_rare_fraction"] is not None
            assert (r["first_rare"] is None) == (r["rare_labels"] == 0)
    records = {(r["problem"], r["metric"], r["level"], r["policy"]): r
               for r in result["records"]}
    assert records == {(r["problem"], r["metric"], r["level"], r["policy"]): r
                       for r in summarize(runs, settings)}
    censored_at = settings["budget"] + settings["batch_size"]
    for problem in ("channel4d", "muller_brown"):
        random_runs = [r for r in runs if r["problem"] == problem and r["policy"] == "random"]
        target = float(np.median([r["pool_rmse"][-1] for r in random_runs]))
        for r in (r for r in runs if r["problem"] == problem):
            reached = [n for n, e in zip(r["n_labels"], r["pool_rmse"], strict=True)
                       if e <= LEVELS[0] * target]
            record = records[(problem, "pool", f"sims_to_1x_random_final ({target:.3g})",
                              r["policy"])]
            assert record["per_seed"] == [reached[0] if reached else censored_at]
        assert records[(problem, "pool", "sims_to_1x_random_final "
                        f"({target:.3g})", "random")]["ratio_vs_random"] == 1.0
    assert ("channel4d", "discovery", "first_rare_label", "random") in records
    assert ("muller_brown", "discovery", "first_rare_label", "random") not in records
    rare_runs = [r for r in runs if r["problem"] == "channel4d"]
    assert all(len(r["rare_rmse"]) == len(r["n_labels"]) for r in rare_runs)
    assert all(r["rare_rmse"] == [] for r in runs if r["problem"] == "muller_brown")


def test_rare_test_set_is_inside_the_rare_region_and_fixed():
    from apps import landscapes
    from benchmarks.policies import _rare_reference

    X, F = _rare_reference("channel4d")
    assert len(X) >= 100 and landscapes.in_rare_region(X, "channel4d").all()
    np.testing.assert_allclose(F, landscapes.smeared_energy_exact(X, "channel4d"))
    assert len(_rare_reference("muller_brown")[0]) == 0


def test_a_policy_name_can_carry_one_numeric_parameter():
    from benchmarks.policies import _policy
    from learners.acquisition import Explore, IntegratedVariance

    policy = _policy("explore:fraction=0.5")
    assert isinstance(policy, Explore) and policy.fraction == 0.5
    assert isinstance(_policy("integrated_variance"), IntegratedVariance)
    assert _policy("integrated_variance:n_reference=256").n_reference == 256
    for bad in ("explore:fraction", "explore:fraction=half", "explore:speed=2"):
        with pytest.raises(ValueError, match="explore"):
            _policy(bad)
