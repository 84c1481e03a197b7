"""Build the deca-alanine structures shipped in ``apps/data`` (run once; needs PeptideBuilder).

    pip install PeptideBuilder
    python apps/data/build_deca_alanine.py

Ten alanines (zwitterionic termini: NH3+ and COO-), heavy atoms from ideal geometry with
PeptideBuilder (Tien et al. 2013) at the listed backbone dihedrals, hydrogens added by
OpenMM's Modeller for amber14, then minimized in amber14 + OBC2 implicit solvent:

* ``deca_alanine_helix.pdb``: alpha helix, (phi, psi) = (-57, -47) degrees;
* ``deca_alanine_extended.pdb``: extended chain, (phi, psi) = (-140, 130) degrees.
"""

from pathlib import Path

import openmm
import openmm.app as app
import PeptideBuilder
from Bio.PDB import PDBIO
from PeptideBuilder import Geometry

HERE = Path(__file__).parent
N_RESIDUES = 10
STARTS = {"helix": (-57.0, -47.0), "extended": (-140.0, 130.0)}


def build(name: str, phi: float, psi: float) -> None:
    geometries = [Geometry.geometry("A") for _ in range(N_RESIDUES)]
    for geometry in geometries:
        geometry.phi, geometry.psi_im1 = phi, psi
    structure = PeptideBuilder.make_structure_from_geos(geometries)
    PeptideBuilder.add_terminal_OXT(structure)
    heavy = HERE / f"_{name}_heavy.pdb"
    writer = PDBIO()
    writer.set_structure(structure)
    writer.save(str(heavy))
    pdb = app.PDBFile(str(heavy))
    heavy.unlink()
    forcefield = app.ForceField("amber14-all.xml", "implicit/obc2.xml")
    modeller = app.Modeller(pdb.topology, pdb.positions)
    modeller.addHydrogens(forcefield)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.NoCutoff)
    context = openmm.Context(system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(modeller.positions)
    openmm.LocalEnergyMinimizer.minimize(context, 1.0, 500)
    positions = context.getState(getPositions=True).getPositions()
    with open(HERE / f"deca_alanine_{name}.pdb", "w") as handle:
        app.PDBFile.writeFile(modeller.topology, positions, handle)


if __name__ == "__main__":
    for name, (phi, psi) in STARTS.items():
        build(name, phi, psi)
        print(f"wrote deca_alanine_{name}.pdb")
