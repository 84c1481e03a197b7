"""CG force field: gradients, OpenMM consistency, force matching on real AA forces, dynamics."""

import warnings
from dataclasses import replace

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np
import pytest

from apps import cg, md
from apps.featurize import RowDihedrals, dihedral_angles
from apps.mapping import ALANINE_BACKBONE, bead_map

warnings.filterwarnings("ignore", module="MDAnalysis")


@pytest.fixture(scope="module")
def beads():
    return bead_map(mda.Universe(md.ALANINE_DIPEPTIDE_PDB), ALANINE_BACKBONE)


@pytest.fixture(scope="module")
def prior(beads):
    start = beads.positions(mda.Universe(md.ALANINE_DIPEPTIDE_PDB).atoms.positions)
    return cg.chain_force_field(beads.masses, start, order=2, names=beads.names)


@pytest.fixture(scope="module")
def aa_frames(beads):
    """Mapped positions and forces from three real restrained AA windows (OBC2)."""
    atoms = [a[0] for a in beads.atom_indices]
    molecular = md.build_system()
    positions, forces = [], []
    for seed in range(3):
        out = md.restrained_window(molecular.positions.ravel(), seed=seed,
                                   dihedrals=np.array([atoms[0:4], atoms[1:5]]), n_steps=2000,
                                   stride=20, equilibration=200,
                                   bead_weights=beads.position_weights,
                                   bead_force_weights=beads.force_weights)
        positions.append(out["bead_positions"].reshape(-1, 5, 3))
        forces.append(out["bead_forces"].reshape(-1, 5, 3))
    return np.concatenate(positions), np.concatenate(forces)


def test_dihedral_gradients_match_finite_differences():
    points = np.random.default_rng(0).normal(size=(5, 4, 3))
    analytic = cg.dihedral_gradients(points)
    numeric = np.zeros_like(points)
    h = 1e-6
    for atom in range(4):
        for axis in range(3):
            up, down = points.copy(), points.copy()
            up[:, atom, axis] += h
            down[:, atom, axis] -= h
            numeric[:, atom, axis] = (dihedral_angles(up) - dihedral_angles(down)) / (2 * h)
    np.testing.assert_allclose(analytic, numeric, atol=1e-6)


def test_openmm_correction_matches_the_fourier_basis(prior):
    rng = np.random.default_rng(1)
    model = replace(prior, weights=rng.normal(size=prior.weights.shape))
    assert len(model.weights) == 24  # (2 * 2 + 1)^2 - 1
    X = prior_positions(prior)[None] + rng.normal(scale=0.2, size=(6, 5, 3))
    energy, forces = cg.cg_forces(model, X)
    prior_energy, prior_forces = cg.cg_forces(prior, X)
    values, _ = cg.correction_basis(dihedral_angles(X[:, prior.torsions]), prior.order)
    np.testing.assert_allclose(energy - prior_energy, values @ model.weights, atol=1e-8)
    design = cg._correction_design(model, X)
    np.testing.assert_allclose(forces - prior_forces, design @ model.weights, atol=1e-6)


def prior_positions(force_field):
    """A chain with the prior's bond lengths, angles 110 degrees, phi=-70, psi=140."""
    from apps.backmap import rotate_dihedral

    p = np.zeros((5, 3))
    for i in range(1, 5):
        angle = np.radians(110.0) * i
        direction = np.array([np.cos(angle), np.sin(angle), 0.1 * i])
        p[i] = p[i - 1] + force_field.bond_r0[i - 1] * direction
    bonds = [(i, i + 1) for i in range(4)]
    p = rotate_dihedral(p, bonds, (0, 1, 2, 3), np.radians(-70))
    return rotate_dihedral(p, bonds, (1, 2, 3, 4), np.radians(140))


def random_conformation(force_field, rng):
    from apps.backmap import rotate_dihedral

    p = prior_positions(force_field)
    bonds = [(i, i + 1) for i in range(4)]
    p = rotate_dihedral(p, bonds, (0, 1, 2, 3), rng.uniform(-np.pi, np.pi))
    p = rotate_dihedral(p, bonds, (1, 2, 3, 4), rng.uniform(-np.pi, np.pi))
    return p + rng.normal(scale=0.05, size=p.shape)


def test_force_matching_recovers_known_weights(prior):
    rng = np.random.default_rng(2)
    truth = replace(prior, weights=rng.normal(scale=2.0, size=prior.weights.shape))
    # Frames all over (phi, psi): a narrow range would leave the Fourier terms collinear.
    X = np.array([random_conformation(prior, rng) for _ in range(600)])
    _, F = cg.cg_forces(truth, X)
    F += rng.normal(scale=2.0, size=F.shape)  # kJ/(mol Å) of noise
    fitted = cg.fit_force_matching(prior, X, F, ridge=1e-8, refit_prior=False)
    np.testing.assert_allclose(fitted.weights, truth.weights, atol=0.3)


def test_force_matching_on_aa_forces_beats_the_prior_on_held_out_frames(prior, aa_frames):
    positions, forces = aa_frames
    train, test = slice(0, None, 2), slice(1, None, 2)
    prior_only = cg.fit_boltzmann_prior(prior, positions[train])
    fitted = cg.fit_force_matching(prior, positions[train], forces[train])
    prior_error = cg.force_matching_error(prior_only, positions[test], forces[test])
    fitted_error = cg.force_matching_error(fitted, positions[test], forces[test])
    assert fitted_error < prior_error
    assert np.all(fitted.bond_r0 > 1.2) and np.all(fitted.bond_r0 < 1.6)  # Å, C-N and C-C


def test_refresh_hook_fits_from_store_rows(prior, aa_frames):
    from campaign.store import ScaleData

    positions, forces = aa_frames
    rows = len(positions) // 10
    data = {"aa": ScaleData(x=np.zeros((rows, 66)),
                            y={"bead_positions": positions[: rows * 10].reshape(rows, 10, 15),
                               "bead_forces": forces[: rows * 10].reshape(rows, 10, 15)},
                            meta={})}
    hook = cg.ForceMatchingRefresh(prior, source="aa")
    params = hook(data)["force_field"]
    assert np.any(params["weights"] != 0)
    assert cg.CGForceField.from_params(params).order == 2
    empty = {"aa": ScaleData(x=np.zeros((0, 66)), y={}, meta={})}
    np.testing.assert_array_equal(hook(empty)["force_field"]["weights"], 0.0)


def test_langevin_app_is_deterministic_continues_and_keeps_bonds(prior, beads, tmp_path):
    start = cg.initial_walkers(prior_positions(prior), beads.masses, 1)[0]
    kwargs = {"force_field": prior.to_params(), "n_steps": 2000, "stride": 100}
    out = cg.langevin(start, seed=5, artifacts_dir=str(tmp_path), **kwargs)
    again = cg.langevin(start, seed=5, **kwargs)
    assert out["x"].shape == (20, 30) and out["energy"].shape == (20,)
    np.testing.assert_array_equal(out["x"], again["x"])
    positions = out["x"][:, :15].reshape(-1, 5, 3)
    bonds = np.linalg.norm(positions[:, 1:] - positions[:, :-1], axis=-1)
    assert np.all(np.abs(bonds - prior.bond_r0) < 0.3)
    following = cg.langevin(out["x"][-1], seed=6, **kwargs)
    assert np.abs(following["x"][0, :15] - out["x"][-1, :15]).max() < 1.5
    cg_files = mda.Universe(str(tmp_path / "5" / "cg.pdb"), str(tmp_path / "5" / "cg.xtc"))
    assert len(cg_files.trajectory) == 20


@pytest.mark.slow
def test_cg_with_a_strong_correction_follows_its_minimum(prior, beads):
    # A correction -20 cos(phi - phi0) should pull phi of the CG walker near phi0 = -80 deg.
    n = cg._wave_vectors(2, prior.order)
    weights = np.zeros(len(prior.weights))
    index = int(np.flatnonzero((n == [1, 0]).all(axis=1))[0])
    phi0 = np.radians(-80)
    weights[index] = -20 * np.cos(phi0)
    weights[len(n) + index] = -20 * np.sin(phi0)
    model = replace(prior, weights=weights)
    start = cg.initial_walkers(prior_positions(prior), beads.masses, 1)[0]
    out = cg.langevin(start, seed=0, force_field=model.to_params(), n_steps=20_000, stride=100)
    phi = RowDihedrals([(0, 1, 2, 3)]).angles(out["x"])[:, 0]
    mean = np.angle(np.mean(np.exp(1j * phi)))
    assert abs(np.angle(np.exp(1j * (mean - phi0)))) < np.radians(30)
