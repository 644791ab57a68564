"""The `lax.map` batch measured on this machine, the cache model only as the prior.

The planner's cache model (`plan.choose`) reads the last-level cache from sysfs, which some
machines misreport (a VM showing a whole socket's L3 as one core's gets batches far too large).
So where the model picks `lax.map` batches, a short calibration times a few candidate batch
sizes around its choice on a handful of steps and keeps the fastest. Results are stored per
workload shape and machine (`workload_key`, `machine_key`) in the compilation cache directory
(`sigjax.engine.compile_cache`), beside the programs they compiled; with that cache off
nothing is stored and nothing is timed: the prior stands.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax

from sigjax import data as data_lib
from sigjax.engine import grid, train
from sigjax.engine import plan as plan_lib
from sigjax.engine.programs import chunk_args, chunking, compiled, member_sharding

FILE = "sigjax-calibration.json"
ENV = "SIGJAX_CALIBRATE"  # 0: keep the cache model's batch, time nothing


def candidates(prior: int, per_device: int) -> list[int]:
    """Powers of two from prior/16 to 4 x prior (at least 1, at most a device's members):
    wide enough to undo a cache size misread by a factor of 16 either way."""
    top = max(1, per_device)
    out = {min(top, max(1, b)) for b in (prior // 16, prior // 4, prior, 4 * prior)}
    return sorted(out)


def fastest(cands: Sequence[int], timer: Callable[[int], float]) -> tuple[int, dict[int, float]]:
    """(the candidate with the least `timer(candidate)` seconds, every candidate's time); a
    tie goes to the smaller batch (less memory, same speed)."""
    times = {b: float(timer(b)) for b in cands}
    best = min(times, key=lambda b: (times[b], b))
    return best, times


def machine_key(n_devices: int, device_kind: str) -> str:
    """What makes timings of one machine not another's: CPU model, core count, devices,
    JAX version."""
    import jax

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}|{os.cpu_count()} cpus|{n_devices}x {device_kind}|jax {jax.__version__}"


def workload_key(shape: tuple, members_per_device: int) -> str:
    """The workload's static shape (what the timing depends on) and a device's members."""
    return f"{shape!r}|{members_per_device} per device"


def store_path() -> Path | None:
    """Where calibrations are kept (None: the compilation cache, and calibration, is off)."""
    from sigjax.engine import compile_cache

    if os.environ.get(ENV, "").strip().lower() in compile_cache.OFF:
        return None
    where = compile_cache.state().directory
    return None if where is None else where / FILE


def key_of(machine: str, workload: str) -> str:
    return hashlib.sha256(f"{machine}\n{workload}".encode()).hexdigest()[:24]


def load(path: Path, key: str) -> dict | None:
    """The stored calibration under key: {"batch": b, "times": {b: s}, ...} or None."""
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or "batch" not in entry:
        return None
    entry["times"] = {int(b): float(t) for b, t in entry.get("times", {}).items()}
    return entry


def save(path: Path, key: str, entry: dict) -> None:
    """Add one calibration to the store (atomically; a concurrent writer's entry may be lost,
    which costs a recalibration, never a wrong answer)."""
    from sigjax.engine import checkpoint

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = {**entry, "times": {str(b): t for b, t in entry["times"].items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.atomic_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # an unwritable cache only means timing again next time


def summary(entry: dict, prior: int) -> str:
    """One line for the plan: what was measured and what was chosen."""
    times = entry["times"]
    fast = min(times.values())
    shown = ", ".join(f"{b}: {times[b] / fast:.2f}x" for b in sorted(times))
    return (
        f"measured on this machine ({entry.get('steps', '?')} steps each, time relative to the "
        f"fastest): batch {shown}; chose {entry['batch']} (cache model: {prior})"
    )


CALIBRATION_STEPS = 8  # at least this many steps per timed run (whole log intervals)


def calibrated(
    plans: list[plan_lib.GroupPlan],
    groups: Sequence[grid.Group],
    datasets: dict,
    *,
    time_missing: bool = True,
) -> list[plan_lib.GroupPlan]:
    """The plans with each `lax.map` batch measured on this machine (`sigjax.engine.calibrate`):
    groups of one workload shape share one calibration, stored per shape and machine; a shape
    not stored yet is timed now (`time_missing`) or keeps the cache model's batch."""
    path = store_path()
    if path is None or jax.local_devices()[0].platform != "cpu":
        return plans
    n_dev = jax.local_device_count()
    machine = machine_key(n_dev, jax.local_devices()[0].device_kind)
    out, done = [], {}
    for g, p in zip(groups, plans, strict=True):
        if not p.strategy.batch:
            out.append(p)
            continue
        data = data_lib.load_cached(g.cfg.data, datasets)
        c = g.cfg
        shape = (
            data.in_dim,
            c.model.out_dim or data.out_dim,
            data.x_train.shape[0],
            data.x_test.shape[0] if data.has_test else 0,
            c.model.arch,
            c.model.depth,
            c.model.width,
            c.optim.name,
            dataclasses.replace(c.train, steps=0, loss_threshold=0.0),  # timing, not length
        )
        per_device = -(-p.chunk // n_dev)
        key = key_of(machine, workload_key(shape, per_device))
        if key not in done:
            entry = load(path, key)
            if entry is None and not time_missing:
                done[key] = None
            elif entry is None:
                prog = train.program(c, data)
                n = min(prog.n_logs - 1, -(-CALIBRATION_STEPS // c.train.log_every))
                best, times = fastest(
                    candidates(p.strategy.batch, per_device),
                    lambda b: _time_batch(prog, data, g.members, p, b, n),  # noqa: B023
                )
                entry = {"batch": best, "times": times, "steps": n * c.train.log_every}
                save(path, key, entry)
            done[key] = entry
        entry = done[key]
        if entry is None:
            out.append(p)
            continue
        strategy = dataclasses.replace(p.strategy, batch=entry["batch"])
        if entry["batch"] >= per_device:
            strategy = dataclasses.replace(strategy, batch=0)  # one vmap over all of them
        why = f"{p.why}; {summary(entry, p.strategy.batch)}"
        out.append(dataclasses.replace(p, strategy=strategy, why=why))
    return out


def _time_batch(prog, data, members, p: plan_lib.GroupPlan, batch: int, n: int) -> float:
    """Seconds of n log intervals of a chunk under the plan's strategy with lax.map batch
    `batch` (compiled and run once first; the faster of two timed runs)."""
    strategy = dataclasses.replace(p.strategy, batch=batch)
    hp, seeds, size, _ = chunking(prog, members, p.chunk, strategy)
    sharding = member_sharding() if jax.local_device_count() > 1 else None
    args = chunk_args(hp, seeds, 0, size, sharding)
    state = compiled(prog, p.strategy).init(data, *args)  # one init for every candidate
    advance = compiled(prog, strategy).advance
    state, rec = advance(data, *args, state, n)
    jax.block_until_ready(rec)
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        state, rec = advance(data, *args, state, n)
        jax.block_until_ready(rec)
        best = min(best, time.perf_counter() - t0)
    return best
