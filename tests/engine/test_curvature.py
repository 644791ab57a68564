"""The curvature metrics: the empirical NTK against the Jacobian built another way and against
the infinite-width kernel; sharpness against the full Hessian; eos_at against a trajectory
built by hand and through a sweep."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from helpers import tiny
from jax.flatten_util import ravel_pytree

from sigjax import analysis
from sigjax import data as data_lib
from sigjax.engine import curvature, grid, sweep, train
from sigjax.nn import losses, models
from sigjax.theory import infinite_width as theory_kernels

CURVATURE = "ntk_max,ntk_min,ntk_cond,sharpness"


def regression(**updates):
    base = {
        "data.name": "teacher_regression",
        "data.n_train": 8,
        "data.n_test": 0,
        "data.dim": 3,
        "data.out_dim": 1,
        "model.depth": 2,
        "model.width": 8,
        "train.loss": "mse",
        "train.batch_size": 0,
        "train.steps": 2,
        "train.log_every": 1,
        "train.metrics": CURVATURE,
    }
    return tiny(**base | updates)


def init_of(cfg, seed=0):
    """(program, data, hparams, key, initial parameters) of one member."""
    data = data_lib.load(cfg.data)
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(seed)
    return prog, data, hp, key, prog.init(hp, key).params


def explicit_ntk(prog, params, x):
    """J Jᵀ with J of all outputs at once, by forward mode over the flat parameter vector."""
    flat, unravel = ravel_pytree(params)
    f = lambda v: models.apply(prog.model, unravel(v), x)[0].reshape(-1)  # noqa: E731
    jac = np.asarray(jax.jacfwd(f)(flat), np.float64)  # (P·k, n_params), rows example-major
    return jac @ jac.T


def test_empirical_ntk_equals_the_explicit_jacobian_product():
    cfg = regression(**{"data.out_dim": 2})
    prog, data, _, _, params = init_of(cfg)
    x = data.x_train[:5]
    apply = lambda p, xb: models.apply(prog.model, p, xb)[0]  # noqa: E731
    theta = np.asarray(curvature.empirical_ntk(apply, params, x))
    assert theta.shape == (10, 10)
    np.testing.assert_allclose(theta, explicit_ntk(prog, params, x), rtol=2e-5, atol=1e-5)


def test_the_recorded_ntk_and_sharpness_are_those_of_the_initial_parameters():
    cfg = regression()
    prog, data, hp, key, params = init_of(cfg)
    _, traj = jax.jit(train.make_train(cfg, data))(hp, key)
    rec = traj.records
    lam = np.linalg.eigvalsh(explicit_ntk(prog, params, curvature.probe(data)))
    assert lam[-1] / lam[0] < 1e3  # well conditioned: float32 resolves the smallest one
    assert float(rec["ntk_max"][0]) == pytest.approx(lam[-1], rel=1e-4)
    assert float(rec["ntk_min"][0]) == pytest.approx(lam[0], rel=1e-3)
    assert float(rec["ntk_cond"][0]) == pytest.approx(lam[-1] / lam[0], rel=1e-3)
    # the full training loss's Hessian over the flat parameters
    flat, unravel = ravel_pytree(params)

    def loss(v):
        return losses.mse(models.apply(prog.model, unravel(v), data.x_train)[0], data.y_train)

    top = np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(flat), np.float64))[-1]
    # POWER_ITERS steps from a random start: the Rayleigh quotient, a lower bound, within 1 %
    assert top * 0.99 < float(rec["sharpness"][0]) <= top * (1 + 1e-5)
    assert np.all(np.isfinite(np.asarray(rec["sharpness"])))


def test_power_iteration_finds_the_top_hessian_eigenvalue_away_from_init():
    cfg = regression(**{"model.activation": "sigmoid", "model.depth": 1, "model.width": 5})
    prog, data, _, _, params = init_of(cfg, seed=3)
    params = jax.tree.map(lambda a: a + 0.3 * jnp.sign(a), params)  # a generic point
    flat, unravel = ravel_pytree(params)

    def loss_flat(v):
        return losses.mse(models.apply(prog.model, unravel(v), data.x_train)[0], data.y_train)

    eig = np.linalg.eigvalsh(np.asarray(jax.hessian(loss_flat)(flat), np.float64))
    loss = lambda p: loss_flat(ravel_pytree(p)[0])  # noqa: E731
    got = float(curvature.top_hessian_eigenvalue(loss, params, iters=60))
    assert got == pytest.approx(eig[np.argmax(np.abs(eig))], rel=1e-4)
    # the Gauss–Newton part 2Θ/(N k) carries the top eigenvalue: sharpness ≈ 2 λ_max/(N k)
    lam = np.linalg.eigvalsh(explicit_ntk(prog, params, data.x_train))[-1]
    assert got == pytest.approx(2 * lam / data.y_train.size, rel=0.3)


def test_a_wide_networks_empirical_ntk_is_within_a_few_percent_of_the_infinite_width_kernel():
    x = np.asarray(data_lib.load(regression(**{"data.dim": 10}).data).x_train[:6])
    wide = {"data.dim": 10, "data.out_dim": 1, "model.depth": 1, "model.width": 2048}
    for act in ("tanh", "relu"):
        cfg = regression(**wide, **{"model.activation": act})
        _, theory = theory_kernels.kernels(
            act, 1, 1.0, 0.0, x, parameterization="standard", width=2048
        )
        emps = []
        for seed in range(4):
            prog, _, _, _, params = init_of(cfg, seed)
            apply = lambda p, xb, m=prog.model: models.apply(m, p, xb)[0]  # noqa: E731
            emps.append(np.asarray(curvature.empirical_ntk(apply, params, jnp.asarray(x))))
        errs = [np.linalg.norm(e - theory) / np.linalg.norm(theory) for e in emps]
        # one network fluctuates by O(1/√width) about the limit; four average closer
        assert max(errs) < 0.08, (act, errs)
        mean_err = np.linalg.norm(np.mean(emps, axis=0) - theory) / np.linalg.norm(theory)
        assert mean_err < 0.04, (act, mean_err)


def test_eos_at_is_the_first_logged_step_at_two_over_lr():
    steps = np.array([0, 10, 20, 30])
    sharp = xr.DataArray(
        [[1.0, 3.0, 5.0, 4.0], [1.0, 1.5, np.nan, np.nan], [2.0, 0.5, 0.5, 0.5]],
        dims=("lr", "step"),
        coords={"lr": [0.5, 1.0, 1.0], "step": steps},
    )
    # thresholds 2/lr = 4, 2, 2: crossed at 20, never (NaN does not count), at step 0
    assert curvature.eos_at(sharp, sharp.lr).values.tolist() == [20, -1, 0]
    assert curvature.eos_at(sharp, 0.4).values.tolist() == [20, -1, -1]  # 2/0.4 = 5


@pytest.mark.slow  # a second curvature sweep; the one at init checks the recorded values
def test_a_sweep_records_the_curvature_metrics_and_flags_the_edge_of_stability():
    cfg = regression(**{"train.steps": 20, "train.log_every": 2})
    axes = grid.make_axes({"optim.lr": [0.05, 0.6], "seed": [0, 1]})
    ds = sweep.run(cfg, axes)
    for name in curvature.NAMES:
        assert ds[name].dims == ("lr", "seed", "step")
    assert ds.eos_at.dims == ("lr", "seed")
    for lr in ds.lr.values:
        for seed in ds.seed.values:
            s = ds.sharpness.sel(lr=lr, seed=seed).values
            hits = np.flatnonzero(s >= 2 / lr)
            want = int(ds.step.values[hits[0]]) if hits.size else -1
            assert int(ds.eos_at.sel(lr=lr, seed=seed)) == want
    table = analysis.summary_table(ds, 0.05)
    assert table["eos_at"].tolist() == ds.eos_at.values.ravel().tolist()
    np.testing.assert_allclose(ds.ntk_cond, ds.ntk_max / ds.ntk_min, rtol=1e-5)
    plain = sweep.run(
        regression(**{"train.metrics": "", "train.steps": 20, "train.log_every": 2}), axes
    )
    assert "eos_at" not in plain and "sharpness" not in plain
    assert "eos_at" not in analysis.summary_table(plain, 0.05)
    np.testing.assert_array_equal(plain.loss.values, ds.loss.values)  # measuring changes nothing
