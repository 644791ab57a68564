"""Optimizers from optax pieces: schedules, clipping, adamw/lamb, registration, state sizing."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import tiny

from sigjax import data as data_lib
from sigjax.engine import plan, train
from sigjax.errors import UserError
from sigjax.nn import optim

STEPS = 40
LR = 0.3


def small(**updates):
    """tiny(), recording only the loss and without a test split: small graphs compile fast."""
    return tiny(**({"train.record": "loss", "data.n_test": 0} | updates))


def _setup(cfg):
    data = data_lib.load(cfg.data)
    return data, train.program(cfg, data)


def _hand_step(prog, data, tx):
    """One full-batch step of optax's tx, written out by hand (jitted, for speed)."""

    @jax.jit
    def step(params, opt):
        g = jax.grad(lambda p: prog.loss_and_aux(p, data.x_train, data.y_train)[0])(params)
        u, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, u), opt

    return step


@pytest.fixture
def registry(monkeypatch):
    """A private copy of the optimizer registry, so registrations do not leak between tests."""
    monkeypatch.setattr(optim, "_REGISTRY", dict(optim._REGISTRY))


def _optax_schedule(name: str, warmup: int):
    lin = optax.linear_schedule
    if name == "constant":
        return optax.constant_schedule(LR)
    if name in ("cosine", "warmup_cosine"):
        if not warmup:
            return optax.cosine_decay_schedule(LR, STEPS)
        return optax.warmup_cosine_decay_schedule(0.0, LR, warmup, STEPS, end_value=0.0)
    if name == "linear":
        if not warmup:
            return lin(LR, 0.0, STEPS)
        return optax.join_schedules([lin(0.0, LR, warmup), lin(LR, 0.0, STEPS - warmup)], [warmup])
    steps = {STEPS // 2 - warmup: 0.1, 3 * STEPS // 4 - warmup: 0.1}  # join shifts the count
    decay = optax.piecewise_constant_schedule(LR, steps)
    return optax.join_schedules([lin(0.0, LR, warmup), decay], [warmup]) if warmup else decay


@pytest.mark.parametrize("warmup", [0.0, 0.25])
@pytest.mark.parametrize("name", optim.SCHEDULES)
def test_schedules_match_optax_with_traced_peak_and_warmup(name, warmup):
    if name == "constant" and warmup:
        pytest.skip("constant has no warmup")
    counts = jnp.arange(STEPS + 3)  # a few counts past the end: the schedules hold their value
    fn = jax.jit(lambda lr, w: jax.vmap(optim.lr_schedule(name, STEPS, lr, w))(counts))
    got = fn(jnp.float32(LR), jnp.float32(warmup))
    want = _optax_schedule(name, int(warmup * STEPS))(counts)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    if name == "step" and not warmup:  # 10x at 50 % and again at 75 % of the steps
        at = np.asarray(got)[[19, 20, 29, 30]]
        np.testing.assert_allclose(at, [LR, LR / 10, LR / 10, LR / 100], rtol=1e-6)


def test_unknown_schedule_is_refused_in_one_line():
    with pytest.raises(UserError, match="unknown optim.schedule 'cosin'") as err:
        train.check_config(tiny(**{"optim.schedule": "cosin"}))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="unknown optim.schedule"):
        optim.make("sgd", train.hparams_of(tiny()), schedule="cosin", steps=10)


@pytest.mark.parametrize(
    "updates, message",
    [
        ({"optim.clip": -1.0}, "clip must be non-negative"),
        ({"optim.warmup": 1.0, "optim.schedule": "cosine"}, "warmup must be below 1"),
        ({"optim.warmup": -0.1, "optim.schedule": "cosine"}, "warmup must be non-negative"),
        ({"optim.warmup": 0.1}, "optim.warmup=0.1 needs a schedule"),
    ],
)
def test_bad_clip_or_warmup_is_a_user_error(updates, message):
    with pytest.raises(UserError, match=message):
        train.check_config(tiny(**updates))


def test_scheduled_training_equals_optax_sgd_with_optax_schedule():
    steps, lr, warmup = 8, 0.2, 0.25
    cfg = small(
        **{
            "optim.schedule": "warmup_cosine",
            "optim.warmup": warmup,
            "optim.lr": lr,
            "train.steps": steps,
            "train.log_every": 1,
            "train.batch_size": 0,
        }
    )
    data, prog = _setup(cfg)
    hp, key = train.hparams_of(cfg), jax.random.key(0)
    state = prog.init(hp, key)
    end, _ = jax.jit(prog.advance, static_argnums=4)(data, hp, key, state, steps)
    tx = optax.sgd(optax.warmup_cosine_decay_schedule(0.0, lr, 2, steps, end_value=0.0))
    hand_step = _hand_step(prog, data, tx)
    params, opt = state.params, tx.init(state.params)
    for _ in range(steps):
        params, opt = hand_step(params, opt)
    for a, b in zip(jax.tree.leaves(end.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(end.params["layer_1"]["kernel"], state.params["layer_1"]["kernel"])


def test_vmapped_sweep_over_lr_and_warmup_compiles_once():
    cfg = small(**{"optim.schedule": "warmup_cosine", "train.steps": 10})
    data, prog = _setup(cfg)
    one = chex.assert_max_traces(lambda hp, key: prog.train(data, hp, key)[1].records.loss, n=1)
    fn = jax.jit(jax.vmap(one, in_axes=(0, None)))
    base, key = train.hparams_of(cfg), jax.random.key(0)

    def members(lrs, warmups):
        hp = {k: jnp.full(3, v) for k, v in base.items()}
        return hp | {"lr": jnp.array(lrs, jnp.float32), "warmup": jnp.array(warmups, jnp.float32)}

    a = fn(members([0.05, 0.1, 0.1], [0.0, 0.0, 0.5]), key)
    b = fn(members([0.2, 0.3, 0.4], [0.1, 0.2, 0.9]), key)  # new values, no new trace
    assert not np.allclose(a[1], a[2])  # warmup is a runtime value: it changes the run
    alone = jax.jit(lambda hp: prog.train(data, hp, key)[1].records.loss)
    want = alone(base | {"lr": jnp.float32(0.3), "warmup": jnp.float32(0.2)})
    np.testing.assert_allclose(b[1], want, rtol=1e-5, atol=1e-7)


def _grads():
    # global norm sqrt(3² + 4² + 12²) = 13
    return {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0]])}


@pytest.mark.parametrize("clip, scale", [(1.0, 1 / 13), (6.5, 0.5), (20.0, 1.0)])
def test_clip_scales_a_gradient_of_known_norm(clip, scale):
    hp = train.hparams_of(tiny(**{"optim.lr": 0.5})) | {"clip": jnp.float32(clip)}
    tx = optim.make("sgd", hp)
    params = jax.tree.map(jnp.zeros_like, _grads())
    u, _ = jax.jit(tx.update)(_grads(), tx.init(params), params)
    for got, g in zip(jax.tree.leaves(u), jax.tree.leaves(_grads()), strict=True):
        np.testing.assert_allclose(got, -0.5 * scale * g, rtol=1e-6)


@pytest.mark.parametrize("name", optim.names())
def test_clip_zero_passes_the_update_through_exactly(name):
    hp = train.hparams_of(tiny(**{"optim.name": name, "optim.weight_decay": 0.01}))
    no_clip = {k: v for k, v in hp.items() if k != "clip"}
    with_clip, without = optim.make(name, hp), optim.make(name, no_clip)
    params = {"a": jnp.array([0.5, -1.0]), "b": jnp.array([[2.0]])}
    s1, s2 = with_clip.init(params), without.init(params)
    for t in range(3):
        g = jax.tree.map(lambda x, t=t: jnp.sin(x * (t + 1.7)), _grads())
        (u1, s1), (u2, s2) = with_clip.update(g, s1, params), without.update(g, s2, params)
        for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2), strict=True):
            np.testing.assert_array_equal(a, b)  # bit for bit
        params = optax.apply_updates(params, u1)


def test_clipped_training_step_equals_the_hand_computed_update():
    cfg = small(**{"optim.clip": 0.05, "optim.lr": 0.1, "train.batch_size": 0})
    data, prog = _setup(cfg)
    hp, key = train.hparams_of(cfg), jax.random.key(1)
    state = prog.init(hp, key)
    new, _ = jax.jit(prog.step)(data, hp, key, state)
    g = jax.grad(lambda p: prog.loss_and_aux(p, data.x_train, data.y_train)[0])(state.params)
    norm = float(optax.tree.norm(g))
    assert norm > 0.05  # the clip is active
    want = jax.tree.map(lambda p, g: p - 0.1 * 0.05 / norm * g, state.params, g)
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_adamw_and_lamb_equal_optax_with_constants(name):
    cfg = small(
        **{
            "optim.name": name,
            "optim.lr": 0.05,
            "optim.weight_decay": 0.1,  # an extra decay on top would show: 5e-3 · |p| a step
            "optim.eps": 1e-6,
            "train.steps": 3,
            "train.log_every": 1,
            "train.batch_size": 0,
        }
    )
    data, prog = _setup(cfg)
    hp, key = train.hparams_of(cfg), jax.random.key(0)
    state = prog.init(hp, key)
    end, _ = jax.jit(prog.advance, static_argnums=4)(data, hp, key, state, 3)
    kw = {"b1": 0.9, "b2": 0.999, "eps": 1e-6, "weight_decay": 0.1}
    tx = (optax.adamw if name == "adamw" else optax.lamb)(0.05, **kw)
    hand_step = _hand_step(prog, data, tx)
    params, opt = state.params, tx.init(state.params)
    for _ in range(3):
        params, opt = hand_step(params, opt)
    for a, b in zip(jax.tree.leaves(end.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-5)


def test_registered_optimizer_trains_like_the_same_chain_built_directly(registry):
    def factory(hp):
        return optax.chain(optax.clip(1.0), optax.sgd(hp["lr"]))

    optim.register("clipped_sgd", factory)
    optim.register("clipped_sgd", factory)  # the same factory again: a no-op
    cfg = small(
        **{
            "optim.name": "clipped_sgd",
            "optim.lr": 0.5,
            "optim.weight_decay": 0.1,  # not added to a registered optimizer
            "train.steps": 3,
            "train.log_every": 1,
            "train.batch_size": 0,
        }
    )
    train.check_config(cfg)
    data, prog = _setup(cfg)
    hp, key = train.hparams_of(cfg), jax.random.key(0)
    state = prog.init(hp, key)
    end, _ = jax.jit(prog.advance, static_argnums=4)(data, hp, key, state, 3)
    tx = optax.chain(optax.clip(1.0), optax.sgd(0.5))
    hand_step = _hand_step(prog, data, tx)
    params, opt = state.params, tx.init(state.params)
    for _ in range(3):
        params, opt = hand_step(params, opt)
    for a, b in zip(jax.tree.leaves(end.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_duplicate_name_is_refused_unless_replaced(registry):
    def other(hp):
        return optax.sgd(hp["lr"])

    with pytest.raises(UserError, match="optimizer 'sgd' is already registered") as err:
        optim.register("sgd", other)
    assert "\n" not in str(err.value)
    optim.register("sgd", other, replace=True)
    assert optim._REGISTRY["sgd"].factory is other
    with pytest.raises(UserError, match="unknown optimizer 'nope'"):
        train.check_config(tiny(**{"optim.name": "nope"}))


def _n_params(widths):
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))


@pytest.mark.parametrize(
    "updates, arrays, scalars",
    [
        ({"optim.name": "sgd"}, 0, 0),
        ({"optim.name": "momentum"}, 1, 0),
        ({"optim.name": "adam"}, 2, 1),  # mu, nu and the int32 step count
        ({"optim.name": "adamw"}, 2, 1),
        ({"optim.name": "lamb"}, 2, 1),
        ({"optim.name": "adam", "optim.schedule": "cosine"}, 2, 2),  # + the schedule's count
    ],
)
def test_planner_counts_the_optimizer_state(updates, arrays, scalars):
    cfg = small(**updates)
    n = _n_params([8, 16, 16, 3])
    est = plan.estimate(cfg, 8, 3, 64, 32)
    assert est.params == 4 * n
    assert est.state == 4 * (3 * n + arrays * n + scalars)


def test_planner_sizes_a_registered_optimizer(registry):
    optim.register("plain", lambda hp: optax.chain(optax.clip(1.0), optax.sgd(hp["lr"])))
    optim.register("declared", lambda hp: optax.sgd(hp["lr"]), slots=5)
    n = _n_params([8, 16, 16, 3])
    assert plan.estimate(tiny(**{"optim.name": "plain"}), 8, 3, 64, 32).state == 4 * 3 * n
    assert plan.estimate(tiny(**{"optim.name": "declared"}), 8, 3, 64, 32).state == 4 * 8 * n
