"""AA -> CG mapping on MDAnalysisTests trajectories (AdK, cobrotoxin with forces, capped Ala)."""

import warnings

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np
import pytest
from MDAnalysisTests.datafiles import DCD, PSF, PRMpbc, TPR_xvf, TRJpbc_bz2, TRR_xvf

from apps.mapping import ALANINE_BACKBONE, bead_map, map_trajectory, write_cg_trajectory

warnings.filterwarnings("ignore", module="MDAnalysis")


def test_residue_beads_are_centers_of_mass_on_adk():
    universe = mda.Universe(PSF, DCD)
    protein = universe.select_atoms("protein")
    beads = bead_map(protein)
    assert beads.n_beads == 214 and beads.n_atoms == protein.n_atoms
    positions, forces = map_trajectory(protein, beads, stop=3)
    assert positions.shape == (3, 214, 3) and forces is None
    universe.trajectory[2]
    expected = np.array([r.atoms.center_of_mass() for r in protein.residues])
    np.testing.assert_allclose(positions[2], expected, atol=1e-3)
    np.testing.assert_allclose(beads.masses, [r.atoms.total_mass() for r in protein.residues],
                               rtol=1e-6)
    geometric = bead_map(protein, center="geometry")
    np.testing.assert_allclose(geometric.positions(protein.positions)[0],
                               protein.residues[0].atoms.center_of_geometry(), atol=1e-4)


def test_mapped_forces_are_summed_per_bead_on_cobrotoxin():
    universe = mda.Universe(TPR_xvf, TRR_xvf)
    protein = universe.select_atoms("protein")
    beads = bead_map(protein)
    positions, forces = map_trajectory(protein, beads, stop=2)
    assert forces is not None and forces.shape == positions.shape
    universe.trajectory[1]
    expected = np.array([r.atoms.forces.sum(axis=0) for r in protein.residues])
    np.testing.assert_allclose(forces[1], expected, rtol=1e-5, atol=1e-3)


def test_alanine_backbone_slice_map_and_cg_trajectory_round_trip(tmp_path):
    universe = mda.Universe(PRMpbc, TRJpbc_bz2)
    solute = universe.select_atoms("not resname WAT")
    beads = bead_map(solute, ALANINE_BACKBONE)
    assert beads.names == ("C0", "N1", "CA", "C1", "N2") and beads.single_atom_beads()
    positions, _ = map_trajectory(solute, beads)
    assert positions.shape == (len(universe.trajectory), 5, 3)
    universe.trajectory[4]
    np.testing.assert_allclose(positions[4][2], solute.select_atoms("resname ALA and name CA")
                               .positions[0], atol=1e-5)
    pdb, xtc = write_cg_trajectory(beads.names, beads.masses, positions, tmp_path)
    back = mda.Universe(str(pdb), str(xtc))
    assert len(back.trajectory) == len(positions)
    for frame, _ in enumerate(back.trajectory):
        np.testing.assert_allclose(back.atoms.positions, positions[frame], atol=0.01)
    assert list(back.atoms.names) == list(beads.names)


def test_bad_bead_definitions_raise():
    universe = mda.Universe(PSF, DCD)
    with pytest.raises(ValueError, match="selects no atoms"):
        bead_map(universe, {"A": "name XYZ"})
    with pytest.raises(ValueError, match="share atoms"):
        bead_map(universe, {"A": "resid 1", "B": "resid 1 and name CA"})
    with pytest.raises(ValueError, match="center"):
        bead_map(universe, center="median")
