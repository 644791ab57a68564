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
    bf16: bool = False  # matmul inputs in bfloat16; parameters and accumulation stay float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, Intermediates]:
        kinit = initializers.get(self.kernel_init)
        binit = jax.nn.initializers.normal(1.0)  # unit scale; the model rescales by sigma_b
        pre, post = [], []
        sizes = (*self.widths, self.out_dim)
        for i, size in enumerate(sizes):
            act = self.activation if i < len(self.widths) else self.head_activation
            z = nn.Dense(
                size,
                kernel_init=kinit,
                bias_init=binit,
                dot_general=_bf16_dot if self.bf16 else None,
                name=f"layer_{i + 1}",
            )(x)
            x = activations.get(act)(z)
            pre.append(z)
            post.append(x)
        return x, Intermediates(tuple(pre), tuple(post))


@jax.custom_vjp
def _bf16_matmul(a: jax.Array, w: jax.Array) -> jax.Array:
    """a @ w with bfloat16 inputs and float32 accumulation and result, gradients likewise."""
    return jnp.matmul(a.astype(jnp.bfloat16), w.astype(jnp.bfloat16), preferred_element_type=F32)


def _bf16_fwd(a, w):
    a16, w16 = a.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
    return jnp.matmul(a16, w16, preferred_element_type=F32), (a16, w16)


def _bf16_bwd(res, g):
    # Without this rule JAX's backward dots would mix a float32 cotangent with bfloat16
    # operands and run in float32: the backward pass, two thirds of the work, is bf16 too.
    a16, w16 = res
    g16 = g.astype(jnp.bfloat16)
    return (
        jnp.matmul(g16, w16.T, preferred_element_type=F32),
        jnp.matmul(a16.T, g16, preferred_element_type=F32),
    )


_bf16_matmul.defvjp(_bf16_fwd, _bf16_bwd)
F32 = jnp.float32


def _bf16_dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """nn.Dense's dot_general for (batch, in) @ (in, out), in bfloat16 (see _bf16_matmul)."""
    if lhs.ndim != 2 or dimension_numbers != (((1,), (0,)), ((), ())):
        raise ValueError("the bf16 matmul expects (batch, in) @ (in, out)")
    return _bf16_matmul(lhs, rhs)


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
