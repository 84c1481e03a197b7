"""The learned latent space featurizer: fixed width, deterministic, refittable, picklable."""

import pickle

import MDAnalysis as mda  # noqa: N813 - the MDAnalysis convention
import numpy as np
import pytest
from MDAnalysisTests.datafiles import DCD, GRO, PSF, XTC

from apps.latent import (
    DistanceAutoencoder,
    LatentAnalysis,
    LatentFeatures,
    bead_distances,
    contact_values,
)
from apps.mapping import cg_universe
from campaign.spec import refittable

FAST = {"epochs": 60, "refit_epochs": 20, "patience": 10, "hidden": (16,)}


def chain_rows(n_frames=60, n_beads=6, seed=0, velocities=True):
    """Rows of a wiggling bead chain: positions (3B) then as many velocity columns."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(size=(n_frames, n_beads, 3))
    steps[:, :, 0] += 3.8
    positions = np.cumsum(steps, axis=1).reshape(n_frames, -1)
    if not velocities:
        return positions
    return np.concatenate([positions, rng.normal(size=positions.shape)], axis=1)


def test_bead_distances_follow_triu_order_and_contacts_switch_smoothly():
    positions = np.array([[[0.0, 0, 0], [3.0, 0, 0], [0.0, 4.0, 0]]])
    np.testing.assert_allclose(bead_distances(positions), [[3.0, 4.0, 5.0]])
    values = contact_values(np.array([0.0, 8.0, 80.0]), cutoff=8.0)
    np.testing.assert_allclose(values, [1.0, 0.5, 1.0 / (1.0 + 1e6)])


@pytest.mark.parametrize("selection", ["name CA and resid 1:40", "name CA and resid 100:125"])
def test_latent_analysis_has_a_fixed_width_for_any_universe(selection):
    for universe in (mda.Universe(PSF, DCD), mda.Universe(GRO, XTC)):
        atoms = universe.select_atoms(selection)
        analysis = LatentAnalysis(atoms, latent_dim=3, settings=FAST).run(step=3)
        assert analysis.results.latent.shape == (analysis.n_frames, 3)
        assert np.all(np.isfinite(analysis.results.latent))
        assert analysis.results.reconstruction_error.shape == (analysis.n_frames,)


def test_latent_analysis_of_a_cg_universe_and_a_single_frame():
    rows = chain_rows(n_frames=20, n_beads=5, velocities=False)
    universe = cg_universe([f"B{i}" for i in range(5)], np.full(5, 72.0),
                           rows.reshape(20, 5, 3))
    analysis = LatentAnalysis(universe.atoms, latent_dim=2, settings=FAST).run()
    assert analysis.results.latent.shape == (20, 2)
    # the same model through a LatentFeatures encodes the store rows identically
    features = LatentFeatures(5, latent_dim=2, **FAST)
    features.autoencoder = analysis.results.autoencoder
    np.testing.assert_allclose(features(rows), analysis.results.latent, atol=1e-4)
    single = LatentAnalysis(mda.Universe(GRO).select_atoms("name CA and resid 1:20")).run()
    assert single.results.latent.shape == (1, 3)
    with pytest.raises(ValueError, match="DistanceAutoencoder or LatentFeatures"):
        LatentAnalysis(universe.atoms, LatentFeatures(7))


def test_features_are_refittable_and_unfitted_features_are_a_fixed_projection():
    rows = chain_rows()
    features = LatentFeatures(6, **FAST)
    assert refittable(features) and not features.fitted
    before = features(rows)
    assert before.shape == (60, 3)
    # stateless and row-wise exact: a row's features do not depend on the batch around it
    np.testing.assert_array_equal(features(rows[:7]), before[:7])
    np.testing.assert_array_equal(features(rows[::-1])[::-1], before)
    np.testing.assert_array_equal(features(rows[41:42]), before[41:42])
    np.testing.assert_array_equal(LatentFeatures(6, **FAST)(rows), before)  # seeded
    assert features(rows[:0]).shape == (0, 3)
    with pytest.raises(ValueError, match="3 \\* 6|>= 18"):
        features(rows[:, :10])
    assert repr(features) == "LatentFeatures(6 beads, pairwise -> 3, fits=0)"


def test_two_fits_with_a_seed_are_equal_bit_for_bit_and_seeds_differ():
    rows = chain_rows()
    first = LatentFeatures(6, seed=3, **FAST).refit(rows)
    second = LatentFeatures(6, seed=3, **FAST).refit(rows)
    other = LatentFeatures(6, seed=4, **FAST).refit(rows)
    for name, weight in first.autoencoder.weights.items():
        np.testing.assert_array_equal(weight, second.autoencoder.weights[name])
    np.testing.assert_array_equal(first(rows), second(rows))
    assert not np.array_equal(first(rows), other(rows))


def test_refit_returns_a_new_object_warm_from_the_old_weights():
    rows = chain_rows()
    features = LatentFeatures(6, **FAST)
    untouched = {name: w.copy() for name, w in features.autoencoder.weights.items()}
    fitted = features.refit(rows)
    assert fitted is not features and fitted.autoencoder is not features.autoencoder
    assert not features.fitted and fitted.fitted
    for name, weight in features.autoencoder.weights.items():
        np.testing.assert_array_equal(weight, untouched[name])
    more = np.concatenate([rows, chain_rows(seed=1)])
    warm = fitted.refit(more)
    assert warm.autoencoder.fits == 2 and fitted.autoencoder.fits == 1
    assert warm.autoencoder.n_trained == len(more)
    # the warm refit starts where the first fit ended: it reconstructs at least as well
    # on the new rows as a cold fit of the same (short) length
    cold = DistanceAutoencoder(15, seed=0, **{**FAST, "epochs": FAST["refit_epochs"]})
    cold.fit(warm.inputs(more))
    assert warm.reconstruction_error(more).mean() <= cold.reconstruction_error(
        warm.inputs(more)).mean()
    assert warm.reconstruction_error(more).mean() < features.refit(rows[:2]).reconstruction_error(
        more).mean()


def test_pickling_keeps_the_features():
    rows = chain_rows()
    fitted = LatentFeatures(6, **FAST).refit(rows)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored(rows), fitted(rows))
    assert repr(restored) == repr(fitted)


def test_contact_map_variant():
    rows = chain_rows()
    features = LatentFeatures(6, distances="contacts", cutoff=6.0, latent_dim=2, **FAST)
    inputs = features.inputs(rows)
    assert inputs.shape == (60, 15) and np.all((inputs > 0) & (inputs <= 1))
    fitted = features.refit(rows)
    assert fitted(rows).shape == (60, 2)
    assert "contacts<6A" in repr(fitted)
    pairwise = LatentFeatures(6, latent_dim=2, **FAST).refit(rows)
    assert not np.allclose(fitted(rows), pairwise(rows))
    with pytest.raises(ValueError, match="distances must be"):
        LatentFeatures(6, distances="angles")


def test_features_and_a_learner_are_fitted_in_one_train_job():
    from campaign.task import fit_features_and_learner
    from learners import ExactGP

    rows = chain_rows()
    y = np.linalg.norm(rows[:, 15:18] - rows[:, :3], axis=1)
    train = np.arange(0, 60, 3)
    features = pickle.loads(pickle.dumps(LatentFeatures(6, **FAST)))  # as a worker gets it
    result = fit_features_and_learner(features, rows, train, ExactGP(restarts=1, iterations=20),
                                      y[train])
    assert result["X"].shape == (60, 3) and result["features_fitted_on"] == 60
    np.testing.assert_array_equal(result["X"], result["features"](rows))
    assert not features.fitted and result["features"].fitted
    assert result["learner"].posterior(result["X"][:5]).mean.shape == (5,)
