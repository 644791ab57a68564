"""Normalization (model.norm) and the residual MLP (model.arch=resmlp): batch and layer norm
against hand computations in float64, the running averages' formula, eval mode, α = 0, sweep
members against the same members alone, one program per α grid, the planner's counts, and
BatchNorm state through an interrupt or a SIGKILL and a resume."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_same_results, cli_args, sigkill_after, subprocess_env, tiny

import experiments
from sigjax import config
from sigjax import data as data_lib
from sigjax.engine import checkpoint, grid, metrics, plan, programs, results, sweep, train
from sigjax.errors import UserError
from sigjax.nn import losses, models, nets
from sigjax.study import Interrupted, run_study

EPS = nets.EPS


def _setup(**updates):
    cfg = tiny(**updates)
    data = data_lib.load(cfg.data)
    return cfg, data, train.program(cfg, data)


def _f64(tree):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _norm(z, kind, gamma, beta, stats=None):
    """Batch norm (over the batch, or with stats = (mean, var)) or layer norm, by hand."""
    if kind == "layer":
        mean, var = z.mean(1, keepdims=True), z.var(1, keepdims=True)
    elif stats is None:
        mean, var = z.mean(0), z.var(0)
    else:
        mean, var = stats
    return gamma * (z - mean) / np.sqrt(var + EPS) + beta


def _mlp_by_hand(p, x, kind, depth, stats=None):
    """The tanh MLP with normalization in float64: (output, [z_l], [u_l]) of the hidden layers."""
    a, zs, us = np.asarray(x, np.float64), [], []
    for i in range(1, depth + 1):
        lay, nrm = p[f"layer_{i}"], p[f"norm_{i}"]
        z = a @ lay["kernel"] + lay.get("bias", 0.0)
        st = None if stats is None else (stats[f"norm_{i}"]["mean"], stats[f"norm_{i}"]["var"])
        u = _norm(z, kind, nrm["scale"], nrm["bias"], st)
        a = np.tanh(u)
        zs.append(z)
        us.append(u)
    head = p[f"layer_{depth + 1}"]
    return a @ head["kernel"] + head["bias"], zs, us


def _random_affine(params, key, names):
    """params with each named normalization's γ, β drawn at random (γ in [0.5, 2])."""
    params = jax.tree.map(lambda a: a, params)
    for i, n in enumerate(names):
        k1, k2 = jax.random.split(jax.random.fold_in(key, i))
        shape = params[n]["scale"].shape
        params[n]["scale"] = jax.random.uniform(k1, shape, minval=0.5, maxval=2.0)
        params[n]["bias"] = jax.random.normal(k2, shape)
    return params


@pytest.mark.parametrize("kind", ["batch", "layer"])
def test_normalization_centres_and_scales_each_unit_before_its_scale_and_shift(kind):
    cfg, data, prog = _setup(**{"model.norm": kind, "init.sigma_w2": 16.0, "init.sigma_b2": 1.0})
    state = prog.init(train.hparams_of(cfg), jax.random.key(0))
    params = _random_affine(state.params, jax.random.key(1), ["norm_1", "norm_2"])
    x = data.x_train[:48]
    out, inter, new = prog.family.apply(prog.model, params, state.model_state, x, train=True)
    axis = 0 if kind == "batch" else 1  # batch norm: each unit over the batch; layer: per example
    p64 = _f64(params)
    _, zs, _ = _mlp_by_hand(p64, x, kind, 2)
    for i, z in enumerate(zs, 1):
        n = p64[f"norm_{i}"]
        xhat = (np.asarray(inter.pre[i - 1], np.float64) - n["bias"]) / n["scale"]
        v = z.var(axis)
        assert v.min() > 1.0  # so that ε = 1e-5 moves the variance by less than 1e-5
        np.testing.assert_allclose(xhat.mean(axis), 0.0, atol=1e-5)
        np.testing.assert_allclose(xhat.var(axis), 1.0, atol=1e-5)
        np.testing.assert_allclose(xhat.var(axis), v / (v + EPS), atol=2e-6)
    want, _, us = _mlp_by_hand(_f64(params), x, kind, 2)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    for u, got in zip(us, inter.pre, strict=False):
        np.testing.assert_allclose(got, u, rtol=1e-5, atol=1e-5)
    # batch norm's hidden Dense layers have no bias (β stands in); layer norm's keep theirs
    assert ("bias" in params["layer_1"]) == (kind == "layer") and "bias" in params["layer_3"]
    assert ("batch_stats" in new) == (kind == "batch")


def test_running_averages_follow_their_formula_through_training_steps():
    m = 0.7
    cfg, data, prog = _setup(**{"model.norm": "batch", "model.bn_momentum": m, "optim.lr": 0.3})
    hp, key = train.hparams_of(cfg), jax.random.key(2)
    state = prog.init(hp, key)
    stats = _f64(state.model_state["batch_stats"])
    for name in ("norm_1", "norm_2"):  # they start at mean 0, variance 1
        assert (stats[name]["mean"] == 0).all() and (stats[name]["var"] == 1).all()
    step = jax.jit(lambda s: prog.step(data, hp, key, s))
    for t in range(4):
        x, _ = data_lib.batch(data, train.Program.data_key(key, t), cfg.train.batch_size)
        _, zs, _ = _mlp_by_hand(_f64(state.params), x, "batch", 2)
        for i, z in enumerate(zs, 1):  # r <- m r + (1 - m) · the batch's mean / biased variance
            s = stats[f"norm_{i}"]
            s["mean"] = m * s["mean"] + (1 - m) * z.mean(0)
            s["var"] = m * s["var"] + (1 - m) * z.var(0)
        state, _ = step(state)
        got = state.model_state["batch_stats"]
        for name in ("norm_1", "norm_2"):
            for k in ("mean", "var"):
                np.testing.assert_allclose(got[name][k], stats[name][k], rtol=1e-5, atol=1e-6)
    assert int(state.step) == 4 and not np.allclose(stats["norm_1"]["var"], 1.0)


def test_eval_mode_and_the_test_metrics_use_the_running_averages():
    cfg, data, prog = _setup(**{"model.norm": "batch", "optim.lr": 0.3})
    hp, key = train.hparams_of(cfg), jax.random.key(4)
    state = prog.init(hp, key)
    step = jax.jit(lambda s: prog.step(data, hp, key, s))
    for _ in range(3):
        state, _ = step(state)
    _, rec = step(state)  # measured on `state`, before its update
    p, stats = _f64(state.params), _f64(state.model_state["batch_stats"])
    want, _, _ = _mlp_by_hand(p, data.x_test, "batch", 2, stats)
    got, _, same = prog.family.apply(
        prog.model, state.params, state.model_state, data.x_test, train=False
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert same is state.model_state  # eval mode leaves the running averages alone
    want_loss = losses.softmax_ce(jnp.asarray(want, jnp.float32), data.y_test)
    assert float(rec["test_loss"]) == pytest.approx(float(want_loss), rel=1e-5)
    batch_mode, _, _ = _mlp_by_hand(p, data.x_test, "batch", 2)  # the test set's own statistics
    assert not np.allclose(batch_mode, want, atol=1e-3)


def _resmlp_by_hand(p, x, alpha, depth, act=np.tanh):
    h = np.asarray(x, np.float64) @ p["proj"]["kernel"] + p["proj"]["bias"]
    for i in range(1, depth + 1):
        h = h + alpha * act(h @ p[f"block_{i}"]["kernel"] + p[f"block_{i}"]["bias"])
    return h @ p["head"]["kernel"] + p["head"]["bias"]


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_resmlp_with_alpha_zero_is_the_projection_and_the_head(norm):
    cfg, data, prog = _setup(
        **{"model.arch": "resmlp", "model.depth": 3, "model.norm": norm, "init.sigma_b2": 0.5}
    )
    assert [ly.name for ly in prog.layers] == ["proj", "block_1", "block_2", "block_3", "head"]
    hp, key = train.hparams_of(cfg) | {"residual_scale": jnp.float32(0.0)}, jax.random.key(5)
    state = prog.init(hp, key)
    assert float(state.model_state["hparams"]["residual_scale"]) == 0.0
    p = _f64(state.params)
    x = data.x_train[:32]
    out, inter, _ = prog.family.apply(prog.model, state.params, state.model_state, x, train=True)
    plain = (x @ p["proj"]["kernel"] + p["proj"]["bias"]) @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-5)
    _, rec = jax.jit(lambda s: prog.step(data, hp, key, s))(state)
    g = np.asarray(rec["grad_norm"])
    assert (g[1:4] == 0).all() and (g[[0, 4]] > 0).all()  # no gradient reaches a block at α = 0
    assert len(inter.pre) == 5 and np.allclose(inter.pre[0], inter.post[0])


def test_resmlp_blocks_add_alpha_times_the_branch():
    cfg, data, prog = _setup(**{"model.arch": "resmlp", "init.sigma_b2": 0.5})
    hp = train.hparams_of(cfg) | {"residual_scale": jnp.float32(0.4)}
    state = prog.init(hp, jax.random.key(6))
    out, _, _ = prog.family.apply(
        prog.model, state.params, state.model_state, data.x_test, train=False
    )
    want = _resmlp_by_hand(_f64(state.params), data.x_test, 0.4, cfg.model.depth)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert train.hparams_of(tiny())["residual_scale"] == 1.0  # α = 1 by default


FIELDS = ("loss", "grad_norm", "grad_norm_bias", "grad_norm_scale", "saturation", "test_loss")


@pytest.mark.parametrize(
    "updates",
    [
        {"model.arch": "resmlp", "model.norm": "batch"},
        pytest.param({"model.arch": "mlp", "model.norm": "layer"}, marks=pytest.mark.slow),
    ],
)
def test_sweep_members_equal_the_same_members_trained_alone(updates):
    cfg, data, prog = _setup(**updates, **{"train.steps": 10})
    axes = grid.make_axes({"init.residual_scale": [0.5, 1.0], "seed": [0, 1]})
    ds = sweep.run(cfg, axes)
    alone = jax.jit(prog.train)
    for alpha in (0.5, 1.0):
        for seed in (0, 1):
            hp = train.hparams_of(config.replace(cfg, {"init.residual_scale": alpha}))
            _, traj = alone(data, hp, jax.random.key(seed))
            member = ds.sel(residual_scale=alpha, seed=seed)
            for f in FIELDS:
                np.testing.assert_allclose(
                    member[f].values, traj.records[f], rtol=2e-5, atol=1e-6, err_msg=f
                )
    a = ds.loss.sel(seed=0)
    assert np.allclose(a.sel(residual_scale=0.5), a.sel(residual_scale=1.0)) == (
        updates["model.arch"] == "mlp"  # the MLP has no α
    )


def test_an_alpha_grid_is_one_static_group_and_compiles_once(monkeypatch):
    programs.compiled.cache_clear()  # an earlier test may have compiled this very program
    traces = []
    for name in ("init", "advance", "finish"):
        original = getattr(train.Program, name)

        def counting(self, *args, _name=name, _orig=original):
            traces.append(_name)
            return _orig(self, *args)

        monkeypatch.setattr(train.Program, name, counting)
    cfg = tiny(**{"model.arch": "resmlp", "model.norm": "batch", "train.steps": 10})
    axes = grid.make_axes({"init.residual_scale": [0.0, 0.25, 0.5, 1.0, 2.0], "seed": [0, 1]})
    assert len(list(grid.groups(cfg, axes))) == 1
    ds = sweep.run(cfg, axes, chunk_size=4, segments=2)  # 3 chunks, 2 segments each
    assert traces == ["init", "advance", "finish"]
    final = ds.loss.isel(step=-1).sel(seed=0).values
    assert len(set(np.round(final, 6))) == 5  # each α trains its own model


def test_norm_parameters_are_their_own_per_layer_gradient_norms():
    cfg, data, prog = _setup(**{"model.arch": "resmlp", "model.norm": "layer"})
    hp, key = train.hparams_of(cfg), jax.random.key(8)
    state = prog.init(hp, key)
    x, y = data_lib.batch(data, train.Program.data_key(key, 0), cfg.train.batch_size)
    _, rec = jax.jit(lambda s: prog.step(data, hp, key, s))(state)

    def loss(p):
        out = prog.family.apply(prog.model, p, state.model_state, x, train=True)[0]
        return losses.softmax_ce(out, y)

    g = jax.grad(loss)(state.params)
    for i, ly in enumerate(prog.layers):
        kernel = float(jnp.linalg.norm(g[ly.name]["kernel"]))
        assert float(rec["grad_norm"][i]) == pytest.approx(kernel, rel=1e-5)  # the Dense alone
        if ly.name.startswith("block_"):
            n = f"norm_{ly.name.split('_')[1]}"
            for what, k in (("scale", "scale"), ("shift", "bias")):
                want = float(jnp.linalg.norm(g[n][k]))
                assert float(rec[f"grad_norm_{what}"][i]) == pytest.approx(want, rel=1e-5)
        else:
            assert np.isnan(rec["grad_norm_scale"][i]) and np.isnan(rec["grad_norm_shift"][i])
    assert "grad_norm_scale" not in metrics.recorded(tiny(), True)  # recorded under a norm only
    # the linear projection never saturates; the blocks apply model.activation
    assert float(rec["saturation"][0]) == 0.0


@pytest.mark.parametrize("arch", ["mlp", "resmlp"])
def test_the_planner_counts_the_normalized_models_from_their_own_init(arch):
    cfg, data, prog = _setup(**{"model.arch": arch, "model.norm": "batch", "model.depth": 3})
    state = prog.init(train.hparams_of(cfg), jax.random.key(0))
    n = data.x_train.shape[0]
    est = plan.estimate(cfg, data.in_dim, data.out_dim, n, data.x_test.shape[0])
    count = lambda tree: sum(int(a.size) for a in jax.tree.leaves(tree))  # noqa: E731
    assert est.params == 4 * count(state.params)
    opt = plan.optimizer_state_bytes(cfg, state.params)
    assert est.state == 4 * (3 * count(state.params) + count(state.model_state)) + opt
    w, d = cfg.model.width, cfg.model.depth
    stats = 2 * w * d + (arch == "resmlp")  # running means and variances (+ α)
    assert count(state.model_state) == stats
    per_log = sum(prog.n_layers if m.per_layer else 1 for m in metrics.recorded(cfg, True))
    assert prog.n_layers == d + 1 + (arch == "resmlp")
    assert est.trajectory == 4 * prog.n_logs * per_log
    assert "grad_norm_scale" in [m.name for m in metrics.recorded(cfg, True)]


def test_norm_and_residual_mistakes_are_one_line_errors():
    cfg = tiny(**{"model.norm": "btach"})
    with pytest.raises(UserError, match="unknown model.norm 'btach'; choose from none, batch"):
        train.program(cfg, data_lib.load(cfg.data))
    cfg = tiny(**{"model.arch": "resmlp", "model.bn_momentum": 1.0, "model.norm": "batch"})
    with pytest.raises(UserError, match=r"model.bn_momentum must be in \[0, 1\)"):
        train.program(cfg, data_lib.load(cfg.data))
    with pytest.raises(UserError, match="residual_scale must be non-negative"):
        sweep.check(tiny(), grid.make_axes({"init.residual_scale": [1.0, -1.0]}))

    class Odd(models.Family):
        hparams = ("alpha",)

        def build(self, cfg, in_dim, out_dim):
            return models.MLPFamily().build(cfg, in_dim, out_dim)

    fam = Odd()
    cfg = tiny()
    module = fam.build(cfg, 8, 3)
    with pytest.raises(UserError, match="hparams names 'alpha', not a traced hyperparameter"):
        models.check("odd", fam, module, 8, 3)


# ----------------------------------------------------------------------------- resume

SETS = {
    "train.steps": 40,
    "train.log_every": 5,
    "model.width": 8,
    "model.arch": "resmlp",
    "model.norm": "batch",
    "train.batch_size": 20,
    "data.n_test": 20,  # eval mode reads the running averages: test_loss depends on them
    "train.loss_threshold": 0.15,  # reached, so the study's report has steps to plot
}
GRIDS = {
    "model.activation": ["sigmoid"],
    "model.depth": [2],
    "optim.lr": [0.03],  # 0.1 diverges at α = 1 for seed 0 (the linear path grows)
    "init.residual_scale": [0.5, 1.0],
    "seed": [0, 1],
}


def _study():
    s = experiments.get("sigmoid_convergence").with_overrides(SETS, GRIDS)
    return dataclasses.replace(s, report=None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ds, _, _ = run_study(_study(), tmp_path_factory.mktemp("ref") / "run")
    return ds


def test_batch_norm_state_survives_an_interrupt_and_resume(tmp_path, monkeypatch, reference):
    saves, loaded = [], []
    original, original_load = checkpoint.Store.save_state, checkpoint.Store.load_state

    def interrupt_on_the_third(self, g, c, state, records):
        original(self, g, c, state, records)
        assert jax.tree.leaves(state.model_state["batch_stats"])  # saved with the state
        saves.append(1)
        if len(saves) == 3:  # of 8 segments
            raise KeyboardInterrupt

    def load(self, *args):
        out = original_load(self, *args)
        loaded.append(out is not None)
        return out

    monkeypatch.setattr(checkpoint.Store, "save_state", interrupt_on_the_third)
    with pytest.raises(Interrupted):
        run_study(_study(), tmp_path / "run")
    monkeypatch.setattr(checkpoint.Store, "save_state", original)
    monkeypatch.setattr(checkpoint.Store, "load_state", load)
    ds, _, _ = run_study(_study(), tmp_path / "run", resume=True)
    assert loaded == [True]  # the run went on from the saved state
    assert_same_results(ds, reference)
    assert np.isfinite(ds.test_loss.values).all() and "grad_norm_scale" in ds


# The child slows each checkpoint down so that the kill lands mid-run, after one; the resumed
# child says whether it went on from a saved state.
CHILD = """import sys, time
from sigjax.engine import checkpoint
from sigjax.cli import main
save, load = checkpoint.Store.save_state, checkpoint.Store.load_state
checkpoint.Store.save_state = lambda *a: (save(*a), time.sleep(0.5))[0]
def loud(*a):
    out = load(*a)
    print("LOADED" if out is not None else "FRESH", flush=True)
    return out
checkpoint.Store.load_state = loud
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # two command-line runs with the study's report
def test_batch_norm_state_survives_sigkill_and_resume(tmp_path, reference):
    out = tmp_path / "run"
    env = subprocess_env()
    argv = [sys.executable, "-c", CHILD, *cli_args("sigmoid_convergence", out, SETS, GRIDS)]
    sigkill_after(argv, env, tmp_path / ".run.partial" / "checkpoint", "state-0-0.*.npz")
    assert not out.exists(), "the run finished before it could be killed"
    done = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "LOADED" in done.stdout  # it went on from the killed run's BatchNorm state
    assert_same_results(results.load(Path(out) / "results.nc"), reference)
