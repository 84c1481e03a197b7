"""All-atom OpenMM segments on alanine dipeptide (implicit and explicit solvent)."""

import warnings

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np
import pytest
from MDAnalysisTests.datafiles import PRM7_ala2, RST7_ala2

from apps import md
from apps.featurize import dihedral_angles
from apps.mapping import ALANINE_BACKBONE, bead_map

N_ALA = 22


def test_load_structure_reads_pdb_amber_pair_and_universe():
    topology, positions = md.load_structure(md.ALANINE_DIPEPTIDE_PDB)
    assert topology.getNumAtoms() == N_ALA and positions.shape == (N_ALA, 3)
    assert topology.getNumBonds() == 21
    topology, positions = md.load_structure((PRM7_ala2, RST7_ala2))
    assert topology.getNumAtoms() == 3026 and topology.getPeriodicBoxVectors() is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        universe = mda.Universe(md.ALANINE_DIPEPTIDE_PDB)
    topology, from_universe = md.load_structure(universe.atoms)
    assert topology.getNumBonds() == 21
    np.testing.assert_allclose(from_universe, universe.atoms.positions, atol=1e-4)


def test_build_system_rejects_unknown_solvent():
    with pytest.raises(ValueError, match="solvent"):
        md.build_system(solvent="water")


def test_segment_shapes_units_and_determinism(tmp_path):
    kwargs = {"n_steps": 200, "stride": 50, "threads": 1}
    first = md.segment(np.zeros(0), seed=3, artifacts_dir=str(tmp_path), **kwargs)
    again = md.segment(np.zeros(0), seed=3, **kwargs)
    assert first["x"].shape == (4, 6 * N_ALA)
    assert first["energy"].shape == (4,) and first["forces"].shape == (4, 3 * N_ALA)
    np.testing.assert_array_equal(first["x"], again["x"])
    # The trajectory on disk holds the returned frames (DCD keeps float32 Å).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        universe = mda.Universe(str(tmp_path / "3" / "topology.pdb"),
                                str(tmp_path / "3" / "trajectory.dcd"))
    assert len(universe.trajectory) == 4
    universe.trajectory[-1]
    np.testing.assert_allclose(universe.atoms.positions.ravel(), first["x"][-1, : 3 * N_ALA],
                               atol=1e-3)
    # Bonded C-H lengths are held by the HBonds constraints (Amber: 1.09 Å).
    positions = first["x"][:, : 3 * N_ALA].reshape(4, N_ALA, 3)
    assert np.allclose(np.linalg.norm(positions[:, 0] - positions[:, 1], axis=1), 1.09, atol=0.01)


def test_segment_continues_from_the_last_row():
    first = md.segment(np.zeros(0), seed=1, n_steps=100, stride=100)
    second = md.segment(first["x"][-1], seed=2, n_steps=10, stride=10)
    # 10 steps (20 fs) later: every atom moved, none by more than 0.5 Å.
    step = np.abs(second["x"][0, : 3 * N_ALA] - first["x"][-1, : 3 * N_ALA])
    assert 0 < step.max() < 0.5
    with pytest.raises(ValueError, match="3N or 6N"):
        md.segment(np.zeros(10), seed=0, n_steps=10, stride=10)


def test_forces_are_the_negative_energy_gradient():
    out = md.segment(np.zeros(0), seed=0, n_steps=20, stride=20, constraints=None,
                     solvent="vacuum", minimize=False, timestep=0.5)
    molecular = md.build_system(solvent="vacuum", constraints=None)
    simulation = md.make_simulation(molecular)
    x = out["x"][0, : 3 * N_ALA].reshape(N_ALA, 3)
    h, atom = 1e-3, 8  # Å, the CA atom
    energies = []
    for sign in (1, -1):
        shifted = x.copy()
        shifted[atom, 0] += sign * h
        simulation.context.setPositions(shifted / md.NM)
        state = simulation.context.getState(getEnergy=True)
        energies.append(state.getPotentialEnergy()._value)
    numeric = -(energies[0] - energies[1]) / (2 * h)
    assert out["forces"][0, 3 * atom] == pytest.approx(numeric, rel=1e-3, abs=0.05)


def test_restrained_window_holds_dihedrals_and_maps_forces(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        beads = bead_map(mda.Universe(md.ALANINE_DIPEPTIDE_PDB), ALANINE_BACKBONE)
    atoms = [a[0] for a in beads.atom_indices]
    dihedrals = np.array([atoms[0:4], atoms[1:5]])
    molecular = md.build_system()
    x = molecular.positions.ravel()
    target = dihedral_angles(molecular.positions[dihedrals])
    out = md.restrained_window(x, seed=0, dihedrals=dihedrals, n_steps=500, stride=50,
                               equilibration=100, bead_weights=beads.position_weights,
                               bead_force_weights=beads.force_weights,
                               artifacts_dir=str(tmp_path))
    assert out["x"].shape == (1, 3 * N_ALA)
    assert out["energy"].shape == (1,) and out["energy_stderr"][0] > 0
    assert -200 < out["energy"][0] < 100  # kJ/mol, amber14 + OBC2 near the minimum
    difference = np.angle(np.exp(1j * (out["dihedrals"][0] - target)))
    assert np.all(np.abs(difference) < np.radians(15))
    assert out["bead_positions"].shape == (1, 10, 15) and out["bead_forces"].shape == (1, 10, 15)
    assert (tmp_path / "0" / "trajectory.dcd").exists()


@pytest.mark.slow
def test_explicit_tip3p_segment_on_amber_files():
    out = md.segment(np.zeros(0), seed=0, structure=(PRM7_ala2, RST7_ala2), solvent="tip3p",
                     n_steps=20, stride=10, minimize=False)
    assert out["x"].shape == (2, 6 * 3026)
    assert np.all(np.isfinite(out["energy"])) and out["energy"].max() < 0
