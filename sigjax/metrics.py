"""Per-layer measurements of one model at one step; every array is (n_layers,).

All reductions are fixed-shape (masked sums, never boolean indexing), so recording them inside
the compiled loop costs no recompilation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sigjax import activations
from sigjax.models import Intermediates, Params, layer_names


def layer_norms(tree: Params) -> tuple[jax.Array, jax.Array]:
    """L2 norms of each layer's kernel and bias: two (n_layers,) arrays."""
    names = layer_names(tree)
    kernel = jnp.stack([jnp.sqrt(jnp.sum(tree[n]["kernel"] ** 2)) for n in names])
    bias = jnp.stack([jnp.sqrt(jnp.sum(tree[n]["bias"] ** 2)) for n in names])
    return kernel, bias


def activation_stats(
    inter: Intermediates, activation: str, head_activation: str
) -> dict[str, jax.Array]:
    """Mean, std and saturated share of each layer's activations over batch and units."""
    n = len(inter.pre)
    acts = [activations.get(activation)] * (n - 1) + [activations.get(head_activation)]
    return {
        "act_mean": jnp.stack([a.mean() for a in inter.post]),
        "act_std": jnp.stack([a.std() for a in inter.post]),
        "saturation": jnp.stack(
            [act.saturated(z).mean() for act, z in zip(acts, inter.pre, strict=True)]
        ),
    }


def all_finite(tree) -> jax.Array:
    """True when every leaf of the tree is finite everywhere (a scalar bool)."""
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))
