"""AA -> CG mapping: beads from selections, mapped positions and forces, CG trajectories.

A :class:`BeadMap` is two (B, N) matrices over the N atoms of a Universe: position weights
(each row sums to 1: center of mass or of geometry of the bead's atoms) and force weights
(1 for the bead's atoms). For beads that share no atom, summing the atomic forces of each
bead is the consistent force map of Noid et al. (J. Chem. Phys. 128, 244114, 2008): the
mapped force's conditional mean is the mean force of the CG potential of mean force, which
is what force matching fits.

Positions in Å, forces in kJ/(mol Å) (MDAnalysis' units).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np
from MDAnalysis.core.groups import AtomGroup

__all__ = [
    "ALANINE_BACKBONE",
    "BeadMap",
    "bead_map",
    "cg_universe",
    "map_trajectory",
    "write_cg_trajectory",
]

ALANINE_BACKBONE: dict[str, str] = {
    "C0": "resname ACE and name C",
    "N1": "resname ALA and name N",
    "CA": "resname ALA and name CA",
    "C1": "resname ALA and name C",
    "N2": "resname NME and name N",
}
"""Five-bead backbone of alanine dipeptide: phi is the dihedral of beads 0-3, psi of 1-4."""


@dataclass(frozen=True)
class BeadMap:
    """A linear AA -> CG map.

    Attributes:
        names: bead names, length B.
        position_weights: (B, N) float64, rows sum to 1.
        force_weights: (B, N) float64, 1 where an atom belongs to the bead.
        atom_indices: per bead, the 0-based indices (within the mapped atoms) of its atoms.
        masses: (B,) amu, the summed masses of each bead's atoms.
    """

    names: tuple[str, ...]
    position_weights: np.ndarray
    force_weights: np.ndarray
    atom_indices: tuple[tuple[int, ...], ...]
    masses: np.ndarray

    @property
    def n_beads(self) -> int:
        """B."""
        return len(self.names)

    @property
    def n_atoms(self) -> int:
        """N, the atoms the map is defined over."""
        return int(self.position_weights.shape[1])

    def positions(self, positions: np.ndarray) -> np.ndarray:
        """Map atom positions (..., N, 3) to bead positions (..., B, 3), same units."""
        return np.einsum("bn,...nk->...bk", self.position_weights,
                         np.asarray(positions, dtype=np.float64))

    def forces(self, forces: np.ndarray) -> np.ndarray:
        """Map atomic forces (..., N, 3) to bead forces (..., B, 3), same units."""
        return np.einsum("bn,...nk->...bk", self.force_weights,
                         np.asarray(forces, dtype=np.float64))

    def single_atom_beads(self) -> bool:
        """True when every bead is exactly one atom (a slice map)."""
        return all(len(atoms) == 1 for atoms in self.atom_indices)


def bead_map(atoms: AtomGroup | mda.Universe, beads: Mapping[str, str] | None = None, *,
             center: str = "mass") -> BeadMap:
    """Build a :class:`BeadMap` over ``atoms``.

    Args:
        atoms: the atoms the map applies to (a Universe means all its atoms); bead atoms
            are found among them.
        beads: ``{bead name: MDAnalysis selection string}``, applied within ``atoms``; None
            gives one bead per residue (named ``<resname><resid>``).
        center: ``"mass"`` (center of mass) or ``"geometry"``.

    Returns:
        The map, columns in the order of ``atoms``.

    Raises:
        ValueError: an empty bead, a bead sharing atoms with another (the summed force
            map would not be consistent), or an unknown ``center``.
    """
    atoms = atoms.atoms
    if center not in ("mass", "geometry"):
        raise ValueError(f"center must be 'mass' or 'geometry'; got {center!r}")
    if beads is None:
        groups = {f"{r.resname}{r.resid}": r.atoms & atoms for r in atoms.residues}
    else:
        groups = {name: atoms.select_atoms(selection) for name, selection in beads.items()}
    column = {int(ix): position for position, ix in enumerate(atoms.ix)}
    n_beads, n_atoms = len(groups), atoms.n_atoms
    W = np.zeros((n_beads, n_atoms))
    D = np.zeros((n_beads, n_atoms))
    members: list[tuple[int, ...]] = []
    masses = np.zeros(n_beads)
    for b, (name, group) in enumerate(groups.items()):
        if group.n_atoms == 0:
            raise ValueError(f"bead {name!r} selects no atoms")
        cols = [column[int(ix)] for ix in group.ix]
        weights = (group.masses.astype(np.float64) if center == "mass"
                   else np.ones(group.n_atoms))
        W[b, cols] = weights / weights.sum()
        D[b, cols] = 1.0
        members.append(tuple(cols))
        masses[b] = float(group.masses.sum())
    if np.any(D.sum(axis=0) > 1):
        shared = np.flatnonzero(D.sum(axis=0) > 1).tolist()
        raise ValueError(f"beads share atoms (columns {shared}); the force map needs "
                         "disjoint beads")
    return BeadMap(tuple(groups), W, D, tuple(members), masses)


def map_trajectory(atoms: AtomGroup | mda.Universe, bead: BeadMap, *, start: int | None = None,
                   stop: int | None = None, step: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """Map every frame of ``atoms``' trajectory.

    Returns:
        ``(positions (F, B, 3) Å, forces (F, B, 3) kJ/(mol Å) or None when the trajectory
        has no forces)``.

    Raises:
        ValueError: if ``atoms`` does not have the map's atom count.
    """
    atoms = atoms.atoms
    if atoms.n_atoms != bead.n_atoms:
        raise ValueError(f"map is over {bead.n_atoms} atoms; got {atoms.n_atoms}")
    positions, forces = [], []
    trajectory = atoms.universe.trajectory
    for ts in trajectory[start:stop:step]:
        positions.append(bead.positions(atoms.positions))
        forces.append(bead.forces(atoms.forces) if ts.has_forces else None)
    have = all(f is not None for f in forces) and forces
    return np.array(positions), (np.array(forces) if have else None)


def cg_universe(names: Sequence[str], masses: np.ndarray, positions: np.ndarray,
                dimensions: np.ndarray | None = None) -> mda.Universe:
    """An in-memory MDAnalysis Universe of a linear chain of beads.

    Args:
        names: bead names (atom names; each bead is its own residue ``CG``), length B.
        masses: (B,) amu (``BeadMap.masses``).
        positions: (F, B, 3) or (B, 3) Å.
        dimensions: box ``[a, b, c, alpha, beta, gamma]`` or None.
    """
    from MDAnalysis.coordinates.memory import MemoryReader

    n_beads = len(names)
    positions = np.asarray(positions, dtype=np.float32).reshape(-1, n_beads, 3)
    universe = mda.Universe.empty(n_beads, n_residues=n_beads,
                                  atom_resindex=np.arange(n_beads), trajectory=False)
    universe.add_TopologyAttr("name", list(names))
    universe.add_TopologyAttr("type", ["CG"] * n_beads)
    universe.add_TopologyAttr("resname", ["CG"] * n_beads)
    universe.add_TopologyAttr("resid", np.arange(1, n_beads + 1))
    universe.add_TopologyAttr("masses", np.asarray(masses, dtype=np.float64))
    universe.load_new(positions, format=MemoryReader, dimensions=dimensions)
    if n_beads > 1:
        universe.add_TopologyAttr("bonds", [(i, i + 1) for i in range(n_beads - 1)])
    return universe


def write_cg_trajectory(names: Sequence[str], masses: np.ndarray, positions: np.ndarray,
                        folder: str | Path, name: str = "cg") -> tuple[Path, Path]:
    """Write bead positions as ``<name>.pdb`` (topology, first frame) and ``<name>.xtc``.

    Args:
        names, masses: as in :func:`cg_universe`. positions: (F, B, 3) Å.
        folder: created if needed.

    Returns:
        The two paths; ``MDAnalysis.Universe(pdb, xtc)`` reads them back (XTC keeps
        0.01 Å precision).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    universe = cg_universe(names, masses, positions)
    pdb, xtc = folder / f"{name}.pdb", folder / f"{name}.xtc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing PDB attributes get defaults, said loudly
        universe.atoms.write(str(pdb))
        with mda.Writer(str(xtc), len(names)) as writer:
            for _ in universe.trajectory:
                writer.write(universe.atoms)
    return pdb, xtc
