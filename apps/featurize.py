"""Featurizers: MDAnalysis ``AnalysisBase`` analyses and their array counterparts.

Every analysis takes any ``Universe`` or ``AtomGroup`` (so every format MDAnalysis reads
works), fills ``results`` with float64 arrays of one row per analysed frame, and is run
the MDAnalysis way: ``BackboneDihedrals(u.select_atoms("protein")).run(step=2)``.

Array functions (:func:`dihedral_angles`, :class:`RowDihedrals`) compute the same
quantities on positions held in numpy, e.g. store rows of a coarse-grained scale, and are
what a campaign's ``features=`` callable uses. Distances are in Å, angles in radians.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from MDAnalysis.analysis.base import AnalysisBase
from MDAnalysis.core.groups import AtomGroup
from MDAnalysis.lib.distances import calc_dihedrals, self_distance_array

__all__ = [
    "BackboneDihedrals",
    "ContactMap",
    "PairwiseDistances",
    "RMSDToReference",
    "RadiusOfGyration",
    "RowDihedrals",
    "dihedral_angles",
    "kabsch_rmsd",
]


def dihedral_angles(quadruples: np.ndarray) -> np.ndarray:
    """Dihedral angles (IUPAC sign convention, the one MDAnalysis and OpenMM use).

    Args:
        quadruples: positions of shape (..., 4, 3).

    Returns:
        Radians in [-pi, pi], shape (...).
    """
    p = np.asarray(quadruples, dtype=np.float64)
    b1 = p[..., 1, :] - p[..., 0, :]
    b2 = p[..., 2, :] - p[..., 1, :]
    b3 = p[..., 3, :] - p[..., 2, :]
    m, n = np.cross(b1, b2), np.cross(b2, b3)
    b2_norm = np.linalg.norm(b2, axis=-1)
    return np.arctan2(b2_norm * np.einsum("...k,...k->...", b1, n),
                      np.einsum("...k,...k->...", m, n))


class RowDihedrals:
    """Features of configuration rows: sin and cos of dihedrals between listed sites.

    ``RowDihedrals([(0, 1, 2, 3), (1, 2, 3, 4)])`` turns rows whose first 15 numbers are
    five sites' flattened positions (e.g. alanine dipeptide's backbone beads) into
    ``(sin phi, cos phi, sin psi, cos psi)``; columns after the positions (velocities)
    are ignored.
    """

    def __init__(self, quadruples: Sequence[Sequence[int]], encoding: str = "sincos") -> None:
        if encoding not in ("sincos", "angles"):
            raise ValueError(f"encoding must be 'sincos' or 'angles', got {encoding!r}")
        self.quadruples = np.asarray(quadruples, dtype=np.int64).reshape(-1, 4)
        self.encoding = encoding

    def angles(self, x: np.ndarray) -> np.ndarray:
        """Dihedrals of rows ``x`` (n, d) with d >= 3 * (largest site + 1): (n, m) radians."""
        x = np.asarray(x, dtype=np.float64)
        sites = int(self.quadruples.max()) + 1
        if x.ndim != 2 or x.shape[1] < 3 * sites:
            raise ValueError(f"x must have shape (n, >= {3 * sites}); got {x.shape}")
        positions = x[:, : 3 * sites].reshape(len(x), sites, 3)
        return dihedral_angles(positions[:, self.quadruples])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Features: (n, 2m) sin and cos of each dihedral, interleaved, or with
        ``encoding="angles"`` the (n, m) dihedrals in radians (for periodic kernels)."""
        angles = self.angles(x)
        if self.encoding == "angles":
            return angles
        return np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(len(angles), -1)

    def __repr__(self) -> str:
        extra = "" if self.encoding == "sincos" else f", encoding={self.encoding!r}"
        return f"RowDihedrals({self.quadruples.tolist()}{extra})"


class BackboneDihedrals(AnalysisBase):
    """Backbone phi and psi of every residue that has both, as angles and sin/cos features.

    A residue is included when MDAnalysis finds its phi (C of the previous residue, N, CA,
    C) and psi (N, CA, C, N of the next) atoms inside ``atomgroup``; for alanine
    dipeptide (ACE-ALA-NME) that is the ALA residue alone.

    Results: ``angles`` (F, R, 2) radians, ``features`` (F, 4R) ``sin phi, cos phi,
    sin psi, cos psi`` per residue, ``residues`` the residues used.
    """

    def __init__(self, atomgroup: AtomGroup, **kwargs: object) -> None:
        super().__init__(atomgroup.universe.trajectory, **kwargs)
        self._atoms = atomgroup.atoms
        quadruples = []
        residues = []
        for residue in self._atoms.residues:
            phi, psi = residue.phi_selection(), residue.psi_selection()
            if phi is None or psi is None:
                continue
            if not (set(phi.ix) | set(psi.ix)) <= set(self._atoms.ix):
                continue
            quadruples.append((phi, psi))
            residues.append(residue)
        if not quadruples:
            raise ValueError("atomgroup holds no residue with complete phi and psi atoms")
        self.residues = residues
        self._quadruples = quadruples

    def _prepare(self) -> None:
        self.results.angles = np.zeros((self.n_frames, len(self._quadruples), 2))

    def _single_frame(self) -> None:
        for r, (phi, psi) in enumerate(self._quadruples):
            self.results.angles[self._frame_index, r, 0] = calc_dihedrals(*phi.positions)
            self.results.angles[self._frame_index, r, 1] = calc_dihedrals(*psi.positions)

    def _conclude(self) -> None:
        a = self.results.angles
        self.results.features = np.stack(
            [np.sin(a[..., 0]), np.cos(a[..., 0]), np.sin(a[..., 1]), np.cos(a[..., 1])],
            axis=-1).reshape(self.n_frames, -1)


class PairwiseDistances(AnalysisBase):
    """All pairwise distances within an atom group (minimum image when the box is known).

    Results: ``distances`` (F, n(n-1)/2) Å in ``numpy.triu_indices(n, 1)`` order.
    """

    def __init__(self, atomgroup: AtomGroup, periodic: bool = True, **kwargs: object) -> None:
        super().__init__(atomgroup.universe.trajectory, **kwargs)
        self._atoms = atomgroup.atoms
        self._periodic = periodic

    def _prepare(self) -> None:
        n = self._atoms.n_atoms
        self.results.distances = np.zeros((self.n_frames, n * (n - 1) // 2))

    def _single_frame(self) -> None:
        box = self._ts.dimensions if self._periodic else None
        self.results.distances[self._frame_index] = self_distance_array(
            self._atoms.positions, box=box)


class ContactMap(AnalysisBase):
    """Contact maps: 1.0 where two atoms are closer than ``cutoff`` Å, else 0.0.

    Results: ``contacts`` (F, n, n) float64 (diagonal zero), ``fraction`` (n, n) the
    fraction of frames in contact.
    """

    def __init__(self, atomgroup: AtomGroup, cutoff: float = 8.0, periodic: bool = True,
                 **kwargs: object) -> None:
        super().__init__(atomgroup.universe.trajectory, **kwargs)
        if cutoff <= 0:
            raise ValueError(f"cutoff must be > 0 Å; got {cutoff}")
        self._atoms = atomgroup.atoms
        self._cutoff = cutoff
        self._periodic = periodic

    def _prepare(self) -> None:
        n = self._atoms.n_atoms
        self.results.contacts = np.zeros((self.n_frames, n, n))
        self._upper = np.triu_indices(n, 1)

    def _single_frame(self) -> None:
        box = self._ts.dimensions if self._periodic else None
        close = (self_distance_array(self._atoms.positions, box=box) < self._cutoff)
        frame = self.results.contacts[self._frame_index]
        frame[self._upper] = close
        frame.T[self._upper] = close

    def _conclude(self) -> None:
        self.results.fraction = self.results.contacts.mean(axis=0)


class RMSDToReference(AnalysisBase):
    """RMSD of an atom group to a reference after optimal superposition (Kabsch).

    ``reference`` is an AtomGroup with the same number of atoms (its current frame is
    used), or None for frame 0 of ``atomgroup`` itself. Mass-weighted when
    ``weights="mass"``.

    Results: ``rmsd`` (F,) Å.
    """

    def __init__(self, atomgroup: AtomGroup, reference: AtomGroup | None = None,
                 superposition: bool = True, weights: str | None = None,
                 **kwargs: object) -> None:
        super().__init__(atomgroup.universe.trajectory, **kwargs)
        self._atoms = atomgroup.atoms
        if reference is None:
            current = atomgroup.universe.trajectory.ts.frame
            atomgroup.universe.trajectory[0]
            self._reference = atomgroup.positions.copy()
            atomgroup.universe.trajectory[current]
        else:
            if reference.n_atoms != atomgroup.n_atoms:
                raise ValueError(f"reference has {reference.n_atoms} atoms, atomgroup "
                                 f"{atomgroup.n_atoms}")
            self._reference = reference.positions.copy()
        if weights not in (None, "mass"):
            raise ValueError(f"weights must be None or 'mass'; got {weights!r}")
        self._weights = (atomgroup.masses.astype(np.float64) if weights == "mass"
                         else np.ones(atomgroup.n_atoms))
        self._superposition = superposition

    def _prepare(self) -> None:
        self.results.rmsd = np.zeros(self.n_frames)

    def _single_frame(self) -> None:
        self.results.rmsd[self._frame_index] = kabsch_rmsd(
            self._atoms.positions, self._reference, self._weights, self._superposition)


def kabsch_rmsd(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None,
                superposition: bool = True) -> float:
    """Weighted RMSD between (n, 3) positions, after optimal rotation and translation."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    w = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    if superposition:
        a = a - w @ a
        b = b - w @ b
        H = (a * w[:, None]).T @ b
        U, _, Vt = np.linalg.svd(H)
        d = np.sign(np.linalg.det(U @ Vt))
        R = U @ np.diag([1.0, 1.0, d]) @ Vt
        a = a @ R
    return float(np.sqrt(w @ np.sum((a - b) ** 2, axis=1)))


class RadiusOfGyration(AnalysisBase):
    """Mass-weighted radius of gyration of an atom group.

    Results: ``rgyr`` (F,) Å.
    """

    def __init__(self, atomgroup: AtomGroup, **kwargs: object) -> None:
        super().__init__(atomgroup.universe.trajectory, **kwargs)
        self._atoms = atomgroup.atoms
        masses = atomgroup.masses.astype(np.float64)
        self._weights = masses / masses.sum()

    def _prepare(self) -> None:
        self.results.rgyr = np.zeros(self.n_frames)

    def _single_frame(self) -> None:
        positions = self._atoms.positions.astype(np.float64)
        centered = positions - self._weights @ positions
        self.results.rgyr[self._frame_index] = np.sqrt(
            self._weights @ np.sum(centered**2, axis=1))
