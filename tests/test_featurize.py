"""Featurizers checked against MDAnalysis' own analyses on real trajectories."""

import warnings

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np
import pytest
from MDAnalysis.analysis.dihedrals import Ramachandran
from MDAnalysis.analysis.rms import RMSD
from MDAnalysis.lib.distances import distance_array
from MDAnalysisTests.datafiles import DCD, PSF, PRMpbc, TRJpbc_bz2

from apps.featurize import (
    BackboneDihedrals,
    ContactMap,
    PairwiseDistances,
    RadiusOfGyration,
    RMSDToReference,
    RowDihedrals,
    dihedral_angles,
)
from apps.mapping import ALANINE_BACKBONE, bead_map, map_trajectory

warnings.filterwarnings("ignore", module="MDAnalysis")


@pytest.fixture(scope="module")
def adk():
    return mda.Universe(PSF, DCD)


def test_backbone_dihedrals_match_mdanalysis_ramachandran_on_adk(adk):
    protein = adk.select_atoms("resid 2-30")
    ours = BackboneDihedrals(protein).run(stop=10)
    theirs = Ramachandran(adk.select_atoms("resid 3-29")).run(stop=10)
    assert ours.results.angles.shape == theirs.results.angles.shape
    np.testing.assert_allclose(np.degrees(ours.results.angles), theirs.results.angles, atol=1e-3)
    a = ours.results.angles
    np.testing.assert_allclose(ours.results.features[:, 0], np.sin(a[:, 0, 0]))
    np.testing.assert_allclose(ours.results.features[:, 3], np.cos(a[:, 0, 1]))
    assert ours.results.features.dtype == np.float64


def test_alanine_dipeptide_phi_psi_from_atoms_and_from_cg_rows_agree():
    universe = mda.Universe(PRMpbc, TRJpbc_bz2)
    solute = universe.select_atoms("not resname WAT")
    atomistic = BackboneDihedrals(solute).run()
    assert [r.resname for r in atomistic.residues] == ["ALA"]
    theirs = Ramachandran(solute.select_atoms("resname ALA")).run()
    np.testing.assert_allclose(np.degrees(atomistic.results.angles), theirs.results.angles,
                               atol=1e-3)
    positions, _ = map_trajectory(solute, bead_map(solute, ALANINE_BACKBONE))
    rows = positions.reshape(len(positions), -1)
    features = RowDihedrals([(0, 1, 2, 3), (1, 2, 3, 4)])
    np.testing.assert_allclose(features.angles(rows), atomistic.results.angles[:, 0], atol=1e-5)
    np.testing.assert_allclose(features(rows), atomistic.results.features, atol=1e-5)


def test_dihedral_angles_known_values():
    trans = np.array([[1.0, 1, 0], [0, 0, 0], [1, 0, 0], [0, -1, 0]])
    assert dihedral_angles(trans) == pytest.approx(np.pi)
    gauche = np.array([[0.0, 1, 0], [0, 0, 0], [1, 0, 0], [1, 0, 1]])
    assert dihedral_angles(gauche) == pytest.approx(np.pi / 2)


def test_pairwise_distances_and_contacts_match_distance_array(adk):
    ca = adk.select_atoms("name CA and resid 1-40")
    distances = PairwiseDistances(ca).run(stop=5).results.distances
    contacts = ContactMap(ca, cutoff=8.0).run(stop=5).results
    adk.trajectory[4]
    full = distance_array(ca.positions, ca.positions)
    upper = np.triu_indices(ca.n_atoms, 1)
    np.testing.assert_allclose(distances[4], full[upper], rtol=1e-5)
    expected = (full < 8.0) & ~np.eye(ca.n_atoms, dtype=bool)
    np.testing.assert_array_equal(contacts.contacts[4], expected)
    assert contacts.fraction.shape == (40, 40)


def test_rmsd_matches_mdanalysis_rms(adk):
    ca = adk.select_atoms("name CA")
    ours = RMSDToReference(ca).run(stop=20).results.rmsd
    theirs = RMSD(ca, ca, ref_frame=0).run(stop=20).results.rmsd[:, 2]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
    assert ours[0] == pytest.approx(0.0, abs=1e-5)


def test_radius_of_gyration_matches_atomgroup(adk):
    protein = adk.select_atoms("protein")
    rgyr = RadiusOfGyration(protein).run(step=20).results.rgyr
    expected = [protein.radius_of_gyration() for _ in adk.trajectory[::20]]
    np.testing.assert_allclose(rgyr, expected, rtol=1e-5)
