"""The built-in linen modules: the MLP and the residual MLP, each with optional normalization.

Both take x (batch, in_dim) and return (output (batch, out_dim), Intermediates). A layer's
pre-activation in the intermediates is what its nonlinearity receives (after normalization),
its activation what the nonlinearity gives; the protocol around them is `sigjax.nn.models`.

Normalization (`norm`): "batch" (Ioffe & Szegedy 2015) or "layer" (Ba et al. 2016) between a
hidden layer's Dense and its nonlinearity, with a learned scale γ and shift β (initially 1 and
0): u = γ·(z − μ)/√(σ² + ε) + β, ε = 1e-5. BatchNorm's μ, σ² are the minibatch's mean and
(biased) variance of each unit in train mode; the running averages in the `batch_stats`
collection, r ← m·r + (1 − m)·(batch value) with m = `bn_momentum` at each train-mode pass
(starting from mean 0, variance 1), stand in for them in eval mode. Under BatchNorm a hidden
Dense has no bias (the mean subtraction cancels it; β takes its place). LayerNorm's μ, σ² are
each example's over the layer's units, the same in both modes. The output layer is never
normalized.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sigjax.nn import activations, initializers

NORMS = ("none", "batch", "layer")
EPS = 1e-5
# The state collection of the traced hyperparameters a module reads (see models.Family.hparams)
HPARAMS = "hparams"
F32 = jnp.float32


class Intermediates(NamedTuple):
    """Per-layer arrays, a tuple over layers 1..depth+1, each (batch, width_l)."""

    pre: tuple[jax.Array, ...]
    post: tuple[jax.Array, ...]


def normalizer(kind: str, momentum: float, train: bool, name: str) -> Callable | None:
    """The normalization layer `kind` (NORMS) named `name`, or None for "none"; called inside
    a compact method (the layer becomes the caller's submodule)."""
    if kind == "batch":
        # two-pass variance: the one-pass E[z²] − E[z]² loses digits when |mean| ≫ std
        return nn.BatchNorm(
            use_running_average=not train,
            momentum=momentum,
            epsilon=EPS,
            use_fast_variance=False,
            name=name,
        )
    if kind == "layer":
        return nn.LayerNorm(epsilon=EPS, use_fast_variance=False, name=name)
    return None


class MLP(nn.Module):
    """Dense layers `layer_1` … `layer_{depth+1}` (the last is the output layer), and with
    normalization `norm_1` … `norm_depth`: z_l = a_{l-1} W_l + b_l, u_l = norm(z_l) (= z_l
    without), a_l = φ(u_l) (the head: `head_activation`, never normalized)."""

    widths: tuple[int, ...]  # hidden widths
    out_dim: int
    activation: str
    head_activation: str = "identity"
    kernel_init: str = "gaussian"
    bf16: bool = False  # matmul inputs in bfloat16; parameters and accumulation stay float32
    norm: str = "none"  # NORMS
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, Intermediates]:
        dense = _dense(self.kernel_init, self.bf16)
        pre, post = [], []
        sizes = (*self.widths, self.out_dim)
        for i, size in enumerate(sizes):
            hidden = i < len(self.widths)
            norm = (
                normalizer(self.norm, self.bn_momentum, train, f"norm_{i + 1}") if hidden else None
            )
            act = self.activation if hidden else self.head_activation
            z = dense(size, use_bias=self.norm != "batch" or not hidden, name=f"layer_{i + 1}")(x)
            z = z if norm is None else norm(z)
            x = activations.get(act)(z)
            pre.append(z)
            post.append(x)
        return x, Intermediates(tuple(pre), tuple(post))


class ResMLP(nn.Module):
    """A residual MLP: h_0 = x P + p (`proj`, linear), then for l = 1..depth (`block_l`, and
    `norm_l` with normalization) h_l = h_{l-1} + α·φ(norm(h_{l-1} W_l + b_l)), then the output
    layer (`head`). α (`residual_scale`) is a traced value read from the `hparams` collection.

    Intermediates, over proj, block_1 … block_depth, head: the projection's h_0 (as both pre-
    activation and activation), each block's u_l = norm(h W_l + b_l) and φ(u_l) (the residual
    branch, before α), the head's logits and output."""

    width: int
    depth: int
    out_dim: int
    activation: str
    head_activation: str = "identity"
    kernel_init: str = "gaussian"
    bf16: bool = False
    norm: str = "none"
    bn_momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, Intermediates]:
        alpha = self.variable(HPARAMS, "residual_scale", lambda: F32(1.0)).value
        dense = _dense(self.kernel_init, self.bf16)
        phi = activations.get(self.activation)
        h = dense(self.width, name="proj")(x)
        pre, post = [h], [h]
        for i in range(1, self.depth + 1):
            norm = normalizer(self.norm, self.bn_momentum, train, f"norm_{i}")
            u = dense(self.width, use_bias=self.norm != "batch", name=f"block_{i}")(h)
            u = u if norm is None else norm(u)
            a = phi(u)
            h = h + alpha * a
            pre.append(u)
            post.append(a)
        z = dense(self.out_dim, name="head")(h)
        out = activations.get(self.head_activation)(z)
        return out, Intermediates((*pre, z), (*post, out))


def _dense(kernel_init: str, bf16: bool) -> Callable[..., nn.Dense]:
    # unit-scale biases: the family rescales weights by sqrt(sigma_w2), biases by sqrt(sigma_b2)
    return partial(
        nn.Dense,
        kernel_init=initializers.get(kernel_init),
        bias_init=jax.nn.initializers.normal(1.0),
        dot_general=_bf16_dot if bf16 else None,
    )


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


def _bf16_dot(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """nn.Dense's dot_general for (batch, in) @ (in, out), in bfloat16 (see _bf16_matmul)."""
    if lhs.ndim != 2 or dimension_numbers != (((1,), (0,)), ((), ())):
        raise ValueError("the bf16 matmul expects (batch, in) @ (in, out)")
    return _bf16_matmul(lhs, rhs)
