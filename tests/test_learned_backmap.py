"""Learned CG -> AA backmapping: a known map, determinism, fallback, warm refit, state, peptide."""

import json
import pickle
import warnings

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np
import pytest
import torch

from apps.backmap import (
    BackmapRefresh,
    LearnedBackmapper,
    backmap_quality,
    bead_frames,
    superpose,
)
from apps.featurize import dihedral_angles
from apps.mapping import bead_map
from campaign.store import ScaleData

warnings.filterwarnings("ignore", module="MDAnalysis")
torch.set_num_threads(1)

HELIX = "apps/data/deca_alanine_helix.pdb"
EXTENDED = "apps/data/deca_alanine_extended.pdb"
N_RESIDUES = 10
SMALL = {"hidden": 64, "batch_size": 128}  # keeps the tests quick on one core


@pytest.fixture(scope="module")
def beads():
    return bead_map(mda.Universe(HELIX),
                    {f"CA{i}": f"resid {i} and name CA" for i in range(1, N_RESIDUES + 1)})


@pytest.fixture(scope="module")
def helix():
    return mda.Universe(HELIX).atoms.positions.astype(np.float64)


@pytest.fixture(scope="module")
def heavy():
    return np.array([name[0] != "H" for name in mda.Universe(HELIX).atoms.names])


def random_chains(rng, n_frames, n_beads=N_RESIDUES, bond=3.8):
    """Chains of beads with random bend angles (85-125 deg) and dihedrals, randomly moved."""
    out = np.zeros((n_frames, n_beads, 3))
    for f in range(n_frames):
        angle = np.radians(rng.uniform(85, 125))
        points = [np.zeros(3), np.array([bond, 0.0, 0.0]),
                  np.array([bond * (1 - np.cos(angle)), bond * np.sin(angle), 0.0])]
        for _ in range(3, n_beads):
            theta, phi = np.radians(rng.uniform(85, 125)), rng.uniform(-np.pi, np.pi)
            a, b, c = points[-3:]
            bc = (c - b) / np.linalg.norm(c - b)
            normal = np.cross(b - a, bc)
            normal /= np.linalg.norm(normal)
            basis = np.array([bc, np.cross(normal, bc), normal]).T
            step = bond * np.array([-np.cos(theta), np.sin(theta) * np.cos(phi),
                                    np.sin(theta) * np.sin(phi)])
            points.append(c + basis @ step)
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        out[f] = np.array(points) @ rotation + rng.normal(scale=3.0, size=3)
    return out


def rigid_group_atoms(cg, atom_bead, helix, beads):
    """The known map: each bead carries its helix atoms as a rigid group in its local frame,
    turned about e1 by 0.5 sin(dihedral of beads b-1..b+2) where that dihedral exists."""
    helix_beads = beads.positions(helix)
    helix_frames = bead_frames(helix_beads)
    frames = bead_frames(cg)
    n_frames, n_beads = cg.shape[:2]
    aa = np.zeros((n_frames, len(helix), 3))
    for b in range(n_beads):
        atoms = np.flatnonzero(atom_bead == b)
        local = (helix[atoms] - helix_beads[b]) @ helix_frames[b].T
        turn = (0.5 * np.sin(dihedral_angles(cg[:, [b - 1, b, b + 1, b + 2]]))
                if 1 <= b <= n_beads - 3 else np.zeros(n_frames))
        c, s = np.cos(turn), np.sin(turn)
        rotation = np.zeros((n_frames, 3, 3))
        rotation[:, 0, 0] = 1.0
        rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = c, -s, s, c
        turned = np.einsum("fij,nj->fni", rotation, local)
        aa[:, atoms] = cg[:, b, None] + np.einsum("fni,fij->fnj", turned, frames[:, b])
    return aa


@pytest.fixture(scope="module")
def synthetic(beads, helix):
    rng = np.random.default_rng(0)
    model = LearnedBackmapper(beads, HELIX, steps=800, warm_steps=300, seed=0, solvent="vacuum",
                              uncertainty_threshold=0.05, max_iterations=200, **SMALL)
    cg_train, cg_test, cg_more = (random_chains(rng, n) for n in (200, 40, 100))
    data = {name: (cg, rigid_group_atoms(cg, model.atom_bead, helix, beads))
            for name, cg in (("train", cg_train), ("test", cg_test), ("more", cg_more))}
    model.fit(*data["train"])
    return model, data


def heavy_error(predicted, reference, heavy):
    """Per-frame RMS heavy-atom error without superposition, Å."""
    return np.sqrt(np.mean(np.sum((predicted - reference)[:, heavy] ** 2, axis=-1), axis=1))


def test_learns_a_known_map_far_better_than_the_rigid_template(synthetic, beads, helix, heavy):
    model, data = synthetic
    cg, aa = data["test"]
    assert np.abs(beads.positions(aa) - cg).max() < 1e-9  # the map is consistent
    predicted, uncertainty = model.predict(cg)
    learned = heavy_error(predicted, aa, heavy)
    template = []
    for frame, target in zip(aa, cg, strict=True):
        rotation, shift = superpose(beads.positions(helix), target)
        template.append(heavy_error((helix @ rotation + shift)[None], frame[None], heavy)[0])
    assert learned.max() < 0.1
    assert np.mean(template) > 20 * learned.mean()
    assert np.all(uncertainty < model.uncertainty_threshold)
    # invariant to a rigid motion of the input
    rotation, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    moved, _ = model.predict(cg[:3] @ rotation + 5.0)
    np.testing.assert_allclose(moved, predicted[:3] @ rotation + 5.0, atol=1e-6)


def test_fit_is_deterministic_for_a_seed(synthetic, beads):
    _, data = synthetic
    cg, aa = data["train"][0][:30], data["train"][1][:30]
    states = []
    for seed in (4, 4, 5):
        model = LearnedBackmapper(beads, HELIX, steps=40, seed=seed, **SMALL).fit(cg, aa)
        states.append(model.to_params())
    for key in states[0]:
        if key.startswith("state_"):
            np.testing.assert_array_equal(states[0][key], states[1][key])
    assert not np.array_equal(states[0]["state_weight_0"], states[2]["state_weight_0"])


def test_falls_back_to_the_template_when_unfitted_or_uncertain(synthetic, beads, helix):
    model, data = synthetic
    cg = data["test"][0]
    far = cg[:1] * 3.0  # bead spacing 11.4 Å: far outside the training chains
    _, uncertainty = model.predict(far)
    assert uncertainty[0] > model.uncertainty_threshold
    aa, info = model.backmap(np.concatenate([cg[:1], far]))
    assert [i["method"] for i in info] == ["learned", "template"]
    assert aa.shape == (2, beads.n_atoms, 3) and np.all(np.isfinite(aa))
    unfitted = LearnedBackmapper(beads, HELIX, solvent="vacuum", max_iterations=200)
    aa, info = unfitted.backmap(beads.positions(helix))
    assert info[0]["method"] == "template" and info[0]["uncertainty"] == np.inf
    assert info[0]["minimization_steps"] > 0
    assert info[0]["energy_after"] <= info[0]["energy_before"]
    with pytest.raises(RuntimeError, match="not fitted"):
        unfitted.predict(beads.positions(helix))


def test_warm_refit_runs_and_does_not_get_worse(synthetic, heavy):
    model, data = synthetic
    copy = LearnedBackmapper.from_params(model.to_params())
    cg_test, aa_test = data["test"]
    before = heavy_error(copy.predict(cg_test)[0], aa_test, heavy).mean()
    cg = np.concatenate([data["train"][0], data["more"][0]])
    aa = np.concatenate([data["train"][1], data["more"][1]])
    copy.fit(cg, aa)
    assert copy.warm_started_ and 0 < copy.n_steps_ <= copy.warm_steps
    after = heavy_error(copy.predict(cg_test)[0], aa_test, heavy).mean()
    assert after <= 1.1 * before + 0.005


def test_params_round_trip(synthetic):
    model, data = synthetic
    cg = data["test"][0][:5]
    expected, spread = model.predict(cg)
    params = model.to_params()
    as_lists = json.loads(json.dumps({k: v.tolist() if isinstance(v, np.ndarray) else v
                                      for k, v in params.items()}))
    for restored in (LearnedBackmapper.from_params(params),
                     LearnedBackmapper.from_params(as_lists), pickle.loads(pickle.dumps(model))):
        got, got_spread = restored.predict(cg)
        np.testing.assert_allclose(got, expected, atol=1e-12)
        np.testing.assert_allclose(got_spread, spread, atol=1e-12)
    unfitted = LearnedBackmapper.from_params(
        LearnedBackmapper(model.bead, HELIX).to_params())
    assert not unfitted.fitted


def perturbed(structure, rng, n, scale=0.05):
    """Frames of a structure with Gaussian noise (Å) and random rigid motions."""
    positions = mda.Universe(structure).atoms.positions.astype(np.float64)
    frames = []
    for _ in range(n):
        rotation, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        rotation *= np.sign(np.linalg.det(rotation))
        noisy = positions + rng.normal(scale=scale, size=positions.shape)
        frames.append(noisy @ rotation + rng.normal(scale=2.0, size=3))
    return np.array(frames)


def test_deca_alanine_backmap_is_sound(beads):
    rng = np.random.default_rng(1)
    train = np.concatenate([perturbed(HELIX, rng, 16), perturbed(EXTENDED, rng, 16)])
    test = np.concatenate([perturbed(HELIX, rng, 1), perturbed(EXTENDED, rng, 1)])
    model = LearnedBackmapper(beads, HELIX, steps=300, seed=0, **SMALL)
    model.fit(beads.positions(train), train)
    targets = beads.positions(test)
    aa, info = model.backmap(targets)
    assert [i["method"] for i in info] == ["learned", "learned"]
    assert np.all(np.isfinite(aa))
    assert np.abs(beads.positions(aa) - targets).max() < 0.05
    quality = backmap_quality(aa, test, HELIX)
    assert np.all(quality["bond_deviation"] < 0.02)  # Å, RMS from amber14's r0
    assert np.all(quality["angle_deviation"] < 5.0)  # degrees
    assert np.all(quality["clashes"] == 0)
    assert np.all(quality["heavy_atom_rmsd"] < 0.5)
    assert all(i["minimization_steps"] > 0 and np.isfinite(i["energy_after"]) for i in info)


def test_backmap_quality_of_the_reference(helix):
    quality = backmap_quality(helix[None], helix[None], HELIX)
    assert quality["heavy_atom_rmsd"][0] == pytest.approx(0.0, abs=1e-6)
    assert quality["clashes"][0] == 0
    assert quality["bond_deviation"][0] < 0.05 and quality["angle_deviation"][0] < 5.0
    squeezed = helix.copy()
    squeezed[1] = squeezed[50] + 0.5  # an H on top of an atom far along the chain
    assert backmap_quality(squeezed[None], None, HELIX)["clashes"][0] >= 1


def test_backmap_refresh_refits_from_scale_data(synthetic, beads):
    _, data = synthetic
    cg, aa = data["train"][0][:24], data["train"][1][:24]
    model = LearnedBackmapper(beads, HELIX, steps=20, warm_steps=10, **SMALL)
    refresh = BackmapRefresh(model, "aa", min_frames=20)

    def scale(n_tasks):  # rows of (F * 3N) AA positions and (F * 3B) beads per task
        per = len(cg) // 4
        return ScaleData(x=np.zeros((n_tasks, 1)), meta={}, y={
            "aa_frames": aa[: n_tasks * per].reshape(n_tasks, -1),
            "bead_positions": cg[: n_tasks * per].reshape(n_tasks, -1)})

    assert refresh({})["backmapper"]["fitted"] == 0
    assert refresh({"aa": scale(2)})["backmapper"]["fitted"] == 0  # 12 frames < 20
    params = refresh({"aa": scale(4)})["backmapper"]
    assert params["fitted"] == 1 and not model.warm_started_
    restored = LearnedBackmapper.from_params(params)
    np.testing.assert_allclose(restored.predict(cg[:2])[0], model.predict(cg[:2])[0])
