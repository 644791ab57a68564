"""Models behind the family protocol: a user's module trains like the built-in MLP, mutable state
(BatchNorm) is threaded through training and resume, per-layer metrics and the planner ask the
family which arrays are each layer's, never parameter names."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import tiny

import experiments
import sigjax
from sigjax import data as data_lib
from sigjax.engine import checkpoint, plan, results, sweep, train
from sigjax.errors import UserError
from sigjax.nn import initializers, losses, models
from sigjax.study import Interrupted, run_study

FIELDS = ("loss", "grad_norm", "grad_norm_bias", "weight_norm", "act_mean", "act_std")


@pytest.fixture(autouse=True)
def registry():
    """Each test sees the built-in families only, whatever it registers."""
    saved = dict(models._REGISTRY)
    yield
    models._REGISTRY.clear()
    models._REGISTRY.update(saved)
    models._TOKENS.clear()


class UserMLP(nn.Module):
    """A user's own MLP: Dense layers, the same initializers as sigjax's."""

    widths: tuple[int, ...]
    out_dim: int
    scheme: str

    @nn.compact
    def __call__(self, x, *, train: bool):
        pre, post = [], []
        for i, size in enumerate((*self.widths, self.out_dim)):
            z = nn.Dense(
                size,
                kernel_init=initializers.get(self.scheme),
                bias_init=jax.nn.initializers.normal(1.0),
                name=f"layer_{i + 1}",
            )(x)
            x = jnp.tanh(z) if i < len(self.widths) else z
            pre.append(z)
            post.append(x)
        return x, models.Intermediates(tuple(pre), tuple(post))


class UserMLPFamily(models.Family):
    def build(self, cfg, in_dim, out_dim):
        return UserMLP((cfg.model.width,) * cfg.model.depth, out_dim, cfg.init.scheme)


def _trajectory(cfg, seed=0):
    fn = jax.jit(train.make_train(cfg))
    return fn(train.hparams_of(cfg), jax.random.key(seed))


def test_a_users_dense_module_trains_bit_for_bit_like_the_builtin_mlp():
    sigjax.register_model("user_mlp", UserMLPFamily())
    cfg = tiny(**{"train.steps": 10, "train.log_every": 2})
    want_state, want = _trajectory(cfg)
    got_state, got = _trajectory(
        tiny(**{"train.steps": 10, "train.log_every": 2, "model.arch": "user_mlp"})
    )
    for f in (*FIELDS, "saturation", "test_loss", "test_accuracy"):
        assert np.array_equal(np.asarray(got.records[f]), np.asarray(want.records[f])), f
    for a, b in zip(
        jax.tree.leaves(got_state.params), jax.tree.leaves(want_state.params), strict=True
    ):
        assert np.array_equal(a, b)
    assert got_state.model_state == {} and want_state.model_state == {}


class BNNet(nn.Module):
    """Dense -> BatchNorm -> tanh -> Dense, the hidden layer without a bias."""

    width: int
    out_dim: int

    @nn.compact
    def __call__(self, x, *, train: bool):
        z = nn.Dense(self.width, use_bias=False, name="hidden")(x)
        z = nn.BatchNorm(use_running_average=not train, momentum=0.8, name="norm")(z)
        a = jnp.tanh(z)
        out = nn.Dense(self.out_dim, name="readout")(a)
        return out, models.Intermediates((z, out), (a, out))


class BNFamily(models.Family):
    def build(self, cfg, in_dim, out_dim):
        return BNNet(cfg.model.width, out_dim)

    def layers(self, params):
        return [
            models.Layer("hidden", ("hidden", "kernel"), None),
            models.Layer("readout", ("readout", "kernel"), ("readout", "bias")),
        ]


BN = {"model.arch": "bn_mlp", "train.steps": 6, "train.log_every": 1, "init.sigma_b2": 0.3}


def test_batch_statistics_thread_through_training_like_a_hand_written_loop():
    sigjax.register_model("bn_mlp", BNFamily())
    cfg = tiny(**BN)
    data = data_lib.load(cfg.data)
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(3)
    state, traj = jax.jit(train.make_train(cfg, data))(hp, key)

    module = BNNet(cfg.model.width, data.out_dim)
    variables = module.init(jax.random.fold_in(key, 0), jnp.zeros((1, data.in_dim)), train=False)
    params = jax.tree.map(lambda a: a, variables["params"])
    params["hidden"]["kernel"] = params["hidden"]["kernel"] * jnp.sqrt(hp["sigma_w2"])
    params["readout"]["kernel"] = params["readout"]["kernel"] * jnp.sqrt(hp["sigma_w2"])
    params["readout"]["bias"] = params["readout"]["bias"] * jnp.sqrt(hp["sigma_b2"])
    stats = variables["batch_stats"]
    tx = optax.sgd(cfg.optim.lr)
    opt = tx.init(params)

    @jax.jit
    def step(params, stats, opt, x, y):
        def loss(p):
            (out, _), upd = module.apply(
                {"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            return losses.softmax_ce(out, y), upd["batch_stats"]

        (value, new_stats), g = jax.value_and_grad(loss, has_aux=True)(params)
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), new_stats, opt, value

    def test_loss(params, stats):
        out, _ = module.apply({"params": params, "batch_stats": stats}, data.x_test, train=False)
        return losses.softmax_ce(out, data.y_test)

    for t in range(cfg.train.steps):
        x, y = data_lib.batch(data, train.Program.data_key(key, t), cfg.train.batch_size)
        np.testing.assert_allclose(traj.records["test_loss"][t], test_loss(params, stats), 1e-6)
        params, stats, opt, value = step(params, stats, opt, x, y)
        np.testing.assert_allclose(traj.records["loss"][t], value, rtol=1e-6)
    for a, b in zip(
        jax.tree.leaves((state.params, state.model_state)),
        jax.tree.leaves((params, {"batch_stats": stats})),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # the running averages moved, and eval mode uses them: train-mode loss on the test set differs
    assert not np.allclose(stats["norm"]["mean"], variables["batch_stats"]["norm"]["mean"])
    out_train, _, _ = prog.family.apply(
        prog.model, params, {"batch_stats": stats}, data.x_test, train=True
    )
    assert (
        abs(float(losses.softmax_ce(out_train, data.y_test)) - float(test_loss(params, stats)))
        > 1e-4
    )
    # a layer without a bias has no bias gradient norm; the other layers' norms are real
    gb = np.asarray(traj.records["grad_norm_bias"])
    assert np.isnan(gb[:, 0]).all() and np.isfinite(gb[:, 1]).all()


def _bn_study():
    sets = {
        "train.steps": 20,
        "train.log_every": 5,
        "model.width": 8,
        "model.arch": "bn_mlp",
        "data.n_test": 20,  # eval mode reads the running averages: test_loss depends on them
    }
    grids = {"model.activation": ["tanh"], "model.depth": [1], "optim.lr": [0.1], "seed": [0, 1]}
    s = experiments.get("sigmoid_convergence").with_overrides(sets, grids)
    return dataclasses.replace(s, report=None)


def test_batch_statistics_survive_an_interrupt_and_resume(tmp_path, monkeypatch):
    sigjax.register_model("bn_mlp", BNFamily())
    reference, _, _ = run_study(_bn_study(), tmp_path / "ref")
    saves, loaded = [], []
    original, original_load = checkpoint.Store.save_state, checkpoint.Store.load_state

    def interrupt_on_the_second(self, g, c, state, records):
        original(self, g, c, state, records)
        assert jax.tree.leaves(state.model_state)  # the running averages are in the checkpoint
        saves.append(1)
        if len(saves) == 2:  # of 4 segments
            raise KeyboardInterrupt

    def load(self, *args):
        out = original_load(self, *args)
        loaded.append(out is not None)
        return out

    monkeypatch.setattr(checkpoint.Store, "save_state", interrupt_on_the_second)
    with pytest.raises(Interrupted):
        run_study(_bn_study(), tmp_path / "run")
    monkeypatch.setattr(checkpoint.Store, "save_state", original)
    monkeypatch.setattr(checkpoint.Store, "load_state", load)
    ds, path, _ = run_study(_bn_study(), tmp_path / "run", resume=True)
    assert loaded == [True]  # the run went on from the saved state
    for name in reference.data_vars:
        np.testing.assert_array_equal(ds[name].values, reference[name].values, err_msg=name)
    assert int(ds.n_layers.max()) == 2 and np.isfinite(ds.test_loss.values).all()


class Named(nn.Module):
    """Three Dense layers named stem, body, head: alphabetical order is not network order."""

    @nn.compact
    def __call__(self, x, *, train: bool):
        pre, post = [], []
        for name, size in (("stem", 6), ("body", 5), ("head", 3)):
            z = nn.Dense(size, name=name, bias_init=jax.nn.initializers.normal(1.0))(x)
            x = jnp.tanh(z) if name != "head" else z
            pre.append(z)
            post.append(x)
        return x, models.Intermediates(tuple(pre), tuple(post))


class NamedFamily(models.Family):
    def build(self, cfg, in_dim, out_dim):
        return Named()

    def layers(self, params):
        return [models.Layer(n, (n, "kernel"), (n, "bias")) for n in ("stem", "body", "head")]


def test_per_layer_norms_follow_the_declared_layers_not_parameter_names():
    sigjax.register_model("named", NamedFamily())
    cfg = tiny(
        **{
            "model.arch": "named",
            "train.steps": 2,
            "train.log_every": 1,
            "init.sigma_w2": 2.0,
            "init.sigma_b2": 0.5,
        }
    )
    data = data_lib.load(cfg.data)
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(1)
    _, traj = jax.jit(train.make_train(cfg, data))(hp, key)
    params, _ = prog.family.init(
        prog.model, jax.random.fold_in(key, 0), data.in_dim, hp["sigma_w2"], hp["sigma_b2"]
    )
    raw = Named().init(jax.random.fold_in(key, 0), jnp.zeros((1, data.in_dim)), train=False)
    x, y = data_lib.batch(data, train.Program.data_key(key, 0), cfg.train.batch_size)

    def loss(p):
        return losses.softmax_ce(Named().apply({"params": p}, x, train=True)[0], y)

    g = jax.grad(loss)(params)
    for i, name in enumerate(("stem", "body", "head")):
        kernel = np.asarray(raw["params"][name]["kernel"]) * np.sqrt(2.0)
        bias = np.asarray(raw["params"][name]["bias"]) * np.sqrt(0.5)
        rec = traj.records
        assert np.linalg.norm(params[name]["bias"]) == pytest.approx(np.linalg.norm(bias), 1e-6)
        assert rec["weight_norm"][0, i] == pytest.approx(np.linalg.norm(kernel), rel=1e-6)
        assert rec["grad_norm"][0, i] == pytest.approx(
            float(jnp.linalg.norm(g[name]["kernel"])), rel=1e-5
        )
        assert rec["grad_norm_bias"][0, i] == pytest.approx(
            float(jnp.linalg.norm(g[name]["bias"])), rel=1e-5
        )
        assert rec["act_mean"].shape == (3, 3)
    assert prog.n_layers == 3


def test_default_layers_take_kernels_in_natural_order():
    params = {f"Dense_{i}": {"kernel": 0, "bias": 0} for i in (10, 2, 0, 1)} | {"bn": {"scale": 0}}
    params["Dense_1"].pop("bias")
    got = models.Family().layers(params)
    assert [ly.name for ly in got] == ["Dense_0", "Dense_1", "Dense_2", "Dense_10"]
    assert got[1].bias is None and got[3].bias == ("Dense_10", "bias")


def _widths_estimate(cfg, in_dim, out_dim, n_train, n_test):
    """The planner's former count, from the MLP's widths (sgd: no optimizer slots)."""
    widths = [in_dim, *([cfg.model.width] * cfg.model.depth), out_dim]
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    batch = cfg.train.batch_size if 0 < cfg.train.batch_size < n_train else n_train
    acts = 4 * batch * sum(widths[1:]) + batch * in_dim + 2 * n_test * max(widths)
    per_log = 3 + 6 * (len(widths) - 1)
    return (
        4 * n_params,
        4 * 3 * n_params,
        4 * acts,
        4 * (cfg.train.steps // cfg.train.log_every + 1) * per_log,
    )


@pytest.mark.parametrize(
    "updates, dims",
    [
        ({}, (8, 3, 64, 32)),
        ({"model.depth": 4, "model.width": 50, "train.batch_size": 0}, (70, 10, 300, 20)),
    ],
)
def test_the_planner_counts_the_mlp_as_its_widths_did(updates, dims):
    cfg = tiny(**updates)
    est = plan.estimate(cfg, *dims)
    assert (est.params, est.state, est.activations, est.trajectory) == _widths_estimate(cfg, *dims)


def test_the_planner_sizes_a_model_with_state_from_its_own_init():
    sigjax.register_model("bn_mlp", BNFamily())
    cfg = tiny(**BN)
    est = plan.estimate(cfg, 8, 3, 64, 32)
    w = cfg.model.width
    n_params = 8 * w + 2 * w + w * 3 + 3  # hidden kernel, BatchNorm scale and bias, readout
    assert est.params == 4 * n_params
    assert est.state == 4 * (3 * n_params + 2 * w)  # + the running mean and variance
    n_logs = cfg.train.steps + 1
    assert est.trajectory == 4 * n_logs * (3 + 6 * 2)


def test_model_mistakes_are_one_line_errors_naming_model_arch():
    with pytest.raises(UserError, match="unknown model.arch 'nope'; choose from mlp"):
        train.check_config(tiny(**{"model.arch": "nope"}))
    sigjax.register_model("bn_mlp", BNFamily())
    assert sigjax.register_model("bn_mlp", BNFamily()) is models.get("bn_mlp")  # same code
    with pytest.raises(UserError, match="'bn_mlp' is already registered"):
        sigjax.register_model("bn_mlp", UserMLPFamily())
    with pytest.raises(UserError, match="an instance"):
        sigjax.register_model("cls", BNFamily)

    class NoInter(models.Family):
        def build(self, cfg, in_dim, out_dim):
            return nn.Dense(out_dim)

    models.register("bare", NoInter())
    cfg = tiny(**{"model.arch": "bare"})
    with pytest.raises(UserError, match="model.arch=bare: the model fails"):
        train.program(cfg, data_lib.load(cfg.data))


def test_replacing_a_family_compiles_anew():
    sigjax.register_model("user_mlp", UserMLPFamily())
    cfg = tiny(**{"model.arch": "user_mlp", "train.steps": 4, "train.log_every": 2})
    data = data_lib.load(cfg.data)
    old = train.program(cfg, data)
    fp = sweep.fingerprint(cfg, ())

    class Shifted(UserMLPFamily):
        def init(self, module, key, in_dim, sigma_w2, sigma_b2):
            params, state = super().init(module, key, in_dim, sigma_w2, sigma_b2)
            return jax.tree.map(lambda a: a * 0.5, params), state

    sigjax.register_model("user_mlp", Shifted(), replace=True)
    new = train.program(cfg, data)
    assert new != old and new.model_token != old.model_token
    assert sweep.fingerprint(cfg, ()) != fp
    a = sweep.run(cfg)
    sigjax.register_model("user_mlp", UserMLPFamily(), replace=True)
    b = sweep.run(cfg)
    assert not np.allclose(a.weight_norm.values, b.weight_norm.values)
    np.testing.assert_allclose(a.weight_norm.values[0], 0.5 * b.weight_norm.values[0], rtol=1e-6)
    assert results.PER_LAYER[0] in a and a.grad_norm.dims == ("step", "layer")
