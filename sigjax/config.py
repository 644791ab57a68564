"""Run configuration: frozen, hashable dataclasses addressed by dotted keys (`optim.lr`).

A config splits into *static* fields, which change shapes or the compiled graph (depth,
activation, optimizer family, ...), and *dynamic* ones (DYNAMIC_KEYS), which are traced numbers:
one compiled program serves every value of them, so a sweep over them costs no recompilation.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sigjax.errors import UserError


@dataclass(frozen=True)
class ModelConfig:
    depth: int = 1  # hidden layers; the output layer comes on top
    width: int = 32
    activation: str = "sigmoid"
    head_activation: str = "identity"  # applied to the output layer (the blog's net: sigmoid)
    out_dim: int | None = None  # None: taken from the data
    arch: str = "mlp"  # model family (sigjax.nn.models.register): mlp, resmlp or a registered name
    norm: str = "none"  # none, batch or layer: normalizes each hidden pre-activation (mlp, resmlp)
    bn_momentum: float = 0.9  # batch norm running averages: r <- m r + (1 - m) batch value


@dataclass(frozen=True)
class InitConfig:
    scheme: str = "gaussian"  # see sigjax.nn.initializers.SCHEMES
    sigma_w2: float = 1.0  # weight variance multiplier (traced): W = sqrt(sigma_w2) * base
    sigma_b2: float = 0.0  # bias variance (traced): b ~ N(0, sigma_b2)
    residual_scale: float = 1.0  # resmlp's α in h <- h + α φ(norm(W h + b)) (traced)


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # sgd, momentum, nesterov, adam, rmsprop, adagrad, adamw, lamb, registered
    lr: float = 0.1
    momentum: float = 0.9  # momentum / nesterov
    b1: float = 0.9  # adam, adamw, lamb
    b2: float = 0.999  # adam, adamw, lamb
    eps: float = 1e-8  # adam, adamw, lamb, rmsprop, adagrad
    decay: float = 0.9  # rmsprop
    weight_decay: float = 0.0  # decoupled, all optimizers (adamw, lamb: optax's own)
    clip: float = 0.0  # global-norm gradient clipping before the optimizer (traced); 0: off
    warmup: float = 0.0  # share of train.steps ramping the rate up from 0 (traced), in [0, 1)
    schedule: str = "constant"  # lr factor over train.steps: see sigjax.nn.optim.SCHEDULES


@dataclass(frozen=True)
class DataConfig:
    name: str = "seed_regression"  # see sigjax.data.DATASETS
    n_train: int = 100
    n_test: int = 0
    dim: int = 10  # input dimension of synthetic tasks
    out_dim: int = 1  # targets of synthetic regression tasks / classes of teacher tasks
    seed: int = 0  # the task itself (shared by all members of a sweep)
    standardize: bool = False
    path: str = ""  # npz: the .npz file; arrays (given in Python): "sha256:" + their hash
    n_classes: int = 0  # npz, arrays: classes of integer labels (npz 0: 1 + the largest label)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    log_every: int = 10
    batch_size: int = 0  # 0: full batch (plain gradient descent)
    loss: str = "mse"  # mse, softmax_ce, sigmoid_bce
    loss_threshold: float = 0.05  # for steps-to-threshold in summaries
    diverge_factor: float = 1e4  # a loss above this × the step-0 loss counts as divergence
    record: str = "all"  # what each logged step records: all, gradients (loss + grad norms), loss
    precision: str = "float32"  # matmul inputs: float32, or bf16 (float32 params and accumulation)
    metrics: str = ""  # registered metrics to record besides `record`, comma-separated


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0  # a member's own stream: initial weights and minibatch order


# Traced per member; everything else is static (part of the compiled program).
DYNAMIC_KEYS = (
    "optim.lr",
    "optim.momentum",
    "optim.b1",
    "optim.b2",
    "optim.eps",
    "optim.decay",
    "optim.weight_decay",
    "optim.clip",
    "optim.warmup",
    "init.sigma_w2",
    "init.sigma_b2",
    "init.residual_scale",
    "seed",
)


def keys(cfg: Any = None, prefix: str = "") -> list[str]:
    """Every dotted leaf key of a config (of the Config class when cfg is None)."""
    cls = type(cfg) if cfg is not None else Config
    return [prefix + k for k in _class_keys(cls)]


def get(cfg: Config, key: str) -> Any:
    obj: Any = cfg
    for part in _check_key(key).split("."):
        obj = getattr(obj, part)
    return obj


def replace(cfg: Config, updates: dict[str, Any]) -> Config:
    """A new Config with dotted keys set; values are converted to the field's type."""
    for key, value in updates.items():
        cfg = _replace_one(cfg, _check_key(key).split("."), value, key)
    return cfg


def parse_value(key: str, text: str) -> Any:
    """Convert a command-line string to the type of field `key` (UserError if it does not fit)."""
    _check_key(key)
    return _convert(key, _leaf_type(key), text)


def convert_all(key: str, values: Iterable[Any]) -> tuple:
    """Values converted to the type of field `key`, each exactly as `replace` converts it
    (strings parsed as on the command line); UserError naming the first that does not fit."""
    typ = _leaf_type(_check_key(key))
    values = tuple(values)
    fast = _FAST.get(typ)
    if fast is not None:
        try:
            return tuple(map(fast, values))
        except (TypeError, ValueError):
            pass  # the strict conversion below names the value at fault
    return tuple(_convert(key, typ, v) for v in values)


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def to_json(cfg: Config) -> str:
    return json.dumps(to_dict(cfg), sort_keys=True)


def from_dict(d: dict) -> Config:
    flat = {}

    def walk(sub: dict, prefix: str) -> None:
        for k, v in sub.items():
            if isinstance(v, dict):
                walk(v, prefix + k + ".")
            else:
                flat[prefix + k] = v

    walk(d, "")
    return replace(Config(), flat)


def _check_key(key: str) -> str:
    if not isinstance(key, str):
        raise UserError(
            f"config keys are dotted names like 'optim.lr', got {key!r} ({type(key).__name__})"
        )
    if key not in _key_set():
        raise UserError(f"unknown config key {key!r}; valid keys: {', '.join(_all_keys())}")
    return key


# The key and type tables are fixed by the class definitions: built once, not per value (a
# grid of a million values parses each one).
def _all_keys() -> list[str]:
    return keys()


@functools.cache
def _key_set() -> frozenset[str]:
    return frozenset(_class_keys(Config))


@functools.cache
def _class_keys(cls: type) -> tuple[str, ...]:
    out: list[str] = []
    for f in dataclasses.fields(cls):
        sub = _field_type(cls, f.name)
        if dataclasses.is_dataclass(sub):
            out += [f"{f.name}.{k}" for k in _class_keys(sub)]
        else:
            out.append(f.name)
    return tuple(out)


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _field_type(cls: type, name: str) -> Any:
    return _type_hints(cls)[name]


@functools.cache
def _leaf_type(key: str) -> Any:
    cls: Any = Config
    *parents, leaf = key.split(".")
    for p in parents:
        cls = _field_type(cls, p)
    return _field_type(cls, leaf)


def _replace_one(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    head, rest = parts[0], parts[1:]
    if rest:
        return dataclasses.replace(
            obj, **{head: _replace_one(getattr(obj, head), rest, value, key)}
        )
    return dataclasses.replace(obj, **{head: _convert(key, _leaf_type(key), value)})


def _convert(key: str, typ: Any, value: Any) -> Any:
    """Coerce value (a string from the command line, or a Python value) to typ, strictly."""
    args = typing.get_args(typ)
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(key, inner[0], value)
    try:
        if typ is bool:
            if isinstance(value, str):
                low = value.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            if isinstance(value, bool | int):
                return bool(value)
            raise ValueError
        if typ is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value, 10)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        name = getattr(typ, "__name__", str(typ))
        raise UserError(f"{key} expects {name}, got {value!r}") from None
    raise TypeError(f"unsupported config field type {typ} for {key}")


# Converters for the common plain field types that agree with `_convert` wherever they succeed
# and raise on anything else (which `_convert` then reports): a grid of a million values
# converts in a fraction of a second.
def _fast_int(value: Any) -> int:
    t = type(value)
    if t is str:
        return int(value, 10)
    if t is int:
        return value
    raise TypeError


def _fast_float(value: Any) -> float:
    t = type(value)
    if t is str or t is int:
        return float(value)
    if t is float:
        return value
    raise TypeError


def _fast_str(value: Any) -> str:
    if type(value) is str:
        return value
    raise TypeError


_FAST = {int: _fast_int, float: _fast_float, str: _fast_str}
