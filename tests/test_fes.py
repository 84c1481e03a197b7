"""Free energy from umbrella windows: mean-force estimates, the gradient GP, gradient-aware
integrated variance, the shipped reference's provenance."""

from __future__ import annotations

import json

import numpy as np
import openmm
import pytest
from openmm import app

from apps import md
from apps.featurize import dihedral_angles
from benchmarks import fes_reference
from learners import GradientGP
from learners.acquisition import IntegratedVariance


# -- mean force from a restrained window -------------------------------------------------
def _four_site_torsion(amplitude: float, phase: float) -> md.MolecularSystem:
    """Four carbons with harmonic bonds and angles and one periodic torsion: with no other
    interaction the free energy along the dihedral is the torsion itself (a chain's
    Jacobian does not depend on the dihedral)."""
    topology = app.Topology()
    residue = topology.addResidue("BUT", topology.addChain())
    carbon = app.Element.getBySymbol("C")
    atoms = [topology.addAtom(f"C{i}", carbon, residue) for i in range(4)]
    for a, b in zip(atoms, atoms[1:], strict=False):
        topology.addBond(a, b)
    system = openmm.System()
    for _ in range(4):
        system.addParticle(12.0)
    bonds = openmm.HarmonicBondForce()
    angles = openmm.HarmonicAngleForce()
    torsion = openmm.PeriodicTorsionForce()
    for i in range(3):
        bonds.addBond(i, i + 1, 0.153, 2.0e5)
    for i in range(2):
        angles.addAngle(i, i + 1, i + 2, np.radians(112.0), 400.0)
    torsion.addTorsion(0, 1, 2, 3, 1, phase, amplitude)  # amplitude (1 + cos(phi - phase))
    for force in (bonds, angles, torsion):
        system.addForce(force)
    positions = np.array([[0.0, 1.4, 0.0], [0.0, 0.0, 0.0], [1.45, -0.5, 0.0],
                          [1.6, -1.6, 1.0]])
    return md.MolecularSystem(topology, system, positions)


@pytest.mark.parametrize("centre_degrees", [-60.0, 100.0])
def test_window_mean_force_matches_a_known_torsion(centre_degrees):
    amplitude, phase, k = 10.0, 0.3, 200.0  # kJ/mol, rad, kJ/(mol rad^2)
    molecular = _four_site_torsion(amplitude, phase)
    centre = np.radians(centre_degrees)
    restraint = md.dihedral_restraints(np.array([[0, 1, 2, 3]]), np.array([centre]), k)
    simulation = md.make_simulation(molecular, extra_forces=[restraint], seed=3,
                                    friction=5.0, timestep=1.0)

    start = molecular.positions.ravel()
    warm = md.run_frames(simulation, start, seed=3, n_steps=2000, stride=2000,
                         temperature=300.0, minimize=True)
    frames = md.run_frames(simulation, warm["x"][-1], seed=4, n_steps=40_000, stride=20,
                           temperature=300.0)
    positions = frames["x"][:, :12].reshape(-1, 4, 3)
    angles = dihedral_angles(positions[:, None, [0, 1, 2, 3]].reshape(-1, 1, 4, 3))
    force, stderr, where = md.umbrella_mean_force(angles.reshape(-1, 1), np.array([centre]), k)
    truth = -amplitude * np.sin(where[0] - phase)  # dV/dphi at the window mean
    assert abs(where[0] - centre) < np.radians(15)
    assert np.sign(force[0]) == np.sign(truth)
    assert abs(force[0] - truth) < 4 * stderr[0] + 0.5, (force, stderr, truth)
    assert 0 < stderr[0] < 2.0


def test_umbrella_mean_force_wraps_across_pi():
    angles = np.array([[np.pi - 0.05], [-np.pi + 0.03], [np.pi - 0.01], [-np.pi + 0.01]])
    force, _, where = md.umbrella_mean_force(angles, np.array([np.pi - 0.02]), 100.0)
    assert abs(force[0] - (-100.0 * 0.015)) < 1e-9  # deviations -0.03, 0.05, 0.01, 0.03
    assert -np.pi <= where[0] < np.pi


# -- the gradient GP -------------------------------------------------------------------------
def _surface(X):
    return np.sin(X[:, 0]) + np.cos(2 * X[:, 1]) + 0.5 * np.sin(X[:, 0] + X[:, 1])


def _gradient(X):
    common = 0.5 * np.cos(X[:, 0] + X[:, 1])
    return np.stack([np.cos(X[:, 0]) + common, -2 * np.sin(2 * X[:, 1]) + common], axis=1)


def _windows(n, noise, seed):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-np.pi, np.pi, (n, 2))
    stderr = np.full((n, 2), noise)
    where = X + rng.normal(0.0, 0.05, X.shape)  # measured near, not at, the centre
    return X, np.hstack([_gradient(where) + stderr * rng.standard_normal((n, 2)), stderr, where])


def test_gradient_gp_recovers_a_periodic_surface_within_its_error_bars():
    X, y = _windows(90, 0.1, seed=0)
    gp = GradientGP().fit(X, y)
    c = np.linspace(-np.pi, np.pi, 18, endpoint=False)
    grid = np.array([(a, b) for a in c for b in c])
    posterior = gp.posterior(grid)
    error = posterior.mean - _surface(grid)
    error -= error.mean()  # F is known up to a constant
    assert np.sqrt(np.mean(error**2)) < 0.06  # amplitude ~2.5
    # The periodic kernel has no constant mode: F's variance is relative to its mean.
    z = np.abs(error) / np.sqrt(posterior.variance)
    assert 0.8 <= np.mean(z <= 1.645) <= 1.0
    # The gradient it predicts is the one it learned.
    np.testing.assert_allclose(posterior.gradient_mean(), _gradient(grid), atol=0.15)


def test_gradient_gp_uses_where_the_gradient_was_measured():
    """Gradients assigned to the restraint centres instead of the window means bias F."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-np.pi, np.pi, (80, 2))
    where = X + 0.3
    stderr = np.full((80, 2), 0.02)
    good = GradientGP().fit(X, np.hstack([_gradient(where), stderr, where]))
    wrong = GradientGP().fit(X, np.hstack([_gradient(where), stderr, X]))
    grid = rng.uniform(-np.pi, np.pi, (200, 2))

    def rmse(learner):
        error = learner.posterior(grid).mean - _surface(grid)
        return np.sqrt(np.mean((error - error.mean()) ** 2))

    assert rmse(good) < 0.05 < rmse(wrong)


def test_gradient_gp_mixed_values_and_gradients_and_state():
    X, y = _windows(30, 0.05, seed=2)
    Xv = np.array([[0.0, 0.0], [1.0, -1.0]])
    gp = GradientGP().fit_observations(X_value=Xv, value=_surface(Xv) + 3.0,
                                       X_gradient=y[:, 4:], gradient=y[:, :2],
                                       gradient_stderr=y[:, 2:4])
    mean = gp.posterior(Xv).mean
    np.testing.assert_allclose(mean, _surface(Xv) + 3.0, atol=0.1)  # values fix the constant
    restored = GradientGP().load_state_dict(gp.state_dict())
    grid = np.random.default_rng(0).uniform(-3, 3, (20, 2))
    np.testing.assert_array_equal(restored.posterior(grid).mean, gp.posterior(grid).mean)
    with pytest.raises(ValueError, match="^y "):
        GradientGP().fit(X, y[:, :5])
    bad = y.copy()
    bad[0, 2] = -1.0
    with pytest.raises(ValueError, match="^y"):
        GradientGP().fit(X, bad)


def test_observation_posterior_scores_predicted_gradients():
    X, y = _windows(60, 0.1, seed=3)
    gp = GradientGP().fit(X[:50], y[:50])
    posterior, observed = gp.observation_posterior(X[50:], y[50:])
    assert posterior.n == observed.size == 20
    z = (observed - posterior.mean) / np.sqrt(posterior.variance)
    assert np.mean(np.abs(z) <= 1.645) >= 0.7


# -- integrated variance with gradient observations ----------------------------------------
def _summed_variance_after(gp, reference_points, where, noise):
    """Brute force: the GP's own algebra after adding a gradient window at ``where``."""
    state = gp.state_dict()
    n_value = len(state["x_value"])
    grads = state["targets"][n_value:].reshape(2, -1)
    noise_g = state["noise_diagonal"][n_value:].reshape(2, -1)
    state["x_gradient"] = np.vstack([state["x_gradient"], where[None]])
    state["targets"] = np.concatenate([state["targets"][:n_value],
                                       np.hstack([grads, np.zeros((2, 1))]).ravel()])
    scale2 = state["y_scale"][0] ** 2
    state["noise_diagonal"] = np.concatenate([
        state["noise_diagonal"][:n_value],
        np.hstack([noise_g, np.full((2, 1), noise / scale2)]).ravel()])
    extended = GradientGP().load_state_dict(state)
    return extended.posterior(reference_points).variance.sum()


def test_gradient_integrated_variance_matches_brute_force_and_conditions_on_pending():
    X, y = _windows(12, 0.1, seed=4)
    gp = GradientGP().fit(X, y)
    pool = np.random.default_rng(5).uniform(-np.pi, np.pi, (60, 2))
    posterior = gp.posterior(pool)
    assert posterior.observes_gradients
    acquisition = IntegratedVariance(n_reference=None)
    scorer = acquisition.scorer(posterior, np.array([], dtype=np.int64),
                                np.random.default_rng(0))
    scores = scorer.scores()
    before = posterior.variance.sum()
    noise = float(posterior.gradient_noise[0])
    for candidate in (0, 17, 42):
        after = _summed_variance_after(gp, pool, pool[candidate], noise)
        assert scores[candidate] == pytest.approx(before - after, rel=1e-5)
    # A pending window removes most of the value of its neighbours.
    best = int(np.argmax(scores))
    distances = np.linalg.norm(np.angle(np.exp(1j * (pool - pool[best]))), axis=1)
    neighbour = int(np.argsort(distances)[1])
    pending = acquisition.scorer(posterior, np.array([best]), np.random.default_rng(0))
    assert pending.scores()[neighbour] < 0.8 * scores[neighbour]
    chosen = acquisition.select(posterior, 4, np.array([best]), np.random.default_rng(0))
    assert best not in chosen and len(set(chosen.tolist())) == 4


def test_integrated_variance_below_keeps_to_low_predictions():
    X, y = _windows(20, 0.05, seed=6)
    gp = GradientGP().fit(X, y)
    pool = np.random.default_rng(7).uniform(-np.pi, np.pi, (80, 2))
    posterior = gp.posterior(pool)
    scorer = IntegratedVariance(n_reference=None, below=0.5).scorer(
        posterior, np.array([], dtype=np.int64), np.random.default_rng(0))
    low = posterior.mean - posterior.mean.min() <= 0.5
    assert set(scorer.reference.tolist()) == set(np.flatnonzero(low).tolist())
    with pytest.raises(ValueError, match="below"):
        IntegratedVariance(below=-1.0)


# -- the shipped reference ---------------------------------------------------------------
def test_reference_file_matches_its_recorded_settings():
    record = json.loads(fes_reference.REFERENCE_PATH.read_text())
    assert record["settings"] == json.loads(json.dumps(fes_reference.SETTINGS))
    assert record["command"] == "python -m benchmarks.fes_reference"
    assert {"python", "numpy", "openmm", "pymbar"} <= set(record["versions"])
    n = record["settings"]["grid"]
    centres = fes_reference.grid_centres(n)
    np.testing.assert_allclose(record["centres"], centres, atol=1e-12)
    reference = fes_reference.load_reference()
    assert reference["fes"].shape == (n, n) and np.all(np.isfinite(reference["fes"]))
    assert reference["fes"].min() == 0.0
    grid = np.array([(a, b) for a in centres for b in centres])
    windows = reference["windows"]
    np.testing.assert_allclose(windows["centre"], grid, atol=1e-5)  # row-major phi, psi
    for key in ("location", "mean_force", "stderr", "short_location", "short_mean_force",
                "short_stderr"):
        assert windows[key].shape == (n * n, 2)
    # Umbrella integration's identity per window: force = k (centre - mean), wrapped.
    offset = np.angle(np.exp(1j * (windows["location"] - windows["centre"])))
    np.testing.assert_allclose(windows["mean_force"], -record["settings"]["restraint_k"] * offset,
                               atol=1e-3)
    # The least-squares cross-check is reproducible from the stored window statistics.
    again = fes_reference.fourier_fes(windows["location"], windows["mean_force"],
                                      record["settings"]["fourier_order"], grid,
                                      weights=1 / np.maximum(windows["stderr"], 1e-3) ** 2)
    np.testing.assert_allclose(again.reshape(n, n), reference["fes_fourier"], atol=2e-3)
    recomputed = fes_reference.basin_table(reference["fes"])
    assert recomputed.keys() == record["basins"].keys()
    for name, basin in record["basins"].items():
        for key in ("phi", "psi", "F"):
            assert recomputed[name][key] == pytest.approx(basin[key], abs=1e-3)  # 4 decimals


# -- a tiny FES campaign end to end ------------------------------------------------------
@pytest.mark.slow
def test_tiny_fes_campaign_on_threads(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    import alanine_fes as example

    from campaign import Budget
    from campaign.report import open_run, summarize

    cg_scale = example.campaign.scale("cg")
    aa_scale = example.campaign.scale("aa")
    scales = [cg_scale.model_copy(update={"params": {**cg_scale.params, "n_steps": 2000,
                                                     "stride": 100}}),
              aa_scale.model_copy(update={"params": {**aa_scale.params, "n_steps": 400,
                                                     "equilibration": 100}})]
    spec = example.campaign.model_copy(update={"scales": scales, "budget": Budget(aa=8)})
    summary = spec.run(site="threads", out=tmp_path / "run")
    assert "budget" in summary.stop_reason
    ledger, store = open_run(tmp_path / "run")
    try:
        aa = store.read("aa")
        assert len(aa) == 8
        windows = np.asarray(aa.y["gradient_window"])
        assert windows.shape == (8, 6) and np.all(np.isfinite(windows))
        assert np.all(windows[:, 2:4] > 0)  # standard errors
        # mean force = k (centre - mean) for every window, as measured
        offset = np.angle(np.exp(1j * (windows[:, 4:] - aa.y["restraint_centre"][:, :])))
        np.testing.assert_allclose(windows[:, :2], -200.0 * offset, atol=1e-6)
        rounds = [r for r in ledger.rounds("cg-to-aa") if r.get("reference_rmse") is not None]
        assert rounds and all(np.isfinite(r["reference_rmse"]) for r in rounds)
        scored = [r for r in ledger.rounds("cg-to-aa") if r.get("calibration")]
        assert scored and scored[-1]["calibration"]["n"] % 2 == 0  # 2 gradient parts each
    finally:
        ledger.close()
    written = summarize(tmp_path / "run", spec, baseline=False)["extra_reports"]
    assert written == [str(tmp_path / "run" / "fes.png")]
    assert (tmp_path / "run" / "fes.png").stat().st_size > 20_000


# -- the benchmark's pieces, on the reference's own short windows as a pool -----------------
def test_fes_benchmark_policies_and_grid_on_a_small_pool():
    from apps.fes import load_reference
    from benchmarks import fes

    reference = load_reference()
    w = reference["windows"]
    rows = np.random.default_rng(0).choice(len(w["centre"]), size=80, replace=False)
    pool = {"centre": w["centre"][rows],
            "window": np.hstack([w["short_mean_force"], w["short_stderr"],
                                 w["short_location"]])[rows],
            "seconds": np.ones(len(rows))}
    settings = {"batch": 4, "budget": 32, "below": 30.0}
    for policy in ("learner", "learner_low", "random", "farthest"):
        result = fes.run_policy(policy, pool, reference, settings, seed=0)
        counts = [count for count, _ in result["curve"]]
        assert counts == list(range(4, 33, 4)) and len(set(result["chosen"])) == 32
        assert result["curve"][-1][1] < result["curve"][0][1]  # more windows, less error
        assert 0.0 <= result["coverage_90"] <= 1.0 and result["core_seconds"] == 32.0
    grid = fes.grid_baseline(reference)
    assert [n for n, _ in grid["grid"]] == [16, 36, 64, 144, 576]
    assert grid["grid"][-1][1] < grid["grid"][0][1]
    assert fes.windows_to([(4, 9.0), (8, 3.0), (12, 1.0)], 4.184) == 8
    assert fes.windows_to([(4, 9.0)], 4.184) is None
    truth = np.array([0.0, 1.0, 2.0])
    assert fes.aligned_rmse(truth + 5.0, truth, np.ones(3, bool)) == pytest.approx(0.0)
