"""Probes that look inside an MLP: activation quantiles and histograms, layer-Jacobian spectra.

Pure functions of arrays (usable at init, after training, or inside a compiled loop), and the
same quantities as metrics of a training step's `sigjax.engine.metrics.Context` (`METRICS`), which a
study records with `register()` and `train.metrics=...`.

Layer l of the MLP maps h_{l-1} (batch, n_{l-1}) to h_l = φ_l(z_l), z_l = h_{l-1} W_l + b_l with
W_l (n_{l-1}, n_l) (h_0 = x; φ_l the hidden activation, the head activation for the last layer),
so its Jacobian for one example is ∂h_l/∂h_{l-1} = diag(φ_l'(z_l)) W_lᵀ, an (n_l, n_{l-1}) matrix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sigjax.engine import metrics
from sigjax.nn import activations

# Mean singular value of an n×n matrix of i.i.d. entries of variance σ²/n, as n → ∞, over σ:
# the quarter-circle law's mean, ∫₀² s·√(4 − s²)/π ds = 8/(3π).
QUARTER_CIRCLE_MEAN = 8.0 / (3.0 * np.pi)


def density(values: jax.Array, edges: np.ndarray) -> jax.Array:
    """Normalised histogram of all of `values`: (len(edges) - 1,), a density over the bins
    (it integrates to the share of values inside [edges[0], edges[-1]]; the rest count in no
    bin). Fixed shapes: usable inside jit."""
    nb = len(edges) - 1
    lo, hi = float(edges[0]), float(edges[-1])
    v = values.ravel()
    idx = jnp.clip(jnp.floor((v - lo) / (hi - lo) * nb).astype(jnp.int32), 0, nb - 1)
    inside = (v >= lo) & (v <= hi)
    counts = jnp.zeros(nb).at[idx].add(inside.astype(jnp.float32))
    return counts / (v.size * (hi - lo) / nb)


def quantile_stats(post: Sequence[jax.Array], q=(2.0, 98.0)) -> dict[str, jax.Array]:
    """Mean, std and the q-th percentiles of each layer's activations over batch and units:
    {"mean", "std", "p02", "p98"} (names follow q), each (n_layers,)."""
    out = {
        "mean": jnp.stack([a.mean() for a in post]),
        "std": jnp.stack([a.std() for a in post]),
    }
    for p in q:
        out[f"p{p:02.0f}"] = jnp.stack([jnp.percentile(a, p) for a in post])
    return out


def layer_jacobian_svs(weight: jax.Array, pre: jax.Array, activation: str) -> jax.Array:
    """Singular values of ∂h_l/∂h_{l-1} = diag(φ'(z_l)) W_lᵀ for each example: weight (n_in, n),
    pre = z_l (batch, n) -> (batch, min(n_in, n)), descending. One example at a time (lax.map),
    so a wide layer never holds a batch of n×n matrices."""
    slope = activations.get(activation).derivative(pre)  # (batch, n)
    # W diag(φ') has the singular values of its transpose, the Jacobian
    return jax.lax.map(lambda d: jnp.linalg.svd(weight * d[None, :], compute_uv=False), slope)


def mean_jacobian_svs(
    weights: Sequence[jax.Array], pre: Sequence[jax.Array], acts: Sequence[str]
) -> jax.Array:
    """Each layer's average singular value of its Jacobian ∂h_l/∂h_{l-1}, over examples and
    singular values: (n_layers,). weights[l]: (n_{l-1}, n_l); pre[l]: (batch, n_l); acts[l]:
    the activation name of layer l."""
    return jnp.stack(
        [layer_jacobian_svs(w, z, a).mean() for w, z, a in zip(weights, pre, acts, strict=True)]
    )


def layer_activations(cfg, n_layers: int) -> list[str]:
    """The activation name of each layer of an MLP config: the hidden one, then the head's."""
    return [cfg.model.activation] * (n_layers - 1) + [cfg.model.head_activation]


# ---------------------------------------------------------------- as metrics of a step


def _jacobian_sv(ctx: metrics.Context) -> jax.Array:
    return mean_jacobian_svs(ctx.weights(), ctx.inter.pre, layer_activations(ctx.cfg, ctx.n_layers))


def _act_p02(ctx: metrics.Context) -> jax.Array:
    return quantile_stats(ctx.inter.post)["p02"]


def _act_p98(ctx: metrics.Context) -> jax.Array:
    return quantile_stats(ctx.inter.post)["p98"]


# name -> (function of the step's Context, per_layer); all on the step's minibatch
METRICS = {
    "jacobian_sv": (_jacobian_sv, True),  # mean singular value of ∂h_l/∂h_{l-1} (MLP layers)
    "act_p02": (_act_p02, True),  # 2nd percentile of h_l
    "act_p98": (_act_p98, True),  # 98th percentile of h_l
}


def register(names: Iterable[str] | None = None) -> list[metrics.Metric]:
    """Register the named probes of METRICS (all by default) as metrics, so that
    `train.metrics=jacobian_sv,...` records them; the same again is a no-op."""
    out = []
    for n in METRICS if names is None else names:
        fn, per_layer = METRICS[n]
        out.append(metrics.register(n, fn, per_layer=per_layer))
    return out
