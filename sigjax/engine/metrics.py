"""Measurements of one model at a logged step, behind one registry: `register(name, fn)`.

A metric is a function of the step's `Context` (parameters, gradients, intermediates, the batch,
the loss, the model and config, the data's test split) that returns a scalar, or an (n_layers,)
array when declared `per_layer`. The engine computes the recorded metrics inside the compiled
loop at logged steps, carries them in the trajectory by name and writes them to `results.nc`
with dims (…, step) or (…, step, layer). Which are recorded: the bundled metrics that
`train.record` names (`RECORD`), the test metrics when the data has a test split, the
normalization parameters' gradient norms `grad_norm_scale`, `grad_norm_shift` (‖∂L/∂γ_l‖,
‖∂L/∂β_l‖, NaN for a layer the family declares no normalization for) when `model.norm` is set
and gradients are recorded, and the registered names listed in `train.metrics`. Each entry
carries a content `token` of its function (`activations.content_token`), which keys compiled
programs and checkpoints.

All reductions are fixed-shape (masked sums, never boolean indexing), so recording them inside
the compiled loop costs no recompilation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.errors import UserError
from sigjax.nn import activations, losses, models
from sigjax.nn.models import Intermediates, Layer, Params, State


@dataclass(frozen=True)
class Context:
    """What a metric sees at a logged step of one member (arrays are traced).

    `output` and `inter` come from the train-mode forward pass on the batch (x, y) that gave
    `loss` and `grads`; `evaluate` runs the model in eval mode.
    """

    cfg: Config
    family: models.ModelFamily
    module: nn.Module
    layers: tuple[Layer, ...]
    params: Params
    grads: Params
    model_state: State
    inter: Intermediates
    output: jax.Array  # (batch, out)
    x: jax.Array
    y: jax.Array
    loss: jax.Array
    data: data_lib.Data  # the test split: data.x_test, data.y_test (None when there is none)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def weights(self, tree: Params | None = None) -> list[jax.Array]:
        """Each layer's weight array in tree (the parameters by default; e.g. ctx.grads)."""
        tree = self.params if tree is None else tree
        return [models.at(tree, layer.weight) for layer in self.layers]

    def biases(self, tree: Params | None = None) -> list[jax.Array | None]:
        """Each layer's bias array in tree (None for a layer without one)."""
        tree = self.params if tree is None else tree
        return [None if ly.bias is None else models.at(tree, ly.bias) for ly in self.layers]

    def evaluate(self, x: jax.Array) -> jax.Array:
        """The model's output on x in eval mode (running statistics, no state update)."""
        return self.family.apply(self.module, self.params, self.model_state, x, train=False)[0]

    @functools.cached_property
    def test_output(self) -> jax.Array:
        """The eval-mode output on the test split (computed once per step)."""
        return self.evaluate(self.data.x_test)

    def shared(self, name: str, fn: Callable[[Context], Any]) -> Any:
        """fn(self), computed once per step for every metric that asks for `name` (e.g. the
        empirical NTK's spectrum, which ntk_max, ntk_min and ntk_cond share)."""
        cache = self.__dict__.setdefault("_shared", {})  # frozen: fields only are refused
        if name not in cache:
            cache[name] = fn(self)
        return cache[name]


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[Context], jax.Array]
    per_layer: bool = False  # returns (n_layers,) instead of a scalar
    token: str = field(default="", compare=False)  # content hash; filled in when left empty

    def __post_init__(self):
        if not self.token:
            token = activations.content_token((self.fn, self.per_layer))
            object.__setattr__(self, "token", token)


def norms(arrays: Sequence[jax.Array | None]) -> jax.Array:
    """(len(arrays),) L2 (Frobenius) norms; NaN for a missing array (a layer without a bias)."""
    return jnp.stack(
        [jnp.float32(jnp.nan) if a is None else jnp.sqrt(jnp.sum(a**2)) for a in arrays]
    )


def layer_norms(tree: Params, layers: Sequence[Layer] | None = None) -> tuple[jax.Array, jax.Array]:
    """L2 norms of each layer's weight and bias: two (n_layers,) arrays (layers: the MLP's
    when not given)."""
    layers = models.MLPFamily().layers(tree) if layers is None else layers
    weights = [models.at(tree, ly.weight) for ly in layers]
    biases = [None if ly.bias is None else models.at(tree, ly.bias) for ly in layers]
    return norms(weights), norms(biases)


def activation_stats(
    inter: Intermediates,
    activation: str,
    head_activation: str,
    layers: Sequence[Layer] = (),
) -> dict[str, jax.Array]:
    """Mean, std and saturated share of each layer's activations over batch and units (a
    declared layer's own `activation`, e.g. a linear projection's identity, overrides)."""
    n = len(inter.pre)
    names = [activation] * (n - 1) + [head_activation]
    names = [ly.activation or a for ly, a in zip(layers, names, strict=True)] if layers else names
    acts = [activations.get(a) for a in names]
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


# ----------------------------------------------------------------------------- bundled metrics


def _loss(ctx: Context) -> jax.Array:
    return ctx.loss


def _grad_norm(ctx: Context) -> jax.Array:
    return norms(ctx.weights(ctx.grads))  # ‖∂L/∂W_l‖₂


def _grad_norm_bias(ctx: Context) -> jax.Array:
    return norms(ctx.biases(ctx.grads))  # ‖∂L/∂b_l‖₂


def _grad_norm_scale(ctx: Context) -> jax.Array:
    # ‖∂L/∂γ_l‖₂ of each layer's normalization scale, NaN for a layer without normalization
    return norms(
        [None if ly.scale is None else models.at(ctx.grads, ly.scale) for ly in ctx.layers]
    )


def _grad_norm_shift(ctx: Context) -> jax.Array:
    # ‖∂L/∂β_l‖₂ of each layer's normalization shift
    return norms(
        [None if ly.shift is None else models.at(ctx.grads, ly.shift) for ly in ctx.layers]
    )


def _weight_norm(ctx: Context) -> jax.Array:
    return norms(ctx.weights())  # ‖W_l‖₂ (Frobenius)


def _act_mean(ctx: Context) -> jax.Array:
    return jnp.stack([a.mean() for a in ctx.inter.post])


def _act_std(ctx: Context) -> jax.Array:
    return jnp.stack([a.std() for a in ctx.inter.post])


def _saturation(ctx: Context) -> jax.Array:
    # share of units with |φ'(z)| < 4% of sup|φ'|; layer l's φ is model.activation, the last
    # layer's model.head_activation
    m = ctx.cfg.model
    return activation_stats(ctx.inter, m.activation, m.head_activation, ctx.layers)["saturation"]


def _test_loss(ctx: Context) -> jax.Array:
    return losses.get(ctx.cfg.train.loss)(ctx.test_output, ctx.data.y_test)


def _test_accuracy(ctx: Context) -> jax.Array:
    return losses.accuracy(ctx.test_output, ctx.data.y_test, ctx.cfg.train.loss)


REGISTRY: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric("loss", _loss),
        Metric("grad_norm", _grad_norm, per_layer=True),
        Metric("grad_norm_bias", _grad_norm_bias, per_layer=True),
        Metric("weight_norm", _weight_norm, per_layer=True),
        Metric("act_mean", _act_mean, per_layer=True),
        Metric("act_std", _act_std, per_layer=True),
        Metric("saturation", _saturation, per_layer=True),
        Metric("test_loss", _test_loss),
        Metric("test_accuracy", _test_accuracy),
        Metric("grad_norm_scale", _grad_norm_scale, per_layer=True),
        Metric("grad_norm_shift", _grad_norm_shift, per_layer=True),
    ]
}
BUNDLED = tuple(REGISTRY)
NORM_GRADS = ("grad_norm_scale", "grad_norm_shift")  # recorded with gradients under model.norm
# train.record -> the bundled metrics it records (the test metrics follow the data instead)
RECORD = {
    "all": BUNDLED[:7],
    "gradients": ("loss", "grad_norm", "grad_norm_bias"),
    "loss": ("loss",),
}
RESERVED = ("diverged_at", "n_layers", "step", "layer")


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> Metric:
    if name not in REGISTRY:
        raise UserError(
            f"unknown metric {name!r} in train.metrics; choose from {', '.join(REGISTRY)}"
        )
    return REGISTRY[name]


def register(
    name: str, fn: Callable[[Context], jax.Array], *, per_layer: bool = False, replace: bool = False
) -> Metric:
    """Make `fn(ctx: Context) -> scalar` (per_layer: an (n_layers,) array) the metric `name`;
    `train.metrics=name` records it. A name registered with another function (or another
    per_layer) is refused unless replace=True; the same again returns the existing entry."""
    if not isinstance(name, str) or not name.isidentifier() or name in RESERVED:
        raise UserError(f"metric name must be an identifier like 'max_preact', got {name!r}")
    if not callable(fn):
        raise UserError(f"metric {name!r}: fn must be a function of the step's Context, got {fn!r}")
    if not isinstance(per_layer, bool):
        raise UserError(f"metric {name!r}: per_layer must be True or False, got {per_layer!r}")
    new = Metric(name, fn, per_layer)
    old = REGISTRY.get(name)
    if old is not None and not replace:
        if old.token == new.token:
            return old
        raise UserError(
            f"metric {name!r} is already registered with another function; "
            "pass replace=True to replace it"
        )
    REGISTRY[name] = new
    return new


def requested(cfg: Config) -> list[str]:
    """The names in train.metrics, in order, checked (UserError naming an unknown one)."""
    text = cfg.train.metrics
    if not isinstance(text, str):
        raise UserError(f"train.metrics must be comma-separated metric names, got {text!r}")
    out = []
    for n in (part.strip() for part in text.split(",")):
        if n and n not in out:
            get(n)
            out.append(n)
    return out


def recorded(cfg: Config, has_test: bool) -> list[Metric]:
    """The metrics a run of cfg records, in the order results list them."""
    which = list(RECORD[cfg.train.record])
    if has_test:
        which.append("test_loss")
        if cfg.train.loss in losses.CLASSIFICATION:
            which.append("test_accuracy")
    if cfg.model.norm != "none" and cfg.train.record != "loss":  # the norms' own gradients
        which += list(NORM_GRADS)
    which += [n for n in requested(cfg) if n not in which]
    ordered = [n for n in BUNDLED if n in which] + [n for n in which if n not in BUNDLED]
    return [get(n) for n in ordered]


def compute(which: Iterable[Metric], ctx: Context) -> dict[str, jax.Array]:
    """Each metric's value at this step, float32, shapes checked: () or (n_layers,)."""
    out = {}
    for m in which:
        v = jnp.asarray(m.fn(ctx))
        want = (ctx.n_layers,) if m.per_layer else ()
        if v.shape != want:
            kind = f"per-layer, so ({ctx.n_layers},)" if m.per_layer else "not per-layer, so ()"
            raise UserError(f"metric {m.name!r} returned shape {v.shape}; it is {kind} expected")
        out[m.name] = v.astype(jnp.float32)
    return out


def fingerprint(names: Iterable[str]) -> str:
    """Short hash of the named metrics' tokens (order and repeats ignored)."""
    return activations.content_token(tuple(f"{n}={get(n).token}" for n in sorted(set(names))))


# the curvature metrics (ntk_max, ntk_min, ntk_cond, sharpness) register themselves as built-ins
from sigjax.engine import curvature  # noqa: E402, F401
