"""Sweep grids: axes over config keys, parsed from the command line, split static/dynamic.

An axis is a config key and its values. Axes multiply (a product); axes given together as
`--grid a=1,2 --zip b=3,4`-style zipped groups are not supported yet. Values are converted to
the field's type up front, so a typo fails before anything compiles.

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

    @property
    def dim(self) -> str:
        """The dimension name in results: the key's last part (`optim.lr` -> `lr`)."""
        return self.key.split(".")[-1]

    @property
    def dynamic(self) -> bool:
        return self.key in DYNAMIC_KEYS


def make_axes(spec: dict[str, Sequence[Any]]) -> tuple[Axis, ...]:
    """Axes from {key: values}, values converted to the field type; UserError on bad input."""
    axes = []
    for key, values in spec.items():
        if key in FIXED_KEYS:
            raise UserError(f"{key} cannot be a grid axis (all groups share one time axis)")
        values = tuple(_typed(key, v) for v in values)
        if not values:
            raise UserError(f"grid axis {key} is empty")
        if len(set(values)) != len(values):
            raise UserError(f"grid axis {key} repeats a value: {list(values)}")
        axes.append(Axis(key, values))
    dims = [a.dim for a in axes]
    dup = {d for d in dims if dims.count(d) > 1}
    if dup:
        raise UserError(f"two grid axes share the dimension name {sorted(dup)[0]!r}")
    return tuple(axes)


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
    combos = list(itertools.product(*(a.values for a in dynamic)))
    members = {
        a.key: np.array([c[i] for c in combos] if combos else [], dtype=np.float64)
        for i, a in enumerate(dynamic)
    }
    for index in itertools.product(*(range(len(a.values)) for a in static)):
        updates = {a.key: a.values[i] for a, i in zip(static, index, strict=True)}
        yield Group(index=index, cfg=config.replace(cfg, updates), members=members)


def n_members(axes: Sequence[Axis]) -> int:
    return int(np.prod([len(a.values) for a in axes if a.dynamic], dtype=np.int64))
