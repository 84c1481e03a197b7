"""Tests of the Müller-Brown two-scale benchmark (apps.toy)."""

import inspect
import pickle

import numpy as np
import pytest

from apps import toy

BASIN_RADIUS = 0.25  # minima are >= 0.8 apart


def basins_visited(frames: np.ndarray) -> set[int]:
    distance = np.linalg.norm(frames[:, None, :] - toy.MINIMA[None], axis=-1)
    return set(np.nonzero((distance < BASIN_RADIUS).any(axis=0))[0].tolist())


def test_potential_at_known_minima():
    np.testing.assert_allclose(toy.muller_brown(toy.MINIMA), [-146.70, -108.17, -80.77], atol=0.01)
    assert np.abs(toy.muller_brown_gradient(toy.MINIMA)).max() < 1e-2


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    xy = rng.uniform([-1.5, -0.5], [1.2, 2.0], size=(50, 2))
    h = 1e-6
    numeric = np.column_stack(
        [(toy.muller_brown(xy + h * e) - toy.muller_brown(xy - h * e)) / (2 * h) for e in np.eye(2)]
    )
    np.testing.assert_allclose(toy.muller_brown_gradient(xy), numeric, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bad", [np.zeros(2), np.zeros((3, 3)), np.zeros((2, 2, 2))])
def test_potential_rejects_bad_shapes(bad):
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        toy.muller_brown(bad)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        toy.muller_brown_gradient(bad)


def test_initial_walkers_cycle_over_minima():
    walkers = toy.initial_walkers(7)
    assert walkers.shape == (7, 2) and walkers.dtype == np.float64
    np.testing.assert_array_equal(walkers[[0, 3, 6]], np.repeat(toy.MINIMA[:1], 3, axis=0))
    np.testing.assert_array_equal(walkers[:3], toy.MINIMA)
    walkers[0] = 99.0  # a copy, not a view of the constant
    assert toy.MINIMA[0, 0] != 99.0
    assert toy.initial_walkers(0).shape == (0, 2)
    with pytest.raises(ValueError):
        toy.initial_walkers(-1)


def test_langevin_frames_contract():
    out = toy.langevin(toy.MINIMA[0], seed=1)
    sig = inspect.signature(toy.langevin).parameters
    n = sig["n_steps"].default // sig["stride"].default
    assert set(out) == {"x", "energy"}
    assert out["x"].shape == (n, 2) and out["x"].dtype == np.float64
    assert out["energy"].shape == (n,) and out["energy"].dtype == np.float64
    assert np.isfinite(out["x"]).all() and np.isfinite(out["energy"]).all()
    np.testing.assert_allclose(out["energy"], toy.muller_brown(out["x"]))
    # (1, 2) start points, as a row of a store, are accepted too
    again = toy.langevin(toy.MINIMA[:1], seed=1)
    np.testing.assert_array_equal(again["x"], out["x"])


def test_langevin_deterministic_under_seed_and_different_across_seeds():
    a = toy.langevin(toy.MINIMA[1], seed=7, n_steps=2000, stride=20)
    b = toy.langevin(toy.MINIMA[1], seed=7, n_steps=2000, stride=20)
    c = toy.langevin(toy.MINIMA[1], seed=8, n_steps=2000, stride=20)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.allclose(a["x"], c["x"])


@pytest.mark.parametrize(
    "kwargs",
    [{"n_steps": 1000, "stride": 300}, {"n_steps": 10, "stride": 0}, {"dt": 0.0}],
)
def test_langevin_rejects_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        toy.langevin(toy.MINIMA[0], seed=0, **kwargs)


def test_langevin_rejects_bad_start():
    with pytest.raises(ValueError, match="one 2-D point"):
        toy.langevin(np.zeros(3), seed=0)


def test_langevin_divergence_raises_instead_of_returning_garbage():
    with pytest.raises(FloatingPointError, match="diverged"):
        toy.langevin(toy.MINIMA[0], seed=0, n_steps=200, stride=10, dt=1e-2)


def test_walkers_cross_barriers_within_a_few_segments():
    # Three walkers per minimum, four default segments each, continuing from the last frame.
    walkers = toy.initial_walkers(9)
    visited: dict[int, set[int]] = {k: set() for k in range(3)}
    highest = -np.inf
    for w, start in enumerate(walkers):
        x = start
        for segment in range(4):
            out = toy.langevin(x, seed=1000 * w + segment)
            visited[w % 3] |= basins_visited(out["x"])
            highest = max(highest, out["energy"].max())
            x = out["x"][-1]
    for k in range(3):
        assert visited[k] == {0, 1, 2}, f"walkers started in minimum {k} visited {visited[k]}"
    assert highest < 500.0  # stayed on the landscape: no excursion up the confining walls


@pytest.mark.parametrize(
    "point",
    [*toy.MINIMA, (-0.82, 0.62), (0.21, 0.29), (-1.0, 0.0), (0.5, 1.5)],
)
def test_smeared_energy_matches_exact_within_standard_errors(point):
    point = np.asarray(point, dtype=float)
    out = toy.smeared_energy(point, seed=3)
    exact = toy.smeared_energy_exact(point[None])[0]
    stderr = out["energy_stderr"][0]
    assert 0 < stderr < 0.5
    assert abs(out["energy"][0] - exact) < 4 * stderr


def test_smeared_energy_contract_and_determinism():
    out = toy.smeared_energy(np.array([[0.1, 0.4]]), seed=5, n_samples=5000)
    assert set(out) == {"x", "energy", "energy_stderr"}
    assert out["x"].shape == (1, 2) and out["x"].dtype == np.float64
    assert out["energy"].shape == (1,) and out["energy_stderr"].shape == (1,)
    again = toy.smeared_energy(np.array([0.1, 0.4]), seed=5, n_samples=5000)
    other = toy.smeared_energy(np.array([0.1, 0.4]), seed=6, n_samples=5000)
    assert again["energy"][0] == out["energy"][0]
    assert other["energy"][0] != out["energy"][0]


def test_smeared_energy_chunking_covers_every_sample():
    # A sample count that is not a multiple of the block size: the estimate must still
    # agree with the exact value (a dropped or double-counted block would bias it).
    point = toy.MINIMA[2]
    out = toy.smeared_energy(point, seed=11, n_samples=3 * toy._CHUNK + 123, width=0.2)
    exact = toy.smeared_energy_exact(point[None], width=0.2)[0]
    assert abs(out["energy"][0] - exact) < 4 * out["energy_stderr"][0]


@pytest.mark.parametrize("width", [0.05, 0.2, 0.4])
def test_exact_agrees_with_huge_monte_carlo(width):
    points = np.array([[-0.558, 1.44], [0.3, 0.3], [-1.2, 1.0]])
    exact = toy.smeared_energy_exact(points, width=width)
    for point, value in zip(points, exact, strict=True):
        out = toy.smeared_energy(point, seed=123, n_samples=2**21, width=width)
        assert abs(out["energy"][0] - value) < 4 * out["energy_stderr"][0] + 1e-9


@pytest.mark.parametrize("width", [-0.1, 0.5, 0.6])
def test_smeared_energy_rejects_width_with_infinite_variance(width):
    with pytest.raises(ValueError, match="width"):
        toy.smeared_energy(toy.MINIMA[0], seed=0, width=width)


def test_exact_agrees_with_gauss_hermite_quadrature():
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # weight exp(-xi^2 / 2)
    weights = weights / weights.sum()
    xi = np.stack(np.meshgrid(nodes, nodes), axis=-1).reshape(-1, 2)
    w2 = np.outer(weights, weights).ravel()
    points = np.random.default_rng(2).uniform([-1.5, -0.5], [1.2, 2.0], size=(5, 2))
    for width in (0.1, 0.25):
        quadrature = [w2 @ toy.muller_brown(p + width * xi) for p in points]
        np.testing.assert_allclose(
            toy.smeared_energy_exact(points, width=width), quadrature, rtol=1e-9, atol=1e-9
        )


def test_exact_width_zero_is_the_potential_and_large_width_raises():
    xy = np.random.default_rng(1).uniform(-1, 1, size=(20, 2))
    np.testing.assert_allclose(toy.smeared_energy_exact(xy, width=0.0), toy.muller_brown(xy))
    assert toy.max_width() == pytest.approx(2**-0.5)
    assert np.isfinite(toy.smeared_energy_exact(xy, width=0.7)).all()
    with pytest.raises(ValueError, match="too large"):
        toy.smeared_energy_exact(xy, width=0.71)
    with pytest.raises(ValueError, match=">= 0"):
        toy.smeared_energy_exact(xy, width=-0.1)


def test_positions_featurizer():
    x = np.arange(12).reshape(4, 3)
    feats = toy.positions(x)
    assert feats.shape == (4, 2) and feats.dtype == np.float64
    np.testing.assert_array_equal(feats, x[:, :2])
    y = np.ones((3, 2))
    out = toy.positions(y)
    out[0, 0] = 5.0
    assert y[0, 0] == 1.0  # a copy
    with pytest.raises(ValueError):
        toy.positions(np.ones(2))
    with pytest.raises(ValueError):
        toy.positions(np.ones((3, 1)))


def test_reference_grid():
    X, F = toy.reference()
    assert 1000 <= len(X) <= 3000
    assert X.shape == (len(X), 2) and F.shape == (len(X),)
    assert X.dtype == np.float64 and F.dtype == np.float64
    assert np.isfinite(X).all() and np.isfinite(F).all()
    (x_lo, x_hi), (y_lo, y_hi) = toy.BOX
    assert (X[:, 0] >= x_lo).all() and (X[:, 0] <= x_hi).all()
    assert (X[:, 1] >= y_lo).all() and (X[:, 1] <= y_hi).all()
    assert (toy.muller_brown(X) < -20.0).all()
    # every basin is covered
    assert all(np.linalg.norm(X - m, axis=1).min() < 0.05 for m in toy.MINIMA)
    X2, F2 = toy.reference()
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(F, F2)
    with pytest.raises(ValueError):
        toy.reference(energy_cutoff=-1000.0)


def test_fine_work_per_configuration_exceeds_coarse_work_per_frame():
    n_samples = inspect.signature(toy.smeared_energy).parameters["n_samples"].default
    stride = inspect.signature(toy.langevin).parameters["stride"].default
    assert n_samples / stride >= 10


@pytest.mark.parametrize("app", [toy.langevin, toy.smeared_energy])
def test_apps_follow_the_engine_contract(app):
    assert pickle.loads(pickle.dumps(app)) is app  # importable top-level function
    out = app(toy.MINIMA[0], seed=0)
    n = out["x"].shape[0]
    assert out["x"].ndim == 2 and out["x"].shape[1] == 2 and out["x"].dtype == np.float64
    outputs = set(out) - {"x"}
    assert outputs
    for name in outputs:
        assert out[name].shape[0] == n
