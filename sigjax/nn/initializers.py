"""Weight initialisation schemes, with traced variance scales.

Every scheme draws a *base* kernel; the model then multiplies it by sqrt(sigma_w2) and draws
biases from N(0, sigma_b2) (both traced, so a sweep over them compiles once). With the defaults
sigma_w2 = 1, sigma_b2 = 0 each scheme is the textbook one with zero biases.

| scheme          | base kernel W (fan_in n, fan_out m)          | Var W_ij        |
|-----------------|----------------------------------------------|-----------------|
| standard        | U[-1/sqrt(n), 1/sqrt(n)] (Glorot & Bengio)    | 1/(3n)          |
| glorot_uniform  | U[±sqrt(6/(n+m))] ("normalized")             | 2/(n+m)         |
| glorot_normal   | N(0, 2/(n+m))                                | 2/(n+m)         |
| lecun_normal    | truncated normal, variance 1/n               | 1/n             |
| he_normal       | truncated normal, variance 2/n               | 2/n             |
| orthogonal      | a Haar-random (semi-)orthogonal matrix       | 1/max(n, m)     |
| gaussian        | N(0, 1/n): mean-field, W ~ N(0, sigma_w2/n)  | 1/n             |
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from sigjax.errors import UserError

Init = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def _standard(key, shape, dtype=jnp.float32):
    bound = 1.0 / jnp.sqrt(shape[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def _gaussian(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype) / jnp.sqrt(shape[0])


_vs = jax.nn.initializers.variance_scaling

SCHEMES: dict[str, Init] = {
    "standard": _standard,
    "glorot_uniform": jax.nn.initializers.glorot_uniform(),
    "glorot_normal": _vs(1.0, "fan_avg", "normal"),
    "lecun_normal": jax.nn.initializers.lecun_normal(),
    "he_normal": jax.nn.initializers.he_normal(),
    "orthogonal": jax.nn.initializers.orthogonal(),
    "gaussian": _gaussian,
}
ALIASES = {"normalized": "glorot_uniform", "xavier_uniform": "glorot_uniform"}


def kernel_variance(scheme: str, fan_in: int, fan_out: int) -> float:
    """Var(W_ij) of the base kernel, the formula the tests check draws against."""
    return {
        "standard": 1.0 / (3 * fan_in),
        "glorot_uniform": 2.0 / (fan_in + fan_out),
        "glorot_normal": 2.0 / (fan_in + fan_out),
        "lecun_normal": 1.0 / fan_in,
        "he_normal": 2.0 / fan_in,
        "orthogonal": 1.0 / max(fan_in, fan_out),
        "gaussian": 1.0 / fan_in,
    }[canonical(scheme)]


def canonical(scheme: str) -> str:
    name = ALIASES.get(scheme, scheme)
    if name not in SCHEMES:
        raise UserError(f"unknown init scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    return name


def get(scheme: str) -> Init:
    return SCHEMES[canonical(scheme)]
