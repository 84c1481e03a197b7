"""Deca-alanine (Ala10): a helix-coil test molecule, its AA window app and a CA-bead CG model.

Ala10 (zwitterionic, 103 atoms) in amber14 + OBC2 implicit solvent folds into an alpha
helix and unfolds again; with one bead per residue at its CA atom the CG chain has 10
beads whose 7 CA pseudo-dihedrals tell a helix (about +50 degrees each) from a coil.

* AA: :func:`aa_window` runs unrestrained Langevin MD (4 fs steps with hydrogen mass
  repartitioning) from a structure (e.g. a backmapped CG frame) and returns the window's
  helicity, end-to-end distance, mean energy and the CA-mapped positions and forces
  (force-matching data).
* CG: bonds and angles (Boltzmann inversion) plus a *separable* Fourier correction in the
  7 CA pseudo-dihedrals (force matching), fitted by ``python -m apps.peptide fit-cg``
  into ``apps/data/deca_alanine_cg.json`` (:func:`load_cg_model`); :func:`cg_pool` runs
  CG walkers with ``apps.cg.langevin``; ``python -m apps.peptide pool-stats`` measures how
  often they visit the helical state (:data:`HELICAL_STATE_THRESHOLD`).

Units: Å, Å/ps, kJ/mol, kJ/(mol Å), radians, K, fs (time step), amu.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openmm
from openmm import app

from apps import cg, md
from apps.featurize import dihedral_angles
from apps.mapping import BeadMap

__all__ = [
    "CG_MODEL_PATH",
    "CG_TORSIONS",
    "EXTENDED_PDB",
    "HELIX_PDB",
    "HELICAL_CA_RANGE",
    "HELICAL_STATE_THRESHOLD",
    "N_RESIDUES",
    "aa_window",
    "backbone_dihedrals",
    "ca_dihedrals",
    "ca_helicity",
    "ca_map",
    "cg_pool",
    "cg_start",
    "end_to_end",
    "fit_cg_model",
    "generate_aa_data",
    "helicity",
    "load_cg_model",
    "save_cg_model",
]

logger = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data"
HELIX_PDB = str(DATA / "deca_alanine_helix.pdb")
"""Ala10 alpha helix ((phi, psi) = (-57, -47) degrees), minimized in amber14 + OBC2."""
EXTENDED_PDB = str(DATA / "deca_alanine_extended.pdb")
"""Ala10 extended chain ((phi, psi) = (-140, 130) degrees), minimized in amber14 + OBC2."""
CG_MODEL_PATH = DATA / "deca_alanine_cg.json"
"""The fitted CG model written by ``python -m apps.peptide fit-cg``."""
N_RESIDUES = 10
N_ATOMS = 103

ALPHA_PHI = (-100.0, -30.0)
ALPHA_PSI = (-80.0, -5.0)
"""Degrees: the usual alpha-region box of the Ramachandran plot used by :func:`helicity`."""
HELICAL_CA_RANGE = (20.0, 80.0)
"""Degrees: CA pseudo-dihedrals counted as helical by :func:`ca_helicity` (helix ~ +50)."""
HELICAL_STATE_THRESHOLD = 0.8
"""``ca_helicity >= 0.8`` (at least 6 of the 7 CA pseudo-dihedrals helical) is the rare
helical state: 4 CG walkers of 200 ps from the extended start (``python -m apps.peptide
pool-stats``) spent 1.7-5.4% of their frames there (300-360 K), against 14-26% at >= 5 of 7.
The fraction grows with the walkers' length (they start extended; the fitted CG model's
equilibrium is more helical), so longer pools see it more often."""

CG_TORSIONS = np.array([(i, i + 1, i + 2, i + 3) for i in range(N_RESIDUES - 3)])
"""(7, 4) bead indices of the CA pseudo-dihedrals."""


@functools.cache
def _residue_atoms() -> tuple[tuple[dict[str, int], ...], np.ndarray]:
    """Per residue ``{atom name: index}`` and the (N,) standard atomic masses (amu)."""
    pdb = app.PDBFile(HELIX_PDB)
    residues = tuple({atom.name: atom.index for atom in residue.atoms()}
                     for residue in pdb.topology.residues())
    masses = np.array([atom.element.mass.value_in_unit(openmm.unit.dalton)
                       for atom in pdb.topology.atoms()])
    return residues, masses


@functools.cache
def ca_map() -> BeadMap:
    """One bead per residue at its CA atom (beads ``CA1..CA10``, over the 103 atoms).

    Positions: the CA atom's (a slice map; ``atom_indices`` holds the CA alone, so
    backmapping treats the beads as single atoms). Forces: the sum of the forces on all
    atoms of the residue (``force_weights`` is 1 on the residue's atoms). With the
    position on the CA only, any force weights that are 1 on the bead's own CA and 0 on
    the other CAs give a consistent force map (Ciccotti et al. 2005; Noid et al. 2008);
    summing the residue is the usual aggregated choice (Krämer et al., JCTC 2023): its
    noise is lower than the CA's own force, and the HBonds constraint forces (all within
    a residue) cancel from it, whereas OpenMM's reported forces leave them out.
    ``masses`` are the residues' total masses (71.08 amu per inner Ala), so CG dynamics
    move residue-sized beads.
    """
    residues, masses = _residue_atoms()
    n = len(masses)
    W = np.zeros((N_RESIDUES, n))
    D = np.zeros((N_RESIDUES, n))
    bead_masses = np.zeros(N_RESIDUES)
    for b, atoms in enumerate(residues):
        W[b, atoms["CA"]] = 1.0
        members = list(atoms.values())
        D[b, members] = 1.0
        bead_masses[b] = masses[members].sum()
    names = tuple(f"CA{b + 1}" for b in range(N_RESIDUES))
    return BeadMap(names, W, D, tuple((atoms["CA"],) for atoms in residues), bead_masses)


def _backbone_quadruples() -> np.ndarray:
    """(8, 2, 4) atom indices of phi (C-N-CA-C) and psi (N-CA-C-N) of residues 2..9."""
    residues, _ = _residue_atoms()
    quadruples = []
    for i in range(1, N_RESIDUES - 1):
        previous, this, following = residues[i - 1], residues[i], residues[i + 1]
        phi = (previous["C"], this["N"], this["CA"], this["C"])
        psi = (this["N"], this["CA"], this["C"], following["N"])
        quadruples.append((phi, psi))
    return np.array(quadruples)


def _aa_positions(positions: np.ndarray) -> np.ndarray:
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim <= 2 and positions.size in (3 * N_ATOMS, 6 * N_ATOMS):
        positions = positions.reshape(1, -1)
    if positions.ndim == 2:
        if positions.shape[1] not in (3 * N_ATOMS, 6 * N_ATOMS):
            raise ValueError(f"AA rows must hold 3N or 6N numbers (N={N_ATOMS}); "
                             f"got {positions.shape}")
        positions = positions[:, : 3 * N_ATOMS].reshape(-1, N_ATOMS, 3)
    if positions.shape[1:] != (N_ATOMS, 3):
        raise ValueError(f"AA frames must be (F, {N_ATOMS}, 3); got {positions.shape}")
    return positions


def backbone_dihedrals(positions: np.ndarray) -> np.ndarray:
    """Backbone (phi, psi) of residues 2..9.

    Args:
        positions: AA frames (F, 103, 3) Å (or rows (F, 309) / (F, 618)).

    Returns:
        (F, 8, 2) radians in [-pi, pi]: ``[..., 0]`` phi, ``[..., 1]`` psi.
    """
    positions = _aa_positions(positions)
    return dihedral_angles(positions[:, _backbone_quadruples()])


def helicity(positions: np.ndarray) -> np.ndarray:
    """Fraction of residues 2..9 in the alpha region of the Ramachandran plot.

    A residue counts as helical when phi is in [-100, -30] degrees and psi in [-80, -5]
    degrees, the usual alpha-region box.

    Args:
        positions: AA frames (F, 103, 3) Å (or rows).

    Returns:
        (F,) in [0, 1].
    """
    angles = np.degrees(backbone_dihedrals(positions))
    phi, psi = angles[..., 0], angles[..., 1]
    inside = ((phi >= ALPHA_PHI[0]) & (phi <= ALPHA_PHI[1])
              & (psi >= ALPHA_PSI[0]) & (psi <= ALPHA_PSI[1]))
    return inside.mean(axis=1)


def _cg_positions(cg_frames: np.ndarray) -> np.ndarray:
    x = np.asarray(cg_frames, dtype=np.float64)
    if x.ndim == 3:
        return x.reshape(len(x), N_RESIDUES, 3)
    if x.ndim == 1 or x.shape == (N_RESIDUES, 3):
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] < 3 * N_RESIDUES:
        raise ValueError(f"CG frames must be (F, 10, 3) or rows (F, >= 30); got {x.shape}")
    return x[:, : 3 * N_RESIDUES].reshape(len(x), N_RESIDUES, 3)


def ca_dihedrals(cg_frames: np.ndarray) -> np.ndarray:
    """CA pseudo-dihedrals of beads (i, i+1, i+2, i+3), i = 0..6.

    Args:
        cg_frames: (F, 10, 3) bead positions Å, or rows (F, 30) positions / (F, 60)
            positions and velocities (the first 30 numbers are used); one frame (10, 3)
            or row (30,) / (60,) counts as F = 1.

    Returns:
        (F, 7) radians in [-pi, pi].
    """
    positions = _cg_positions(cg_frames)
    return dihedral_angles(positions[:, CG_TORSIONS])


def ca_helicity(cg_frames: np.ndarray) -> np.ndarray:
    """Fraction of the 7 CA pseudo-dihedrals in :data:`HELICAL_CA_RANGE` ([20, 80] degrees).

    An alpha helix has CA pseudo-dihedrals of about +50 degrees (+45 to +52 in
    ``deca_alanine_helix.pdb``, see ``tests/test_peptide.py``); beta and polyproline
    regions give -170 to -80 degrees, so +-30 degrees around the helix value separates
    them and tolerates thermal motion.

    Args:
        cg_frames: as in :func:`ca_dihedrals`.

    Returns:
        (F,) in [0, 1].
    """
    angles = np.degrees(ca_dihedrals(cg_frames))
    return ((angles >= HELICAL_CA_RANGE[0]) & (angles <= HELICAL_CA_RANGE[1])).mean(axis=1)


def end_to_end(positions: np.ndarray) -> np.ndarray:
    """(F,) CA1-CA10 distance, Å, of AA frames (F, 103, 3) (or rows)."""
    positions = _aa_positions(positions)
    residues, _ = _residue_atoms()
    first, last = residues[0]["CA"], residues[-1]["CA"]
    return np.linalg.norm(positions[:, last] - positions[:, first], axis=-1)


@functools.lru_cache(maxsize=4)
def _aa_system(structure: str, hydrogen_mass: float | None) -> md.MolecularSystem:
    # Parametrized once per process: amber14 + OBC2, HBonds, optional HMR.
    return md.build_system(structure, solvent="obc2", constraints="HBonds",
                           hydrogen_mass=hydrogen_mass)


def aa_window(
    x: np.ndarray,
    *,
    seed: int,
    n_steps: int = 250,
    equilibration: int = 50,
    stride: int = 25,
    timestep: float = 4.0,
    hydrogen_mass: float | None = 4.0,
    temperature: float = 300.0,
    friction: float = 1.0,
    structure: str = HELIX_PDB,
    minimize: bool = True,
    platform: str = "CPU",
    threads: int = 1,
) -> dict[str, np.ndarray]:
    """AA app: a window of unrestrained Langevin MD of Ala10 in amber14 + OBC2.

    Args:
        x: (3N,) positions Å (N = 103, e.g. a backmapped CG frame), or an empty array to
            start from ``structure``.
        seed: seed of the velocities and random force.
        n_steps: steps of the window (a multiple of ``stride``); 250 steps of 4 fs = 1 ps.
        equilibration: steps run (not reported) before the window, after the minimization.
        stride: steps between saved frames.
        timestep: fs; 4 fs needs ``hydrogen_mass`` repartitioning.
        hydrogen_mass: amu of hydrogens (mass repartitioning), None for standard masses.
        temperature: K. friction: 1/ps.
        structure: topology and default start (either shipped PDB; same atoms).
        minimize: minimize the energy before starting.
        platform, threads: see ``apps.md.make_simulation``.

    Returns:
        Rows with leading dimension 1: ``"helicity"`` (1,) window mean of
        :func:`helicity`, ``"end_to_end"`` (1,) mean CA1-CA10 distance (Å), ``"energy"``
        (1,) mean potential energy (kJ/mol), ``"aa_frames"`` (1, F*3N) saved positions
        (Å), ``"bead_positions"`` (1, F*30) Å and ``"bead_forces"`` (1, F*30) kJ/(mol Å)
        mapped with :func:`ca_map` (CA positions, residue-summed forces), ``"x"`` (1, 3N)
        the start positions; ``F = n_steps // stride``.

    Raises:
        FloatingPointError: non-finite positions or energies (the run is quarantined).
        ValueError: bad shapes or step counts.
    """
    molecular = _aa_system(str(structure), hydrogen_mass)
    x = np.asarray(x, dtype=np.float64).ravel()
    start = molecular.positions.ravel() if x.size == 0 else x
    if start.size != 3 * molecular.n_atoms:
        raise ValueError(f"x must hold 3N={3 * molecular.n_atoms} positions in Å; "
                         f"got {start.size}")
    simulation = md.make_simulation(molecular, temperature=temperature, friction=friction,
                                    timestep=timestep, platform=platform, threads=threads,
                                    seed=seed)
    row = start
    if equilibration:
        warm = md.run_frames(simulation, start, seed=seed, n_steps=equilibration,
                             stride=equilibration, temperature=temperature, minimize=minimize)
        row = warm["x"][-1]
    elif minimize:
        simulation.context.setPositions(start.reshape(-1, 3) / md.NM)
        simulation.minimizeEnergy(maxIterations=500)
        state = simulation.context.getState(getPositions=True)
        row = state.getPositions(asNumpy=True)._value.ravel() * md.NM
    frames = md.run_frames(simulation, row, seed=seed + 1, n_steps=n_steps, stride=stride,
                           temperature=temperature)
    n = molecular.n_atoms
    positions = frames["x"][:, : 3 * n].reshape(-1, n, 3)
    forces = frames["forces"].reshape(-1, n, 3)
    energy = frames["energy"]
    if not (np.all(np.isfinite(energy)) and np.all(np.isfinite(forces))):
        raise FloatingPointError("AA window produced non-finite energies or forces")
    beads = ca_map()
    return {
        "helicity": np.array([helicity(positions).mean()]),
        "end_to_end": np.array([end_to_end(positions).mean()]),
        "energy": np.array([energy.mean()]),
        "aa_frames": positions.reshape(1, -1),
        "bead_positions": beads.positions(positions).reshape(1, -1),
        "bead_forces": beads.forces(forces).reshape(1, -1),
        "x": start[None, :],
    }


def _structure_beads(structure: str) -> np.ndarray:
    positions = app.PDBFile(structure).getPositions(asNumpy=True)._value * md.NM
    return ca_map().positions(np.asarray(positions, dtype=np.float64))


def cg_start(structure: str = EXTENDED_PDB) -> np.ndarray:
    """(10, 3) bead (CA) positions, Å, of a start structure (default: the extended chain)."""
    return _structure_beads(structure)


# -- the CG model --------------------------------------------------------------------------

FIT_SETTINGS: dict[str, Any] = {
    "starts": ["helix", "extended"],
    "seeds": [1, 2],
    "n_steps": 5000,  # 20 ps of 4 fs steps per trajectory
    "equilibration": 250,  # 1 ps
    "stride": 5,  # a frame every 20 fs
    "timestep": 4.0,
    "hydrogen_mass": 4.0,
    "temperature": 300.0,
    "order": 3,
    "ridge": 1e-3,
    "repulsion_sigma": 4.5,  # Å; helical i, i+3 CAs are 5.0-5.6 Å apart
    "repulsion_epsilon": 200.0,  # kJ/mol: 10 kJ/mol at 3.5 Å
}
"""Defaults of :func:`fit_cg_model` (AA data generation and the fit)."""


def generate_aa_data(*, starts: Sequence[str] = ("helix", "extended"),
                     seeds: Sequence[int] = (1, 2), n_steps: int = 5000,
                     equilibration: int = 250, stride: int = 5, timestep: float = 4.0,
                     hydrogen_mass: float = 4.0, temperature: float = 300.0,
                     threads: int = 1) -> dict[str, np.ndarray]:
    """AA training data: one :func:`aa_window` per start structure and seed.

    Returns:
        ``{"bead_positions": (F, 10, 3) Å, "bead_forces": (F, 10, 3) kJ/(mol Å),
        "helicity": (F,) AA helicity of each frame}`` over all trajectories.
    """
    paths = {"helix": HELIX_PDB, "extended": EXTENDED_PDB}
    positions, forces, helix = [], [], []
    for start in starts:
        for seed in seeds:
            out = aa_window(np.empty(0), seed=seed, n_steps=n_steps,
                            equilibration=equilibration, stride=stride, timestep=timestep,
                            hydrogen_mass=hydrogen_mass, temperature=temperature,
                            structure=paths[start], threads=threads)
            positions.append(out["bead_positions"].reshape(-1, N_RESIDUES, 3))
            forces.append(out["bead_forces"].reshape(-1, N_RESIDUES, 3))
            helix.append(helicity(out["aa_frames"].reshape(-1, N_ATOMS, 3)))
            logger.info("AA %s seed %d: helicity %.2f", start, seed, helix[-1].mean())
    return {"bead_positions": np.concatenate(positions),
            "bead_forces": np.concatenate(forces), "helicity": np.concatenate(helix)}


def fit_cg_model(bead_positions: np.ndarray, bead_forces: np.ndarray, *, order: int = 3,
                 ridge: float = 1e-3, temperature: float = 300.0,
                 repulsion_sigma: float = 4.5,
                 repulsion_epsilon: float = 200.0) -> tuple[cg.CGForceField, dict[str, float]]:
    """Fit the CA-bead CG model to mapped AA frames.

    Bonds and angles by Boltzmann inversion, then the separable Fourier correction (one
    series of order ``order`` per CA pseudo-dihedral) by force matching; the soft
    repulsion (beads ``|i - j| >= 3``, Å and kJ/mol) is part of the prior.

    Args:
        bead_positions, bead_forces: mapped AA frames, reshapeable to (F, 10, 3).
        order: Fourier order. ridge: see ``apps.cg.fit_force_matching``. temperature: K.
        repulsion_sigma, repulsion_epsilon: the repulsion's range (Å) and height (kJ/mol).

    Returns:
        ``(force field, {"prior_rmse", "fitted_rmse"})``, the force-matching errors
        (kJ/(mol Å)) of the prior alone and of the fitted model on the training frames.
    """
    beads = ca_map()
    positions = np.asarray(bead_positions, dtype=np.float64).reshape(-1, N_RESIDUES, 3)
    forces = np.asarray(bead_forces, dtype=np.float64).reshape(positions.shape)
    base = cg.chain_force_field(beads.masses, cg_start(HELIX_PDB), torsions=CG_TORSIONS,
                                order=order, names=beads.names, coupling="separable",
                                repulsion_sigma=repulsion_sigma,
                                repulsion_epsilon=repulsion_epsilon)
    prior = cg.fit_boltzmann_prior(base, positions, temperature)
    fitted = cg.fit_force_matching(prior, positions, forces, temperature=temperature,
                                   ridge=ridge, refit_prior=False)
    errors = {"prior_rmse": cg.force_matching_error(prior, positions, forces),
              "fitted_rmse": cg.force_matching_error(fitted, positions, forces)}
    return fitted, errors


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return value


def save_cg_model(force_field: cg.CGForceField, path: str | Path = CG_MODEL_PATH,
                  **provenance: Any) -> Path:
    """Write the force field's parameters and ``provenance`` (settings, errors) as JSON."""
    parameters = {k: _jsonable(v) for k, v in force_field.to_params().items()}
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in parameters.items()]
    extra = [f" {json.dumps(key)}: {json.dumps(_jsonable(value))}"
             for key, value in provenance.items()]
    text = "{\n \"parameters\": {\n" + ",\n".join(lines) + "\n }" + "".join(
        f",\n{line}" for line in extra) + "\n}\n"
    path = Path(path)
    path.write_text(text)
    return path


def load_cg_model(path: str | Path = CG_MODEL_PATH) -> cg.CGForceField:
    """The CG force field written by ``python -m apps.peptide fit-cg``."""
    record = json.loads(Path(path).read_text())
    params = dict(record["parameters"])
    for key in ("bonds", "angles", "torsions"):
        params[key] = np.asarray(params[key], dtype=np.int64)
    return cg.CGForceField.from_params(params)


def cg_pool(force_field: cg.CGForceField, *, n_walkers: int = 4, n_steps: int = 20_000,
            stride: int = 20, seed: int = 0, temperature: float = 300.0,
            timestep: float = 2.0, start: np.ndarray | None = None) -> np.ndarray:
    """Frames of CG walkers run with ``apps.cg.langevin``.

    Args:
        force_field: the CG model (e.g. :func:`load_cg_model`).
        n_walkers: independent walkers, all from ``start`` (default :func:`cg_start`,
            the extended chain) with their own Maxwell-Boltzmann velocities.
        n_steps, stride: steps per walker and steps between frames.
        seed: of velocities (walker ``w`` runs with seed ``seed + w``).
        temperature: K. timestep: fs.
        start: (10, 3) Å start positions.

    Returns:
        (n_walkers * n_steps // stride, 60) rows of positions (Å) and velocities (Å/ps).
    """
    start = cg_start() if start is None else np.asarray(start, dtype=np.float64)
    rows = cg.initial_walkers(start, force_field.masses, n_walkers, temperature=temperature,
                              seed=seed)
    params = force_field.to_params()
    frames = [cg.langevin(row, seed=seed + w, force_field=params, n_steps=n_steps,
                          stride=stride, temperature=temperature, timestep=timestep)["x"]
              for w, row in enumerate(rows)]
    return np.concatenate(frames)


def _fit_command(arguments: argparse.Namespace) -> None:
    settings = {**FIT_SETTINGS}
    for key in ("n_steps", "order", "ridge", "repulsion_sigma"):
        if getattr(arguments, key) is not None:
            settings[key] = getattr(arguments, key)
    began = time.perf_counter()
    data = generate_aa_data(starts=settings["starts"], seeds=settings["seeds"],
                            n_steps=settings["n_steps"],
                            equilibration=settings["equilibration"], stride=settings["stride"],
                            timestep=settings["timestep"],
                            hydrogen_mass=settings["hydrogen_mass"],
                            temperature=settings["temperature"])
    generation_s = time.perf_counter() - began
    fitted, errors = fit_cg_model(data["bead_positions"], data["bead_forces"],
                                  order=settings["order"], ridge=settings["ridge"],
                                  temperature=settings["temperature"],
                                  repulsion_sigma=settings["repulsion_sigma"],
                                  repulsion_epsilon=settings["repulsion_epsilon"])
    path = save_cg_model(
        fitted, arguments.out, settings=settings, openmm_version=openmm.__version__,
        force_matching=errors, n_frames=len(data["bead_positions"]),
        aa_helicity_mean=float(data["helicity"].mean()),
        generation_seconds=round(generation_s, 1),
        made_by="python -m apps.peptide fit-cg")
    print(f"wrote {path}: {len(data['bead_positions'])} frames in {generation_s:.0f} s, "
          f"AA helicity {data['helicity'].mean():.2f}, force RMSE prior "
          f"{errors['prior_rmse']:.2f} -> fitted {errors['fitted_rmse']:.2f} kJ/(mol Å)")


def _pool_command(arguments: argparse.Namespace) -> None:
    model = load_cg_model(arguments.model)
    began = time.perf_counter()
    frames = cg_pool(model, n_walkers=arguments.walkers, n_steps=arguments.steps,
                     stride=arguments.stride, seed=arguments.seed,
                     temperature=arguments.temperature)
    seconds = time.perf_counter() - began
    values = ca_helicity(frames)
    print(f"{len(frames)} CG frames in {seconds:.1f} s ({len(frames) / seconds:.0f} frames/s, "
          f"{arguments.walkers * arguments.steps / seconds:.0f} steps/s)")
    for threshold in (0.5, 0.6, 0.7, HELICAL_STATE_THRESHOLD):
        print(f"ca_helicity >= {threshold}: {np.mean(values >= threshold):.4f}")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m apps.peptide fit-cg | pool-stats``."""
    parser = argparse.ArgumentParser(prog="python -m apps.peptide")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser("fit-cg", help="generate AA data, fit and write the CG model")
    fit.add_argument("--out", default=str(CG_MODEL_PATH))
    fit.add_argument("--n-steps", dest="n_steps", type=int, default=None)
    fit.add_argument("--order", type=int, default=None)
    fit.add_argument("--ridge", type=float, default=None)
    fit.add_argument("--repulsion-sigma", dest="repulsion_sigma", type=float, default=None)
    fit.set_defaults(run=_fit_command)
    pool = commands.add_parser("pool-stats", help="CG walkers' helicity from the extended start")
    pool.add_argument("--model", default=str(CG_MODEL_PATH))
    pool.add_argument("--walkers", type=int, default=4)
    pool.add_argument("--steps", type=int, default=100_000)
    pool.add_argument("--stride", type=int, default=50)
    pool.add_argument("--seed", type=int, default=0)
    pool.add_argument("--temperature", type=float, default=300.0)
    pool.set_defaults(run=_pool_command)
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arguments.run(arguments)


if __name__ == "__main__":
    main()
