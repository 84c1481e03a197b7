"""CG -> AA backmapping of alanine dipeptide: geometry, energy bound, round trip."""

import warnings

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np
import pytest

from apps import cg, md
from apps.backmap import Backmapper, rotate_dihedral, superpose
from apps.featurize import dihedral_angles
from apps.mapping import ALANINE_BACKBONE, bead_map

warnings.filterwarnings("ignore", module="MDAnalysis")

# Minimized template energy in vacuum (amber14) is about -90 kJ/mol; every backmapped
# conformation of the allowed Ramachandran regions must end below this bound.
ENERGY_BOUND = -20.0  # kJ/mol
ROUND_TRIP_TOLERANCE = 0.05  # Å, beads of the result vs the input beads
REGIONS = {"alpha_R": (-63, -42), "beta": (-120, 130), "PPII": (-75, 145),
           "alpha_L": (60, 45), "C7ax": (70, -70)}


@pytest.fixture(scope="module")
def beads():
    return bead_map(mda.Universe(md.ALANINE_DIPEPTIDE_PDB), ALANINE_BACKBONE)


@pytest.fixture(scope="module")
def backmapper(beads):
    return Backmapper(beads)


def _targets(backmapper, beads, phi, psi, seed):
    rng = np.random.default_rng(seed)
    aa = backmapper.template_at(np.radians([phi, psi]))
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return beads.positions(aa) @ rotation + rng.normal(scale=5.0, size=3)


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_backmapped_structure_is_sound_and_maps_back(region, backmapper, beads):
    phi, psi = REGIONS[region]
    target = _targets(backmapper, beads, phi, psi, seed=len(region))
    aa = backmapper.backmap(target)
    assert aa.shape == (22, 3)
    # 1. the beads of the result map back onto the input
    assert np.abs(beads.positions(aa) - target).max() < ROUND_TRIP_TOLERANCE
    got = np.degrees(dihedral_angles(beads.positions(aa)[[[0, 1, 2, 3], [1, 2, 3, 4]]]))
    assert np.allclose(got, (phi, psi), atol=3.0)
    # 2. bond lengths within 0.05 Å of the force field's equilibrium lengths
    bonds, reference = _equilibrium_bonds()
    length = np.linalg.norm(aa[bonds[:, 0]] - aa[bonds[:, 1]], axis=1)
    assert np.abs(length - reference).max() < 0.05
    # 3. no clashes: the minimized energy is below the bound and non-bonded heavy atoms
    # (more than two bonds apart) are at least 2.5 Å apart
    assert backmapper.energy(aa) < ENERGY_BOUND
    heavy = [a.index for a in md.load_structure(md.ALANINE_DIPEPTIDE_PDB)[0].atoms()
             if a.element.symbol != "H"]
    near = _within_two_bonds(np.array(backmapper.bonds), 22)
    for i in heavy:
        for j in heavy:
            if i < j and not near[i, j]:
                assert np.linalg.norm(aa[i] - aa[j]) > 2.5


def _equilibrium_bonds():
    import openmm

    system = md.build_system(solvent="vacuum", constraints=None).system
    force = next(f for f in system.getForces() if isinstance(f, openmm.HarmonicBondForce))
    rows = [force.getBondParameters(b) for b in range(force.getNumBonds())]
    pairs = np.array([(i, j) for i, j, _, _ in rows])
    return pairs, np.array([r0._value * md.NM for _, _, r0, _ in rows])


def _within_two_bonds(bonds, n):
    adjacency = np.eye(n, dtype=int)
    adjacency[bonds[:, 0], bonds[:, 1]] = adjacency[bonds[:, 1], bonds[:, 0]] = 1
    return (adjacency @ adjacency) > 0


def test_backmapping_cg_dynamics_frames(backmapper, beads):
    start = beads.positions(backmapper.template_at(np.radians([-70, 140])))
    ff = cg.chain_force_field(beads.masses, start)
    frames = cg.langevin(cg.initial_walkers(start, beads.masses, 1)[0], seed=1,
                         force_field=ff.to_params(), n_steps=3000, stride=1000)["x"]
    for row in frames:
        aa = backmapper(row).reshape(22, 3)
        assert np.abs(beads.positions(aa) - row[:15].reshape(5, 3)).max() < ROUND_TRIP_TOLERANCE


def test_rotate_dihedral_sets_the_angle_and_keeps_bonds(backmapper, beads):
    positions = backmapper.template.copy()
    atoms = [a[0] for a in beads.atom_indices]
    rotated = rotate_dihedral(positions, backmapper.bonds, atoms[0:4], 1.0)
    assert dihedral_angles(rotated[atoms[0:4]]) == pytest.approx(1.0)
    bonds = np.array(backmapper.bonds)
    def lengths(p):
        return np.linalg.norm(p[bonds[:, 0]] - p[bonds[:, 1]], axis=1)

    np.testing.assert_allclose(lengths(rotated), lengths(positions))
    with pytest.raises(ValueError, match="not bonded"):
        rotate_dihedral(positions, backmapper.bonds, (0, 1, 8, 9), 0.0)


def test_superpose_recovers_a_rigid_motion():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(6, 3))
    rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotation *= np.sign(np.linalg.det(rotation))
    moved = points @ rotation + [1.0, 2.0, 3.0]
    R, t = superpose(points, moved)
    np.testing.assert_allclose(points @ R + t, moved, atol=1e-10)
