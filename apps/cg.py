"""Coarse-grained (CG) dynamics in OpenMM with a force field fitted to all-atom forces.

The CG force field of a chain of beads is a *prior* plus a *learned correction*:

* prior: harmonic bonds between consecutive beads and harmonic angles between
  consecutive triples, fitted by Boltzmann inversion of mapped AA positions
  (``r0 = <r>``, ``k = kT / var(r)``, the same for angles);
* correction: a Fourier series in the listed dihedrals (for alanine dipeptide phi and
  psi), ``U(theta) = sum_n a_n cos(n . theta) + b_n sin(n . theta)`` over integer wave
  vectors ``n`` with ``max |n_j| <= order``, fitted by force matching (Izvekov & Voth
  2005; Noid et al. 2008): ridge least squares between the mapped AA forces minus the
  prior's forces and the correction's forces, which are linear in the coefficients.
  With ``coupling="joint"`` (the default) every wave vector is used, ``(2 order + 1)^m - 1``
  terms for ``m`` torsions; with ``coupling="separable"`` only those with one nonzero
  component, i.e. one 1-D series per torsion, summed (``2 order m`` terms), which is what
  a longer chain (deca-alanine's 7 CA pseudo-dihedrals) needs;
* optionally, a soft excluded-volume repulsion ``epsilon (1 - r/sigma)^2`` for ``r < sigma``
  between beads ``i, j`` with ``|i - j| >= 3`` (off unless ``repulsion_sigma > 0``), so
  that a chain whose torsions are free cannot pass through itself.

The correction is linear in its parameters, so a refit is a small linear solve (well under
a second for thousands of frames), quick enough to run before every campaign round, and it
runs inside OpenMM as one ``CustomCompoundBondForce``. :class:`ForceMatchingRefresh` is the
``Scale(refresh_params=...)`` hook that refits from the AA results in the store.

Units: Å, radians, kJ/mol, amu, K, fs, 1/ps; OpenMM works in nm inside.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import openmm
from openmm import unit

from apps.featurize import dihedral_angles

__all__ = [
    "COUPLINGS",
    "CGForceField",
    "ForceMatchingRefresh",
    "build_cg_system",
    "cg_forces",
    "chain_force_field",
    "correction_basis",
    "dihedral_gradients",
    "fit_boltzmann_prior",
    "fit_force_matching",
    "force_matching_error",
    "initial_walkers",
    "langevin",
    "n_correction_terms",
    "repulsion_pairs",
]

logger = logging.getLogger(__name__)

NM = 10.0  # Å per nm
BOLTZMANN = 0.0083144626  # kJ/(mol K)
COUPLINGS = ("joint", "separable")
"""Kinds of torsion correction: every wave vector, or one 1-D series per torsion."""


@dataclass(frozen=True)
class CGForceField:
    """Parameters of a CG chain model (all numpy arrays, so they travel as app params).

    Attributes:
        masses: (B,) amu.
        bonds: (nb, 2) bead indices; bond_r0 (nb,) Å; bond_k (nb,) kJ/(mol Å^2).
        angles: (na, 3) bead indices; angle_theta0 (na,) rad; angle_k (na,) kJ/(mol rad^2).
        torsions: (m, 4) bead indices of the dihedrals the correction depends on.
        order: largest wave number of the Fourier correction.
        weights: (K,) kJ/mol, coefficients of :func:`correction_basis` (zeros = prior only).
        names: bead names (for trajectories).
        coupling: ``"joint"`` (all wave vectors of the torsions) or ``"separable"`` (one
            1-D series per torsion, summed); see :func:`correction_basis`.
        repulsion_sigma: Å, range of the soft repulsion between beads ``|i - j| >= 3``;
            0 (the default) leaves it out.
        repulsion_epsilon: kJ/mol, its height at ``r = 0``.
    """

    masses: np.ndarray
    bonds: np.ndarray
    bond_r0: np.ndarray
    bond_k: np.ndarray
    angles: np.ndarray
    angle_theta0: np.ndarray
    angle_k: np.ndarray
    torsions: np.ndarray
    order: int
    weights: np.ndarray
    names: tuple[str, ...] = ()
    coupling: str = "joint"
    repulsion_sigma: float = 0.0
    repulsion_epsilon: float = 100.0

    def __post_init__(self) -> None:
        if self.coupling not in COUPLINGS:
            raise ValueError(f"coupling must be one of {COUPLINGS}; got {self.coupling!r}")

    @property
    def n_beads(self) -> int:
        """B."""
        return len(self.masses)

    def to_params(self) -> dict[str, Any]:
        """A plain dict (numpy arrays, an int, a tuple, a str, floats) for an app's
        ``force_field=``."""
        return {field: getattr(self, field) for field in self.__dataclass_fields__}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CGForceField:
        """Inverse of :meth:`to_params` (params without the newer scalar fields get their
        defaults)."""
        scalars = ("order", "names", *_SCALAR_DEFAULTS)
        arrays = {key: np.asarray(value) for key, value in params.items()
                  if key not in scalars}
        extra = {key: type(default)(params.get(key, default))
                 for key, default in _SCALAR_DEFAULTS.items()}
        return cls(**arrays, order=int(params["order"]), names=tuple(params.get("names", ())),
                   **extra)


_SCALAR_DEFAULTS: dict[str, Any] = {"coupling": "joint", "repulsion_sigma": 0.0,
                                    "repulsion_epsilon": 100.0}


def n_correction_terms(n_torsions: int, order: int, coupling: str = "joint") -> int:
    """K, the number of correction coefficients: ``(2 order + 1)^m - 1`` (joint) or
    ``2 order m`` (separable) for ``m`` torsions."""
    if coupling == "separable":
        return 2 * order * n_torsions
    return (2 * order + 1) ** n_torsions - 1


def _wave_vectors(n_torsions: int, order: int, coupling: str = "joint") -> np.ndarray:
    """Integer wave vectors of a real Fourier basis: one of each +-n pair, n != 0.

    Separable: ``n e_j`` for torsion ``j = 0..m-1`` (outer) and ``n = 1..order`` (inner).
    """
    if coupling == "separable":
        vectors = np.zeros((n_torsions * order, n_torsions))
        for j in range(n_torsions):
            vectors[j * order:(j + 1) * order, j] = np.arange(1, order + 1)
        return vectors
    if coupling != "joint":
        raise ValueError(f"coupling must be one of {COUPLINGS}; got {coupling!r}")
    vectors = [v for v in itertools.product(range(-order, order + 1), repeat=n_torsions)
               if any(v) and v[next(i for i, c in enumerate(v) if c)] > 0]
    return np.array(vectors, dtype=np.float64).reshape(-1, n_torsions)


def correction_basis(angles: np.ndarray, order: int,
                     coupling: str = "joint") -> tuple[np.ndarray, np.ndarray]:
    """Fourier basis of the correction and its derivatives.

    Args:
        angles: (F, m) dihedrals, radians.
        order: largest wave number.
        coupling: ``"joint"`` or ``"separable"``.

    Returns:
        ``(values (F, K), derivatives (F, K, m))`` with ``K = (2 order + 1)^m - 1``
        (joint) or ``K = 2 order m`` (separable, wave vectors ``n e_j``, torsion-major):
        cosines of every wave vector first, then sines.
    """
    angles = np.asarray(angles, dtype=np.float64)
    n = _wave_vectors(angles.shape[1], order, coupling)
    phase = angles @ n.T
    cos, sin = np.cos(phase), np.sin(phase)
    values = np.concatenate([cos, sin], axis=1)
    derivatives = np.concatenate([-sin[..., None] * n, cos[..., None] * n], axis=1)
    return values, derivatives


def dihedral_gradients(positions: np.ndarray) -> np.ndarray:
    """Gradient of the dihedral of four points with respect to them (Blondel & Karplus).

    Args:
        positions: (..., 4, 3).

    Returns:
        (..., 4, 3), radians per unit of ``positions``.
    """
    p = np.asarray(positions, dtype=np.float64)
    f, g, h = p[..., 0, :] - p[..., 1, :], p[..., 1, :] - p[..., 2, :], p[..., 3, :] - p[..., 2, :]
    a, b = np.cross(f, g), np.cross(h, g)
    aa = np.einsum("...k,...k->...", a, a)[..., None]
    bb = np.einsum("...k,...k->...", b, b)[..., None]
    gn = np.linalg.norm(g, axis=-1)[..., None]
    fg = np.einsum("...k,...k->...", f, g)[..., None]
    hg = np.einsum("...k,...k->...", h, g)[..., None]
    d0 = -gn / aa * a
    d3 = gn / bb * b
    d1 = gn / aa * a + fg / (aa * gn) * a - hg / (bb * gn) * b
    d2 = -gn / bb * b - fg / (aa * gn) * a + hg / (bb * gn) * b
    return np.stack([d0, d1, d2, d3], axis=-2)


def chain_force_field(masses: Sequence[float], positions: np.ndarray, *,
                      torsions: Sequence[Sequence[int]] | None = None, order: int = 3,
                      bond_k: float = 1000.0, angle_k: float = 200.0,
                      names: Sequence[str] = (), coupling: str = "joint",
                      repulsion_sigma: float = 0.0,
                      repulsion_epsilon: float = 100.0) -> CGForceField:
    """A prior-only force field for a linear chain, geometry taken from ``positions``.

    Args:
        masses: (B,) amu.
        positions: (B, 3) Å, a reference configuration (e.g. the mapped AA structure).
        torsions: dihedrals of the correction; default: the first two consecutive ones.
        order: Fourier order of the correction.
        bond_k: kJ/(mol Å^2). angle_k: kJ/(mol rad^2). Placeholders until
            :func:`fit_boltzmann_prior` replaces them with fitted values.
        names: bead names.
        coupling: ``"joint"`` or ``"separable"`` correction (see :class:`CGForceField`).
        repulsion_sigma, repulsion_epsilon: Å and kJ/mol of the optional soft repulsion
            between beads ``|i - j| >= 3``; ``repulsion_sigma=0`` leaves it out.
    """
    masses = np.asarray(masses, dtype=np.float64)
    n = len(masses)
    if n < 4:
        raise ValueError(f"a chain with a dihedral needs >= 4 beads; got {n}")
    positions = np.asarray(positions, dtype=np.float64).reshape(n, 3)
    bonds = np.array([(i, i + 1) for i in range(n - 1)])
    angles = np.array([(i, i + 1, i + 2) for i in range(n - 2)])
    if torsions is None:
        torsions = [(i, i + 1, i + 2, i + 3) for i in range(min(2, n - 3))]
    torsions = np.asarray(torsions, dtype=np.int64).reshape(-1, 4)
    r0 = np.linalg.norm(positions[bonds[:, 1]] - positions[bonds[:, 0]], axis=1)
    theta0 = _angles(positions[None], angles)[0]
    K = n_correction_terms(len(torsions), order, coupling)
    return CGForceField(masses, bonds, r0, np.full(len(bonds), bond_k), angles, theta0,
                        np.full(len(angles), angle_k), torsions, int(order), np.zeros(K),
                        tuple(names), coupling, float(repulsion_sigma),
                        float(repulsion_epsilon))


def _angles(positions: np.ndarray, triples: np.ndarray) -> np.ndarray:
    u = positions[:, triples[:, 0]] - positions[:, triples[:, 1]]
    v = positions[:, triples[:, 2]] - positions[:, triples[:, 1]]
    cos = np.einsum("fak,fak->fa", u, v) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1))
    return np.arccos(np.clip(cos, -1.0, 1.0))


def fit_boltzmann_prior(force_field: CGForceField, positions: np.ndarray,
                        temperature: float = 300.0, max_bond_k: float = 5000.0) -> CGForceField:
    """Harmonic bonds and angles by Boltzmann inversion of sampled bead positions.

    Args:
        force_field: supplies the topology; its bonded parameters are replaced.
        positions: (F, B, 3) Å, F >= 2 mapped AA frames.
        temperature: K of the samples.
        max_bond_k: cap, kJ/(mol Å^2); it keeps the CG time step stable (2 fs at the
            default masses) when the AA bonds are stiff.

    Returns:
        A copy with fitted ``bond_r0, bond_k, angle_theta0, angle_k``.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, force_field.n_beads, 3)
    if len(positions) < 2:
        raise ValueError("Boltzmann inversion needs at least 2 frames")
    kT = BOLTZMANN * temperature
    b = force_field.bonds
    r = np.linalg.norm(positions[:, b[:, 1]] - positions[:, b[:, 0]], axis=-1)
    theta = _angles(positions, force_field.angles)
    return replace(force_field, bond_r0=r.mean(0),
                   bond_k=np.minimum(kT / np.maximum(r.var(0), 1e-12), max_bond_k),
                   angle_theta0=theta.mean(0), angle_k=kT / np.maximum(theta.var(0), 1e-12))


def _correction_expression(force_field: CGForceField) -> tuple[str, list[int]]:
    """OpenMM expression of the correction over the torsions' beads, and those beads."""
    beads = sorted({int(i) for i in force_field.torsions.ravel()})
    slot = {bead: k + 1 for k, bead in enumerate(beads)}
    n = _wave_vectors(len(force_field.torsions), force_field.order, force_field.coupling)
    terms = []
    for kind, offset in (("cos", 0), ("sin", len(n))):
        for k, vector in enumerate(n):
            phase = "+".join(f"({int(c)})*t{j}" for j, c in enumerate(vector) if c)
            terms.append(f"w{offset + k}*{kind}({phase})")
    definitions = [f"t{j}=dihedral({','.join(f'p{slot[int(i)]}' for i in quad)})"
                   for j, quad in enumerate(force_field.torsions)]
    return "; ".join(["+".join(terms), *definitions]), beads


def repulsion_pairs(n_beads: int, min_separation: int = 3) -> np.ndarray:
    """(p, 2) bead pairs ``i < j`` with ``j - i >= min_separation`` (the repelled pairs)."""
    return np.array([(i, j) for i in range(n_beads) for j in range(i + min_separation, n_beads)],
                    dtype=np.int64).reshape(-1, 2)


def build_cg_system(force_field: CGForceField) -> openmm.System:
    """The OpenMM system of a CG force field (beads in vacuum): bonds, angles, the
    torsion correction and, with ``repulsion_sigma > 0``, the soft repulsion
    ``epsilon (1 - r/sigma)^2`` (r < sigma) between beads ``|i - j| >= 3``."""
    system = openmm.System()
    for mass in force_field.masses:
        system.addParticle(float(mass))
    bonds = openmm.HarmonicBondForce()
    for (i, j), r0, k in zip(force_field.bonds, force_field.bond_r0, force_field.bond_k,
                             strict=True):
        bonds.addBond(int(i), int(j), float(r0) / NM, float(k) * NM**2)
    system.addForce(bonds)
    angles = openmm.HarmonicAngleForce()
    for (i, j, k), theta0, kt in zip(force_field.angles, force_field.angle_theta0,
                                     force_field.angle_k, strict=True):
        angles.addAngle(int(i), int(j), int(k), float(theta0), float(kt))
    system.addForce(angles)
    if len(force_field.torsions):
        expression, beads = _correction_expression(force_field)
        correction = openmm.CustomCompoundBondForce(len(beads), expression)
        for k in range(len(force_field.weights)):
            correction.addPerBondParameter(f"w{k}")
        correction.addBond(beads, [float(w) for w in force_field.weights])
        system.addForce(correction)
    pairs = repulsion_pairs(force_field.n_beads)
    if force_field.repulsion_sigma > 0 and len(pairs):
        repulsion = openmm.CustomBondForce(
            "repulsion_epsilon*step(1-s)*(1-s)^2; s=r/repulsion_sigma")
        repulsion.addGlobalParameter("repulsion_epsilon", float(force_field.repulsion_epsilon))
        repulsion.addGlobalParameter("repulsion_sigma", float(force_field.repulsion_sigma) / NM)
        for i, j in pairs:
            repulsion.addBond(int(i), int(j), [])
        system.addForce(repulsion)
    return system


def _context(force_field: CGForceField, platform: str = "Reference",
             threads: int = 1) -> openmm.Context:
    system = build_cg_system(force_field)
    integrator = openmm.VerletIntegrator(0.001)
    chosen = openmm.Platform.getPlatformByName(platform)
    properties = {"Threads": str(threads)} if platform == "CPU" else {}
    return openmm.Context(system, integrator, chosen, properties)


def cg_forces(force_field: CGForceField, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Energies and forces of the CG model, evaluated by OpenMM.

    Args:
        positions: (F, B, 3) Å.

    Returns:
        ``(energy (F,) kJ/mol, forces (F, B, 3) kJ/(mol Å))``.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, force_field.n_beads, 3)
    context = _context(force_field)
    energy = np.empty(len(positions))
    forces = np.empty_like(positions)
    for f, frame in enumerate(positions):
        context.setPositions(frame / NM)
        state = context.getState(getEnergy=True, getForces=True)
        energy[f] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        forces[f] = state.getForces(asNumpy=True)._value / NM
    return energy, forces


def _correction_design(force_field: CGForceField, positions: np.ndarray) -> np.ndarray:
    """(F, B, 3, K): the correction's force per unit of each coefficient."""
    F = len(positions)
    torsion_positions = positions[:, force_field.torsions]  # (F, m, 4, 3)
    _, dU = correction_basis(dihedral_angles(torsion_positions), force_field.order,
                             force_field.coupling)  # (F, K, m)
    grad = dihedral_gradients(torsion_positions)  # (F, m, 4, 3)
    design = np.zeros((F, force_field.n_beads, 3, dU.shape[1]))
    for j, quad in enumerate(force_field.torsions):
        for slot, bead in enumerate(quad):
            design[:, bead] -= np.einsum("fk,fc->fck", dU[:, :, j], grad[:, j, slot])
    return design


def fit_force_matching(force_field: CGForceField, positions: np.ndarray, forces: np.ndarray,
                       *, temperature: float = 300.0, ridge: float = 1e-3,
                       refit_prior: bool = True) -> CGForceField:
    """Fit the correction's coefficients by force matching.

    Minimizes ``sum |F_mapped - F_prior - F_correction(w)|^2 + ridge * N |w|^2`` over the
    frames (``N`` = number of force components); the solution is one linear solve.

    Args:
        force_field: topology and (unless ``refit_prior``) the prior.
        positions: (F, B, 3) mapped AA positions, Å.
        forces: (F, B, 3) mapped AA forces, kJ/(mol Å).
        temperature: K, for the Boltzmann-inverted prior.
        ridge: Tikhonov weight per force component, (kJ/(mol Å))^2 per (kJ/mol)^2.
        refit_prior: refit bonds and angles by :func:`fit_boltzmann_prior` first.

    Returns:
        A copy with fitted ``weights`` (and prior).
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, force_field.n_beads, 3)
    forces = np.asarray(forces, dtype=np.float64).reshape(positions.shape)
    if refit_prior:
        force_field = fit_boltzmann_prior(force_field, positions, temperature)
    prior = replace(force_field, weights=np.zeros_like(force_field.weights))
    _, prior_forces = cg_forces(prior, positions)
    A = _correction_design(force_field, positions).reshape(-1, len(force_field.weights))
    residual = (forces - prior_forces).ravel()
    lhs = A.T @ A + ridge * len(residual) * np.eye(A.shape[1])
    weights = np.linalg.solve(lhs, A.T @ residual)
    return replace(force_field, weights=weights)


def force_matching_error(force_field: CGForceField, positions: np.ndarray,
                         forces: np.ndarray) -> float:
    """Root-mean-square difference between model and mapped forces, kJ/(mol Å)."""
    _, model = cg_forces(force_field, positions)
    return float(np.sqrt(np.mean((model - np.asarray(forces).reshape(model.shape)) ** 2)))


class ForceMatchingRefresh:
    """``Scale(refresh_params=...)`` hook: refit the CG force field from AA results.

    Reads ``bead_positions`` and ``bead_forces`` of scale ``source`` (rows of shape
    (F, 3B) per AA task, as returned by ``apps.md.restrained_window``) and returns
    ``{"force_field": fitted.to_params()}``; with fewer than ``min_frames`` frames the
    base force field is returned unchanged.
    """

    def __init__(self, base: CGForceField, source: str = "aa", *, temperature: float = 300.0,
                 ridge: float = 1e-3, min_frames: int = 20) -> None:
        self.base = base
        self.source = source
        self.temperature = temperature
        self.ridge = ridge
        self.min_frames = min_frames

    def __call__(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Fit on every committed AA frame; see the class docstring."""
        scale = data.get(self.source)
        if scale is None or len(scale) == 0 or "bead_forces" not in scale.y:
            return {"force_field": self.base.to_params()}
        B = self.base.n_beads
        positions = np.asarray(scale.y["bead_positions"]).reshape(-1, B, 3)
        forces = np.asarray(scale.y["bead_forces"]).reshape(-1, B, 3)
        if len(positions) < self.min_frames:
            return {"force_field": self.base.to_params()}
        fitted = fit_force_matching(self.base, positions, forces,
                                    temperature=self.temperature, ridge=self.ridge)
        logger.info("CG force field refitted on %d AA frames", len(positions))
        return {"force_field": fitted.to_params()}

    def __repr__(self) -> str:
        return f"ForceMatchingRefresh(source={self.source!r}, ridge={self.ridge})"


def initial_walkers(positions: np.ndarray, masses: np.ndarray, n: int, *,
                    temperature: float = 300.0, seed: int = 0) -> np.ndarray:
    """Start rows for ``n`` walkers: the same positions, Maxwell-Boltzmann velocities.

    Args:
        positions: (B, 3) Å. masses: (B,) amu. temperature: K. seed: of the velocities.

    Returns:
        (n, 6B) rows of positions (Å) and velocities (Å/ps), centre-of-mass motion removed.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    masses = np.asarray(masses, dtype=np.float64)
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(BOLTZMANN * temperature / masses)[:, None] * NM  # nm/ps -> Å/ps
    velocities = rng.standard_normal((n, len(masses), 3)) * sigma
    velocities -= np.einsum("b,nbk->nk", masses, velocities)[:, None] / masses.sum()
    return np.concatenate([np.tile(positions.ravel(), (n, 1)),
                           velocities.reshape(n, -1)], axis=1)


def langevin(
    x: np.ndarray,
    *,
    seed: int,
    force_field: Mapping[str, Any],
    n_steps: int = 20_000,
    stride: int = 200,
    temperature: float = 300.0,
    friction: float = 1.0,
    timestep: float = 2.0,
    platform: str = "CPU",
    threads: int = 1,
    artifacts_dir: str | None = None,
) -> dict[str, np.ndarray]:
    """CG app: one segment of Langevin dynamics of the CG model.

    Args:
        x: (3B,) bead positions (Å) or (6B,) positions and velocities (Å/ps); the last
            returned row continues the trajectory.
        seed: random force and initial velocities.
        force_field: :meth:`CGForceField.to_params` output (what
            :class:`ForceMatchingRefresh` returns).
        n_steps, stride: steps and steps between frames. temperature: K. friction: 1/ps.
        timestep: fs. platform, threads: OpenMM platform and CPU threads.
        artifacts_dir: if given, the frames are written to
            ``<artifacts_dir>/<seed>/cg.pdb`` and ``cg.xtc``.

    Returns:
        ``{"x": (F, 6B) positions and velocities, "energy": (F,) kJ/mol}``.
    """
    from apps.mapping import write_cg_trajectory
    from apps.md import MolecularSystem, make_simulation, run_frames

    ff = CGForceField.from_params(force_field)
    topology = openmm.app.Topology()
    chain = topology.addChain()
    for b in range(ff.n_beads):
        topology.addAtom(f"B{b}", None, topology.addResidue("CG", chain))
    start = np.asarray(x, dtype=np.float64).ravel()
    positions = start[: 3 * ff.n_beads].reshape(-1, 3)
    molecular = MolecularSystem(topology, build_cg_system(ff), positions)
    simulation = make_simulation(molecular, temperature=temperature, friction=friction,
                                 timestep=timestep, platform=platform, threads=threads,
                                 seed=seed)
    frames = run_frames(simulation, start, seed=seed, n_steps=n_steps, stride=stride,
                        temperature=temperature)
    if artifacts_dir is not None:
        names = ff.names or tuple(f"B{b}" for b in range(ff.n_beads))
        positions = frames["x"][:, : 3 * ff.n_beads].reshape(-1, ff.n_beads, 3)
        write_cg_trajectory(names, ff.masses, positions, f"{artifacts_dir}/{seed}")
    return {"x": frames["x"], "energy": frames["energy"]}
