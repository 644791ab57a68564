import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sigjax.errors import UserError
from sigjax.nn import activations

NAMES = activations.names()
Z = jnp.linspace(-6.0, 6.0, 1201)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_grad(name):
    act = activations.get(name)
    # Away from kinks (relu/hard_* at 0, ±1, ±3) the elementwise derivative equals jax.grad.
    z = Z[jnp.min(jnp.abs(Z[:, None] - jnp.array([0.0, -1.0, 1.0, -3.0, 3.0])), axis=1) > 1e-3]
    expected = jax.vmap(jax.grad(act.fn))(z)
    np.testing.assert_allclose(act.derivative(z), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_derivative_matches_finite_difference(name):
    act = activations.get(name)
    z = jnp.array([-2.3, -0.7, 0.4, 1.9], dtype=jnp.float32)
    h = 1e-3
    fd = (np.asarray(act(z + h), np.float64) - np.asarray(act(z - h), np.float64)) / (2 * h)
    np.testing.assert_allclose(act.derivative(z), fd, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("name", NAMES)
def test_max_slope_is_the_supremum(name):
    act = activations.get(name)
    z = jnp.linspace(-12.0, 12.0, 480001)
    assert float(jnp.abs(act.derivative(z)).max()) == pytest.approx(act.max_slope, rel=1e-4)


def test_closed_forms():
    z = jnp.array([-1.5, 0.0, 2.0])
    np.testing.assert_allclose(activations.get("sigmoid")(z), 1 / (1 + np.exp(-np.array(z))))
    np.testing.assert_allclose(
        activations.get("centred_sigmoid")(z), 0.5 * np.tanh(np.array(z) / 2), atol=1e-7
    )
    np.testing.assert_allclose(activations.get("hard_tanh")(z), [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(activations.get("swish")(z), z * jax.nn.sigmoid(z))


def test_saturation_thresholds():
    sig, tanh, relu = (activations.get(n) for n in ("sigmoid", "tanh", "relu"))
    # sigmoid: σ' < 0.04 · 0.25 = 0.01 ⇔ σ(z) outside ≈ [0.0102, 0.9898] ⇔ |z| > 4.5756
    assert not bool(sig.saturated(jnp.array(4.5)))
    assert bool(sig.saturated(jnp.array(4.65)))
    # tanh: 1 − tanh² < 0.04 ⇔ |z| > atanh(√0.96) ≈ 2.292
    assert not bool(tanh.saturated(jnp.array(2.28)))
    assert bool(tanh.saturated(jnp.array(-2.31)))
    np.testing.assert_array_equal(relu.saturated(jnp.array([-0.1, 0.1])), [True, False])
    assert not bool(activations.get("identity").saturated(jnp.array(1e6)))


def test_unknown_name_is_a_user_error():
    with pytest.raises(UserError, match="unknown activation 'sigmod'"):
        activations.get("sigmod")
