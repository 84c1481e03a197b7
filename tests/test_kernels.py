"""Kernel objects for ExactGP: the additive short + long (+ periodic) kernel, save/load."""

import math

import gpytorch
import numpy as np
import pytest

from learners import ExactGP
from learners.kernels import TorchKernel, additive_kernel


def landscape(X: np.ndarray) -> np.ndarray:
    """A smooth trend plus short-range detail, and a periodic dependence on column 2."""
    return X[:, 0] + 0.2 * np.sin(25.0 * X[:, 1]) + np.cos(X[:, 2])


def data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, size=(n, 3))
    X[:, 2] = rng.uniform(-math.pi, math.pi, size=n)
    return X


def test_additive_kernel_structure_and_initialisation():
    kernel = additive_kernel(3, short=0.1, long=1.0, angles=[2])
    short, long, periodic = kernel.kernels
    assert short.base_kernel.lengthscale.shape == (1, 2)  # the angle column is periodic only
    assert additive_kernel(3).kernels[0].base_kernel.lengthscale.shape == (1, 3)
    np.testing.assert_allclose(short.base_kernel.lengthscale.detach().numpy(), 0.1, rtol=1e-6)
    np.testing.assert_allclose(long.base_kernel.lengthscale.detach().numpy(), 1.0, rtol=1e-6)
    # the families cannot swap: the short one's upper bound is the long one's lower bound
    assert float(short.base_kernel.raw_lengthscale_constraint.upper_bound) == pytest.approx(
        float(long.base_kernel.raw_lengthscale_constraint.lower_bound))
    assert isinstance(periodic.base_kernel, gpytorch.kernels.PeriodicKernel)
    assert float(periodic.base_kernel.period_length) == pytest.approx(2 * math.pi)
    assert not periodic.base_kernel.raw_period_length.requires_grad
    assert len(additive_kernel(2).kernels) == 2  # no angles, no periodic part
    assert isinstance(additive_kernel(2, base="rbf").kernels[0].base_kernel,
                      gpytorch.kernels.RBFKernel)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"d": 0}, "d"), ({"d": 2, "base": "cubic"}, "base"), ({"d": 2, "short": 2.0}, "short"),
     ({"d": 2, "angles": [2]}, "angles"), ({"d": 2, "angles": [0], "period": 0.0}, "period")],
)
def test_additive_kernel_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        additive_kernel(**kwargs)


def test_exact_gp_with_additive_periodic_kernel_fits_and_round_trips():
    X, Xt = data(80, 0), data(200, 1)
    gp = ExactGP(kernel=additive_kernel(3, angles=[2]), restarts=1).fit(X, landscape(X))
    posterior = gp.posterior(Xt)
    rmse = float(np.sqrt(np.mean((posterior.mean - landscape(Xt)) ** 2)))
    assert rmse < 0.1, rmse  # y spread ~ 0.8
    # the period is honoured: theta and theta + 2 pi predict the same
    shifted = Xt.copy()
    shifted[:, 2] += 2 * math.pi
    np.testing.assert_allclose(gp.posterior(shifted).mean, posterior.mean, atol=1e-6)

    state = gp.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype in (np.float64, np.int64)
               for v in state.values())
    assert int(state["kernel"][0]) == -1
    restored = ExactGP(kernel=additive_kernel(3, angles=[2])).load_state_dict(state)
    again = restored.posterior(Xt)
    np.testing.assert_array_equal(again.mean, posterior.mean)
    np.testing.assert_array_equal(again.variance, posterior.variance)
    np.testing.assert_array_equal(again.covariance(np.arange(5)),
                                  posterior.covariance(np.arange(5)))
    assert isinstance(restored.posterior(Xt[:2]).kernel, TorchKernel)


def test_state_of_a_named_kernel_does_not_load_into_a_kernel_object_and_back():
    X = data(20, 0)
    named = ExactGP(restarts=0, iterations=20).fit(X, landscape(X))
    custom = ExactGP(kernel=additive_kernel(3), restarts=0, iterations=20).fit(X, landscape(X))
    with pytest.raises(ValueError, match="kernel"):
        ExactGP(kernel=additive_kernel(3)).load_state_dict(named.state_dict())
    with pytest.raises(ValueError, match="kernel"):
        ExactGP().load_state_dict(custom.state_dict())
    with pytest.raises(ValueError, match="kernel_param"):
        ExactGP(kernel=additive_kernel(3, angles=[2])).load_state_dict(custom.state_dict())


def test_any_gpytorch_kernel_and_names_are_accepted():
    X = data(30, 0)
    kernel = gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=3))
    gp = ExactGP(kernel=kernel, restarts=1, iterations=30).fit(X, landscape(X))
    assert gp.posterior(X[:3]).mean.shape == (3,)
    assert repr(gp) == "ExactGP(kernel=ScaleKernel(...), restarts=1, iterations=30)"
    assert ExactGP(kernel="rbf").fit(X, landscape(X)).state_dict()["kernel"][0] == 1
    with pytest.raises(ValueError, match="kernel"):
        ExactGP(kernel="cubic").fit(X, landscape(X))
    with pytest.raises(ValueError, match="prior variance"):  # not stationary
        ExactGP(kernel=gpytorch.kernels.LinearKernel()).fit(X, landscape(X))
