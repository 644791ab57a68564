"""Run a grid: one compiled `jit(vmap(train))` per static group over all its members.

Members of a group are run in chunks of at most `chunk_size` (the last chunk padded by repeating
member 0, so every chunk reuses the same compiled program), and each chunk's member axis is
sharded over all local devices when there are several.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from sigjax import data as data_lib
from sigjax import grid, results, train
from sigjax.config import Config


def check(cfg: Config, axes: Sequence[grid.Axis]) -> list[grid.Group]:
    """Every group's config and every dynamic value validated, before anything runs."""
    groups = list(grid.groups(cfg, axes))
    for g in groups:
        train.check_config(g.cfg)
    for a in axes:
        if a.dynamic:
            train.check_hparams({a.dim: np.asarray(a.values, dtype=float)})
    return groups


def run(
    cfg: Config,
    axes: Sequence[grid.Axis] = (),
    *,
    chunk_size: int | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Train every member of the grid; one Dataset with a dim per axis (see sigjax.results)."""
    axes = tuple(axes)
    groups = check(cfg, axes)
    records, walls = [], []
    bar = tqdm(total=len(groups) * grid.n_members(axes), unit="model", disable=not progress)
    for g in groups:
        t0 = time.perf_counter()
        data = data_lib.load(g.cfg.data)
        prog = train.program(g.cfg, data)
        records.append(run_group(prog, data, g.members, chunk_size=chunk_size, bar=bar))
        walls.append(time.perf_counter() - t0)
    bar.close()
    return results.to_dataset(
        cfg,
        axes,
        [g.index for g in groups],
        records,
        extra_attrs={"wall_time_s": sum(walls), "group_wall_times_s": repr(walls)},
    )


def member_inputs(prog: train.Program, members: dict[str, np.ndarray]):
    """(hparams dict of (M,) float32, seeds (M,) int) for a group's members."""
    m = len(next(iter(members.values()))) if members else 1
    hp = {k: np.full(m, v, np.float32) for k, v in train.hparams_of(prog.cfg).items()}
    seeds = np.full(m, prog.cfg.seed, np.int64)
    for key, values in members.items():
        name = key.split(".")[-1]
        if name == "seed":
            seeds = values.astype(np.int64)
        else:
            hp[name] = values.astype(np.float32)
    return hp, seeds


def vmapped(prog: train.Program):
    """jit(vmap(train)) over (hparams, seeds) with the data shared (not batched)."""

    def train_seeded(data, hp, seed):
        return prog.train(data, hp, jax.random.key(seed))

    return jax.jit(jax.vmap(train_seeded, in_axes=(None, 0, 0)))


def run_group(
    prog: train.Program,
    data: data_lib.Data,
    members: dict[str, np.ndarray],
    *,
    chunk_size: int | None = None,
    bar=None,
) -> dict[str, np.ndarray]:
    """Train a group's members; each Record field as a (M, T[, L]) NumPy array."""
    hp, seeds = member_inputs(prog, members)
    m = len(seeds)
    n_dev = jax.local_device_count()
    size = m if chunk_size is None else max(1, min(chunk_size, m))
    size = -(-size // n_dev) * n_dev  # a multiple of the device count
    fn = vmapped(prog)
    sharding = _member_sharding() if n_dev > 1 else None
    outs = []
    for start in range(0, m, size):
        idx = np.arange(start, start + size)
        idx = np.where(idx < m, idx, 0)  # pad with member 0: same shapes, same program
        args = ({k: v[idx] for k, v in hp.items()}, seeds[idx].astype(np.int32))
        if sharding is not None:
            args = jax.device_put(args, sharding)
        else:
            args = jax.tree.map(jnp.asarray, args)
        _, traj = fn(data, *args)
        n_real = min(size, m - start)
        outs.append(jax.tree.map(lambda a, n=n_real: np.asarray(a)[:n], traj))
        if bar is not None:
            bar.update(n_real)
    traj = jax.tree.map(lambda *a: np.concatenate(a), *outs)
    rec = {f.name: getattr(traj.records, f.name) for f in dataclasses.fields(traj.records)}
    rec = {k: v for k, v in rec.items() if v is not None}
    rec["diverged_at"] = traj.diverged_at
    return rec


def _member_sharding() -> NamedSharding:
    mesh = Mesh(np.array(jax.local_devices()), ("members",))
    return NamedSharding(mesh, PartitionSpec("members"))
