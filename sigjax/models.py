"""The MLP: a Flax linen module behind two pure functions, `init_params` and `apply`.

Dense layers are named `layer_1` … `layer_{depth+1}`; layer depth+1 is the output layer.
Layer l computes z_l = a_{l-1} W_l + b_l and a_l = φ(z_l) (the head uses `head_activation`).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sigjax import activations, initializers

Params = dict


class Intermediates(NamedTuple):
    """Per-layer arrays, a tuple over layers 1..depth+1, each (batch, width_l)."""

    pre: tuple[jax.Array, ...]
    post: tuple[jax.Array, ...]


class MLP(nn.Module):
    widths: tuple[int, ...]  # hidden widths
    out_dim: int
    activation: str
    head_activation: str = "identity"
    kernel_init: str = "gaussian"

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, Intermediates]:
        kinit = initializers.get(self.kernel_init)
        binit = jax.nn.initializers.normal(1.0)  # unit scale; the model rescales by sigma_b
        pre, post = [], []
        sizes = (*self.widths, self.out_dim)
        for i, size in enumerate(sizes):
            act = self.activation if i < len(self.widths) else self.head_activation
            z = nn.Dense(size, kernel_init=kinit, bias_init=binit, name=f"layer_{i + 1}")(x)
            x = activations.get(act)(z)
            pre.append(z)
            post.append(x)
        return x, Intermediates(tuple(pre), tuple(post))


def init_params(
    model: MLP, key: jax.Array, in_dim: int, sigma_w2: jax.Array, sigma_b2: jax.Array
) -> Params:
    """Parameters with kernels scaled by sqrt(sigma_w2) and biases ~ N(0, sigma_b2).

    sigma_w2 and sigma_b2 may be traced scalars: the shapes do not depend on them.
    """
    params = model.init(key, jnp.zeros((1, in_dim)))["params"]
    sw, sb = jnp.sqrt(sigma_w2), jnp.sqrt(sigma_b2)
    return {
        name: {"kernel": layer["kernel"] * sw, "bias": layer["bias"] * sb}
        for name, layer in params.items()
    }


def apply(model: MLP, params: Params, x: jax.Array) -> tuple[jax.Array, Intermediates]:
    """Outputs (batch, out_dim) and every layer's pre-activations and activations."""
    return model.apply({"params": params}, x)


def layer_names(params: Params) -> list[str]:
    """Layer names in network order (layer_1, layer_2, …, not lexicographic)."""
    return sorted(params, key=lambda n: int(n.split("_")[1]))
