"""A user's activation through `register`: training, saturation and theory from one function."""

from __future__ import annotations

import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny

import sigjax
from sigjax import data as data_lib
from sigjax import theory
from sigjax.engine import grid, sweep, train
from sigjax.errors import UserError
from sigjax.nn import activations
from sigjax.theory import numerics as nm

LECUN_A, LECUN_B = 1.7159, 2.0 / 3.0
SMALL = {"train.steps": 5, "model.depth": 1, "model.width": 8}  # compiles in seconds


def lecun(z):
    return LECUN_A * jnp.tanh(LECUN_B * z)


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """Each test registers into its own copy of the registry."""
    monkeypatch.setattr(activations, "REGISTRY", dict(activations.REGISTRY))


def _train(cfg):
    data = data_lib.load(cfg.data)
    _, traj = jax.jit(train.make_train(cfg, data))(train.hparams_of(cfg), jax.random.key(3))
    return traj


# ----------------------------------------------------------------------------- max slope


@pytest.mark.parametrize(
    "name, want",
    [("sigmoid", 0.25), ("erf", 2 / math.sqrt(math.pi)), ("silu", 1.0998393201),
     ("gelu", 1.1289041452), ("tanh", 1.0), ("hard_sigmoid", 1 / 6), ("softplus", 1.0)],
)  # fmt: skip
def test_max_slope_is_found_numerically(name, want):
    got = activations.find_max_slope(activations.get(name).fn)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-10)


def test_register_finds_max_slope_and_saturation_uses_it():
    act = sigjax.register_activation("lecun_tanh", lecun)
    assert act.max_slope == pytest.approx(LECUN_A * LECUN_B, rel=1e-12)  # φ'(0) = ab
    # saturated ⇔ ab·sech²(bz) < 0.04·ab ⇔ |z| > atanh(√0.96)/b = 3.438
    z = jnp.array([3.40, -3.40, 3.48, -3.48])
    np.testing.assert_array_equal(act.saturated(z), [False, False, True, True])
    assert activations.get("lecun_tanh") is act and "lecun_tanh" in activations.names()


def test_unbounded_slope_needs_an_explicit_max_slope():
    with pytest.raises(UserError, match="'cube'.*grows without bound"):
        activations.register("cube", lambda z: z**3)
    assert activations.register("cube", lambda z: z**3, max_slope=3.0).max_slope == 3.0


# ----------------------------------------------------------------------------- training


def test_a_registered_copy_trains_bit_for_bit_like_the_builtin():
    activations.register("my_tanh", jnp.tanh)
    want = _train(tiny(**SMALL))
    got = _train(tiny(**SMALL, **{"model.activation": "my_tanh"}))
    for f in ("loss", "grad_norm", "act_mean", "act_std", "saturation", "test_loss"):
        a, b = getattr(got.records, f), getattr(want.records, f)
        assert np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True), f


def test_replacing_a_function_reruns_instead_of_reusing_old_programs():
    activations.register("my_act", jnp.tanh)
    small = SMALL | {"train.record": "loss", "data.n_test": 0}
    cfg = tiny(**small, **{"model.activation": "my_act"})
    axes = grid.make_axes({"seed": [0, 1]})
    data = data_lib.load(cfg.data)
    fp_old, prog_old = sweep.fingerprint(cfg, axes), train.program(cfg, data)
    old = sweep.run(cfg, axes)
    with pytest.raises(UserError, match="'my_act' is already registered"):
        activations.register("my_act", jax.nn.soft_sign)
    activations.register("my_act", jax.nn.soft_sign, kinks=[0.0], replace=True)
    assert sweep.fingerprint(cfg, axes) != fp_old
    assert train.program(cfg, data) != prog_old  # a new key for the compiled-program cache
    new = sweep.run(cfg, axes)
    ref = sweep.run(tiny(**small, **{"model.activation": "softsign"}), axes)
    assert not np.allclose(new.loss.values, old.loss.values)
    np.testing.assert_array_equal(new.loss.values, ref.loss.values)
    # the theory follows the replacement too
    assert float(nm.phi("my_act").f(np.array(3.0))) == pytest.approx(0.75, rel=1e-15)


def test_fingerprint_covers_activations_on_grid_axes():
    activations.register("my_act", jnp.tanh)
    cfg = tiny()
    axes = grid.make_axes({"model.activation": ["relu", "my_act"]})
    before = sweep.fingerprint(cfg, axes)
    activations.register("my_act", jnp.sin, replace=True)
    assert sweep.fingerprint(cfg, axes) != before
    assert sweep.fingerprint(cfg, ()) == sweep.fingerprint(cfg, ())  # cfg alone: tanh, identity


# ----------------------------------------------------------------------------- content tokens


def _scaled(a):
    return lambda z: a * jnp.tanh(z)


def test_tokens_follow_code_and_closures_not_object_identity():
    tok = activations.content_token
    assert tok(_scaled(1.0)) == tok(_scaled(1.0))  # new object, same code and closure
    assert tok(_scaled(1.0)) != tok(_scaled(2.0))
    assert tok(lambda z: jnp.tanh(z)) != tok(lambda z: jnp.sin(z))
    assert tok(jnp.tanh, 1.0) != tok(jnp.tanh, 0.5)  # max_slope is baked into saturation
    arr = np.array([1.0, 2.0])
    assert tok(lambda z: z * arr[0]) == tok(lambda z: z * arr[0])
    # a name already holding the same function is not a conflict
    assert activations.register("tanh", jnp.tanh) is activations.get("tanh")
    assert activations.fingerprint(["swish", "silu"]) == activations.fingerprint(["silu"])


def test_builtin_tokens_are_the_same_in_a_fresh_process():
    # a checkpoint is resumed by another process: its key must not depend on object ids
    code = "from sigjax.nn import activations as a; print(a.fingerprint(a.names()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    builtin = sorted(activations.BUILTIN)  # other tests may have registered more names here
    assert out.stdout.strip() == activations.fingerprint(builtin)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "name, fn, match",
    [("centre", lambda z: z - jnp.mean(z), "'centre' is not elementwise"),
     ("sorted", jnp.sort, "'sorted' must map a float32 array elementwise"),
     ("norm", lambda z: z / jnp.linalg.norm(z, axis=-1, keepdims=True), "'norm'"),
     ("inv", lambda z: 1.0 / z, "'inv' is not finite at 0"),
     ("log", jnp.log, "'log' is not finite at 0"),
     ("root", lambda z: jnp.sqrt(jnp.abs(z)), "'root' is not differentiable"),
     ("step", lambda z: (z > 0), "'step' must map a float array to a float array"),
     ("tanh", jnp.sin, "'tanh' is already registered with another function"),
     ("my-act", jnp.tanh, "identifier"),
     ("swish", jnp.tanh, "alias"),
     ("konst", lambda z: 0.0 * z + 1.0, "'konst'.*0 everywhere")],
)  # fmt: skip
def test_refusals_are_one_line_user_errors(name, fn, match):
    with pytest.raises(UserError, match=match) as e:
        activations.register(name, fn)
    assert "\n" not in str(e.value)
    assert name not in activations.REGISTRY or activations.REGISTRY[name].fn is not fn


def test_bad_arguments():
    for kw, match in (({"max_slope": -1.0}, "max_slope"), ({"kinks": ["a"]}, "kinks")):
        with pytest.raises(UserError, match=match):
            activations.register("ok", jnp.tanh, **kw)
    with pytest.raises(UserError, match="identifier"):
        activations.register(3, jnp.tanh)


# ----------------------------------------------------------------------------- theory


def test_derived_float64_programs_equal_xla_float64():
    activations.register("lecun_tanh", lecun)
    x = np.concatenate([np.linspace(-30.0, 30.0, 6001) + 1e-3, [0.0, -1e4, 1e4]])
    for name in [*activations.names()]:
        p, fn = nm.phi(name), activations.get(name).fn

        def all3(z, fn=fn):
            def d1(u):
                return jax.jvp(fn, (u,), (jnp.ones_like(u),))[1]

            return fn(z), d1(z), jax.jvp(d1, (z,), (jnp.ones_like(z),))[1]

        with jax.enable_x64(True):
            refs = [np.asarray(r) for r in jax.jit(all3)(x)]
        for ours, ref in zip((p.f, p.d1, p.d2), refs, strict=True):
            np.testing.assert_allclose(ours(x), ref, rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize(
    "name, slopes",
    [("relu", (0.0, 1.0)), ("leaky_relu", (0.01, 1.0)), ("identity", (1.0, 1.0)),
     ("sigmoid", (0.0, 0.0)), ("softplus", (0.0, 1.0)), ("elu", (0.0, 1.0)),
     ("softsign", (0.0, 0.0)), ("gelu", (0.0, 1.0))],
)  # fmt: skip
def test_asymptotic_slopes_are_found(name, slopes):
    assert nm.phi(name).slopes == slopes


def test_a_registered_copy_has_the_builtins_theory():
    activations.register("my_tanh", lambda z: jnp.tanh(z))  # another token: derived anew
    assert nm.phi("my_tanh") is not nm.phi("tanh")
    w, b = np.array([0.5, 1.3, 2.5, 4.0]), np.array([0.0, 0.05, 0.3, 1.0])
    for fn in (theory.q_star, theory.chi_1):
        np.testing.assert_allclose(fn("my_tanh", w, b), fn("tanh", w, b), rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        theory.critical_sigma_w2("my_tanh", b), theory.critical_sigma_w2("tanh", b), rtol=1e-12
    )
    mf, ref = theory.mean_field("my_tanh", 2.5, 0.05), theory.mean_field("tanh", 2.5, 0.05)
    assert mf.c_star == pytest.approx(float(ref.c_star), rel=1e-12)


def test_a_registered_relu_with_its_kink_has_the_arc_cosine_theory():
    activations.register("my_relu", lambda z: jnp.maximum(z, 0.0), kinks=[0.0])
    p = nm.phi("my_relu")
    assert p.slopes == (0.0, 1.0) and p.kinks == (0.0,)
    w, b = np.array([0.5, 1.0, 1.9]), np.array([0.3, 0.2, 0.1])
    np.testing.assert_allclose(theory.q_star("my_relu", w, b), b / (1 - w / 2), rtol=1e-12)
    np.testing.assert_allclose(theory.chi_1("my_relu", w, b), w / 2, rtol=1e-13)
    np.testing.assert_allclose(theory.critical_sigma_w2("my_relu", [0.0, 0.5]), 2.0)


def test_lecun_tanh_critical_point():
    # φ = a·tanh(bz). At σ_b² = 0, q* = 0 (φ odd, φ(0) = 0) and χ₁ = σ_w² E[φ'(√q* z)²] =
    # σ_w² φ'(0)² = σ_w² (ab)², so criticality is σ_w² = 1/(ab)². For any σ_b², u = b·z follows
    # a tanh net with σ_w'² = (ab)² σ_w² and σ_b'² = b² σ_b² (and q_u = b² q): the critical line
    # and q* map onto tanh's.
    activations.register("lecun_tanh", lecun)
    a, b = LECUN_A, LECUN_B
    assert theory.critical_sigma_w2("lecun_tanh", 0.0) == pytest.approx(1 / (a * b) ** 2, rel=1e-12)
    sb = np.array([0.02, 0.1, 0.5, 2.0])
    want = theory.critical_sigma_w2("tanh", b**2 * sb) / (a * b) ** 2
    np.testing.assert_allclose(theory.critical_sigma_w2("lecun_tanh", sb), want, rtol=1e-10)
    w = np.array([0.5, 1.0, 3.0])[:, None]
    q = theory.q_star("lecun_tanh", w, sb)
    np.testing.assert_allclose(q, theory.q_star("tanh", (a * b) ** 2 * w, b**2 * sb) / b**2)
    np.testing.assert_allclose(
        theory.chi_1("lecun_tanh", w, sb), theory.chi_1("tanh", (a * b) ** 2 * w, b**2 * sb)
    )


def test_a_primitive_outside_the_numpy_tables_runs_through_xla():
    # lax.round is not in the tables: φ then runs through XLA's float64, with the same theory
    activations.register("rounded", lambda z: jnp.tanh(z) + 0.0 * jnp.round(z))
    p = nm.phi("rounded")
    x = np.linspace(-5.0, 5.0, 1001)
    np.testing.assert_allclose(p.f(x), np.tanh(x), rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(
        theory.q_star("rounded", 2.0, 0.1), theory.q_star("tanh", 2.0, 0.1), rtol=1e-12
    )
