"""Deca-alanine: helicity, the CA map, the AA window app and the separable CG model."""

import json
from dataclasses import replace

import numpy as np
import pytest
from openmm import app

from apps import cg, peptide
from apps.featurize import dihedral_angles


def pdb_positions(path):
    return np.asarray(app.PDBFile(path).getPositions(asNumpy=True)._value) * 10.0


@pytest.fixture(scope="module")
def separable():
    """The CA chain with a separable order-2 correction, random weights, repulsion on."""
    beads = peptide.ca_map()
    base = cg.chain_force_field(beads.masses, peptide.cg_start(peptide.HELIX_PDB),
                                torsions=peptide.CG_TORSIONS, order=2, coupling="separable",
                                repulsion_sigma=5.5, names=beads.names)
    weights = np.random.default_rng(3).normal(scale=2.0, size=base.weights.shape)
    return replace(base, weights=weights)


def test_helicity_of_the_shipped_structures():
    helix, extended = pdb_positions(peptide.HELIX_PDB), pdb_positions(peptide.EXTENDED_PDB)
    assert peptide.backbone_dihedrals(helix[None]).shape == (1, 8, 2)
    assert peptide.helicity(helix[None])[0] == pytest.approx(1.0)
    assert peptide.helicity(extended.ravel())[0] == 0.0
    # the CA pseudo-dihedrals of the helix lie near +50 degrees, inside the helical range
    angles = np.degrees(peptide.ca_dihedrals(peptide.cg_start(peptide.HELIX_PDB)))
    assert angles.shape == (1, 7) and np.all((angles > 40) & (angles < 60))
    assert peptide.ca_helicity(peptide.cg_start(peptide.HELIX_PDB))[0] == 1.0
    assert peptide.ca_helicity(peptide.cg_start())[0] == 0.0


def test_ca_map_has_one_bead_per_residue_at_its_ca():
    beads = peptide.ca_map()
    positions = pdb_positions(peptide.HELIX_PDB)
    names = [atom.name for atom in app.PDBFile(peptide.HELIX_PDB).topology.atoms()]
    ca = [i for i, name in enumerate(names) if name == "CA"]
    assert beads.n_beads == 10 and beads.n_atoms == 103 and beads.single_atom_beads()
    assert beads.names == tuple(f"CA{i}" for i in range(1, 11))
    np.testing.assert_allclose(beads.positions(positions), positions[ca])
    # forces: every atom in exactly one bead (its residue); masses: residue masses
    np.testing.assert_array_equal(beads.force_weights.sum(axis=0), np.ones(103))
    assert beads.masses[1] == pytest.approx(71.08, abs=0.01)
    assert beads.masses.sum() == pytest.approx(728.8, abs=0.1)
    # rows (F, 60) use their first 30 numbers
    rows = np.hstack([beads.positions(positions).reshape(1, -1), np.zeros((1, 30))])
    np.testing.assert_allclose(peptide.ca_dihedrals(rows),
                               peptide.ca_dihedrals(beads.positions(positions)[None]))


def test_aa_window_returns_the_documented_rows():
    out = peptide.aa_window(np.empty(0), seed=3, n_steps=50, equilibration=0, stride=25)
    shapes = {"helicity": (1,), "end_to_end": (1,), "energy": (1,), "aa_frames": (1, 2 * 309),
              "bead_positions": (1, 60), "bead_forces": (1, 60), "x": (1, 309)}
    assert {key: value.shape for key, value in out.items()} == shapes
    assert all(np.all(np.isfinite(value)) for value in out.values())
    assert 0.5 <= out["helicity"][0] <= 1.0  # 0.2 ps from the helix
    frames = out["aa_frames"].reshape(2, 103, 3)
    np.testing.assert_allclose(out["bead_positions"].reshape(2, 10, 3),
                               peptide.ca_map().positions(frames))
    # from given positions: x is echoed
    again = peptide.aa_window(out["x"][0], seed=4, n_steps=25, equilibration=25, stride=25)
    np.testing.assert_array_equal(again["x"], out["x"])


def test_separable_basis_size_and_values():
    angles = np.random.default_rng(0).uniform(-np.pi, np.pi, size=(5, 7))
    values, derivatives = cg.correction_basis(angles, 3, "separable")
    assert values.shape == (5, 42) and derivatives.shape == (5, 42, 7)
    assert cg.n_correction_terms(7, 3, "separable") == 42
    assert cg.n_correction_terms(2, 2) == 24  # joint, unchanged
    # cosines first, torsion-major: column 1 is cos(2 theta_0), column 21 + 3 sin(1 theta_1)
    np.testing.assert_allclose(values[:, 1], np.cos(2 * angles[:, 0]))
    np.testing.assert_allclose(values[:, 21 + 3], np.sin(angles[:, 1]))
    np.testing.assert_allclose(derivatives[:, 21 + 3, 1], np.cos(angles[:, 1]))
    assert np.all(derivatives[:, 21 + 3, [0, 2, 3, 4, 5, 6]] == 0)
    with pytest.raises(ValueError, match="coupling"):
        cg.correction_basis(angles, 3, "pairwise")


def test_separable_forces_match_energy_finite_differences(separable):
    rng = np.random.default_rng(1)
    X = peptide.cg_start(peptide.HELIX_PDB)[None] + rng.normal(scale=0.3, size=(2, 10, 3))
    energy, forces = cg.cg_forces(separable, X)
    prior_energy, _ = cg.cg_forces(replace(separable, weights=0 * separable.weights), X)
    values, _ = cg.correction_basis(dihedral_angles(X[:, separable.torsions]), 2, "separable")
    np.testing.assert_allclose(energy - prior_energy, values @ separable.weights, atol=1e-6)
    h = 1e-5
    steps = h * np.eye(30).reshape(30, 1, 10, 3)  # (30 displacements, 1, 10, 3)
    shifted = np.concatenate([X[None] + steps, X[None] - steps])  # (60, 2, 10, 3)
    shifted_energy = cg.cg_forces(separable, shifted.reshape(-1, 10, 3))[0].reshape(2, 30, 2)
    numeric = -((shifted_energy[0] - shifted_energy[1]) / (2 * h)).T.reshape(2, 10, 3)
    np.testing.assert_allclose(forces, numeric, atol=1e-3 * np.abs(numeric).max())
    # the repulsion is on: the helix's i, i+3 beads (about 5.2 Å) are inside 5.5 Å
    no_repulsion = replace(separable, repulsion_sigma=0.0)
    assert cg.cg_forces(no_repulsion, X)[0][0] < energy[0]


def test_force_matching_recovers_separable_weights(separable):
    rng = np.random.default_rng(2)
    start = peptide.cg_start(peptide.HELIX_PDB)
    X = start[None] + rng.normal(scale=0.6, size=(40, 10, 3))
    _, forces = cg.cg_forces(separable, X)
    prior = replace(separable, weights=np.zeros_like(separable.weights))
    fitted = cg.fit_force_matching(prior, X, forces, ridge=1e-12, refit_prior=False)
    np.testing.assert_allclose(fitted.weights, separable.weights, atol=1e-6)
    assert cg.force_matching_error(fitted, X, forces) < 1e-6


def test_params_round_trip_and_old_params_stay_joint(separable, tmp_path):
    params = separable.to_params()
    assert params["coupling"] == "separable" and params["repulsion_sigma"] == 5.5
    again = cg.CGForceField.from_params(params)
    assert again.coupling == "separable" and again.repulsion_sigma == 5.5
    old = {k: v for k, v in params.items()
           if k not in ("coupling", "repulsion_sigma", "repulsion_epsilon")}
    old["torsions"], old["weights"] = params["torsions"][:1], np.zeros(24)
    old["order"] = 2
    assert cg.CGForceField.from_params(old).coupling == "joint"
    path = peptide.save_cg_model(separable, tmp_path / "model.json", settings={"order": 2})
    loaded = peptide.load_cg_model(path)
    for key, value in separable.to_params().items():
        np.testing.assert_array_equal(np.asarray(getattr(loaded, key)), np.asarray(value))
    assert json.loads(path.read_text())["settings"] == {"order": 2}


def test_shipped_cg_model_runs_with_the_langevin_app():
    record = json.loads(peptide.CG_MODEL_PATH.read_text())
    assert {"settings", "openmm_version", "force_matching"} <= set(record)
    model = peptide.load_cg_model()
    assert model.coupling == "separable" and model.n_beads == 10
    assert record["force_matching"]["fitted_rmse"] < record["force_matching"]["prior_rmse"]
    rows = peptide.cg_pool(model, n_walkers=2, n_steps=400, stride=100, seed=5)
    assert rows.shape == (8, 60) and np.all(np.isfinite(rows))
    positions = rows[:, :30].reshape(-1, 10, 3)
    bonds = np.linalg.norm(np.diff(positions, axis=1), axis=-1)
    assert np.all(np.abs(bonds - 3.8) < 0.3)  # CA-CA of trans peptides
    assert peptide.ca_helicity(rows).shape == (8,)
