"""All-atom molecular dynamics with OpenMM, run in segments.

A segment starts from a configuration (positions, optionally velocities), runs Langevin
dynamics (``LangevinMiddleIntegrator``) for ``n_steps`` and returns one row per saved frame.
The last row of one segment is the start of the next, so a simulation can be stopped
after any segment or extended by more; with velocities in the row the continuation is the
same trajectory the integrator would have produced in one piece, up to the random force.

Units at this module's boundary follow MDAnalysis: positions in Å, velocities in Å/ps,
energies in kJ/mol, forces in kJ/(mol Å). OpenMM works in nm inside.

Rows: a configuration of ``N`` atoms is the flattened ``(N, 3)`` positions (``3N`` numbers)
or positions followed by velocities (``6N`` numbers); :func:`segment` returns the latter.

Solvent models (``solvent=``): ``"vacuum"``, ``"obc2"`` (implicit, GB-OBC II, waters
and ions in the structure are removed) and ``"tip3p"`` (explicit; PME; a water box with
``padding`` is added when the structure has no water; needs a periodic box otherwise).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import app, unit

__all__ = [
    "ALANINE_DIPEPTIDE_PDB",
    "RESTRAINT_GROUP",
    "MolecularSystem",
    "build_system",
    "load_structure",
    "make_simulation",
    "restrained_window",
    "segment",
    "umbrella_mean_force",
    "wrap_angle",
]

logger = logging.getLogger(__name__)

ALANINE_DIPEPTIDE_PDB = str(Path(__file__).parent / "data" / "alanine_dipeptide.pdb")
"""ACE-ALA-NME (22 atoms), frame 0 of MDAnalysisTests' ``Amber/capped-ala`` (solute only)."""

RESTRAINT_GROUP = 31
"""OpenMM force group of restraints; reported energies and forces exclude it."""

NM = 10.0  # Å per nm
SOLVENTS = ("vacuum", "obc2", "tip3p")
_SOLVENT_FILES = {"vacuum": (), "obc2": ("implicit/obc2.xml",), "tip3p": ("amber14/tip3p.xml",)}


@dataclass(frozen=True)
class MolecularSystem:
    """An OpenMM system with its topology and start positions (Å, shape (N, 3))."""

    topology: app.Topology
    system: openmm.System
    positions: np.ndarray

    @property
    def n_atoms(self) -> int:
        """Number of particles, solvent included."""
        return int(self.system.getNumParticles())


def load_structure(source: Any) -> tuple[app.Topology, np.ndarray]:
    """Read a structure into an OpenMM topology (with bonds) and positions.

    Args:
        source: a PDB path; an Amber ``(prmtop, inpcrd/rst7)`` pair of paths; any other
            path or tuple of paths MDAnalysis reads (GRO, PSF+DCD, ...); or an MDAnalysis
            ``Universe``/``AtomGroup`` (its current frame).

    Returns:
        ``(topology, positions)``: positions in Å, shape (N, 3) float64.

    Raises:
        ValueError: if the source cannot be read.
    """
    if isinstance(source, str | os.PathLike) and str(source).lower().endswith((".pdb", ".ent")):
        pdb = app.PDBFile(str(source))
        return pdb.topology, _to_angstrom(pdb.getPositions(asNumpy=True))
    if isinstance(source, tuple) and len(source) == 2 and str(source[0]).lower().endswith(
            (".prmtop", ".parm7")) and str(source[1]).lower().endswith((".inpcrd", ".rst7")):
        prmtop = app.AmberPrmtopFile(str(source[0]))
        inpcrd = app.AmberInpcrdFile(str(source[1]))
        topology = prmtop.topology
        if inpcrd.boxVectors is not None:
            topology.setPeriodicBoxVectors(inpcrd.boxVectors)
        return topology, _to_angstrom(inpcrd.getPositions(asNumpy=True))
    return _load_with_mdanalysis(source)


def _load_with_mdanalysis(source: Any) -> tuple[app.Topology, np.ndarray]:
    import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention

    if isinstance(source, mda.Universe | mda.AtomGroup):
        atoms = source.atoms
    else:
        paths = source if isinstance(source, tuple | list) else (source,)
        try:
            atoms = mda.Universe(*[str(p) for p in paths]).atoms
        except Exception as error:  # MDAnalysis raises many types for unreadable files
            raise ValueError(f"cannot read structure {source!r}: {error}") from error
    # PDB is the common ground: OpenMM adds standard bonds from residue names.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "structure.pdb"
        atoms.write(str(path))
        pdb = app.PDBFile(str(path))
    return pdb.topology, np.asarray(atoms.positions, dtype=np.float64)


def _to_angstrom(quantity: Any) -> np.ndarray:
    return np.asarray(quantity.value_in_unit(unit.nanometer), dtype=np.float64) * NM


def build_system(
    structure: Any = ALANINE_DIPEPTIDE_PDB,
    *,
    forcefield: Sequence[str] = ("amber14-all.xml",),
    solvent: str = "obc2",
    padding: float = 10.0,
    cutoff: float = 9.0,
    constraints: str | None = "HBonds",
    hydrogen_mass: float | None = None,
) -> MolecularSystem:
    """Parametrize a structure with OpenMM force field XML files.

    Args:
        structure: anything :func:`load_structure` reads.
        forcefield: force field XML files (OpenMM's own or paths); the solvent model's file
            is added from ``solvent``.
        solvent: ``"vacuum"``, ``"obc2"`` (implicit) or ``"tip3p"`` (explicit, PME).
        padding: Å of water around the solute when ``tip3p`` adds a box.
        cutoff: Å, nonbonded cutoff of the explicit-solvent system.
        constraints: ``"HBonds"``, ``"AllBonds"``, ``"HAngles"`` or None.
        hydrogen_mass: amu for hydrogen mass repartitioning, None to keep masses.

    Returns:
        The system, its topology and positions (Å).

    Raises:
        ValueError: unknown solvent or constraint name.
    """
    if solvent not in SOLVENTS:
        raise ValueError(f"solvent must be one of {SOLVENTS}; got {solvent!r}")
    constraint_types = {None: None, "HBonds": app.HBonds, "AllBonds": app.AllBonds,
                        "HAngles": app.HAngles}
    if constraints not in constraint_types:
        raise ValueError(f"constraints must be one of {list(constraint_types)}; "
                         f"got {constraints!r}")
    topology, positions = load_structure(structure)
    ff = app.ForceField(*forcefield, *_SOLVENT_FILES[solvent])
    modeller = app.Modeller(topology, positions / NM * unit.nanometer)
    has_water = any(residue.name in ("HOH", "WAT", "SOL", "TIP3")
                    for residue in topology.residues())
    if solvent == "tip3p" and not has_water:
        modeller.addSolvent(ff, model="tip3p", padding=padding / NM * unit.nanometer)
    elif solvent != "tip3p" and has_water:
        modeller.deleteWater()
    options: dict[str, Any] = {"constraints": constraint_types[constraints]}
    if hydrogen_mass is not None:
        options["hydrogenMass"] = hydrogen_mass * unit.amu
    if solvent == "tip3p":
        options.update(nonbondedMethod=app.PME, nonbondedCutoff=cutoff / NM * unit.nanometer)
    else:
        options.update(nonbondedMethod=app.NoCutoff)
    system = ff.createSystem(modeller.topology, **options)
    return MolecularSystem(modeller.topology, system,
                           _to_angstrom(modeller.getPositions()).reshape(-1, 3))


def _cached_system(structure: Any, forcefield: Sequence[str], solvent: str,
                   constraints: str | None) -> MolecularSystem:
    key = tuple(map(str, structure)) if isinstance(structure, tuple | list) else str(structure)
    return _cached_system_by_key(key, tuple(forcefield), solvent, constraints)


@functools.lru_cache(maxsize=8)
def _cached_system_by_key(structure: str | tuple[str, ...], forcefield: tuple[str, ...],
                          solvent: str, constraints: str | None) -> MolecularSystem:
    # A worker runs many segments of one system: parametrize it once per process.
    return build_system(structure, forcefield=forcefield, solvent=solvent,
                        constraints=constraints)


def make_simulation(molecular: MolecularSystem, *, temperature: float = 300.0,
                    friction: float = 1.0, timestep: float = 2.0, platform: str = "CPU",
                    threads: int = 1, extra_forces: Sequence[openmm.Force] = (),
                    seed: int = 0) -> app.Simulation:
    """An OpenMM ``Simulation`` with a Langevin middle integrator.

    Args:
        molecular: the system; it is copied, so ``extra_forces`` do not leak into it.
        temperature: K. friction: 1/ps. timestep: fs.
        platform: ``"CPU"``, ``"CUDA"``, ``"OpenCL"``, ``"Reference"`` or ``"auto"``
            (CUDA when present, CPU otherwise).
        threads: CPU threads (CPU platform only).
        extra_forces: added to the copy in :data:`RESTRAINT_GROUP`.
        seed: of the integrator's random force (OpenMM reads it when the context is made).

    Returns:
        The simulation; positions are not set yet.
    """
    system = openmm.XmlSerializer.clone(molecular.system)
    for force in extra_forces:
        force.setForceGroup(RESTRAINT_GROUP)
        system.addForce(force)
    integrator = openmm.LangevinMiddleIntegrator(temperature * unit.kelvin,
                                                 friction / unit.picosecond,
                                                 timestep * unit.femtosecond)
    integrator.setRandomNumberSeed(_openmm_seed(seed))
    name = _platform_name(platform)
    chosen = openmm.Platform.getPlatformByName(name)
    properties = {"Threads": str(int(threads))} if name == "CPU" else {}
    return app.Simulation(molecular.topology, system, integrator, chosen, properties)


# Variables through which Parsl (HTEX ``available_accelerators``) or a launcher assigns a
# task its GPUs: NVIDIA, AMD, Intel.
GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")
GPU_PLATFORMS = ("CUDA", "HIP", "OpenCL")  # tried in this order when a GPU is assigned
PLATFORM_CODES = {"Reference": 0, "CPU": 1, "CUDA": 2, "OpenCL": 3, "HIP": 4}
"""The number ``segment(..., record_platform=True)`` stores per frame for each platform."""


def assigned_gpus(environ: Any = None) -> str | None:
    """The GPUs this task was given (the first of :data:`GPU_VARIABLES` that is set to
    something other than nothing or ``-1``), or None."""
    environ = os.environ if environ is None else environ
    for name in GPU_VARIABLES:
        value = environ.get(name, "").strip()
        if value and value not in ("-1", "NoDevFiles"):
            return value
    return None


def available_platforms() -> list[str]:
    """The OpenMM platforms this installation has."""
    return [openmm.Platform.getPlatform(i).getName()
            for i in range(openmm.Platform.getNumPlatforms())]


def choose_platform(platform: str = "auto", *, available: Sequence[str] | None = None,
                    gpus: str | None = None) -> str:
    """The OpenMM platform to run on.

    ``"auto"``: with a GPU assigned (``gpus``, default :func:`assigned_gpus`), CUDA, else
    HIP, else OpenCL; none of them -> CPU, with a warning naming the GPUs left unused.
    Without an assigned GPU: CUDA if present (a GPU machine with no pinning), else CPU
    (never OpenCL, which may be a CPU driver). A platform named explicitly must exist.

    Raises:
        ValueError: a named platform that is not available.
    """
    available = list(available_platforms() if available is None else available)
    if platform != "auto":
        if platform not in available:
            raise ValueError(f"OpenMM platform {platform!r} is not available; have "
                             f"{sorted(available)}")
        return platform
    gpus = assigned_gpus() if gpus is None else gpus
    if gpus is None:
        return "CUDA" if "CUDA" in available else "CPU"
    for name in GPU_PLATFORMS:
        if name in available:
            return name
    logger.warning("GPU %s assigned to this task but OpenMM has no GPU platform (have %s); "
                   "running on CPU", gpus, ", ".join(sorted(available)))
    return "CPU"


def _platform_name(platform: str) -> str:
    return choose_platform(platform)


def run_frames(simulation: app.Simulation, x: np.ndarray, *, seed: int, n_steps: int,
               stride: int, temperature: float, minimize: bool = False,
               trajectory: str | Path | None = None) -> dict[str, np.ndarray]:
    """Run ``n_steps`` from row ``x`` and collect every ``stride``-th frame.

    Args:
        simulation: from :func:`make_simulation` (or any OpenMM simulation).
        x: (3N,) positions in Å or (6N,) positions and velocities (Å/ps).
        seed: seeds the Maxwell-Boltzmann velocities when ``x`` has none (the random
            force is seeded in :func:`make_simulation`).
        n_steps: integration steps, a positive multiple of ``stride``.
        temperature: K, for fresh velocities.
        minimize: minimize the energy first (only when no velocities are given).
        trajectory: a DCD path to write the frames to, or None.

    Returns:
        ``{"x": (F, 6N) positions (Å) and velocities (Å/ps), "energy": (F,) potential
        energy (kJ/mol), "forces": (F, 3N) kJ/(mol Å)}`` with ``F = n_steps // stride``;
        energy and forces leave out :data:`RESTRAINT_GROUP`.

    Raises:
        ValueError: bad shapes or step counts.
        FloatingPointError: the integration produced non-finite positions.
    """
    n_atoms = simulation.system.getNumParticles()
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size not in (3 * n_atoms, 6 * n_atoms):
        raise ValueError(f"x must hold 3N or 6N numbers for N={n_atoms} atoms; got {x.size}")
    if stride < 1 or n_steps < stride or n_steps % stride:
        raise ValueError(f"n_steps must be a positive multiple of stride; got {n_steps}, {stride}")
    context = simulation.context
    context.setPositions(x[: 3 * n_atoms].reshape(-1, 3) / NM)
    if x.size == 6 * n_atoms:
        context.setVelocities(x[3 * n_atoms:].reshape(-1, 3) / NM)
    else:
        if minimize:
            simulation.minimizeEnergy(maxIterations=500)
        context.setVelocitiesToTemperature(temperature * unit.kelvin, _openmm_seed(seed + 1))
    groups = sum(1 << g for g in range(32) if g != RESTRAINT_GROUP)
    reporter = None
    if trajectory is not None:
        Path(trajectory).parent.mkdir(parents=True, exist_ok=True)
        reporter = app.DCDReporter(str(trajectory), stride)
        simulation.reporters.append(reporter)
    n_frames = n_steps // stride
    rows = np.empty((n_frames, 6 * n_atoms))
    energy = np.empty(n_frames)
    forces = np.empty((n_frames, 3 * n_atoms))
    try:
        for frame in range(n_frames):
            simulation.step(stride)
            state = context.getState(getPositions=True, getVelocities=True)
            rows[frame, : 3 * n_atoms] = state.getPositions(asNumpy=True)._value.ravel() * NM
            rows[frame, 3 * n_atoms:] = state.getVelocities(asNumpy=True)._value.ravel() * NM
            measured = context.getState(getEnergy=True, getForces=True, groups=groups)
            energy[frame] = measured.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
            forces[frame] = measured.getForces(asNumpy=True)._value.ravel() / NM
    finally:
        if reporter is not None:
            simulation.reporters.remove(reporter)
            reporter._out.close()
    if not np.all(np.isfinite(rows)):
        raise FloatingPointError("MD produced non-finite positions; reduce the time step")
    return {"x": rows, "energy": energy, "forces": forces}


def _openmm_seed(seed: int) -> int:
    # OpenMM takes a 32-bit int and treats 0 as "pick a random seed": keep it nonzero.
    return int(seed) % 2_147_483_646 + 1


def segment(
    x: np.ndarray,
    *,
    seed: int,
    structure: str | tuple[str, ...] = ALANINE_DIPEPTIDE_PDB,
    forcefield: Sequence[str] = ("amber14-all.xml",),
    solvent: str = "obc2",
    constraints: str | None = "HBonds",
    n_steps: int = 5000,
    stride: int = 500,
    temperature: float = 300.0,
    friction: float = 1.0,
    timestep: float = 2.0,
    minimize: bool = True,
    platform: str = "CPU",
    threads: int = 1,
    artifacts_dir: str | None = None,
    record_platform: bool = False,
) -> dict[str, np.ndarray]:
    """AA app: one segment of Langevin MD of ``structure`` from row ``x``.

    Continue a simulation by passing the last returned row as ``x`` of the next segment.
    Rows of an explicit-solvent system include the waters (and the box is the one built
    for ``structure``).

    Args:
        x: (3N,) positions (Å) or (6N,) positions and velocities (Å/ps) of the parametrized
            system (solvent included); an empty array starts from the structure's positions.
        seed: random force and initial velocities.
        structure: a path (or Amber pair of paths) :func:`load_structure` reads.
        forcefield, solvent, constraints: see :func:`build_system`.
        n_steps, stride: steps, and steps between saved frames.
        temperature: K. friction: 1/ps. timestep: fs.
        minimize: minimize before starting from positions only.
        platform, threads: see :func:`make_simulation`.
        artifacts_dir: if given, the trajectory is written to
            ``<artifacts_dir>/<seed>/trajectory.dcd`` with ``topology.pdb`` beside it, and
            the platform used to ``platform.txt``.
        record_platform: also return ``"platform"``, the :data:`PLATFORM_CODES` number of
            the OpenMM platform the task ran on, per frame (stored with the results).

    Returns:
        ``{"x": (F, 6N), "energy": (F,) kJ/mol, "forces": (F, 3N) kJ/(mol Å)}`` (and
        ``"platform": (F,)`` with ``record_platform``).
    """
    molecular = _cached_system(structure, forcefield, solvent, constraints)
    simulation = make_simulation(molecular, temperature=temperature, friction=friction,
                                 timestep=timestep, platform=platform, threads=threads,
                                 seed=seed)
    x = np.asarray(x, dtype=np.float64).ravel()
    start = molecular.positions.ravel() if x.size == 0 else x
    trajectory = _artifact_paths(artifacts_dir, seed, molecular.topology, start)
    used = simulation.context.getPlatform().getName()
    logger.info("segment seed %d on OpenMM platform %s (GPUs assigned: %s)", seed, used,
                assigned_gpus())
    if trajectory is not None:
        (Path(trajectory).parent / "platform.txt").write_text(used + "\n")
    result = run_frames(simulation, start, seed=seed, n_steps=n_steps, stride=stride,
                        temperature=temperature, minimize=minimize, trajectory=trajectory)
    if record_platform:
        result["platform"] = np.full(len(result["energy"]), float(PLATFORM_CODES.get(used, -1)))
    return result


def _artifact_paths(artifacts_dir: str | None, seed: int, topology: app.Topology,
                    positions: np.ndarray) -> Path | None:
    if artifacts_dir is None:
        return None
    folder = Path(artifacts_dir) / str(seed)
    folder.mkdir(parents=True, exist_ok=True)
    n_atoms = topology.getNumAtoms()
    with open(folder / "topology.pdb", "w") as handle:
        start = positions[: 3 * n_atoms].reshape(-1, 3) / NM * unit.nanometer
        app.PDBFile.writeFile(topology, start, handle)
    return folder / "trajectory.dcd"


def dihedral_restraints(quadruples: np.ndarray, targets: np.ndarray,
                        k: float) -> openmm.CustomTorsionForce:
    """Harmonic dihedral restraints ``k/2 dphi^2`` (``dphi`` wrapped to [-pi, pi]).

    Args:
        quadruples: (m, 4) atom indices. targets: (m,) radians. k: kJ/(mol rad^2).
    """
    force = openmm.CustomTorsionForce(
        "0.5*k_dihedral*d^2; d=min(dt, 2*pi-dt); dt=abs(theta-theta0); pi=3.141592653589793")
    force.addGlobalParameter("k_dihedral", float(k))
    force.addPerTorsionParameter("theta0")
    for quadruple, target in zip(np.asarray(quadruples, int), targets, strict=True):
        force.addTorsion(*(int(a) for a in quadruple), [float(target)])
    return force


def restrained_window(
    x: np.ndarray,
    *,
    seed: int,
    dihedrals: np.ndarray,
    bead_weights: np.ndarray | None = None,
    bead_force_weights: np.ndarray | None = None,
    restraint_k: float = 500.0,
    structure: str = ALANINE_DIPEPTIDE_PDB,
    forcefield: Sequence[str] = ("amber14-all.xml",),
    solvent: str = "obc2",
    constraints: str | None = "HBonds",
    n_steps: int = 5000,
    stride: int = 100,
    equilibration: int = 1000,
    temperature: float = 300.0,
    friction: float = 1.0,
    timestep: float = 2.0,
    platform: str = "CPU",
    threads: int = 1,
    artifacts_dir: str | None = None,
) -> dict[str, np.ndarray]:
    """AA app for scale bridging: a window of MD with dihedrals held near their start values.

    The dihedrals (e.g. a peptide's phi and psi, functions of the coarse-grained beads
    only) are restrained harmonically at their values in ``x``; the mean potential
    energy (restraint excluded) over the window is the AA quantity of interest at that
    CG configuration. Because the restraint depends on the CG coordinates only, the
    atomistic distribution *given* the CG configuration is unbiased, so the mapped forces
    returned are valid force-matching data for the CG model.

    Args:
        x: (3N,) positions (Å) of the solute, e.g. a backmapped structure.
        seed: seed of velocities and random force.
        dihedrals: (m, 4) atom indices of the restrained dihedrals.
        bead_weights, bead_force_weights: (B, N) position and force maps
            (see ``apps.mapping.BeadMap``); with them, mapped bead positions and forces of
            every frame are returned.
        restraint_k: kJ/(mol rad^2).
        equilibration: steps run (not reported) before the window; a multiple of stride.
        Other arguments: as in :func:`segment`.

    Mean force (umbrella integration). With the restraint ``k/2 (xi - xi0)^2`` on each
    dihedral, the window samples the biased distribution; if it is close to normal, the
    gradient of the free energy ``F(xi) = -kT ln P(xi)`` at the window's mean ``<xi>`` is

        dF/dxi (<xi>) = k (xi0 - <xi>)      (Kastner and Thiel, J Chem Phys 2005)

    returned as ``mean_force`` (kJ/(mol rad)) with ``mean_force_stderr`` = ``k`` times the
    block-average standard error of ``<xi>``; it belongs at ``dihedrals`` (= ``<xi>``), not
    at the centre ``restraint_centre`` (= ``xi0``). A stiffer restraint keeps ``<xi>`` near
    ``xi0`` but raises the force noise (sd ``sqrt(k kT)`` per frame); 200-500 kJ/(mol rad^2)
    and windows of a few ps are usual for alanine dipeptide.

    Returns:
        ``{"x": (1, 3N) start positions, "energy": (1,) mean potential energy (kJ/mol),
        "energy_stderr": (1,) its standard error from block averages (kJ/mol),
        "dihedrals": (1, m) mean restrained dihedrals (radians, circular mean),
        "restraint_centre": (1, m) the restraint centres xi0 (radians),
        "mean_force": (1, m) kJ/(mol rad), "mean_force_stderr": (1, m) kJ/(mol rad),
        "dihedral_series": (1, F, m) the restrained dihedrals of every frame (radians)}``
        and, with bead maps, ``"bead_positions": (1, F, 3B)`` Å and
        ``"bead_forces": (1, F, 3B)`` kJ/(mol Å).
    """
    from apps.featurize import dihedral_angles

    molecular = _cached_system(structure, forcefield, solvent, constraints)
    x = np.asarray(x, dtype=np.float64).ravel()
    n = molecular.n_atoms
    if x.size != 3 * n:
        raise ValueError(f"x must hold the 3N={3 * n} solute positions in Å; got {x.size}")
    quadruples = np.asarray(dihedrals, dtype=np.int64).reshape(-1, 4)
    positions = x.reshape(n, 3)
    targets = dihedral_angles(positions[None, quadruples])[0]
    simulation = make_simulation(
        molecular, temperature=temperature, friction=friction, timestep=timestep,
        platform=platform, threads=threads, seed=seed,
        extra_forces=[dihedral_restraints(quadruples, targets, restraint_k)])
    if equilibration:
        warm = run_frames(simulation, x, seed=seed, n_steps=equilibration, stride=equilibration,
                          temperature=temperature, minimize=True)
        start = warm["x"][-1]
    else:
        start = x
    trajectory = _artifact_paths(artifacts_dir, seed, molecular.topology, x)
    frames = run_frames(simulation, start, seed=seed + 1, n_steps=n_steps, stride=stride,
                        temperature=temperature, trajectory=trajectory)
    energy = frames["energy"]
    angles = dihedral_angles(frames["x"][:, : 3 * n].reshape(-1, n, 3)[:, quadruples])
    force, force_stderr, mean_angle = umbrella_mean_force(angles, targets, restraint_k)
    out = {"x": x[None, :], "energy": np.array([energy.mean()]),
           "energy_stderr": np.array([_block_stderr(energy)]), "dihedrals": mean_angle[None],
           "restraint_centre": targets[None], "mean_force": force[None],
           "mean_force_stderr": force_stderr[None], "dihedral_series": angles[None]}
    if bead_weights is not None:
        W = np.asarray(bead_weights, dtype=np.float64)
        D = np.asarray(bead_force_weights if bead_force_weights is not None else
                       (W > 0).astype(np.float64))
        P = frames["x"][:, : 3 * n].reshape(-1, n, 3)
        F = frames["forces"].reshape(-1, n, 3)
        out["bead_positions"] = np.einsum("bn,fnk->fbk", W, P).reshape(1, len(P), -1)
        out["bead_forces"] = np.einsum("bn,fnk->fbk", D, F).reshape(1, len(F), -1)
    return out


def wrap_angle(angle: np.ndarray) -> np.ndarray:
    """Angles (radians) wrapped to [-pi, pi)."""
    return (np.asarray(angle, dtype=np.float64) + np.pi) % (2 * np.pi) - np.pi


def umbrella_mean_force(angles: np.ndarray, centre: np.ndarray, restraint_k: float,
                        n_blocks: int = 5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Free-energy gradient from a harmonically restrained window (umbrella integration).

    Args:
        angles: (F, m) restrained angles of each frame (radians).
        centre: (m,) restraint centres xi0 (radians).
        restraint_k: kJ/(mol rad^2) of ``k/2 (xi - xi0)^2``.
        n_blocks: blocks for the standard error (frames are correlated).

    Returns:
        ``(mean_force, stderr, location)``, each (m,): ``k (xi0 - <xi>)`` in kJ/(mol rad),
        its block-average standard error, and ``<xi>`` (radians, in [-pi, pi)), the point
        the gradient estimate belongs to.

    >>> angles = np.array([[0.10], [0.12], [0.08], [0.11], [0.09], [0.10]])
    >>> force, stderr, where = umbrella_mean_force(angles, np.array([0.0]), 100.0)
    >>> np.round(force, 6), np.round(where, 6)  # pulled to +0.1: F decreases towards +
    (array([-10.]), array([0.1]))
    """
    angles = np.asarray(angles, dtype=np.float64)
    if angles.ndim != 2:
        raise ValueError(f"angles must be (F, m), got shape {angles.shape}")
    centre = np.asarray(centre, dtype=np.float64).reshape(-1)
    deviation = wrap_angle(angles - centre)  # (F, m), small for a restrained window
    offset = deviation.mean(axis=0)
    stderr = np.array([_block_stderr(deviation[:, j], n_blocks)
                       for j in range(deviation.shape[1])])
    k = float(restraint_k)
    return -k * offset, k * stderr, wrap_angle(centre + offset)


def _block_stderr(values: np.ndarray, n_blocks: int = 5) -> float:
    """Standard error of the mean from ``n_blocks`` block means (correlated samples)."""
    values = np.asarray(values, dtype=np.float64)
    blocks = max(2, min(n_blocks, len(values) // 2))
    means = np.array([block.mean() for block in np.array_split(values, blocks)])
    return float(means.std(ddof=1) / math.sqrt(blocks))
