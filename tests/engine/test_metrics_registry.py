"""Metrics behind one registry: a registered function of the step's context is recorded inside
the compiled loop, written with its dims, sized by the planner, and keyed by its code."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny

import sigjax
from sigjax import config
from sigjax import data as data_lib
from sigjax.engine import grid, metrics, plan, results, sweep, train
from sigjax.errors import UserError
from sigjax.nn import models


@pytest.fixture(autouse=True)
def registry():
    """Each test sees the bundled metrics only, whatever it registers."""
    saved = dict(metrics.REGISTRY)
    yield
    metrics.REGISTRY.clear()
    metrics.REGISTRY.update(saved)


def mean_abs_output(ctx: metrics.Context) -> jax.Array:
    return jnp.abs(ctx.output).mean()


def max_abs_pre(ctx: metrics.Context) -> jax.Array:
    return jnp.stack([jnp.abs(z).max() for z in ctx.inter.pre])


SMALL = {"train.steps": 3, "train.log_every": 1, "train.metrics": "out_abs, pre_max"}


def test_registered_metrics_match_the_same_quantities_computed_from_the_parameters():
    sigjax.register_metric("out_abs", mean_abs_output)
    sigjax.register_metric("pre_max", max_abs_pre, per_layer=True)
    cfg = tiny(**SMALL)
    data = data_lib.load(cfg.data)
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(5)
    _, traj = jax.jit(train.make_train(cfg, data))(hp, key)
    rec = traj.records
    assert rec["out_abs"].shape == (4,) and rec["pre_max"].shape == (4, 3)
    state = prog.init(hp, key)
    step = jax.jit(lambda st: prog.step(data, hp, key, st)[0])  # the saved state, step by step
    for t in range(cfg.train.steps + 1):
        state = step(state) if t else state
        x, _ = data_lib.batch(data, train.Program.data_key(key, t), cfg.train.batch_size)
        out, inter = models.apply(prog.model, state.params, x)
        assert float(rec["out_abs"][t]) == pytest.approx(float(np.abs(out).mean()), rel=1e-6)
        want = [float(np.abs(z).max()) for z in inter.pre]
        np.testing.assert_allclose(rec["pre_max"][t], want, rtol=1e-6)


def test_results_give_a_scalar_metric_dims_step_and_a_per_layer_one_step_layer(tmp_path):
    sigjax.register_metric("out_abs", mean_abs_output)
    sigjax.register_metric("pre_max", max_abs_pre, per_layer=True)
    cfg = tiny(**SMALL | {"train.record": "loss"})
    axes = grid.make_axes({"model.depth": [1, 2], "seed": [0, 1]})
    ds = sweep.run(cfg, axes)
    results.save(ds, tmp_path / "results.nc")
    back = results.load(tmp_path / "results.nc")
    assert back.out_abs.dims == ("depth", "seed", "step")
    assert back.pre_max.dims == ("depth", "seed", "step", "layer")
    assert list(back.data_vars)[:4] == ["loss", "test_loss", "test_accuracy", "out_abs"]
    assert "grad_norm" not in back  # train.record=loss records no bundled per-layer metric
    np.testing.assert_array_equal(back.pre_max.values, ds.pre_max.values)
    shallow = back.pre_max.sel(depth=1).values
    assert np.isnan(shallow[..., 2]).all() and np.isfinite(shallow[..., :2]).all()  # padded
    assert back.n_layers.sel(depth=1).values.tolist() == [2, 2]
    # step 0 of a member by hand: its initial parameters on its first batch
    data = data_lib.load(cfg.data)
    prog = train.program(config.replace(cfg, {"model.depth": 2}), data)
    hp, key = train.hparams_of(cfg), jax.random.key(1)
    x, _ = data_lib.batch(data, train.Program.data_key(key, 0), cfg.train.batch_size)
    out, inter = models.apply(prog.model, prog.init(hp, key).params, x)
    member = back.sel(depth=2, seed=1, step=0)
    np.testing.assert_allclose(member.pre_max, [np.abs(z).max() for z in inter.pre], rtol=1e-6)
    assert float(member.out_abs) == pytest.approx(float(np.abs(out).mean()), rel=1e-6)


def test_replacing_a_metric_gives_new_numbers_not_a_cached_program():
    metrics.register("probe", lambda ctx: 2.0 * ctx.loss)
    cfg = tiny(**{"train.steps": 2, "train.log_every": 1, "train.metrics": "probe"})
    axes = grid.make_axes({"seed": [0, 1]})
    fp = sweep.fingerprint(cfg, axes)
    old = sweep.run(cfg, axes)
    np.testing.assert_allclose(old.probe.values, 2.0 * old.loss.values, rtol=1e-6)
    with pytest.raises(UserError, match="'probe' is already registered"):
        metrics.register("probe", lambda ctx: 3.0 * ctx.loss)
    metrics.register("probe", lambda ctx: 3.0 * ctx.loss, replace=True)
    new = sweep.run(cfg, axes)
    np.testing.assert_allclose(new.probe.values, 3.0 * old.loss.values, rtol=1e-6)
    np.testing.assert_array_equal(new.loss.values, old.loss.values)
    assert sweep.fingerprint(cfg, axes) != fp  # an old checkpoint is not resumed either


def test_the_planner_counts_the_metrics_recorded():
    sigjax.register_metric("out_abs", mean_abs_output)
    sigjax.register_metric("pre_max", max_abs_pre, per_layer=True)
    n_logs, n_layers = 4, 3
    base = plan.estimate(tiny(**SMALL | {"train.metrics": ""}), 8, 3, 64, 32)
    assert base.trajectory == 4 * n_logs * (3 + 6 * n_layers)  # bundled, with a test split
    more = plan.estimate(tiny(**SMALL), 8, 3, 64, 32)
    assert more.trajectory == base.trajectory + 4 * n_logs * (1 + n_layers)
    loss_only = tiny(**SMALL | {"train.record": "loss", "train.metrics": ""})
    assert plan.estimate(loss_only, 8, 3, 64, 0).trajectory == 4 * n_logs
    cfg = tiny(**SMALL)
    data = data_lib.load(cfg.data)
    _, traj = jax.jit(train.make_train(cfg, data))(train.hparams_of(cfg), jax.random.key(0))
    recorded = sum(x.nbytes for x in jax.tree.leaves(traj.records))
    assert plan.estimate(cfg, data.in_dim, data.out_dim, 64, 32).trajectory == recorded


def test_train_record_chooses_the_bundled_metrics_and_train_metrics_adds():
    cfg = tiny(**{"train.steps": 2, "train.log_every": 1, "train.record": "gradients"})
    data = data_lib.load(cfg.data)
    _, traj = jax.jit(train.make_train(cfg, data))(train.hparams_of(cfg), jax.random.key(0))
    assert set(traj.records.values) == {
        "loss",
        "grad_norm",
        "grad_norm_bias",
        "test_loss",
        "test_accuracy",
    }
    assert traj.records.weight_norm is None  # bundled, not recorded
    more = config.replace(cfg, {"train.record": "loss", "train.metrics": "weight_norm,grad_norm"})
    _, t2 = jax.jit(train.make_train(more, data))(train.hparams_of(more), jax.random.key(0))
    assert set(t2.records.values) == {
        "loss",
        "grad_norm",
        "weight_norm",
        "test_loss",
        "test_accuracy",
    }
    assert t2.records["weight_norm"].shape == (3, 3)
    # recording more changes no number of the training
    np.testing.assert_allclose(t2.records["grad_norm"], traj.records["grad_norm"], rtol=1e-6)
    np.testing.assert_array_equal(t2.records["loss"], traj.records["loss"])


def test_metric_mistakes_are_one_line_errors():
    with pytest.raises(UserError, match="unknown metric 'nope' in train.metrics"):
        train.check_config(tiny(**{"train.metrics": "nope"}))
    with pytest.raises(UserError, match="metric name must be an identifier"):
        metrics.register("diverged_at", mean_abs_output)
    metrics.register("bad_shape", max_abs_pre)  # per-layer values, declared a scalar
    cfg = tiny(**{"train.steps": 2, "train.log_every": 1, "train.metrics": "bad_shape"})
    with pytest.raises(UserError, match=r"'bad_shape' returned shape \(3,\).*not per-layer"):
        train.make_train(cfg)(train.hparams_of(cfg), jax.random.key(0))
