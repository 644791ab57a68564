"""Curvature metrics of a member at a logged step: the empirical neural tangent kernel on a
fixed probe subset and the loss Hessian's top eigenvalue (sharpness); `eos_at`, the first
logged step at the edge of stability.

Registered as metrics (`sigjax.engine.metrics`), recorded only when `train.metrics` names them, so a
run that does not ask pays nothing:

- `ntk_max`, `ntk_min`, `ntk_cond`: the largest and smallest eigenvalue of the empirical NTK
  Θ = J Jᵀ and their ratio. J (P·k, n_params) is the Jacobian of the model's eval-mode outputs
  on the probe — the first min(n_train, PROBE) training examples, the same for every member and
  step — with respect to all its parameters as trained (the standard parameterization, so Θ
  grows with the width: see `sigjax.theory.infinite_width`). Rows are example-major: (i, a) =
  example i, output a. For the MSE of `sigjax.nn.losses` (a mean over N examples and k
  outputs), full-batch gradient descent on the linearized model moves the training residual by
  r ← (I − (2η/(N k)) Θ) r when the probe is the whole training set; see `sigjax.theory.linearized`.
- `sharpness`: the top eigenvalue of the Hessian of the step's training loss (the step's batch,
  train mode) with respect to the parameters, by POWER_ITERS steps of power iteration on
  Hessian-vector products (forward-over-reverse: `jax.jvp` of `jax.grad`) from a fixed random
  start. Power iteration finds the eigenvalue of largest magnitude; for these losses that is
  the top positive one (the Gauss–Newton part 2Θ/(N k) dominates). The value is the Rayleigh
  quotient of the last iterate, so it approaches the top eigenvalue from below, by a factor
  (λ₂/λ₁)^(2·POWER_ITERS) of the gap; the tests find it within 1 % of the full Hessian's.
  Gradient descent at rate η is stable on a quadratic while sharpness < 2/η (Cohen et al.
  2021: it rises to 2/η and hovers there).

Both run inside the compiled loop and are vmapped over members with the rest of the step.
Cost per logged step: the NTK takes P·k single-example backward passes and P·k·n_params·P·k
multiply-adds for JJᵀ and one (P·k × P·k) eigendecomposition, and holds J (P·k × n_params floats per
member); the sharpness takes POWER_ITERS Hessian-vector products (each about two gradients).
`docs/benchmarks.md` states the measured cost. Θ and its eigenvalues are float32: ntk_min below
~1e-6·ntk_max is at rounding level.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from sigjax import data as data_lib
from sigjax.engine import metrics
from sigjax.nn import losses

PROBE = 256  # the most training examples the empirical NTK is measured on
POWER_ITERS = 20  # power-iteration steps for the sharpness
_START = 20210226  # seed of the power iteration's fixed starting vector

Fn = Callable[..., jax.Array]


def probe(data: data_lib.Data, n: int = PROBE) -> jax.Array:
    """The probe inputs: the first min(n, n_train) training examples, (P, dim)."""
    return data.x_train[: min(n, data.x_train.shape[0])]


def empirical_ntk(apply: Fn, params, x: jax.Array) -> jax.Array:
    """Θ = J Jᵀ, (P·k, P·k), of `apply(params, x) -> (P, k)` at params on inputs x (P, dim).

    J is built one example at a time (a vmap over x of the Jacobian of that example's k
    outputs), so the cost is P·k backward passes of one example, not of the whole probe."""

    def one(xi):
        return jax.jacrev(lambda p: apply(p, xi[None])[0])(params)  # leaves (k, *shape)

    jac = jax.vmap(one)(x)  # leaves (P, k, *shape)
    rows = [leaf.reshape(leaf.shape[0] * leaf.shape[1], -1) for leaf in jax.tree.leaves(jac)]
    return sum(r @ r.T for r in rows)


def hvp(loss: Fn, params, v):
    """The Hessian of loss(params) times the tree v (forward-over-reverse)."""
    return jax.jvp(jax.grad(loss), (params,), (v,))[1]


def _dot(a, b) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def top_hessian_eigenvalue(loss: Fn, params, iters: int = POWER_ITERS) -> jax.Array:
    """The Hessian's eigenvalue of largest magnitude at params by power iteration: `iters`
    Hessian-vector products from a fixed random unit vector; the Rayleigh quotient of the last
    iterate (a scalar)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(_START), len(leaves))
    # the start takes its type from params (jnp.where: under shard_map over members it must
    # vary along the same axes as they do)
    v = jax.tree.unflatten(
        tree,
        [
            jnp.where(True, jax.random.normal(k, x.shape, x.dtype), x)
            for k, x in zip(keys, leaves, strict=True)
        ],
    )

    def normalized(w):
        norm = jnp.sqrt(_dot(w, w))
        return jax.tree.map(lambda a: a / jnp.where(norm > 0, norm, 1.0), w)

    def step(_, u):
        return normalized(hvp(loss, params, u))

    u = jax.lax.fori_loop(0, iters - 1, step, normalized(v))
    return _dot(u, hvp(loss, params, u))


# ----------------------------------------------------------------------------- the metrics


def _eval_apply(ctx: metrics.Context) -> Fn:
    return lambda p, x: ctx.family.apply(ctx.module, p, ctx.model_state, x, train=False)[0]


def _ntk_eigenvalues(ctx: metrics.Context) -> jax.Array:
    theta = empirical_ntk(_eval_apply(ctx), ctx.params, probe(ctx.data))
    return _eigvalsh(theta)  # ascending


@jax.custom_batching.custom_vmap
def _eigvalsh(a: jax.Array) -> jax.Array:
    """Eigenvalues of a symmetric (n, n) matrix, ascending; batched as a loop of single
    calls: jaxlib's batched CPU LAPACK kernels spread a batch over the XLA thread pool and
    wait for it, which deadlocks when every pool thread runs a device's program (a sweep
    over several host devices)."""
    return jnp.linalg.eigvalsh(a)


@_eigvalsh.def_vmap
def _eigvalsh_batched(axis_size: int, in_batched: list[bool], a: jax.Array):
    del axis_size, in_batched
    return jax.lax.map(_eigvalsh, a), True


def _spectrum(ctx: metrics.Context) -> jax.Array:
    return ctx.shared("ntk_eigenvalues", _ntk_eigenvalues)  # one NTK for the three metrics


def _ntk_max(ctx: metrics.Context) -> jax.Array:
    return _spectrum(ctx)[-1]


def _ntk_min(ctx: metrics.Context) -> jax.Array:
    return _spectrum(ctx)[0]


def _ntk_cond(ctx: metrics.Context) -> jax.Array:
    lam = _spectrum(ctx)
    return lam[-1] / lam[0]


def _sharpness(ctx: metrics.Context) -> jax.Array:
    loss_fn = losses.get(ctx.cfg.train.loss)

    def loss(p):
        out = ctx.family.apply(ctx.module, p, ctx.model_state, ctx.x, train=True)[0]
        return loss_fn(out, ctx.y)

    return top_hessian_eigenvalue(loss, ctx.params)


NAMES = ("ntk_max", "ntk_min", "ntk_cond", "sharpness")
for _name, _fn in zip(NAMES, (_ntk_max, _ntk_min, _ntk_cond, _sharpness), strict=True):
    metrics.register(_name, _fn)


# ----------------------------------------------------------------------------- edge of stability


def eos_at(sharpness: xr.DataArray, lr: float | xr.DataArray) -> xr.DataArray:
    """First logged step with sharpness ≥ 2/lr per member (int32), −1 where never (NaN
    sharpness — a diverged member's — never counts). lr: the peak learning rate, a number or
    an array over member dims; 2/lr is the stability limit of plain gradient descent."""
    at = sharpness >= 2.0 / lr
    first = sharpness.step[at.argmax("step")].drop_vars("step")
    return xr.where(at.any("step"), first, -1).astype(np.int32).rename("eos_at")
