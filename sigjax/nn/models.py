"""Model families: a Flax linen module behind a small protocol, chosen by `model.arch`.

A family (`ModelFamily`) builds a module from the config (`build`), draws its parameters and
mutable state (`init`: the traced σ_w² / σ_b² scale the weights and biases it declares), runs it
(`apply`: output, per-layer `Intermediates` and, in train mode, the updated state) and says which
parameter arrays are each layer's weight and bias (and normalization scale and shift), in network
order (`layers`). Metrics, the memory planner and the results ask `layers`, never parameter names.
`Family` implements `init` and `apply` for any module whose `__call__(x, *, train)` returns
(output, Intermediates), so a family of one's own needs `build` (and `layers`, unless its layers
are Dense-like sub-dicts with a `kernel` whose paths sort in network order). `register(name,
family)` adds one; `mlp` and `resmlp` (the modules of `sigjax.nn.nets`) are built in.

Traced hyperparameters other than σ_w², σ_b² reach a module through its state: a family names
them in its `hparams` attribute (last parts of `config.DYNAMIC_KEYS`, e.g. "residual_scale"),
the engine passes their traced values to `init` as keywords, and `Family.init` stores them in
the state's `hparams` collection, where the module reads them with
`self.variable("hparams", name, default)`. So they are per member in a sweep, checkpointed with
the state, and one compiled program serves every value. A family without `hparams` is called
exactly as before.

Built in (modules in `sigjax.nn.nets`): `mlp`, Dense layers `layer_1` … `layer_{depth+1}` (the last
is the output layer) with `norm_l` under `model.norm`; `resmlp`, layers proj, block_1 …
block_depth, head, with h ← h + α·φ(norm(h W_l + b_l)) and α = `init.residual_scale`.
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

from sigjax.config import DYNAMIC_KEYS, Config
from sigjax.errors import UserError, one_line
from sigjax.nn import activations, nets
from sigjax.nn.nets import MLP, Intermediates, ResMLP  # models.MLP etc. stay importable here

Params = dict
State = dict  # a module's mutable collections ({"batch_stats": …}); {} when it has none


# ----------------------------------------------------------------------------- the protocol


class Layer(NamedTuple):
    """Where one layer's arrays sit in the parameter tree (paths of dict keys), and what it is."""

    name: str
    weight: tuple[str, ...]
    bias: tuple[str, ...] | None = None  # None: the layer has no bias
    scale: tuple[str, ...] | None = None  # its normalization's scale γ (None: not normalized)
    shift: tuple[str, ...] | None = None  # its normalization's shift β
    # the nonlinearity it applies, for saturation; None: model.activation (the last layer:
    # model.head_activation)
    activation: str | None = None


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
        """Parameters (declared weights × sqrt(sigma_w2), biases × sqrt(sigma_b2)) and state.

        A family with an `hparams` attribute also takes those traced values as keywords."""
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

    `init` draws the module's variables on a (1, in_dim) input in eval mode, scales the
    declared weights and biases and puts the traced `hparams` it is given into the state;
    `apply` runs it with the state's collections mutable in train mode. The default `layers`:
    every sub-dict with a `kernel` (the weight) and maybe a `bias`, in natural order of their
    paths (Dense_2 before Dense_10).
    """

    hparams: tuple[str, ...] = ()  # traced hyperparameters `init` takes (see the module doc)

    def build(self, cfg: Config, in_dim: int, out_dim: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define build(cfg, in_dim, out_dim)")

    def init(
        self,
        module: nn.Module,
        key: jax.Array,
        in_dim: int,
        sigma_w2: jax.Array,
        sigma_b2: jax.Array,
        **hparams: jax.Array,
    ) -> tuple[Params, State]:
        variables = dict(module.init(key, jnp.zeros((1, in_dim)), train=False))
        params = variables.pop("params", {})
        if hparams:
            given = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
            variables[nets.HPARAMS] = {**variables.get(nets.HPARAMS, {}), **given}
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
        return MLP(widths=(m.width,) * m.depth, out_dim=out_dim, **module_options(cfg))

    def layers(self, params: Params) -> list[Layer]:
        return [_dense_layer(params, n, f"norm_{n.split('_')[1]}") for n in layer_names(params)]


class ResMLPFamily(Family):
    """The residual MLP: projection, model.depth residual blocks of model.width, output layer;
    α = init.residual_scale reaches the module traced, through the state."""

    hparams = ("residual_scale",)

    def build(self, cfg: Config, in_dim: int, out_dim: int) -> ResMLP:
        m = cfg.model
        return ResMLP(width=m.width, depth=m.depth, out_dim=out_dim, **module_options(cfg))

    def layers(self, params: Params) -> list[Layer]:
        blocks = sorted((n for n in params if n.startswith("block_")), key=_natural)
        return [
            _dense_layer(params, "proj", "", activation="identity"),
            *(_dense_layer(params, n, f"norm_{n.split('_')[1]}") for n in blocks),
            _dense_layer(params, "head", ""),
        ]


def _dense_layer(params: Params, name: str, norm: str, activation: str | None = None) -> Layer:
    """The Layer of Dense `name` (bias if it has one) and of its normalization `norm` if any."""
    scaled = norm in params and "scale" in params[norm]
    return Layer(
        name,
        (name, "kernel"),
        (name, "bias") if "bias" in params[name] else None,
        (norm, "scale") if scaled else None,
        (norm, "bias") if scaled and "bias" in params[norm] else None,
        activation,
    )


def module_options(cfg: Config) -> dict[str, Any]:
    """The fields every built-in module takes from cfg besides its shape: activations, init
    scheme, precision and normalization (UserError for bad values)."""
    m = cfg.model
    if m.norm not in nets.NORMS:
        raise UserError(f"unknown model.norm {m.norm!r}; choose from {', '.join(nets.NORMS)}")
    if not 0 <= m.bn_momentum < 1:
        raise UserError(f"model.bn_momentum must be in [0, 1), got {m.bn_momentum:g}")
    return {
        "activation": m.activation,
        "head_activation": m.head_activation,
        "kernel_init": cfg.init.scheme,
        "bf16": cfg.train.precision == "bf16",
        "norm": m.norm,
        "bn_momentum": m.bn_momentum,
    }


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
            f"{what}: the module must return (output, sigjax.nn.models.Intermediates(pre, post)), "
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
    traced = {k.split(".")[-1] for k in DYNAMIC_KEYS if k != "seed"}
    unknown = [h for h in getattr(family, "hparams", ()) if h not in traced]
    if unknown:
        raise UserError(
            f"{what}: hparams names {unknown[0]!r}, not a traced hyperparameter; choose from "
            f"{', '.join(sorted(traced))}"
        )


# ----------------------------------------------------------------------------- the registry

_REGISTRY: dict[str, ModelFamily] = {"mlp": MLPFamily(), "resmlp": ResMLPFamily()}
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
            f"(e.g. a sigjax.nn.models.Family subclass instance); got {what}"
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
    """The MLP's Dense layer names in network order (layer_1, layer_2, …, not lexicographic;
    its normalizations norm_l are not layers of their own)."""
    return sorted((n for n in params if n.startswith("layer_")), key=lambda n: int(n.split("_")[1]))


_REGISTRY_MLP = MLPFamily()
