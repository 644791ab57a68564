"""Model families: a Flax linen module behind a small protocol, chosen by `model.arch`.

A family (`ModelFamily`) builds a module from the config (`build`), draws its parameters and
mutable state (`init`: the traced σ_w² / σ_b² scale the weights and biases it declares), runs it
(`apply`: output, per-layer `Intermediates` and, in train mode, the updated state) and says which
parameter arrays are each layer's weight and bias, in network order (`layers`). Metrics, the
memory planner and the results ask `layers`, never parameter names. `Family` implements `init`
and `apply` for any module whose `__call__(x, *, train)` returns (output, Intermediates), so a
family of one's own needs `build` (and `layers`, unless its layers are Dense-like sub-dicts with
a `kernel` whose paths sort in network order). `register(name, family)` adds one; `mlp` is built in.

The MLP: Dense layers named `layer_1` … `layer_{depth+1}`; layer depth+1 is the output layer.
Layer l computes z_l = a_{l-1} W_l + b_l and a_l = φ(z_l) (the head uses `head_activation`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from sigjax import activations, initializers
from sigjax.config import Config
from sigjax.errors import UserError, one_line

Params = dict
State = dict  # a module's mutable collections ({"batch_stats": …}); {} when it has none


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
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, Intermediates]:
        del train  # no layer of the MLP behaves differently in training
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


# ----------------------------------------------------------------------------- the protocol


class Layer(NamedTuple):
    """Where one layer's arrays sit in the parameter tree (paths of dict keys)."""

    name: str
    weight: tuple[str, ...]
    bias: tuple[str, ...] | None = None  # None: the layer has no bias


@runtime_checkable
class ModelFamily(Protocol):
    """What the engine asks of a model; `Family` implements `init` and `apply` for linen."""

    def build(self, cfg: Config, in_dim: int, out_dim: int) -> nn.Module:
        """The module for this config; its `__call__(x, *, train)` -> (output, Intermediates)."""
        ...

    def init(
        self,
        module: nn.Module,
        key: jax.Array,
        in_dim: int,
        sigma_w2: jax.Array,
        sigma_b2: jax.Array,
    ) -> tuple[Params, State]:
        """Parameters (declared weights × sqrt(sigma_w2), biases × sqrt(sigma_b2)) and state."""
        ...

    def apply(
        self, module: nn.Module, params: Params, state: State, x: jax.Array, *, train: bool
    ) -> tuple[jax.Array, Intermediates, State]:
        """Output (batch, out), intermediates and the state (updated in train mode)."""
        ...

    def layers(self, params: Params) -> list[Layer]:
        """Each layer's weight and bias paths, in network order (input side first)."""
        ...


class Family:
    """A model family over a linen module: subclasses give `build` (and maybe `layers`).

    `init` draws the module's variables on a (1, in_dim) input in eval mode and scales the
    declared weights and biases; `apply` runs it with the state's collections mutable in train
    mode. The default `layers`: every sub-dict with a `kernel` (the weight) and maybe a `bias`,
    in natural order of their paths (Dense_2 before Dense_10).
    """

    def build(self, cfg: Config, in_dim: int, out_dim: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define build(cfg, in_dim, out_dim)")

    def init(
        self,
        module: nn.Module,
        key: jax.Array,
        in_dim: int,
        sigma_w2: jax.Array,
        sigma_b2: jax.Array,
    ) -> tuple[Params, State]:
        variables = dict(module.init(key, jnp.zeros((1, in_dim)), train=False))
        params = variables.pop("params", {})
        return scale(params, self.layers(params), sigma_w2, sigma_b2), variables

    def apply(
        self, module: nn.Module, params: Params, state: State, x: jax.Array, *, train: bool
    ) -> tuple[jax.Array, Intermediates, State]:
        variables = {"params": params, **state}
        if train and state:
            (out, inter), new = module.apply(variables, x, train=True, mutable=list(state))
            return out, inter, {**state, **new}
        out, inter = module.apply(variables, x, train=train)
        return out, inter, state

    def layers(self, params: Params) -> list[Layer]:
        flat = traverse_util.flatten_dict(params)
        owners = sorted({p[:-1] for p in flat if p[-1] == "kernel"}, key=_natural)
        return [
            Layer("/".join(o), (*o, "kernel"), (*o, "bias") if (*o, "bias") in flat else None)
            for o in owners
        ]


class MLPFamily(Family):
    """The built-in MLP: model.depth hidden layers of model.width, then the output layer."""

    def build(self, cfg: Config, in_dim: int, out_dim: int) -> MLP:
        m = cfg.model
        return MLP(
            widths=(m.width,) * m.depth,
            out_dim=out_dim,
            activation=m.activation,
            head_activation=m.head_activation,
            kernel_init=cfg.init.scheme,
            bf16=cfg.train.precision == "bf16",
        )

    def layers(self, params: Params) -> list[Layer]:
        return [Layer(n, (n, "kernel"), (n, "bias")) for n in layer_names(params)]


def _natural(path: tuple[str, ...]) -> list:
    return [[int(t) if t.isdigit() else t for t in re.split(r"(\d+)", part)] for part in path]


def at(tree: Params, path: Sequence[str]) -> Any:
    """The leaf of a nested dict at a path of keys."""
    for k in path:
        tree = tree[k]
    return tree


def scale(params: Params, layers: Iterable[Layer], sigma_w2: jax.Array, sigma_b2: jax.Array):
    """params with each layer's weight × sqrt(sigma_w2) and bias × sqrt(sigma_b2)."""
    sw, sb = jnp.sqrt(sigma_w2), jnp.sqrt(sigma_b2)
    flat = traverse_util.flatten_dict(params)
    for layer in layers:
        flat[tuple(layer.weight)] = flat[tuple(layer.weight)] * sw
        if layer.bias is not None:
            flat[tuple(layer.bias)] = flat[tuple(layer.bias)] * sb
    return traverse_util.unflatten_dict(flat)


def shapes(family: ModelFamily, module: nn.Module, in_dim: int) -> tuple:
    """(params, state, output, intermediates) of one example, as ShapeDtypeStructs (nothing
    is computed: `jax.eval_shape`). Cached: the check, the program and the planner ask alike."""
    try:
        hash((family, module))
    except TypeError:  # an unhashable family or module: traced every time
        return _shapes.__wrapped__(family, module, in_dim)
    return _shapes(family, module, in_dim)


@functools.lru_cache(maxsize=256)
def _shapes(family: ModelFamily, module: nn.Module, in_dim: int) -> tuple:
    def run(key):
        p, s = family.init(module, key, in_dim, jnp.float32(1.0), jnp.float32(1.0))
        out, inter, _ = family.apply(module, p, s, jnp.zeros((1, in_dim)), train=False)
        return p, s, out, inter

    return jax.eval_shape(run, jax.random.key(0))


def check(arch: str, family: ModelFamily, module: nn.Module, in_dim: int, out_dim: int) -> None:
    """UserError, naming model.arch, unless the model runs on (1, in_dim) inputs, gives
    (1, out_dim) outputs and Intermediates with one pre-activation and activation per layer
    that `layers` declares, each layer's weight (and bias) an array of its parameters."""
    what = f"model.arch={arch}"
    try:
        params, _, out, inter = shapes(family, module, in_dim)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{what}: the model fails on a (1, {in_dim}) input: {one_line(e)}") from e
    if getattr(out, "shape", None) != (1, out_dim):
        shape = getattr(out, "shape", type(out).__name__)
        raise UserError(
            f"{what}: the output of a (1, {in_dim}) input is {shape}, not (1, {out_dim})"
        )
    pre, post = getattr(inter, "pre", None), getattr(inter, "post", None)
    if not isinstance(pre, tuple | list) or not isinstance(post, tuple | list):
        raise UserError(
            f"{what}: the module must return (output, sigjax.models.Intermediates(pre, post)), "
            f"got {type(inter).__name__} as the second item"
        )
    try:
        layers = list(family.layers(params))
        flat = traverse_util.flatten_dict(params)
        bad = [
            ly.name
            for ly in layers
            for path in (ly.weight, ly.bias)
            if path is not None and tuple(path) not in flat
        ]
    except (TypeError, ValueError, AttributeError, KeyError) as e:
        raise UserError(f"{what}: layers(params) failed: {one_line(e)}") from e
    if bad or not layers:
        why = f"paths of layer {bad[0]!r} are not in its parameters" if bad else "no layers"
        raise UserError(f"{what}: layers(params) gives {why}")
    if not len(pre) == len(post) == len(layers):
        raise UserError(
            f"{what}: the intermediates hold {len(pre)} pre-activations and {len(post)} "
            f"activations, but layers(params) declares {len(layers)} layers"
        )


# ----------------------------------------------------------------------------- the registry

_REGISTRY: dict[str, ModelFamily] = {"mlp": MLPFamily()}
_TOKENS: dict[str, str] = {}


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(arch: str | ModelFamily) -> ModelFamily:
    """The family registered as `arch` (a family object is returned as it is)."""
    if not isinstance(arch, str):
        _check_family("model", arch)
        return arch
    if arch not in _REGISTRY:
        raise UserError(f"unknown model.arch {arch!r}; choose from {', '.join(names())}")
    return _REGISTRY[arch]


def register(name: str, family: ModelFamily, *, replace: bool = False) -> ModelFamily:
    """Make `family` the model family `name` (config `model.arch=name`).

    `family` has the `ModelFamily` methods (most simply: a `Family` subclass with `build`).
    A name already registered with a family of other code is refused unless replace=True;
    registering the same again returns the existing entry.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise UserError(f"model family name must be an identifier like 'my_net', got {name!r}")
    _check_family(name, family)
    old = _REGISTRY.get(name)
    if old is not None and old is not family and token(old) != token(family):
        if not replace:
            raise UserError(
                f"model family {name!r} is already registered with other code; "
                "pass replace=True to replace it"
            )
    elif old is not None:
        return old
    _REGISTRY[name] = family
    _TOKENS.pop(name, None)
    return family


def _check_family(name: str, family: Any) -> None:
    missing = [
        m for m in ("build", "init", "apply", "layers") if not callable(getattr(family, m, None))
    ]
    if missing or isinstance(family, type):
        what = (
            "a class, not an instance" if isinstance(family, type) else f"no {', '.join(missing)}"
        )
        raise UserError(
            f"model family {name!r} must be an object with build, init, apply and layers "
            f"(e.g. a sigjax.models.Family subclass instance); got {what}"
        )


def token(family: ModelFamily, module: nn.Module | None = None) -> str:
    """Content hash of a family's code (its class's methods and attributes, the module classes
    its methods name) and of the built module's class: compiled programs and checkpoints of a
    replaced family are never reused."""
    classes = [type(family)]
    for fn in _methods(type(family)).values():
        classes += _module_classes(fn)
    if module is not None:
        classes.append(type(module))
    for v in getattr(family, "__dict__", {}).values():
        if isinstance(v, type):
            classes.append(v)
    seen: list[type] = []
    for c in classes:
        if c not in seen:
            seen.append(c)
    attrs = {k: v for k, v in getattr(family, "__dict__", {}).items() if not isinstance(v, type)}
    parts = (tuple(_class_code(c) for c in seen), attrs)
    return activations.content_token(parts)


def fingerprint(archs: Iterable[str]) -> str:
    """Short hash of the named families' tokens (order and repeats ignored)."""
    fams = sorted(set(archs))
    return activations.content_token(tuple(f"{a}={_cached_token(a)}" for a in fams))


def _cached_token(arch: str) -> str:
    if arch not in _TOKENS:
        _TOKENS[arch] = token(get(arch))
    return _TOKENS[arch]


_GENERATED = {"__init__", "__eq__", "__hash__", "__repr__", "__setattr__", "__delattr__"}


def _methods(cls: type) -> dict[str, Any]:
    """Functions defined by cls and its bases (flax's and Python's own classes excluded)."""
    out: dict[str, Any] = {}
    for c in reversed(cls.__mro__):
        if c is object or c.__module__.split(".")[0] in ("flax", "typing", "abc"):
            continue
        for k, v in vars(c).items():
            fn = v.__func__ if isinstance(v, staticmethod | classmethod) else v
            fn = getattr(fn, "__wrapped__", fn)  # linen wraps a module's methods
            if isinstance(fn, types.FunctionType) and k not in _GENERATED:
                out[f"{c.__qualname__}.{k}"] = fn
    return out


def _class_code(cls: type) -> tuple:
    fields = ()
    if dataclasses.is_dataclass(cls):
        fields = tuple(
            (f.name, f.default if f.default is not dataclasses.MISSING else None)
            for f in dataclasses.fields(cls)
            if f.name not in ("parent", "name")
        )
    methods = _methods(cls)
    return (cls.__module__, cls.__qualname__, fields, tuple(methods[k] for k in sorted(methods)))


def _module_classes(fn: types.FunctionType) -> list[type]:
    """The linen module classes a function names as globals (e.g. the class `build` returns)."""
    names = set(fn.__code__.co_names)
    for c in fn.__code__.co_consts:
        if isinstance(c, types.CodeType):
            names |= set(c.co_names)
    glob = fn.__globals__
    out = [glob[n] for n in sorted(names) if isinstance(glob.get(n), type)]
    return [c for c in out if issubclass(c, nn.Module) and c.__module__.split(".")[0] != "flax"]


# ----------------------------------------------------------------------------- the MLP's API


def init_params(
    model: nn.Module, key: jax.Array, in_dim: int, sigma_w2: jax.Array, sigma_b2: jax.Array
) -> Params:
    """The MLP's parameters: kernels scaled by sqrt(sigma_w2) and biases ~ N(0, sigma_b2).

    sigma_w2 and sigma_b2 may be traced scalars: the shapes do not depend on them.
    """
    return _REGISTRY_MLP.init(model, key, in_dim, sigma_w2, sigma_b2)[0]


def apply(model: nn.Module, params: Params, x: jax.Array) -> tuple[jax.Array, Intermediates]:
    """Outputs (batch, out_dim) and every layer's pre-activations and activations (eval mode,
    no mutable state: the MLP's)."""
    out, inter, _ = _REGISTRY_MLP.apply(model, params, {}, x, train=False)
    return out, inter


def layer_names(params: Params) -> list[str]:
    """The MLP's layer names in network order (layer_1, layer_2, …, not lexicographic)."""
    return sorted(params, key=lambda n: int(n.split("_")[1]))


_REGISTRY_MLP = MLPFamily()
