"""Activation functions by name.

Each entry is an elementwise `jnp` function plus the supremum of |φ'| over the real line, which
defines saturation uniformly: a unit is *saturated* when |φ'(z)| < SATURATION_FRACTION · sup|φ'|.
For the sigmoid that is σ(z) outside about [0.0102, 0.9898]; for tanh |tanh z| > 0.9747; for
ReLU, a unit that is switched off (φ' = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from sigjax.errors import UserError

SATURATION_FRACTION = 0.04


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable[[jax.Array], jax.Array]
    max_slope: float  # sup_z |φ'(z)|

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.fn(z)

    def derivative(self, z: jax.Array) -> jax.Array:
        """Elementwise φ'(z) (a JVP with a tangent of ones: exact for elementwise φ)."""
        return jax.jvp(self.fn, (z,), (jnp.ones_like(z),))[1]

    def saturated(self, z: jax.Array) -> jax.Array:
        """Boolean mask of saturated units, same shape as z."""
        return jnp.abs(self.derivative(z)) < SATURATION_FRACTION * self.max_slope


def _hard_tanh(z):
    return jnp.clip(z, -1.0, 1.0)


def _centred_sigmoid(z):
    return jax.nn.sigmoid(z) - 0.5


def _erf(z):
    return jax.scipy.special.erf(z)


# sup|φ'| of silu and gelu are attained at finite z: silu at z≈2.3994, gelu (exact) at z=√2.
_SILU_MAX = 1.0998393201
_GELU_MAX = 1.1289041452

REGISTRY: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("sigmoid", jax.nn.sigmoid, 0.25),
        Activation("centred_sigmoid", _centred_sigmoid, 0.25),
        Activation("tanh", jnp.tanh, 1.0),
        Activation("relu", jax.nn.relu, 1.0),
        Activation("leaky_relu", jax.nn.leaky_relu, 1.0),  # negative slope 0.01
        Activation("elu", jax.nn.elu, 1.0),
        Activation("softplus", jax.nn.softplus, 1.0),
        Activation("softsign", jax.nn.soft_sign, 1.0),
        Activation("erf", _erf, 2.0 / math.sqrt(math.pi)),
        Activation("hard_sigmoid", jax.nn.hard_sigmoid, 1.0 / 6.0),  # relu6(x + 3) / 6
        Activation("hard_tanh", _hard_tanh, 1.0),
        Activation("silu", jax.nn.silu, _SILU_MAX),
        Activation("gelu", lambda z: jax.nn.gelu(z, approximate=False), _GELU_MAX),
        Activation("identity", lambda z: z, 1.0),
    ]
}
ALIASES = {"swish": "silu", "linear": "identity", "centered_sigmoid": "centred_sigmoid"}


def get(name: str) -> Activation:
    """The activation called `name` (or an alias); a UserError naming the choices otherwise."""
    key = ALIASES.get(name, name)
    if key not in REGISTRY:
        raise UserError(f"unknown activation {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def names() -> list[str]:
    return sorted(REGISTRY)
