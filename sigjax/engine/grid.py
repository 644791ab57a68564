"""Sweep grids: axes over config keys, parsed from the command line, split static/dynamic.

An axis is a config key and its values. Axes multiply (a product). A *zipped* axis moves several
keys in lockstep along one dim (`--zip model.depth=2,4,8 model.width=64,32,16`): the first key
names the dim and the others become coordinates along it. Values are converted to the field's
type up front, so a typo fails before anything compiles.

Expressions: `a,b,c` · `range(n)` / `range(a,b)` / `range(a,b,s)` · `linspace(a,b,n)` ·
`logspace(a,b,n)` (powers of ten, like NumPy). From Python an axis's values are a list (tuple,
range, 1-D array) or such an expression string.

Sizes are checked before anything is built: at most MAX_GROUPS static groups and MAX_MEMBERS
members per group (and per axis), so a mistyped range fails at once instead of hanging.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sigjax import config
from sigjax.config import DYNAMIC_KEYS, Config
from sigjax.errors import UserError

# Keys that cannot be swept: they change the time axis every group shares.
FIXED_KEYS = ("train.steps", "train.log_every")
# Generous bounds on a grid: each static group compiles its own program, and every member's
# dynamic values are held in memory (8 bytes per value and key).
MAX_GROUPS = 100_000
MAX_MEMBERS = 100_000_000


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
    check_distinct(("grid", key) for key in spec)
    for key, values in spec.items():
        keys = key_tuple(key)
        values = as_values(key, values)
        columns = list(zip(*values, strict=True)) if isinstance(key, tuple) else [values]
        if not values or not columns:
            raise UserError(f"grid axis {'+'.join(keys)} is empty")
        typed = []
        for k, col in zip(keys, columns, strict=True):
            if k in FIXED_KEYS:
                raise UserError(f"{k} cannot be a grid axis (all groups share one time axis)")
            typed.append(config.convert_all(k, col))
        rows = typed[0] if len(typed) == 1 else list(zip(*typed, strict=True))
        if len(set(rows)) != len(rows):
            raise UserError(f"grid axis {'+'.join(keys)} repeats a value: {_repeated(rows)!r}")
        axes.append(Axis(keys[0], typed[0], tuple(zip(keys[1:], typed[1:], strict=True))))
    dims = [_dim(k) for a in axes for k in (a.key, *(k for k, _ in a.zipped))]
    dup = {d for d in dims if dims.count(d) > 1}
    if dup:
        raise UserError(f"two grid axes share the dimension name {sorted(dup)[0]!r}")
    check_size(axes)
    return tuple(axes)


def _repeated(rows: Sequence) -> Any:
    seen = set()
    for r in rows:
        if r in seen:
            return r
        seen.add(r)
    return None


def key_tuple(key: Any) -> tuple[str, ...]:
    """The config keys of a grid entry: a key, or a non-empty tuple of keys (zipped)."""
    keys = key if isinstance(key, tuple) else (key,)
    if not keys or not all(isinstance(k, str) for k in keys):
        raise UserError(
            "grid keys are config keys like 'optim.lr' (a tuple of them zips), "
            f"got {key!r} ({type(key).__name__})"
        )
    return keys


def check_distinct(entries: Iterable[tuple[str, Any]]) -> None:
    """UserError naming the first config key that two entries give; each entry is (where it
    was given, e.g. '--grid', and a key or a tuple of zipped keys)."""
    seen: dict[str, str] = {}
    for where, key in entries:
        for k in key_tuple(key):
            if k in seen:
                raise UserError(f"{k} is given twice ({seen[k]} and {where}); give each key once")
            seen[k] = where


def as_values(key: Any, values: Any) -> tuple:
    """An axis's values as given from Python, as a tuple: a list, tuple, range or 1-D array,
    or a grid expression string as on the command line ('0.1,0.3', 'range(4)', ...); a zipped
    axis takes rows with one value per key. UserError for anything else (a scalar, a set)."""
    keys = key_tuple(key)
    name = "+".join(keys)
    if isinstance(values, str) and len(keys) == 1:
        return tuple(expand(values, keys[0]))
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        example = (
            "[(1, 64), (2, 32)] (one value per key in each row)"
            if len(keys) > 1
            else "[0.1, 0.3] or '0.1,0.3'"
        )
        raise UserError(
            f"grid axis {name} needs a list of values like {example}, "
            f"got {type(values).__name__} {values!r}"
        )
    if len(keys) > 1:
        for row in values:
            if isinstance(row, str | bytes) or not isinstance(row, Sequence | np.ndarray):
                raise UserError(
                    f"zipped grid axis {name}: each row needs {len(keys)} values, one per key; "
                    f"got {row!r}"
                )
            if len(row) != len(keys):
                raise UserError(
                    f"zipped grid axis {name}: row {tuple(row)!r} has {len(row)} value(s), "
                    f"need {len(keys)} (one per key)"
                )
    return tuple(values)


def check_size(axes: Sequence[Axis]) -> None:
    """UserError when a grid has more static groups or members than MAX_GROUPS, MAX_MEMBERS."""
    for dynamic, limit, what in (
        (False, MAX_GROUPS, "static groups"),
        (True, MAX_MEMBERS, "members"),
    ):
        sizes = [(a.dim, len(a.values)) for a in axes if a.dynamic == dynamic]
        n = math.prod(s for _, s in sizes)  # a Python int: no overflow
        if n > limit:
            shape = " x ".join(f"{d} {s:,}" for d, s in sizes)
            raise UserError(
                f"the grid has {n:,} {what} ({shape}); at most {limit:,}: sweep fewer values "
                "or split the sweep into several runs"
            )


def parse_zip(items: Sequence[str]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """`key=values` items of one --zip -> (keys, rows of value strings); lengths must match."""
    parsed = [parse(t) for t in items]
    lengths = {len(v) for _, v in parsed}
    if len(lengths) != 1:
        counts = ", ".join(f"{k} has {len(v)}" for k, v in parsed)
        raise UserError(f"--zip axes need the same number of values: {counts}")
    keys = tuple(k for k, _ in parsed)
    return keys, list(zip(*(v for _, v in parsed), strict=True))


def parse(text: str) -> tuple[str, list[str]]:
    """`key=expr` -> (key, value strings); UserError for a malformed expression."""
    if "=" not in text:
        raise UserError(f"grid axis {text!r} must look like key=values (e.g. optim.lr=0.1,0.3)")
    key, expr = (s.strip() for s in text.split("=", 1))
    return key, expand(expr, key)


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
        if len(args) == 3 and args[2] == 0:
            raise UserError(f"malformed grid expression {expr!r}: a range's step cannot be 0")
        vals = range(*(int(a) for a in args))
        _check_count(expr, key, _range_len(vals))
        return [str(v) for v in vals]
    if len(args) != 3 or not args[2].is_integer() or args[2] < 1:
        raise UserError(f"malformed grid expression {expr!r}: {fn}(start, stop, count)")
    _check_count(expr, key, int(args[2]))
    lin = np.linspace(args[0], args[1], int(args[2]))
    vals = lin if fn == "linspace" else 10.0**lin
    return [repr(float(v)) for v in vals]


def _range_len(r: range) -> int:
    try:
        return len(r)
    except OverflowError:  # longer than sys.maxsize
        return MAX_MEMBERS + 1


def _check_count(expr: str, key: str, n: int) -> None:
    # An axis longer than this can be neither a static axis nor a dynamic one: refuse it before
    # materialising its values.
    if n > MAX_MEMBERS:
        raise UserError(
            f"grid axis {key}: {expr!r} has more than {MAX_MEMBERS:,} values; sweep fewer values"
        )


@dataclass(frozen=True)
class Group:
    """One static group: its config and the dynamic members it trains in one program."""

    index: tuple[int, ...]  # position along each static axis
    cfg: Config
    members: dict[str, np.ndarray]  # dynamic key -> (M,) values, M = product of dynamic axes


def groups(cfg: Config, axes: Sequence[Axis]) -> Iterator[Group]:
    """Static groups in order; members enumerate the dynamic axes in C order."""
    static = [a for a in axes if not a.dynamic]
    members = member_arrays([a for a in axes if a.dynamic])
    for index in itertools.product(*(range(len(a.values)) for a in static)):
        updates = {}
        for a, i in zip(static, index, strict=True):
            updates |= a.at(i)
        yield Group(index=index, cfg=config.replace(cfg, updates), members=members)


def member_arrays(dynamic: Sequence[Axis]) -> dict[str, np.ndarray]:
    """{key: (M,) float64} over every key of the dynamic axes, members in C order (the last
    axis moving fastest), M the product of the axes' lengths."""
    shape = tuple(len(a.values) for a in dynamic)
    members: dict[str, np.ndarray] = {}
    for i, a in enumerate(dynamic):
        view = [1] * len(shape)
        view[i] = shape[i]
        for key, values in ((a.key, a.values), *a.zipped):
            column = np.asarray(values, dtype=np.float64).reshape(view)
            members[key] = np.array(np.broadcast_to(column, shape)).reshape(-1)  # one copy
    return members


def values_of(axes: Sequence[Axis], key: str, default: Any) -> tuple:
    """The values of the axis over `key` (its main key), or (default,) when none sweeps it."""
    for a in axes:
        if a.key == key:
            return a.values
    return (default,)


def n_members(axes: Sequence[Axis]) -> int:
    """Members per static group: the product of the dynamic axes' lengths."""
    return math.prod(len(a.values) for a in axes if a.dynamic)
