"""Optimizers from optax pieces, built from traced hyperparameters.

`make(name, hp, schedule=..., steps=...)` is called *inside* the traced training function with
`hp` a dict of traced float32 scalars (the last parts of `config.DYNAMIC_KEYS`: lr, momentum,
b1, b2, eps, decay, weight_decay, clip, warmup), so every rate and coefficient is a runtime value:
one compiled program serves every value, and vmap gives every member its own.

The transformation is the chain

    clip (global norm ≤ hp["clip"]; 0 = off)  →  optimizer `name`  →  schedule factor

- clip: `optax.clip_by_global_norm` behind an exact `jnp.where`, so clip = 0 passes the
  gradients through bit for bit (XLA may still fuse the ops around it differently, so a whole
  run matches an unclipped program up to float rounding).
- optimizer: a registry entry `factory(hp) -> optax.GradientTransformation`. Built in: sgd,
  momentum, nesterov, adam, rmsprop, adagrad, each followed by decoupled weight decay
  (p -= lr · weight_decay · p, added after the optimizer's own scaling); adamw and lamb, whose
  weight decay is optax's own decoupled one (weight_decay · p added before the learning-rate /
  trust-ratio scaling), with nothing added. `register` adds a user's factory.
- schedule: every optax optimizer ends by scaling with the learning rate, so multiplying its
  update by factor(t) makes the rate at update t equal `hp["lr"] · factor(t)` (the traced peak
  times the schedule, `lr_schedule`). `constant` adds no transformation at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sigjax.errors import UserError

Hparams = Mapping[str, jax.Array]  # traced float32 scalars: lr, momentum, b1, …
Factory = Callable[[Hparams], optax.GradientTransformation]

SCHEDULES = ("constant", "cosine", "warmup_cosine", "linear", "step")


@dataclass(frozen=True)
class Entry:
    factory: Factory
    slots: int | None = None  # parameter-sized arrays in the state; None: counted (eval_shape)


_REGISTRY: dict[str, Entry] = {}


def register(name: str, factory: Factory, *, slots: int | None = None, replace: bool = False):
    """Make `factory(hp) -> optax.GradientTransformation` the optimizer `optim.name=name`.

    hp holds the traced hyperparameters (see the module docstring); the factory's
    transformation is used as it is (no weight decay is added), between the clip and the
    schedule. `slots`: how many parameter-sized arrays its state holds, for the memory planner
    (None: counted from `jax.eval_shape` of its init). A name already registered with another
    factory is refused unless replace=True.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise UserError(f"optimizer name must be an identifier like 'my_adam', got {name!r}")
    if not callable(factory):
        raise UserError(f"optimizer {name!r}: factory must be a callable hp -> transformation")
    if slots is not None and (not isinstance(slots, int) or slots < 0):
        raise UserError(f"optimizer {name!r}: slots must be a non-negative int, got {slots!r}")
    old = _REGISTRY.get(name)
    if old is not None and old.factory is not factory and not replace:
        raise UserError(
            f"optimizer {name!r} is already registered with another factory; "
            "pass replace=True to replace it"
        )
    _REGISTRY[name] = Entry(factory, slots)


def names() -> tuple[str, ...]:
    """Every registered optimizer name, built-ins first."""
    return tuple(_REGISTRY)


def _entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise UserError(f"unknown optimizer {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def make(
    name: str, hp: Hparams, *, schedule: str = "constant", steps: int = 1
) -> optax.GradientTransformation:
    """clip → optimizer `name` → schedule over `steps` updates, from the traced hp.

    hp without "clip" means no clipping; without "warmup", no warmup.
    """
    parts = []
    if "clip" in hp:
        parts.append(clip_by_global_norm(hp["clip"]))
    parts.append(_entry(name).factory(hp))
    factor = schedule_factor(schedule, steps, hp.get("warmup", 0.0))
    if schedule != "constant":
        parts.append(optax.scale_by_schedule(factor))
    return optax.chain(*parts)


def clip_by_global_norm(max_norm: jax.Array) -> optax.GradientTransformation:
    """Scale the updates to global norm max_norm when it is exceeded; max_norm ≤ 0: unchanged.

    max_norm may be traced; the off branch is a `jnp.where` that returns the input exactly.
    """
    inner = optax.clip_by_global_norm(max_norm)

    def update(updates, state, params=None):
        clipped, state = inner.update(updates, state, params)
        on = jnp.asarray(max_norm) > 0
        return jax.tree.map(lambda c, u: jnp.where(on, c, u), clipped, updates), state

    return optax.GradientTransformation(inner.init, update)


def schedule_factor(name: str, steps: int, warmup: Any = 0.0) -> Callable[[jax.Array], jax.Array]:
    """factor(t) for update count t = 0, 1, …, steps − 1 (jnp arithmetic: warmup may be traced).

    - constant: 1 (warmup does not apply).
    - cosine, warmup_cosine: a linear ramp from 0 over the first W = warmup · steps updates,
      then ½(1 + cos(π (t − W) / (steps − W))) down to 0 at `steps` (optax's
      `warmup_cosine_decay_schedule` with init and end 0; at warmup 0 its `cosine_decay_schedule`).
      The two names compute the same factor; both take their warmup from `optim.warmup`.
    - linear: the ramp, then 1 − (t − W) / (steps − W) (optax's `linear_schedule` to 0).
    - step: the ramp, then 1, divided by 10 from update steps // 2 (50 %) and again from
      3 · steps // 4 (75 %) (optax's `piecewise_constant_schedule`).
    W need not be a whole number of steps.
    """
    if name not in SCHEDULES:
        raise UserError(f"unknown optim.schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    total = float(steps)
    half, three_quarters = steps // 2, 3 * steps // 4

    def factor(count: jax.Array) -> jax.Array:
        t = jnp.asarray(count, jnp.float32)
        if name == "constant":
            return jnp.ones_like(t)
        w = jnp.asarray(warmup, jnp.float32) * total  # warmup steps
        since, span = jnp.maximum(t - w, 0.0), total - w  # into the decay, its length
        if name == "step":
            decay = jnp.where(t < half, 1.0, 0.1) * jnp.where(t < three_quarters, 1.0, 0.1)
        elif name == "linear":
            decay = 1.0 - jnp.minimum(since, span) / span
        else:
            decay = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.minimum(since, span) / span))
        ramp = t / jnp.where(w > 0, w, 1.0)  # where guards 0/0; the branch is not taken then
        return jnp.where(t < w, ramp, decay).astype(jnp.float32)

    return factor


def lr_schedule(
    name: str, steps: int, lr: Any, warmup: Any = 0.0
) -> Callable[[jax.Array], jax.Array]:
    """The learning rate of update t: the peak lr times `schedule_factor(name, steps, warmup)`."""
    factor = schedule_factor(name, steps, warmup)
    return lambda count: lr * factor(count)


def state_bytes(
    name: str, hp: Hparams, params: Any, *, schedule: str = "constant", steps: int = 1
) -> int:
    """Bytes of the state `make(...).init(params)` holds (params: arrays or ShapeDtypeStructs).

    Counted with `jax.eval_shape`, so nothing is allocated; an optimizer registered with
    `slots` counts slots × the parameters' bytes instead.
    """
    entry = _entry(name)
    if entry.slots is not None:
        return entry.slots * _nbytes(params)
    leaves, treedef = jax.tree.flatten(params)
    kinds = tuple((len(x.shape), jnp.dtype(x.dtype).name) for x in leaves)
    key = (name, schedule, steps, treedef, kinds, entry.factory)
    if key not in _AFFINE:  # a replaced optimizer (another factory) is probed anew
        _AFFINE[key] = _affine_state(name, hp, schedule, steps, treedef, kinds)
    fit = _AFFINE[key]
    if fit is not None:
        slope, offset = fit
        return int(slope * _nbytes(params) + offset)
    return _counted(name, hp, params, schedule, steps)


def _counted(name: str, hp: Hparams, params: Any, schedule: str, steps: int) -> int:
    shapes = jax.eval_shape(
        lambda p, h: make(name, h, schedule=schedule, steps=steps).init(p), params, dict(hp)
    )
    return _nbytes(shapes)


_AFFINE: dict[tuple, tuple[float, int] | None] = {}  # a cache of _affine_state


def _affine_state(name, hp, schedule, steps, treedef, kinds) -> tuple[float, int] | None:
    """(slope, offset) when the state's bytes are slope × the parameters' bytes + offset for
    every shape of this tree (true of per-leaf optimizers: Adam's moments, momentum, …), found
    from two probe trees and checked on a third; None otherwise (count each tree exactly).

    A planner sizes thousands of groups that differ only in widths; this costs three
    `eval_shape` calls per optimizer and tree structure instead of one per group.
    """

    def probe(sizes):
        return jax.tree.unflatten(
            treedef,
            [
                jax.ShapeDtypeStruct((n,) * ndim, dtype)
                for n, (ndim, dtype) in zip(sizes, kinds, strict=True)
            ],
        )

    trees = [probe([1] * len(kinds)), probe([2] * len(kinds)), probe(range(3, 3 + len(kinds)))]
    p = [_nbytes(t) for t in trees]
    s = [_counted(name, dict(hp), t, schedule, steps) for t in trees]
    if p[1] == p[0]:
        return None
    slope = (s[1] - s[0]) / (p[1] - p[0])
    offset = s[0] - slope * p[0]
    return (slope, round(offset)) if slope * p[2] + offset == s[2] else None


def _nbytes(tree: Any) -> int:
    return sum(int(np.prod(x.shape)) * jnp.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _decayed(tx: optax.GradientTransformation, hp: Hparams) -> optax.GradientTransformation:
    # Decoupled weight decay, applied after the optimizer's own scaling: p -= lr * wd * p.
    return optax.chain(tx, optax.add_decayed_weights(-hp["lr"] * hp["weight_decay"]))


def _sgd(hp: Hparams) -> optax.GradientTransformation:
    return _decayed(optax.sgd(hp["lr"]), hp)


def _momentum(hp: Hparams) -> optax.GradientTransformation:
    return _decayed(optax.sgd(hp["lr"], momentum=hp["momentum"]), hp)


def _nesterov(hp: Hparams) -> optax.GradientTransformation:
    return _decayed(optax.sgd(hp["lr"], momentum=hp["momentum"], nesterov=True), hp)


def _adam(hp: Hparams) -> optax.GradientTransformation:
    return _decayed(optax.adam(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"]), hp)


def _rmsprop(hp: Hparams) -> optax.GradientTransformation:
    return _decayed(optax.rmsprop(hp["lr"], decay=hp["decay"], eps=hp["eps"]), hp)


def _adagrad(hp: Hparams) -> optax.GradientTransformation:
    return _decayed(optax.adagrad(hp["lr"], eps=hp["eps"]), hp)


def _adamw(hp: Hparams) -> optax.GradientTransformation:
    wd = hp["weight_decay"]  # optax's own decoupled decay: nothing is added after it
    return optax.adamw(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=wd)


def _lamb(hp: Hparams) -> optax.GradientTransformation:
    wd = hp["weight_decay"]  # optax's own decoupled decay, inside the trust ratio
    return optax.lamb(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], weight_decay=wd)


for _factory in (_sgd, _momentum, _nesterov, _adam, _rmsprop, _adagrad, _adamw, _lamb):
    register(_factory.__name__[1:], _factory)
