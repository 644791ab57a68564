"""How a sweep will run: static groups, members, chunks, memory, strategy — decided before
it starts.

The memory model counts, per member, the parameters, gradients, updates and optimizer slots,
the activations of one batch (pre-activations, activations and their gradients), the test-set
forward pass, and the recorded trajectory; XLA's temporaries are covered by a factor of two.
The member axis of each group is cut into chunks that fit the budget.

The execution strategy (`Strategy`) says how a chunk's members run. On an accelerator: one
vmap over each device's members. On a CPU the deciding quantity is the cache: a member's
working set (parameters, gradients, optimizer slots, one batch's activations) is touched on
every step, so members run through a whole segment in batches (`lax.map` over vmapped
batches) that fit a device's share of the last-level cache. A vmap over all members streams
every member's weights from memory each step; measured on a 2-core CPU for 256 members of a
40-128x4-10 MLP, batches of 8 per core ran 2.4x faster than one 256-wide vmap (see
docs/benchmarks.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sigjax.config import Config
from sigjax.engine import grid, metrics, train
from sigjax.errors import UserError
from sigjax.nn import models, optim


def optimizer_state_bytes(cfg: Config, params: Any) -> int:
    """Bytes of the optimizer state for these parameters (arrays or ShapeDtypeStructs), counted
    from the optimizer's own init with `jax.eval_shape`, so any registered optimizer is sized."""
    o = cfg.optim
    hp = train.hparams_of(cfg, np.float32)
    return optim.state_bytes(o.name, hp, params, schedule=o.schedule, steps=cfg.train.steps)


BYTES = 4  # float32
TEMPORARIES = 2.0  # XLA scratch beyond the live arrays counted here


@dataclass(frozen=True)
class MemoryEstimate:
    params: int  # bytes of one member's parameters
    state: int  # parameters, gradients, updates, optimizer slots
    activations: int  # one batch, forward and backward, plus the test forward pass
    trajectory: int  # the recorded Record arrays of a whole run

    @property
    def working_set(self) -> int:
        """Bytes one member touches on every step, XLA scratch included (no trajectory)."""
        return int(TEMPORARIES * (self.state + self.activations))

    @property
    def device(self) -> int:
        """Peak device bytes of one member while it trains (trajectory included)."""
        return int(TEMPORARIES * (self.state + self.activations)) + self.trajectory


def estimate(cfg: Config, in_dim: int, out_dim: int, n_train: int, n_test: int) -> MemoryEstimate:
    """One member's bytes. The model family's own init and forward pass, traced for shapes
    only (`models.shapes`), give the parameters, the model state and each layer's units; the
    trajectory counts the metrics the run records (`metrics.recorded`), L per per-layer one."""
    family = models.get(cfg.model.arch)
    module = family.build(cfg, in_dim, out_dim)
    models.check(cfg.model.arch, family, module, in_dim, out_dim)  # before anything trains
    params, model_state, _, inter = models.shapes(family, module, in_dim)
    n_params = sum(int(x.size) for x in jax.tree.leaves(params))
    n_layers = len(family.layers(params))
    units = [int(z.size) for z in inter.pre]  # of one example, per layer
    batch = cfg.train.batch_size if 0 < cfg.train.batch_size < n_train else n_train
    widest = max(in_dim, *units)
    acts = 4 * batch * sum(units) + batch * in_dim + (2 * n_test * widest if n_test else 0)
    n_logs = cfg.train.steps // cfg.train.log_every + 1
    per_log = sum(n_layers if m.per_layer else 1 for m in metrics.recorded(cfg, n_test > 0))
    return MemoryEstimate(
        params=n_params * BYTES,
        state=3 * n_params * BYTES + _nbytes(model_state) + optimizer_state_bytes(cfg, params),
        activations=acts * BYTES,
        trajectory=n_logs * per_log * BYTES,
    )


def _nbytes(tree: Any) -> int:
    return sum(int(x.size) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def default_budget() -> int:
    """A safe share of the device's memory: 70 % of an accelerator's, 40 % of free host RAM."""
    dev = jax.local_devices()[0]
    stats = dev.memory_stats() if hasattr(dev, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(0.7 * stats["bytes_limit"]) * jax.local_device_count()
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 << 30
    return int(0.4 * free)


def parse_bytes(text: str) -> int:
    """'512M', '8G', '1.5GiB', '1000000' -> bytes (UserError unless a finite size >= 1 byte)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = float(num) * units[unit]
    except ValueError:
        raise UserError(f"--max-memory {text!r} is not a size like 512M or 8G") from None
    if not abs(value) < float("inf"):  # inf, nan, and numbers like 1e400 that overflow to inf
        raise UserError(f"--max-memory {text!r} is not a finite size like 512M or 8G")
    if value < 1:
        raise UserError(f"--max-memory must be a positive size of at least 1 byte, got {text!r}")
    return int(value)


@dataclass(frozen=True)
class Strategy:
    """How a chunk's members run: split over `devices` local devices, then on each device a
    `lax.map` over batches of `batch` members, each batch one vmap (batch 0: one vmap over all
    of the device's members); the training loop runs `unroll` steps per iteration.

    Every strategy computes the same numbers (up to float reassociation)."""

    devices: int = 1
    batch: int = 0
    unroll: int = 1

    def __str__(self) -> str:
        where = f"{self.devices} devices" if self.devices > 1 else "1 device"
        how = f"lax.map over vmapped batches of {self.batch}" if self.batch else "one vmap"
        return f"{where}, {how}" + (f", unroll {self.unroll}" if self.unroll > 1 else "")


OVERSIZE_BATCH = 4  # members per vmapped batch when one member outgrows the cache


def cache_share(n_devices: int) -> int:
    """Bytes of last-level CPU cache per device (the cache of the cores a device stands for).

    Read from Linux sysfs; 2 MiB per core where it cannot be read.
    """
    cores = os.cpu_count() or 1
    per_core = 2 << 20
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        levels = []
        for d in base.glob("index*"):
            if (d / "type").read_text().strip() in ("Data", "Unified"):
                size = _parse_cache_size((d / "size").read_text())
                sharing = _count_cpus((d / "shared_cpu_list").read_text())
                levels.append((int((d / "level").read_text()), size // max(sharing, 1)))
        if levels:
            per_core = max(levels)[1]
    except (OSError, ValueError):
        pass
    return per_core * max(1, cores // max(n_devices, 1))


def _parse_cache_size(text: str) -> int:
    t = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    return int(t.rstrip("KMG")) * mult


def _count_cpus(text: str) -> int:
    n = 0
    for part in text.strip().split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def choose(
    mem: MemoryEstimate, chunk: int, platform: str, n_devices: int, cache: int | None = None
) -> tuple[Strategy, str]:
    """The strategy for a chunk of members and the reason, in one line."""
    if platform != "cpu":
        return Strategy(devices=n_devices), (
            f"{platform}: one vmap over each device's members keeps the device busy"
        )
    per_device = -(-chunk // n_devices)
    cache = cache_share(n_devices) if cache is None else cache
    fit = cache // max(mem.working_set, 1)
    batch = 1 << (max(fit, 1).bit_length() - 1)  # a power of two, at least 1
    where = f"{n_devices} host devices (one per core)" if n_devices > 1 else "1 host device"
    head = (
        f"cpu, {where}: a member touches ~{human(mem.working_set)} a step, the cache share "
        f"of a device is {human(cache)}"
    )
    if batch >= per_device:
        return Strategy(devices=n_devices), (
            f"{head}; all {per_device} members of a device fit, so one vmap"
        )
    if fit < 1:
        # Locality is lost anyway. Measured for 64 members of 40-1024x4-10 on 2 cores: batches
        # of 1, 2, 4, 8, 16 ran at 149, 234, 241, 226, 193 GFLOP/s, one vmap at 212.
        batch = min(OVERSIZE_BATCH, per_device)
        return Strategy(devices=n_devices, batch=batch), (
            f"{head}; not even one member fits, so lax.map over small vmapped batches of "
            f"{batch} (batched dots run faster than single ones, wide vmaps thrash memory)"
        )
    return Strategy(devices=n_devices, batch=batch), (
        f"{head}; batches of {batch} fit, so lax.map runs them one after another through a "
        "whole segment while their weights stay in cache"
    )


@dataclass(frozen=True)
class GroupPlan:
    label: str
    members: int
    chunk: int
    memory: MemoryEstimate
    strategy: Strategy = Strategy()
    why: str = ""

    @property
    def chunks(self) -> int:
        return -(-self.members // self.chunk)


def chunk_for(mem: MemoryEstimate, members: int, budget: int, n_devices: int) -> int:
    """Largest member chunk (a multiple of the device count, where possible) within budget."""
    fit = budget // max(mem.device, 1)
    if fit < 1:
        raise UserError(
            f"one member needs about {human(mem.device)} but the memory budget is "
            f"{human(budget)}; lower model.width, train.batch_size or train.steps/log_every, "
            "or raise --max-memory"
        )
    chunk = min(members, fit)
    if chunk >= n_devices:
        chunk -= chunk % n_devices
    return max(chunk, 1)


def make(
    cfg: Config,
    axes: Sequence[grid.Axis],
    dims: dict[str, tuple[int, int, int, int]],
    budget: int,
    groups: Sequence[grid.Group] | None = None,
) -> list[GroupPlan]:
    """One GroupPlan per static group; dims maps a group label to (in, out, n_train, n_test).

    `groups`: the grid's groups when the caller has them already (else they are enumerated).
    """
    members = grid.n_members(axes)
    n_dev = jax.local_device_count()
    platform = jax.local_devices()[0].platform
    cache = cache_share(n_dev) if platform == "cpu" else 0
    plans = []
    # Sizing a group costs milliseconds (the optimizer's state is counted by tracing its init),
    # so groups that differ only in what `estimate` does not read (activations, the dataset
    # beyond its shapes in `dims`, the seed) share one estimate and one strategy.
    sized: dict = {}
    for g in grid.groups(cfg, axes) if groups is None else groups:
        name = label(g, axes)
        c = g.cfg
        key = (dims[name], c.model.arch, c.model.depth, c.model.width, c.init, c.optim, c.train)
        if key not in sized:
            mem = estimate(c, *dims[name])
            chunk = chunk_for(mem, members, budget, n_dev)
            sized[key] = (mem, chunk, *choose(mem, chunk, platform, n_dev, cache))
        mem, chunk, strategy, why = sized[key]
        plans.append(GroupPlan(name, members, chunk, mem, strategy, why))
    return plans


def label(g: grid.Group, axes: Sequence[grid.Axis]) -> str:
    static = [a for a in axes if not a.dynamic]
    parts = [f"{a.dim}={a.values[i]}" for a, i in zip(static, g.index, strict=True)]
    return ", ".join(parts) or "all"


SHOWN = 40  # describe() lists every group of a plan up to this size; of a larger one, its ends
ENDS = 5


def describe(plans: list[GroupPlan], budget: int) -> str:
    """The plan in a few lines: totals, then one line per group (for more than SHOWN groups:
    the first and last ENDS, and what the others span), then the strategies' reasons."""
    total = sum(p.members for p in plans)
    traj = sum(p.members * p.memory.trajectory for p in plans)
    lines = [
        f"plan: {len(plans)} static group(s) = {len(plans)} compiled program set(s), {total} "
        f"members in {sum(p.chunks for p in plans)} chunk(s) on {jax.local_device_count()} "
        f"{jax.local_devices()[0].device_kind} device(s); memory budget {human(budget)}, "
        f"trajectories {human(traj)} in all"
    ]
    whys: list[str] = []

    def line(p: GroupPlan) -> str:
        if p.why not in whys:
            whys.append(p.why)
        return (
            f"  {p.label}: {p.members} members in {p.chunks} chunk(s) of {p.chunk}, "
            f"~{human(p.memory.device)}/member ({human(p.chunk * p.memory.device)}/chunk); "
            f"{p.strategy} [{whys.index(p.why) + 1}]"
        )

    if len(plans) <= SHOWN:
        lines += [line(p) for p in plans]
    else:
        lines += [line(p) for p in plans[:ENDS]]
        rest = plans[ENDS:-ENDS]
        big = max(rest, key=lambda p: p.memory.device)
        chunks = [p.chunks for p in rest]
        lines.append(
            f"  ... {len(rest)} more groups: {min(chunks)}-{max(chunks)} chunk(s) each, "
            f"~{human(min(p.memory.device for p in rest))}-{human(big.memory.device)}/member "
            f"(the most at {big.label}); strategies: "
            + "; ".join(sorted({str(p.strategy) for p in rest}))
        )
        lines += [line(p) for p in plans[-ENDS:]]
    lines += [f"  [{i + 1}] {w}" for i, w in enumerate(whys)]
    from sigjax.engine import compile_cache

    lines.append(f"  {compile_cache.state()}")
    return "\n".join(lines)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
