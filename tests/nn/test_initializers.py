import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sigjax.errors import UserError
from sigjax.nn import initializers, models

SHAPE = (200, 120)


@pytest.mark.parametrize("scheme", list(initializers.SCHEMES))
def test_variance_matches_formula(scheme):
    keys = jax.random.split(jax.random.key(0), 20)
    w = jax.vmap(lambda k: initializers.get(scheme)(k, SHAPE, jnp.float32))(keys)
    expected = initializers.kernel_variance(scheme, *SHAPE)
    # 480k draws: the sample variance is within ~1% of the truth
    assert float(jnp.var(w)) == pytest.approx(expected, rel=0.02)
    assert abs(float(jnp.mean(w))) < 5 * np.sqrt(expected / w.size) + 1e-7


def test_standard_is_uniform_with_the_right_bound():
    w = initializers.get("standard")(jax.random.key(1), (64, 1000), jnp.float32)
    assert float(jnp.abs(w).max()) <= 1 / np.sqrt(64)
    assert float(jnp.abs(w).max()) > 0.99 / np.sqrt(64)


@pytest.mark.parametrize("shape", [(50, 50), (80, 30), (30, 80)])
def test_orthogonal_is_orthogonal(shape):
    w = np.asarray(initializers.get("orthogonal")(jax.random.key(2), shape, jnp.float32))
    small = min(shape)
    gram = w.T @ w if shape[0] >= shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)


def test_traced_scales_set_mean_field_variances():
    model = models.MLP(widths=(400, 400), out_dim=400, activation="tanh", kernel_init="gaussian")

    def params(sw2, sb2, key):
        return models.init_params(model, key, 300, sw2, sb2)

    p = jax.jit(params)(jnp.float32(2.5), jnp.float32(0.3), jax.random.key(3))
    assert float(jnp.var(p["layer_2"]["kernel"])) == pytest.approx(2.5 / 400, rel=0.02)
    assert float(jnp.var(p["layer_1"]["kernel"])) == pytest.approx(2.5 / 300, rel=0.02)
    assert float(jnp.var(p["layer_2"]["bias"])) == pytest.approx(0.3, rel=0.25)
    # the same compiled function serves other scales, and σ_b² = 0 gives zero biases exactly
    p0 = jax.jit(params)(jnp.float32(1.0), jnp.float32(0.0), jax.random.key(3))
    assert float(jnp.abs(p0["layer_1"]["bias"]).max()) == 0.0
    np.testing.assert_allclose(
        p["layer_1"]["kernel"], p0["layer_1"]["kernel"] * np.sqrt(2.5), rtol=1e-6
    )


def test_orthogonal_with_gain():
    model = models.MLP(widths=(64,), out_dim=64, activation="tanh", kernel_init="orthogonal")
    p = models.init_params(model, jax.random.key(4), 64, jnp.float32(1.7), jnp.float32(0.0))
    w = np.asarray(p["layer_1"]["kernel"])
    np.testing.assert_allclose(w.T @ w, 1.7 * np.eye(64), atol=1e-4)


def test_unknown_scheme():
    with pytest.raises(UserError, match="unknown init scheme"):
        initializers.get("glorot")
