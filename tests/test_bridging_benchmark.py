"""The scale-bridging benchmark's whole pipeline at its smallest size (``--mode tiny``):
AA trajectories, learned vs template backmapping of held-out frames, a CG pool labelled
by AA windows on demand, and the selection methods; the summary is recomputed here."""

import json

import numpy as np
import pytest


@pytest.mark.slow
def test_tiny_bridging_benchmark_records_are_consistent(tmp_path):
    from benchmarks.bridging import RARE_HELICITY, SETTINGS, main

    out = tmp_path / "bridging.json"
    assert main(["--mode", "tiny", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    settings = SETTINGS["tiny"]
    records = result["records"]
    backmapping = {(r["method"], r["metric"]): r for r in records
                   if r["study"] == "backmapping"}
    for method in ("learned", "template"):
        for metric in ("heavy_atom_rmsd", "bond_deviation", "angle_deviation", "clashes",
                       "minimization_steps", "failed_fraction"):
            record = backmapping[(method, metric)]
            assert np.isfinite(record["value"]) and record["value"] >= 0
            assert record["baseline"] == backmapping[("template", metric)]["value"]
        for metric in ("heavy_atom_rmsd_before_minimization", "clashes_before_minimization",
                       "energy_before_minimization"):
            record = backmapping[(method, metric)]
            assert np.isfinite(record["value"])
            assert record["baseline"] == backmapping[("template", metric)]["value"]
    assert backmapping[("learned", "heavy_atom_rmsd")]["value"] > 0
    curves = result["curves"][0]
    for name in settings["selection_methods"]:
        curve = curves[name]
        helicity = np.asarray(curve["helicity"])
        assert len(helicity) == settings["budget"]
        assert np.all((helicity >= 0) & (helicity <= 1))
        rare = np.flatnonzero(helicity >= RARE_HELICITY)
        assert curve["first_rare"] == (int(rare[0]) + 1 if len(rare) else None)
        assert curve["n_labels"][-1] == settings["budget"]
    selection = {(r["method"], r["metric"]): r for r in records if r["study"] == "selection"}
    random_final = curves["random"]["rmse"][-1]
    for name in settings["selection_methods"]:
        record = selection[(name, "sims_to_random_final_error")]
        assert record["target_rmse"] == pytest.approx(random_final)
        reached = [n for n, e in zip(curves[name]["n_labels"], curves[name]["rmse"],
                                     strict=True) if e <= random_final]
        expected = reached[0] if reached else settings["budget"] + 1
        assert record["value"] == expected
        assert record["ratio_vs_random"] == pytest.approx(record["baseline"] / record["value"])
