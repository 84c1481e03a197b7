"""CG -> AA backmapping: place an all-atom template on the beads, then minimize with restraints.

Three steps, each cheap:

1. torsions: along every run of four consecutive single-atom beads whose middle atoms
   are bonded (alanine dipeptide's phi and psi), the template's dihedral is set to the
   beads' dihedral by rotating the atoms on one side of the middle bond;
2. placement: the template is superposed on the beads (Kabsch on the mapped template
   beads);
3. restrained minimization in OpenMM: harmonic restraints pull each bead's center
   (``CustomCentroidBondForce`` with the map's weights) onto its target while the force
   field repairs bonds, angles and clashes.

The result maps back onto the input beads to within a few hundredths of an Å at the
default restraint (tests check bond lengths, the minimized energy and the round trip).

:class:`LearnedBackmapper` replaces steps 1-2 by a deep ensemble of MLPs trained on AA
frames (each bead's atoms predicted in the bead's local frame from its neighbours), falls
back to the template where the ensemble disagrees, and keeps step 3
(:meth:`Backmapper.minimize`). :func:`backmap_quality` scores backmapped frames (RMSD,
bond and angle deviations, clashes); :class:`BackmapRefresh` refits the learned map from
a campaign's AA data. Positions in Å, energies in kJ/mol.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import openmm
from openmm import unit

from apps.featurize import dihedral_angles
from apps.mapping import BeadMap
from apps.md import ALANINE_DIPEPTIDE_PDB, NM, build_system

__all__ = [
    "BackmapRefresh",
    "Backmapper",
    "LearnedBackmapper",
    "backmap_quality",
    "bead_frames",
    "rotate_dihedral",
    "superpose",
]

logger = logging.getLogger(__name__)


def superpose(mobile: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation that best fit ``mobile`` (n, 3) onto ``target`` (n, 3).

    Returns:
        ``(R (3, 3), t (3,))`` such that ``mobile @ R + t`` is the fitted position.
    """
    mobile_center, target_center = mobile.mean(0), target.mean(0)
    H = (mobile - mobile_center).T @ (target - target_center)
    U, _, Vt = np.linalg.svd(H)
    d = np.sign(np.linalg.det(U @ Vt))
    R = U @ np.diag([1.0, 1.0, d]) @ Vt
    return R, target_center - mobile_center @ R


def rotate_dihedral(positions: np.ndarray, bonds: Sequence[tuple[int, int]],
                    quadruple: Sequence[int], value: float) -> np.ndarray:
    """Set the dihedral ``quadruple`` (atom indices) to ``value`` radians.

    Rotates every atom on the side of the middle bond that holds the last atom about
    that bond; bond lengths and angles are unchanged.

    Raises:
        ValueError: if the middle atoms are not bonded or lie in a ring.
    """
    i, j, k, last = (int(a) for a in quadruple)
    neighbours: dict[int, set[int]] = {}
    for a, b in bonds:
        neighbours.setdefault(a, set()).add(b)
        neighbours.setdefault(b, set()).add(a)
    if k not in neighbours.get(j, set()):
        raise ValueError(f"atoms {j} and {k} are not bonded; cannot rotate about them")
    moving, frontier = {k}, [k]
    while frontier:
        atom = frontier.pop()
        for other in neighbours.get(atom, ()):
            if other == j and atom == k:
                continue
            if other == j:
                raise ValueError(f"bond {j}-{k} is in a ring; cannot rotate about it")
            if other not in moving:
                moving.add(other)
                frontier.append(other)
    positions = np.array(positions, dtype=np.float64)
    delta = value - dihedral_angles(positions[[i, j, k, last]])
    axis = positions[k] - positions[j]
    axis /= np.linalg.norm(axis)
    idx = np.array(sorted(moving))
    v = positions[idx] - positions[k]
    cos, sin = np.cos(delta), np.sin(delta)
    # Rodrigues' rotation; a positive rotation about j->k increases the dihedral.
    rotated = (v * cos + np.cross(axis, v) * sin + np.outer(v @ axis, axis) * (1.0 - cos))
    positions[idx] = rotated + positions[k]
    return positions


class _IterationCounter(openmm.MinimizationReporter):
    """Counts L-BFGS iterations (every restart of the restraint loop included)."""

    def __init__(self) -> None:
        super().__init__()
        self.iterations = 0

    def report(self, iteration: int, x: Any, grad: Any, args: Any) -> bool:  # noqa: ARG002
        self.iterations += 1
        return False


class Backmapper:
    """Rebuild all atoms from bead positions with a template structure.

    Args:
        bead: the AA -> CG map, over the template's atoms in order.
        structure: the template (a path ``apps.md.load_structure`` reads; default
            alanine dipeptide).
        forcefield: OpenMM force field files.
        solvent: ``"vacuum"`` or ``"obc2"`` for the minimization.
        restraint_k: kJ/(mol Å^2) pulling each bead center onto its target.
        max_iterations: minimizer iterations (0 = until converged).
        tolerance: minimizer tolerance, kJ/(mol nm).

    Calling the object on a CG row (``(3B,)`` positions or ``(6B,)`` positions and
    velocities, Å) returns the AA positions flattened to ``(3N,)`` Å: the promotion
    ``mapping=`` of a CG -> AA campaign.
    """

    def __init__(self, bead: BeadMap, structure: str = ALANINE_DIPEPTIDE_PDB, *,
                 forcefield: Sequence[str] = ("amber14-all.xml",), solvent: str = "vacuum",
                 restraint_k: float = 20_000.0, max_iterations: int = 2000,
                 tolerance: float = 1.0) -> None:
        if solvent not in ("vacuum", "obc2"):
            raise ValueError(f"solvent must be 'vacuum' or 'obc2' for backmapping; got {solvent!r}")
        self.bead = bead
        self.structure = structure
        self.forcefield = tuple(forcefield)
        self.solvent = solvent
        self.restraint_k = restraint_k
        self.max_iterations = max_iterations
        self.tolerance = tolerance
        self._context: openmm.Context | None = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_context"] = None  # OpenMM contexts do not pickle; rebuilt on first use
        return state

    def _setup(self) -> None:
        molecular = build_system(self.structure, forcefield=self.forcefield,
                                 solvent=self.solvent, constraints=None)
        if molecular.n_atoms != self.bead.n_atoms:
            raise ValueError(f"template has {molecular.n_atoms} atoms, the bead map "
                             f"{self.bead.n_atoms}")
        self.template = molecular.positions
        self.bonds = [(a.index, b.index) for a, b in molecular.topology.bonds()]
        system = openmm.XmlSerializer.clone(molecular.system)
        restraint = openmm.CustomCentroidBondForce(
            1, "0.5*k_bead*((x1-x0)^2+(y1-y0)^2+(z1-z0)^2)")
        restraint.addGlobalParameter("k_bead", self.restraint_k * NM**2)
        for name in ("x0", "y0", "z0"):
            restraint.addPerBondParameter(name)
        for b, atoms in enumerate(self.bead.atom_indices):
            weights = [float(self.bead.position_weights[b, a]) for a in atoms]
            group = restraint.addGroup(list(atoms), weights)
            restraint.addBond([group], [0.0, 0.0, 0.0])
        restraint.setForceGroup(1)
        system.addForce(restraint)
        self._restraint = restraint
        self._context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                                       openmm.Platform.getPlatformByName("Reference"))
        self._torsions = self._settable_torsions()

    def _settable_torsions(self) -> list[tuple[tuple[int, ...], tuple[int, int, int, int]]]:
        """(bead quadruple, atom quadruple) of dihedrals that can be set on the template."""
        if not self.bead.single_atom_beads():
            return []
        bonded = {frozenset(bond) for bond in self.bonds}
        atoms = [a[0] for a in self.bead.atom_indices]
        found = []
        for b in range(self.bead.n_beads - 3):
            quad = tuple(atoms[b:b + 4])
            if frozenset(quad[1:3]) in bonded:
                found.append(((b, b + 1, b + 2, b + 3), quad))
        return found

    def place(self, beads: np.ndarray) -> np.ndarray:
        """Steps 1-2: the template with set torsions, superposed on ``beads`` (B, 3) Å.

        Returns:
            (N, 3) Å.
        """
        if self._context is None:
            self._setup()
        beads = np.asarray(beads, dtype=np.float64).reshape(self.bead.n_beads, 3)
        positions = self.template.copy()
        for bead_quad, atom_quad in self._torsions:
            target = float(dihedral_angles(beads[list(bead_quad)]))
            positions = rotate_dihedral(positions, self.bonds, atom_quad, target)
        R, t = superpose(self.bead.positions(positions), beads)
        return positions @ R + t

    def template_at(self, dihedrals: Sequence[float]) -> np.ndarray:
        """The template with its settable dihedrals (e.g. phi, psi) set, radians.

        Returns:
            (N, 3) Å, in the template's frame.

        Raises:
            ValueError: if ``dihedrals`` does not give one value per settable dihedral.
        """
        if self._context is None:
            self._setup()
        if len(dihedrals) != len(self._torsions):
            raise ValueError(f"need {len(self._torsions)} dihedrals; got {len(dihedrals)}")
        positions = self.template.copy()
        for (_, atom_quad), value in zip(self._torsions, dihedrals, strict=True):
            positions = rotate_dihedral(positions, self.bonds, atom_quad, float(value))
        return positions

    def minimize(self, positions: np.ndarray, beads: np.ndarray,
                 max_iterations: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Step 3: restrained minimization of ``positions`` (N, 3) Å towards ``beads`` (B, 3) Å.

        Each bead's center is pulled onto its target with ``restraint_k`` while the force
        field repairs the rest (L-BFGS to ``tolerance`` or ``max_iterations``).

        Args:
            positions: the start, (N, 3) Å (a placed template or a learned prediction).
            beads: bead targets, (B, 3) Å.
            max_iterations: minimizer iterations, None for the object's ``max_iterations``
                (0 = until converged).

        Returns:
            ``(positions (N, 3) Å, info)``; info holds ``minimization_steps`` (L-BFGS
            iterations until the tolerance or the cap, counted with an
            ``openmm.MinimizationReporter``), ``energy_before`` and ``energy_after``
            (force-field energy, restraints excluded, kJ/mol).
        """
        if self._context is None:
            self._setup()
        beads = np.asarray(beads, dtype=np.float64).reshape(self.bead.n_beads, 3)
        for b, target in enumerate(beads / NM):
            atoms = self._restraint.getBondParameters(b)[0]
            self._restraint.setBondParameters(b, atoms, [float(v) for v in target])
        self._restraint.updateParametersInContext(self._context)
        start = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        self._context.setPositions(start / NM)
        before = self._context.getState(getEnergy=True, groups={0}).getPotentialEnergy()
        counter = _IterationCounter()
        limit = self.max_iterations if max_iterations is None else int(max_iterations)
        openmm.LocalEnergyMinimizer.minimize(self._context, self.tolerance, limit, counter)
        state = self._context.getState(getPositions=True, getEnergy=True, groups={0})
        info = {"minimization_steps": counter.iterations,
                "energy_before": float(before.value_in_unit(unit.kilojoule_per_mole)),
                "energy_after": float(state.getPotentialEnergy().value_in_unit(
                    unit.kilojoule_per_mole))}
        return np.asarray(state.getPositions(asNumpy=True)._value) * NM, info

    def backmap(self, beads: np.ndarray) -> np.ndarray:
        """All three steps for beads (B, 3) Å; returns AA positions (N, 3) Å."""
        return self.minimize(self.place(beads), beads)[0]

    def energy(self, positions: np.ndarray) -> float:
        """Force-field potential energy (restraints excluded) of (N, 3) Å, kJ/mol."""
        if self._context is None:
            self._setup()
        self._context.setPositions(np.asarray(positions).reshape(-1, 3) / NM)
        state = self._context.getState(getEnergy=True, groups={0})
        return float(state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole))

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Backmap a CG row ((3B,) or (6B,), Å); returns (3N,) Å."""
        row = np.asarray(row, dtype=np.float64).ravel()
        return self.backmap(row[: 3 * self.bead.n_beads]).ravel()

    def __repr__(self) -> str:
        return (f"Backmapper(structure={self.structure!r}, solvent={self.solvent!r}, "
                f"restraint_k={self.restraint_k})")


# --------------------------------------------------------------------------------------
# Learned backmapping: a deep ensemble of per-bead MLPs in local bead frames.
# --------------------------------------------------------------------------------------

_NEIGHBOUR_OFFSETS = (-2, -1, 1, 2)
_CHECK_EVERY = 20  # steps between held-out checks (early stopping)
_WARM_RATE = 0.3  # warm learning rate relative to learning_rate
_MIN_TARGET_SCALE = 0.05  # Å, floor of the target scale (a rigid map has ~0 spread)


def bead_frames(beads: np.ndarray) -> np.ndarray:
    """Local orthonormal frames of a linear chain of beads.

    Bead ``b``'s frame comes from beads ``c-1, c, c+1`` with ``c = clip(b, 1, B-2)``
    (the chain ends use their neighbour's triple): ``e1`` along ``p[c+1] - p[c-1]``,
    ``e2`` along the bisector ``(p[c-1] - p[c]) + (p[c+1] - p[c])`` made orthogonal to
    ``e1``, ``e3 = e1 x e2`` (right-handed, so mirror images differ). A straight triple
    (no bisector) gets a fixed perpendicular.

    Args:
        beads: (..., B, 3) Å, B >= 3.

    Returns:
        (..., B, 3, 3): rows ``e1, e2, e3`` of each bead's frame; local coordinates of a
        point ``x`` are ``frame @ (x - p[b])``.
    """
    beads = np.asarray(beads, dtype=np.float64)
    n_beads = beads.shape[-2]
    if n_beads < 3:
        raise ValueError(f"bead frames need a chain of at least 3 beads; got {n_beads}")
    centre = np.clip(np.arange(n_beads), 1, n_beads - 2)
    before, middle, after = (beads[..., centre - 1, :], beads[..., centre, :],
                             beads[..., centre + 1, :])
    e1 = after - before
    e1 = e1 / np.maximum(np.linalg.norm(e1, axis=-1, keepdims=True), 1e-12)
    w = (before - middle) + (after - middle)
    w = w - np.sum(w * e1, axis=-1, keepdims=True) * e1
    size = np.linalg.norm(w, axis=-1, keepdims=True)
    axis = np.where(np.abs(e1[..., :1]) < 0.9, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
    fallback = np.cross(e1, axis)
    fallback = fallback / np.linalg.norm(fallback, axis=-1, keepdims=True)
    e2 = np.where(size > 1e-8, w / np.maximum(size, 1e-12), fallback)
    e3 = np.cross(e1, e2)
    return np.stack([e1, e2, e3], axis=-2)


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


class LearnedBackmapper:
    """CG -> AA backmapping learned from AA frames, with the template method as fallback.

    Every atom belongs to one bead: the bead whose atoms contain it, else the bead whose
    center is nearest to it in the template ``structure``. Each bead has a local frame
    (:func:`bead_frames`). One MLP, shared over beads, reads the positions of beads
    ``b-2 .. b+2`` in bead ``b``'s frame (a missing neighbour at a chain end is zero, with
    a mask) and a one-hot of ``b``, and predicts the positions of ``b``'s atoms in that
    frame (padded to the largest bead; the loss is masked). The predictions are rotated
    back into the global frame: the map is invariant to rotations and translations of
    the chain by construction. ``n_members`` MLPs from different seeds form a deep
    ensemble; the RMS over atoms of their spread is the uncertainty (Å).

    :meth:`backmap` uses the ensemble mean where the uncertainty is at most
    ``uncertainty_threshold`` and the template method (:class:`Backmapper`'s placement)
    elsewhere or while unfitted, and always finishes with :meth:`Backmapper.minimize`
    (restrained minimization, the same force field and context as the template method).

    Training (:meth:`fit`) is deterministic for a given ``seed`` and history (the weights
    a warm fit starts from): numpy draws the initialization and the minibatches, torch
    runs Adam with ``threads`` threads (1 by default; the previous setting is restored).
    A second fit starts from the current weights (warm start, ``warm_steps`` steps at
    0.3 x the learning rate). With ``validation_fraction * F >= 3`` frames, each member
    holds out frames chosen by a hash of the frame and the seed (a frame stays held out
    in later fits), checks its held-out loss every 20 steps, keeps its best weights
    (the starting weights included, so a warm fit does not get worse on held-out data)
    and training ends once no member improved for ``patience`` steps.

    Args:
        bead: the AA -> CG map over the template's atoms; beads ordered along the chain.
        structure: the template (a path ``apps.md.load_structure`` reads).
        n_members: ensemble size (>= 2).
        hidden: width of the two hidden SiLU layers.
        steps: most Adam steps of a cold fit. warm_steps: of a warm fit.
        batch_size: (frame, bead) rows per step and member.
        learning_rate: Adam step size, cosine-decayed to 1% over a fit.
        validation_fraction: held-out frames per member for early stopping.
        patience: steps without improvement before a fit stops.
        seed: initialization, minibatches and held-out split.
        threads: torch threads during fit.
        uncertainty_threshold: Å; a frame whose ensemble spread exceeds it is backmapped
            with the template.
        forcefield, solvent, restraint_k, tolerance: of the restrained minimization (see
            :class:`Backmapper`; restraint_k in kJ/(mol Å^2), tolerance in kJ/(mol nm)).
        max_iterations: minimizer iterations after placement (0 = until converged).

    Positions in Å, energies in kJ/mol.
    """

    def __init__(self, bead: BeadMap, structure: str = ALANINE_DIPEPTIDE_PDB, *,
                 n_members: int = 5, hidden: int = 128, steps: int = 3000,
                 warm_steps: int = 600, batch_size: int = 256, learning_rate: float = 3e-3,
                 validation_fraction: float = 0.1, patience: int = 400, seed: int = 0,
                 threads: int = 1, uncertainty_threshold: float = 0.3,
                 forcefield: Sequence[str] = ("amber14-all.xml",), solvent: str = "obc2",
                 restraint_k: float = 20_000.0, max_iterations: int = 1000,
                 tolerance: float = 10.0) -> None:
        if n_members < 2:
            raise ValueError(f"n_members must be >= 2; got {n_members}")
        if bead.n_beads < 3:
            raise ValueError(f"a learned backmapper needs at least 3 beads; got {bead.n_beads}")
        self.bead = bead
        self.structure = str(structure)
        self.n_members = int(n_members)
        self.hidden = int(hidden)
        self.steps = int(steps)
        self.warm_steps = int(warm_steps)
        self.batch_size = int(batch_size)
        self.learning_rate = float(learning_rate)
        self.validation_fraction = float(validation_fraction)
        self.patience = int(patience)
        self.seed = int(seed)
        self.threads = int(threads)
        self.uncertainty_threshold = float(uncertainty_threshold)
        self.forcefield = tuple(forcefield)
        self.solvent = solvent
        self.restraint_k = float(restraint_k)
        self.max_iterations = int(max_iterations)
        self.tolerance = float(tolerance)
        self.template = Backmapper(bead, self.structure, forcefield=self.forcefield,
                                   solvent=solvent, restraint_k=self.restraint_k,
                                   max_iterations=self.max_iterations,
                                   tolerance=self.tolerance)
        self._state: dict[str, np.ndarray] | None = None
        self.n_fits = 0
        self.last_info: list[dict[str, Any]] = []
        self._assign_atoms()

    # ---- geometry ------------------------------------------------------------------

    def _assign_atoms(self) -> None:
        """``atom_bead`` (N,) and ``slots`` (B, M) atom indices, -1 padded."""
        from apps.md import load_structure

        _, template = load_structure(self.structure)
        if len(template) != self.bead.n_atoms:
            raise ValueError(f"template has {len(template)} atoms, the bead map "
                             f"{self.bead.n_atoms}")
        centres = self.bead.positions(template)
        nearest = np.argmin(np.linalg.norm(template[:, None] - centres[None], axis=-1), axis=1)
        member = self.bead.force_weights > 0  # (B, N)
        atom_bead = np.where(member.any(axis=0), member.argmax(axis=0), nearest)
        groups = [np.flatnonzero(atom_bead == b) for b in range(self.bead.n_beads)]
        width = max(len(g) for g in groups)
        slots = np.full((self.bead.n_beads, width), -1, dtype=np.int64)
        for b, group in enumerate(groups):
            slots[b, : len(group)] = group
        self.atom_bead = atom_bead.astype(np.int64)
        self.slots = slots

    def features(self, cg_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs and frames for bead positions (F, B, 3) Å.

        Returns:
            ``(inputs (F, B, 16 + B), frames (F, B, 3, 3))``: per bead the local
            coordinates (Å) of beads b-2, b-1, b+1, b+2 (zero when missing), their
            presence mask, and a one-hot of b.
        """
        beads = np.asarray(cg_positions, dtype=np.float64).reshape(-1, self.bead.n_beads, 3)
        n_frames, n_beads = beads.shape[:2]
        frames = bead_frames(beads)
        parts, masks = [], []
        for offset in _NEIGHBOUR_OFFSETS:
            index = np.arange(n_beads) + offset
            present = (index >= 0) & (index < n_beads)
            other = beads[:, np.clip(index, 0, n_beads - 1)] - beads
            local = np.einsum("fbij,fbj->fbi", frames, other) * present[None, :, None]
            parts.append(local)
            masks.append(np.broadcast_to(present[None, :, None].astype(np.float64),
                                         (n_frames, n_beads, 1)))
        one_hot = np.broadcast_to(np.eye(n_beads), (n_frames, n_beads, n_beads))
        return np.concatenate([*parts, *masks, one_hot], axis=-1), frames

    def _local_targets(self, aa: np.ndarray, cg: np.ndarray, frames: np.ndarray
                       ) -> np.ndarray:
        """Atom positions in their bead's frame, (F, B, M, 3) Å (padding zero)."""
        atoms = aa[:, np.maximum(self.slots, 0)] - cg[:, :, None]  # (F, B, M, 3)
        local = np.einsum("fbij,fbmj->fbmi", frames, atoms)
        return local * (self.slots >= 0)[None, :, :, None]

    # ---- training ------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        """True once :meth:`fit` ran (or fitted params were loaded)."""
        return self._state is not None

    def fit(self, cg_positions: np.ndarray | None, aa_positions: np.ndarray
            ) -> LearnedBackmapper:
        """Train (or, when fitted, fine-tune) the ensemble on AA frames and their beads.

        Args:
            cg_positions: (F, B, 3) Å, the mapped beads of each frame; None maps
                ``aa_positions`` with the bead map.
            aa_positions: (F, N, 3) Å.

        Returns:
            self. Sets ``n_steps_`` (Adam steps taken) and ``warm_started_``.
        """
        import torch

        aa = np.asarray(aa_positions, dtype=np.float64).reshape(-1, self.bead.n_atoms, 3)
        cg = (self.bead.positions(aa) if cg_positions is None else
              np.asarray(cg_positions, dtype=np.float64).reshape(-1, self.bead.n_beads, 3))
        if len(cg) != len(aa) or len(aa) == 0:
            raise ValueError(f"need as many CG as AA frames (> 0); got {len(cg)}, {len(aa)}")
        if not (np.all(np.isfinite(aa)) and np.all(np.isfinite(cg))):
            raise ValueError("positions must be finite")
        inputs, frames = self.features(cg)
        targets = self._local_targets(aa, cg, frames)
        warm = self._state is not None
        if not warm:
            flat = inputs.reshape(-1, inputs.shape[-1])
            x_scale = flat.std(axis=0)
            valid = (self.slots >= 0)[None, :, :, None]
            y_offset = targets.mean(axis=0)
            spread = np.sqrt(np.sum(((targets - y_offset) * valid) ** 2)
                             / max(1, valid.sum() * len(targets) * 3))
            scales = {"x_offset": flat.mean(axis=0),
                            "x_scale": np.where(x_scale > 1e-8, x_scale, 1.0),
                            "y_offset": y_offset,
                            "y_scale": np.array([max(float(spread), _MIN_TARGET_SCALE)])}
        else:
            scales = {k: self._state[k] for k in ("x_offset", "x_scale", "y_offset",
                                                        "y_scale")}
        xs = (inputs - scales["x_offset"]) / scales["x_scale"]
        ys = (targets - scales["y_offset"]) / scales["y_scale"][0]
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            layers, n_steps = self._train(xs, ys, cg, warm)
        finally:
            torch.set_num_threads(previous_threads)
        state = dict(scales)
        for i, (weight, bias) in enumerate(layers):
            state[f"weight_{i}"] = weight
            state[f"bias_{i}"] = bias
        self._state = state
        self.n_fits += 1
        self.n_steps_ = n_steps
        self.warm_started_ = warm
        return self

    def _held_out(self, cg: np.ndarray) -> np.ndarray | None:
        """(E, F) bool: the frames each member holds out, or None (too few frames)."""
        n_frames = len(cg)
        if self.validation_fraction <= 0 or self.validation_fraction * n_frames < 3:
            return None
        out = np.zeros((self.n_members, n_frames), dtype=bool)
        for f in range(n_frames):
            frame = np.round(cg[f], 6).tobytes()
            for e in range(self.n_members):
                digest = hashlib.sha256(frame + f"{self.seed}:{e}".encode()).digest()
                out[e, f] = int.from_bytes(digest[:8], "little") / 2**64 < \
                    self.validation_fraction
        out[:, out.all(axis=0)] = False  # every frame stays in training for some member
        return out

    def _train(self, xs: np.ndarray, ys: np.ndarray, cg: np.ndarray, warm: bool
               ) -> tuple[list[tuple[np.ndarray, np.ndarray]], int]:
        """Adam on the masked mean squared error; returns (layers, steps taken)."""
        import torch

        n_frames, n_beads, d = xs.shape
        width = self.slots.shape[1]
        members = self.n_members
        rng = np.random.default_rng([self.seed, self.n_fits])
        sizes = [d, self.hidden, self.hidden, 3 * width]
        if warm:
            arrays = [self._state[f"{kind}_{i}"] for i in range(3) for kind in ("weight",
                                                                              "bias")]
        else:
            init = np.random.default_rng(self.seed)
            arrays = []
            for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
                bound = 1.0 / np.sqrt(fan_in) * (0.1 if i == 2 else 1.0)
                arrays.append(init.uniform(-bound, bound, (members, fan_in, fan_out)))
                arrays.append(init.uniform(-bound, bound, (members, fan_out)))
        # float32 trains ~2.5x faster on CPU than float64; prediction is float64 numpy.
        params = [torch.tensor(a, dtype=torch.float32, requires_grad=True) for a in arrays]
        x = torch.as_tensor(xs.reshape(-1, d), dtype=torch.float32)
        y = torch.as_tensor(ys.reshape(-1, 3 * width), dtype=torch.float32)
        mask = torch.as_tensor(np.repeat(self.slots >= 0, 3, axis=1).astype(np.float32))
        mask = mask.repeat(n_frames, 1)  # rows are (frame, bead), frame-major
        held_out = self._held_out(cg)
        frame_of_row = np.repeat(np.arange(n_frames), n_beads)
        if held_out is None:
            train_rows = [np.arange(n_frames * n_beads)] * members
        else:
            train_rows = [np.flatnonzero(~held_out[e][frame_of_row]) for e in range(members)]
            check_rows = [torch.as_tensor(np.flatnonzero(held_out[e][frame_of_row]))
                          for e in range(members)]

        def forward(inputs: torch.Tensor) -> torch.Tensor:  # (E, n, d) -> (E, n, 3M)
            h = inputs
            for i in range(0, len(params), 2):
                h = torch.baddbmm(params[i + 1][:, None, :], h, params[i])
                if i + 2 < len(params):
                    h = torch.nn.functional.silu(h)
            return h

        def member_losses(rows: list[torch.Tensor]) -> torch.Tensor:
            index = torch.stack(rows)  # (E, n)
            error = (forward(x[index]) - y[index]) ** 2 * mask[index]
            return error.sum(dim=(1, 2)) / mask[index].sum(dim=(1, 2))

        max_steps = self.warm_steps if warm else self.steps
        rate = self.learning_rate * (_WARM_RATE if warm else 1.0)
        optimizer = torch.optim.Adam(params, lr=rate)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps,
                                                               eta_min=0.01 * rate)
        batch = min(self.batch_size, min(len(r) for r in train_rows))
        best = [p.detach().clone() for p in params]
        best_loss = np.full(members, np.inf)
        since = np.zeros(members, dtype=int)
        steps = 0
        for step in range(max_steps + 1):
            if held_out is not None and step % _CHECK_EVERY == 0:
                with torch.no_grad():
                    losses = np.array([float(member_losses([check_rows[e]] * members)[e])
                                       for e in range(members)])
                improved = losses < best_loss * (1 - 1e-3)
                for e in np.flatnonzero(losses < best_loss):
                    for kept, p in zip(best, params, strict=True):
                        kept[e] = p.detach()[e]
                best_loss = np.minimum(best_loss, losses)
                since = np.where(improved, 0, since + (_CHECK_EVERY if step else 0))
                if np.all(since >= self.patience):
                    break
            if step == max_steps:
                break
            rows = [torch.as_tensor(r[rng.integers(0, len(r), batch)]) for r in train_rows]
            optimizer.zero_grad()
            member_losses(rows).sum().backward()
            optimizer.step()
            scheduler.step()
            steps += 1
        final = best if held_out is not None else [p.detach() for p in params]
        arrays = [t.numpy().astype(np.float64) for t in final]
        return [(arrays[i], arrays[i + 1]) for i in range(0, len(arrays), 2)], steps

    # ---- prediction ----------------------------------------------------------------

    def predict_members(self, cg_positions: np.ndarray) -> np.ndarray:
        """Each member's AA positions, (E, F, N, 3) Å (numpy, float64).

        Raises:
            RuntimeError: if the model is not fitted.
        """
        if self._state is None:
            raise RuntimeError("LearnedBackmapper is not fitted; call fit first")
        beads = np.asarray(cg_positions, dtype=np.float64).reshape(-1, self.bead.n_beads, 3)
        inputs, frames = self.features(beads)
        n_frames, n_beads, d = inputs.shape
        state = self._state
        h = ((inputs - state["x_offset"]) / state["x_scale"]).reshape(1, -1, d)
        for i in range(3):
            h = h @ state[f"weight_{i}"] + state[f"bias_{i}"][:, None, :]
            if i < 2:
                h = _silu(h)
        width = self.slots.shape[1]
        local = (state["y_offset"][None] + state["y_scale"][0]
                 * h.reshape(-1, n_frames, n_beads, width, 3))  # (E, F, B, M, 3)
        placed = np.einsum("fbij,efbmi->efbmj", frames, local) + beads[None, :, :, None]
        out = np.zeros((len(local), n_frames, self.bead.n_atoms, 3))
        valid = self.slots >= 0
        out[:, :, self.slots[valid]] = placed[:, :, valid]
        return out

    def predict(self, cg_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and its spread for bead positions (F, B, 3) Å.

        Returns:
            ``(aa (F, N, 3) Å, uncertainty (F,) Å)``: the uncertainty is the RMS over atoms
            of the members' spread, ``sqrt(mean_atoms mean_members |x_e - mean|^2)``.
        """
        draws = self.predict_members(cg_positions)
        mean = draws.mean(axis=0)
        spread = np.sqrt(np.mean(np.sum((draws - mean) ** 2, axis=-1), axis=(0, 2)))
        return mean, spread

    def backmap(self, cg_positions: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Backmap frames of beads (F, B, 3) or (B, 3) Å.

        Returns:
            ``(aa (F, N, 3) Å, info per frame)``: ``method`` (``"learned"`` or
            ``"template"``), ``uncertainty`` (Å; inf while unfitted),
            ``minimization_steps``, ``energy_before`` and ``energy_after`` (kJ/mol, force
            field without restraints, before and after the restrained minimization).
        """
        beads = np.asarray(cg_positions, dtype=np.float64).reshape(-1, self.bead.n_beads, 3)
        if self._state is not None:
            predicted, uncertainty = self.predict(beads)
        else:
            predicted, uncertainty = None, np.full(len(beads), np.inf)
        result = np.empty((len(beads), self.bead.n_atoms, 3))
        infos = []
        for f, target in enumerate(beads):
            learned = predicted is not None and uncertainty[f] <= self.uncertainty_threshold
            start = predicted[f] if learned else self.template.place(target)
            result[f], info = self.template.minimize(start, target, self.max_iterations)
            infos.append({"method": "learned" if learned else "template",
                          "uncertainty": float(uncertainty[f]), **info})
        self.last_info = infos
        return result, infos

    def __call__(self, row: np.ndarray) -> np.ndarray:
        """Backmap a CG row ((3B,) or (6B,), Å); returns (3N,) Å (info in ``last_info``)."""
        row = np.asarray(row, dtype=np.float64).ravel()
        return self.backmap(row[: 3 * self.bead.n_beads])[0].ravel()

    # ---- state ---------------------------------------------------------------------

    _SCALARS = ("n_members", "hidden", "steps", "warm_steps", "batch_size", "learning_rate",
                "validation_fraction", "patience", "seed", "threads",
                "uncertainty_threshold", "solvent", "restraint_k", "max_iterations",
                "tolerance", "structure", "n_fits")

    def to_params(self) -> dict[str, Any]:
        """Plain state (numpy arrays, ints, floats, strings): the bead map, settings and,
        when fitted, the weights; :meth:`from_params` inverts it."""
        params: dict[str, Any] = {name: getattr(self, name) for name in self._SCALARS}
        params.update(forcefield=list(self.forcefield), bead_names=list(self.bead.names),
                      position_weights=self.bead.position_weights.copy(),
                      force_weights=self.bead.force_weights.copy(),
                      bead_masses=self.bead.masses.copy(), fitted=int(self.fitted))
        if self._state is not None:
            params.update({f"state_{k}": v.copy() for k, v in self._state.items()})
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LearnedBackmapper:
        """Rebuild from :meth:`to_params` output (arrays may come back as lists)."""
        force_weights = np.asarray(params["force_weights"], dtype=np.float64)
        bead = BeadMap(tuple(params["bead_names"]),
                       np.asarray(params["position_weights"], dtype=np.float64), force_weights,
                       tuple(tuple(int(a) for a in np.flatnonzero(row)) for row in force_weights),
                       np.asarray(params["bead_masses"], dtype=np.float64))
        options = {name: params[name] for name in cls._SCALARS
                   if name not in ("structure", "n_fits")}
        made = cls(bead, params["structure"], forcefield=tuple(params["forcefield"]), **options)
        made.n_fits = int(params["n_fits"])
        if int(params["fitted"]):
            made._state = {k[len("state_"):]: np.asarray(v, dtype=np.float64)
                           for k, v in params.items() if k.startswith("state_")}
        return made

    def __repr__(self) -> str:
        return (f"LearnedBackmapper(structure={self.structure!r}, n_members={self.n_members}, "
                f"fitted={self.fitted}, uncertainty_threshold={self.uncertainty_threshold})")


# --------------------------------------------------------------------------------------
# Quality of backmapped structures, and the refresh hook of a CG -> AA campaign.
# --------------------------------------------------------------------------------------

CLASH_HEAVY = 2.5
"""Å: two heavy atoms more than three bonds apart closer than this clash."""
CLASH_HYDROGEN = 1.5
"""Å: a pair with a hydrogen, more than three bonds apart, closer than this clashes."""


@functools.lru_cache(maxsize=4)
def _reference_geometry(structure: str, forcefield: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Force-field equilibrium bonds and angles, heavy atoms, far pairs of a structure."""
    molecular = build_system(structure, forcefield=forcefield, solvent="vacuum",
                             constraints=None)
    bond_rows, angle_rows = [], []
    for force in molecular.system.getForces():
        if isinstance(force, openmm.HarmonicBondForce):
            for i in range(force.getNumBonds()):
                a, b, r0, _ = force.getBondParameters(i)
                bond_rows.append((a, b, r0.value_in_unit(unit.nanometer) * NM))
        elif isinstance(force, openmm.HarmonicAngleForce):
            for i in range(force.getNumAngles()):
                a, b, c, theta0, _ = force.getAngleParameters(i)
                angle_rows.append((a, b, c, theta0.value_in_unit(unit.radian)))
    n = molecular.n_atoms
    heavy = np.array([atom.element is not None and atom.element.symbol != "H"
                      for atom in molecular.topology.atoms()])
    adjacency = np.eye(n, dtype=np.int64)
    for a, b in molecular.topology.bonds():
        adjacency[a.index, b.index] = adjacency[b.index, a.index] = 1
    within = np.eye(n, dtype=np.int64)
    for _ in range(3):
        within = np.minimum(within @ adjacency, 1)
    far = np.triu(within == 0, k=1)
    cutoff = np.where(heavy[:, None] & heavy[None, :], CLASH_HEAVY, CLASH_HYDROGEN)
    return {"bonds": np.array([r[:2] for r in bond_rows], dtype=np.int64).reshape(-1, 2),
            "r0": np.array([r[2] for r in bond_rows]),
            "angles": np.array([r[:3] for r in angle_rows], dtype=np.int64).reshape(-1, 3),
            "theta0": np.array([r[3] for r in angle_rows]),
            "heavy": heavy, "far_i": np.nonzero(far)[0], "far_j": np.nonzero(far)[1],
            "cutoff": cutoff[far]}


def backmap_quality(predicted: np.ndarray, reference: np.ndarray | None, structure: str, *,
                    forcefield: Sequence[str] = ("amber14-all.xml",)) -> dict[str, np.ndarray]:
    """Geometry of backmapped structures, frame by frame.

    Args:
        predicted: (F, N, 3) Å, backmapped frames.
        reference: (F, N, 3) Å, the true AA frames, or None (no RMSD).
        structure: the structure the atoms come from (a path ``apps.md.load_structure``
            reads): topology, bonds and the force field's equilibrium values.
        forcefield: force field files for the equilibrium bond lengths and angles.

    Returns:
        (F,) arrays: ``heavy_atom_rmsd`` (Å, after Kabsch superposition on the heavy
        atoms; only with a reference), ``bond_deviation`` (Å, RMS over bonds of the
        length minus the force field's equilibrium length ``r0``), ``angle_deviation``
        (degrees, RMS over angles of the angle minus ``theta0``), and ``clashes`` (pairs
        of atoms more than three bonds apart closer than :data:`CLASH_HEAVY` = 2.5 Å when
        both are heavy, or :data:`CLASH_HYDROGEN` = 1.5 Å when one is a hydrogen; a
        hydrogen bond, H...O ~1.9 Å and N...O ~2.9 Å, is not a clash).
    """
    from apps.featurize import kabsch_rmsd

    geometry = _reference_geometry(str(structure), tuple(forcefield))
    x = np.asarray(predicted, dtype=np.float64)
    x = x.reshape(-1, len(geometry["heavy"]), 3)
    bonds = geometry["bonds"]
    length = np.linalg.norm(x[:, bonds[:, 0]] - x[:, bonds[:, 1]], axis=-1)
    angles = geometry["angles"]
    u = x[:, angles[:, 0]] - x[:, angles[:, 1]]
    v = x[:, angles[:, 2]] - x[:, angles[:, 1]]
    cosine = np.sum(u * v, axis=-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    theta = np.arccos(np.clip(cosine, -1.0, 1.0))
    distance = np.linalg.norm(x[:, geometry["far_i"]] - x[:, geometry["far_j"]], axis=-1)
    out = {"bond_deviation": np.sqrt(np.mean((length - geometry["r0"]) ** 2, axis=1)),
           "angle_deviation": np.degrees(np.sqrt(np.mean((theta - geometry["theta0"]) ** 2,
                                                         axis=1))),
           "clashes": np.sum(distance < geometry["cutoff"], axis=1)}
    if reference is not None:
        ref = np.asarray(reference, dtype=np.float64).reshape(x.shape)
        heavy = geometry["heavy"]
        out["heavy_atom_rmsd"] = np.array([kabsch_rmsd(a[heavy], b[heavy])
                                           for a, b in zip(x, ref, strict=True)])
    return out


class BackmapRefresh:
    """``Scale(refresh_params=...)`` hook: refit the learned backmapper from AA results.

    Reads ``aa_frames`` (rows of (F, 3N) AA positions per task, Å) and ``bead_positions``
    (rows of (F, 3B), the same frames mapped) of scale ``source``, refits ``learned``
    (warm after the first fit) on the last ``max_frames`` frames, and returns
    ``{"backmapper": learned.to_params()}``; with fewer than ``min_frames`` frames the
    current (possibly unfitted) state is returned, and an unfitted backmapper uses the
    template method. Runs in the engine process; set ``torch.set_num_threads`` there or
    rely on ``learned.threads`` (default 1).
    """

    def __init__(self, learned: LearnedBackmapper, source: str = "aa", *,
                 min_frames: int = 20, max_frames: int = 2000) -> None:
        self.learned = learned
        self.source = source
        self.min_frames = int(min_frames)
        self.max_frames = int(max_frames)
        self._n_seen = 0

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Refit on the committed AA frames; see the class docstring."""
        scale = data.get(self.source)
        if (scale is None or len(scale) == 0 or "aa_frames" not in scale.y
                or "bead_positions" not in scale.y):
            return {"backmapper": self.learned.to_params()}
        aa = np.asarray(scale.y["aa_frames"], dtype=np.float64).reshape(
            -1, self.learned.bead.n_atoms, 3)
        cg = np.asarray(scale.y["bead_positions"], dtype=np.float64).reshape(
            -1, self.learned.bead.n_beads, 3)
        if len(aa) != len(cg):
            raise ValueError(f"scale {self.source!r} has {len(aa)} AA frames but {len(cg)} "
                             "bead frames")
        if len(aa) >= self.min_frames and len(aa) != self._n_seen:
            self.learned.fit(cg[-self.max_frames:], aa[-self.max_frames:])
            self._n_seen = len(aa)
            logger.info("learned backmapper refitted on %d AA frames", min(len(aa),
                                                                          self.max_frames))
        return {"backmapper": self.learned.to_params()}

    def __repr__(self) -> str:
        return f"BackmapRefresh(source={self.source!r}, min_frames={self.min_frames})"
