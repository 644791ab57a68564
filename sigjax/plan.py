"""How a sweep will run: static groups, members, chunks, memory — decided before it starts.

The memory model counts, per member, the parameters, gradients, updates and optimizer slots,
the activations of one batch (pre-activations, activations and their gradients), the test-set
forward pass, and the recorded trajectory; XLA's temporaries are covered by a factor of two.
The member axis of each group is cut into chunks that fit the budget.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import jax

from sigjax import grid, results
from sigjax.config import Config
from sigjax.errors import UserError

OPT_SLOTS = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2, "rmsprop": 1, "adagrad": 1}
BYTES = 4  # float32
TEMPORARIES = 2.0  # XLA scratch beyond the live arrays counted here


@dataclass(frozen=True)
class MemoryEstimate:
    params: int  # bytes of one member's parameters
    state: int  # parameters, gradients, updates, optimizer slots
    activations: int  # one batch, forward and backward, plus the test forward pass
    trajectory: int  # the recorded Record arrays of a whole run

    @property
    def device(self) -> int:
        """Peak device bytes of one member while it trains (trajectory included)."""
        return int(TEMPORARIES * (self.state + self.activations)) + self.trajectory


def estimate(cfg: Config, in_dim: int, out_dim: int, n_train: int, n_test: int) -> MemoryEstimate:
    widths = [in_dim, *([cfg.model.width] * cfg.model.depth), out_dim]
    n_params = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    n_layers = len(widths) - 1
    batch = cfg.train.batch_size if 0 < cfg.train.batch_size < n_train else n_train
    units = sum(widths[1:])
    acts = 4 * batch * units + batch * in_dim + (2 * n_test * max(widths) if n_test else 0)
    n_logs = cfg.train.steps // cfg.train.log_every + 1
    per_log = 3 + len(results.PER_LAYER) * n_layers  # loss, test loss/accuracy + per layer
    return MemoryEstimate(
        params=n_params * BYTES,
        state=(3 + OPT_SLOTS[cfg.optim.name]) * n_params * BYTES,
        activations=acts * BYTES,
        trajectory=n_logs * per_log * BYTES,
    )


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
    """'512M', '8G', '1.5GiB', '1000000' -> bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = float(num) * units[unit]
    except ValueError:
        raise UserError(f"--max-memory {text!r} is not a size like 512M or 8G") from None
    if value <= 0:
        raise UserError(f"--max-memory must be positive, got {text!r}")
    return int(value)


@dataclass(frozen=True)
class GroupPlan:
    label: str
    members: int
    chunk: int
    memory: MemoryEstimate

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
    cfg: Config, axes: Sequence[grid.Axis], dims: dict[str, tuple[int, int, int, int]], budget: int
) -> list[GroupPlan]:
    """One GroupPlan per static group; dims maps a group label to (in, out, n_train, n_test)."""
    members = grid.n_members(axes)
    plans = []
    for g in grid.groups(cfg, axes):
        name = label(g, axes)
        mem = estimate(g.cfg, *dims[name])
        chunk = chunk_for(mem, members, budget, jax.local_device_count())
        plans.append(GroupPlan(name, members, chunk, mem))
    return plans


def label(g: grid.Group, axes: Sequence[grid.Axis]) -> str:
    static = [a for a in axes if not a.dynamic]
    parts = [f"{a.dim}={a.values[i]}" for a, i in zip(static, g.index, strict=True)]
    return ", ".join(parts) or "all"


def describe(plans: list[GroupPlan], budget: int) -> str:
    total = sum(p.members for p in plans)
    traj = sum(p.members * p.memory.trajectory for p in plans)
    lines = [
        f"plan: {len(plans)} static group(s) = {len(plans)} compiled program set(s), {total} "
        f"members on {jax.local_device_count()} {jax.local_devices()[0].device_kind} device(s); "
        f"memory budget {human(budget)}, trajectories {human(traj)} in all"
    ]
    for p in plans:
        lines.append(
            f"  {p.label}: {p.members} members in {p.chunks} chunk(s) of {p.chunk}, "
            f"~{human(p.memory.device)}/member ({human(p.chunk * p.memory.device)}/chunk)"
        )
    return "\n".join(lines)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
