"""apps.landscapes: channel (2-D), channel4d (4-D) and wells6d (6-D) vs their exact answers."""

from __future__ import annotations

import numpy as np
import pytest

from apps import landscapes
from apps.landscapes import LANDSCAPES

NAMES = sorted(LANDSCAPES)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_matches_finite_differences(name):
    L = LANDSCAPES[name]
    x = np.random.default_rng(0).uniform(-1, 1, size=(5, L.dimension))
    h = 1e-6
    numeric = np.stack([(landscapes.energy(x + h * e, name) - landscapes.energy(x - h * e, name))
                        / (2 * h) for e in np.eye(L.dimension)], axis=1)
    np.testing.assert_allclose(landscapes.gradient(x, name), numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_exact_smearing_matches_monte_carlo_and_width_zero(name):
    L = LANDSCAPES[name]
    x = L.starts[:1] + 0.1
    exact = landscapes.smeared_energy_exact(x, name)[0]
    estimate = landscapes.smeared_energy(x, seed=3, landscape=name, n_samples=2**15)
    assert estimate["x"].shape == (1, L.dimension)
    assert abs(estimate["energy"][0] - exact) < 5 * estimate["energy_stderr"][0] + 1e-9
    np.testing.assert_allclose(landscapes.smeared_energy_exact(x, name, width=0.0),
                               landscapes.energy(x, name), rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_sampler_is_deterministic_and_stays_near_the_wells(name):
    L = LANDSCAPES[name]
    start = landscapes.initial_walkers(1, name)[0]
    a = landscapes.sampler(start, seed=1, landscape=name, n_steps=400, stride=20)
    b = landscapes.sampler(start, seed=1, landscape=name, n_steps=400, stride=20)
    assert a["x"].shape == (20, L.dimension) and a["energy"].shape == (20,)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert np.all(np.abs(a["x"]) < 4.0)
    np.testing.assert_allclose(a["energy"], landscapes.energy(a["x"], name))


def test_reference_sets():
    X, F = landscapes.reference("channel", resolution=40)
    assert X.shape[1] == 2 and F.shape == (len(X),)
    assert np.all(landscapes.energy(X, "channel") < landscapes.CHANNEL.energy_cutoff)
    assert 0.01 < landscapes.in_rare_region(X, "channel").mean() < 0.1  # the narrow trough
    X6, F6 = landscapes.reference("wells6d", n_points=200)
    assert X6.shape == (200, 6) and np.all(np.isfinite(F6))
    np.testing.assert_array_equal(X6, landscapes.reference("wells6d", n_points=200)[0])
    assert not landscapes.in_rare_region(X6, "wells6d").any()


def test_rare_channel_is_narrow():
    # Across the trough (y direction) the energy changes much faster than along it.
    along = landscapes.energy(np.array([[0.0, 0.9], [0.2, 0.9]]))
    across = landscapes.energy(np.array([[0.0, 0.9], [0.0, 1.1]]))
    assert abs(across[1] - across[0]) > 5 * abs(along[1] - along[0])


def test_featurizer_and_errors():
    x = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(landscapes.coordinates(x), x)
    with pytest.raises(ValueError, match="shape"):
        landscapes.coordinates(np.zeros(3))
    with pytest.raises(ValueError, match="unknown landscape"):
        landscapes.energy(np.zeros((1, 2)), "nowhere")
    with pytest.raises(ValueError, match="shape"):
        landscapes.energy(np.zeros((1, 3)), "channel")
    with pytest.raises(ValueError, match="multiple"):
        landscapes.sampler(np.zeros(2), seed=0, n_steps=30, stride=20)
    with pytest.raises(ValueError, match="n_samples"):
        landscapes.smeared_energy(np.zeros(2), seed=0, n_samples=1)


def test_channel4d_walkers_visit_its_narrow_channel_rarely():
    """The 4-D problem's rare feature: Langevin walkers from the basins spend 1-5% of their
    frames in the channel, which is narrow in one direction and wide along another."""
    L = landscapes.CHANNEL4D
    frames = []
    for walker, start in enumerate(landscapes.initial_walkers(4, "channel4d")):
        x = start
        for segment in range(12):
            out = landscapes.sampler(x, seed=1000 * walker + segment, landscape="channel4d",
                                     n_steps=2000, stride=20)
            frames.append(out["x"])
            x = out["x"][-1]
    fraction = landscapes.in_rare_region(np.concatenate(frames), "channel4d").mean()
    assert 0.01 <= fraction <= 0.05, fraction
    centre = L.centers[L.rare_well]
    narrow = landscapes.energy(np.stack([centre, centre + [0.0, 0.1, 0.0, 0.0]]), "channel4d")
    along = landscapes.energy(np.stack([centre, centre + [0.1, 0.0, 0.0, 0.0]]), "channel4d")
    assert abs(narrow[1] - narrow[0]) > 10 * abs(along[1] - along[0])
    X, _ = landscapes.reference("channel4d", n_points=300)
    assert X.shape == (300, 4) and landscapes.in_rare_region(X, "channel4d").any()
