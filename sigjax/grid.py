"""Sweep grids: axes over config keys, parsed from the command line, split static/dynamic.

An axis is a config key and its values. Axes multiply (a product). A *zipped* axis moves several
keys in lockstep along one dim (`--zip model.depth=2,4,8 model.width=64,32,16`): the first key
names the dim and the others become coordinates along it. Values are converted to the field's
type up front, so a typo fails before anything compiles.

Expressions: `a,b,c` · `range(n)` / `range(a,b)` / `range(a,b,s)` · `linspace(a,b,n)` ·
`logspace(a,b,n)` (powers of ten, like NumPy).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigjax import config
from sigjax.config import DYNAMIC_KEYS, Config
from sigjax.errors import UserError

# Keys that cannot be swept: they change the time axis every group shares.
FIXED_KEYS = ("train.steps", "train.log_every")


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple
    zipped: tuple[tuple[str, tuple], ...] = ()  # (key, values) moving in lockstep with this one

    @property
    def dim(self) -> str:
        """The dimension name in results: the key's last part (`optim.lr` -> `lr`)."""
        return _dim(self.key)

    @property
    def dynamic(self) -> bool:
        """Traced (vmapped) when every key on the axis is; otherwise a static axis."""
        return all(k in DYNAMIC_KEYS for k in (self.key, *(k for k, _ in self.zipped)))

    def at(self, i: int) -> dict[str, Any]:
        """{key: value} for every key on the axis at position i."""
        return {self.key: self.values[i], **{k: v[i] for k, v in self.zipped}}


def _dim(key: str) -> str:
    return key.split(".")[-1]


def make_axes(spec: dict[str | tuple[str, ...], Sequence[Any]]) -> tuple[Axis, ...]:
    """Axes from {key: values} (a tuple of keys with tuples of values is a zipped axis), values
    converted to the field type; UserError on bad input."""
    axes = []
    for key, values in spec.items():
        keys = key if isinstance(key, tuple) else (key,)
        columns = list(zip(*values, strict=True)) if isinstance(key, tuple) else [values]
        if not values or not columns:
            raise UserError(f"grid axis {'+'.join(keys)} is empty")
        typed = []
        for k, col in zip(keys, columns, strict=True):
            if k in FIXED_KEYS:
                raise UserError(f"{k} cannot be a grid axis (all groups share one time axis)")
            typed.append(tuple(_typed(k, v) for v in col))
        rows = list(zip(*typed, strict=True))
        if len(set(rows)) != len(rows):
            raise UserError(f"grid axis {'+'.join(keys)} repeats a value: {list(typed[0])}")
        axes.append(Axis(keys[0], typed[0], tuple(zip(keys[1:], typed[1:], strict=True))))
    dims = [_dim(k) for a in axes for k in (a.key, *(k for k, _ in a.zipped))]
    dup = {d for d in dims if dims.count(d) > 1}
    if dup:
        raise UserError(f"two grid axes share the dimension name {sorted(dup)[0]!r}")
    return tuple(axes)


def parse_zip(items: Sequence[str]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """`key=values` items of one --zip -> (keys, rows of value strings); lengths must match."""
    parsed = [parse(t) for t in items]
    lengths = {len(v) for _, v in parsed}
    if len(lengths) != 1:
        raise UserError(f"--zip axes need the same number of values, got {sorted(lengths)}")
    keys = tuple(k for k, _ in parsed)
    return keys, list(zip(*(v for _, v in parsed), strict=True))


def parse(text: str) -> tuple[str, list[str]]:
    """`key=expr` -> (key, value strings); UserError for a malformed expression."""
    if "=" not in text:
        raise UserError(f"grid axis {text!r} must look like key=values (e.g. optim.lr=0.1,0.3)")
    key, expr = (s.strip() for s in text.split("=", 1))
    return key, expand(expr, key)


def _typed(key: str, value: Any) -> Any:
    """value converted to the type of field `key` (strings parsed as on the command line)."""
    if isinstance(value, str):
        return config.parse_value(key, value)
    return config.get(config.replace(Config(), {key: value}), key)


_CALL = re.compile(r"^(range|linspace|logspace)\((.*)\)$")


def expand(expr: str, key: str = "value") -> list[str]:
    """The value strings an expression stands for."""
    m = _CALL.match(expr.replace(" ", ""))
    if not m:
        values = [v for v in expr.split(",") if v != ""]
        if not values:
            raise UserError(f"grid axis {key} is empty")
        return values
    fn, args_text = m.groups()
    try:
        args = [float(a) for a in args_text.split(",")] if args_text else []
    except ValueError:
        raise UserError(f"malformed grid expression {expr!r} for {key}") from None
    if fn == "range":
        if not 1 <= len(args) <= 3 or any(not a.is_integer() for a in args):
            raise UserError(f"malformed grid expression {expr!r}: range takes 1-3 integers")
        vals = range(*(int(a) for a in args))
        return [str(v) for v in vals]
    if len(args) != 3 or not args[2].is_integer() or args[2] < 1:
        raise UserError(f"malformed grid expression {expr!r}: {fn}(start, stop, count)")
    lin = np.linspace(args[0], args[1], int(args[2]))
    vals = lin if fn == "linspace" else 10.0**lin
    return [repr(float(v)) for v in vals]


@dataclass(frozen=True)
class Group:
    """One static group: its config and the dynamic members it trains in one program."""

    index: tuple[int, ...]  # position along each static axis
    cfg: Config
    members: dict[str, np.ndarray]  # dynamic key -> (M,) values, M = product of dynamic axes


def groups(cfg: Config, axes: Sequence[Axis]) -> Iterator[Group]:
    """Static groups in order; members enumerate the dynamic axes in C order."""
    static = [a for a in axes if not a.dynamic]
    dynamic = [a for a in axes if a.dynamic]
    positions = list(itertools.product(*(range(len(a.values)) for a in dynamic)))
    members: dict[str, np.ndarray] = {}
    for i, a in enumerate(dynamic):
        for key in (a.key, *(k for k, _ in a.zipped)):
            members[key] = np.array([a.at(p[i])[key] for p in positions], dtype=np.float64)
    for index in itertools.product(*(range(len(a.values)) for a in static)):
        updates = {}
        for a, i in zip(static, index, strict=True):
            updates |= a.at(i)
        yield Group(index=index, cfg=config.replace(cfg, updates), members=members)


def values_of(axes: Sequence[Axis], key: str, default: Any) -> tuple:
    """The values of the axis over `key` (its main key), or (default,) when none sweeps it."""
    for a in axes:
        if a.key == key:
            return a.values
    return (default,)


def n_members(axes: Sequence[Axis]) -> int:
    return int(np.prod([len(a.values) for a in axes if a.dynamic], dtype=np.int64))
