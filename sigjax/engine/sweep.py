"""Run a grid: one compiled program per static group over all its members.

Members of a group run in chunks of at most `chunk_size` (the last chunk padded by repeating
member 0, so every chunk reuses the same compiled program); each chunk's member axis is split
over all local devices when there are several, and each device runs its members as the
group's `plan.Strategy` says (one vmap, or `lax.map` over cache-sized vmapped batches).
Training runs as a host loop over compiled *segments* of several log intervals: the progress
bar moves and (given a checkpoint store) the state is saved after each one, so an interrupted
sweep resumes where it stopped and gives the same numbers as one that was never interrupted.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sigjax import config
from sigjax import data as data_lib
from sigjax.config import Config, to_json
from sigjax.engine import calibrate, checkpoint, grid, metrics, results, train
from sigjax.engine import plan as plan_lib
from sigjax.engine.programs import (
    Ahead,
    chunk_args,
    chunking,
    compiled,
    member_sharding,
    record_fields,
    segment_plan,
)
from sigjax.errors import UserError
from sigjax.nn import activations, models


def check(cfg: Config, axes: Sequence[grid.Axis]) -> list[grid.Group]:
    """Every group's config and every dynamic value validated, before anything runs."""
    groups = list(grid.groups(cfg, axes))
    # a group's dynamic values are the base config's (checked once here) or an axis' (below,
    # static axes too: a zipped one may carry a dynamic key)
    train.check_hparams({k.split(".")[-1]: config.get(cfg, k) for k in config.DYNAMIC_KEYS})
    for g in groups:
        train.check_config(g.cfg, hparams=False)
    for a in axes:
        for key, values in ((a.key, a.values), *a.zipped):
            if key in config.DYNAMIC_KEYS:
                train.check_hparams({key.split(".")[-1]: np.asarray(values, dtype=float)})
    return groups


def fingerprint(cfg: Config, axes: Sequence[grid.Axis], data_token: str = "") -> str:
    """Content key of a run's checkpoint: config, grid, and the code of every activation,
    model family and metric used (and the user data's content hash, `data.token`)."""
    keys = ("model.activation", "model.head_activation")
    used = {cfg.model.activation, cfg.model.head_activation}
    archs, listed = {cfg.model.arch}, {cfg.train.metrics}
    for a in axes:
        used.update(v for k, vs in ((a.key, a.values), *a.zipped) if k in keys for v in vs)
        for k, vs in ((a.key, a.values), *a.zipped):
            archs.update(vs if k == "model.arch" else ())
            listed.update(vs if k == "train.metrics" else ())
    acts = activations.fingerprint(used)
    names = {*metrics.BUNDLED, *(n.strip() for v in listed for n in str(v).split(",") if n.strip())}
    code = f"\nmodels {models.fingerprint(archs)}\nmetrics {metrics.fingerprint(names)}"
    code += f"\ndata {data_token}" if data_token else ""
    return checkpoint.fingerprint(to_json(cfg), repr(tuple(axes)) + "\nactivations " + acts + code)


def run(
    cfg: Config,
    axes: Sequence[grid.Axis] = (),
    *,
    chunk_size: int | None = None,
    max_memory: int | None = None,
    progress: bool = False,
    store: checkpoint.Store | None = None,
    segments: int = 10,
    strategy: plan_lib.Strategy | None = None,
    data: data_lib.Data | None = None,
) -> xr.Dataset:
    """Train every member of the grid; one Dataset with a dim per axis (see sigjax.engine.results).

    Each group's members run in chunks that fit `max_memory` bytes (default: a safe share of
    the device's memory) unless `chunk_size` is given, each chunk as the planner chooses
    unless a `strategy` is given (its `devices` must be the local device count). With a
    checkpoint `store`, finished groups, finished chunks and the state of the chunk in progress
    are saved (after every segment) and picked up again on the next call. A user's `data`
    (`data.from_arrays`) replaces cfg.data in every group (and in the results' config).
    """
    axes = tuple(axes)
    cfg, datasets = with_data(cfg, axes, data)
    groups = check(cfg, axes)
    budget = max_memory or plan_lib.default_budget()
    plans = make_plan(cfg, axes, budget, datasets, measured=False)
    if strategy is None and chunk_size is None:
        plans = calibrate.calibrated(plans, groups, datasets)  # times what is not measured yet
    if progress:
        tqdm.write(plan_lib.describe(plans, budget))
    records, walls = [], []
    total = len(groups) * grid.n_members(axes) * cfg.train.steps
    bar = tqdm(
        total=total, unit="step", unit_scale=True, disable=not progress, desc="members x steps"
    )
    # Compiling the next group ahead is opt-in: on a 2-core machine it competed with the
    # running group (a cold default study took longer, not less), and a program compiled
    # ahead of time must give the very bits of one compiled by its call, which is not yet
    # shown across processes (one run of the test suite saw a 1-ulp difference).
    ahead = Ahead(len(groups) > 1 and os.environ.get("SIGJAX_COMPILE_AHEAD") == "1")
    try:
        for gi, (g, p) in enumerate(zip(groups, plans, strict=True)):
            t0 = time.perf_counter()
            done = store.load_group(gi, rows=grid.n_members(axes)) if store else None
            if done is None:
                ahead.wait(gi)  # its programs were compiled while the last group ran
                data = data_lib.load_cached(g.cfg.data, datasets)
                prog = train.program(g.cfg, data)
                nxt = gi + 1
                if nxt < len(groups) and not (store and store.has_group(nxt)):
                    ng = groups[nxt]
                    ndata = data_lib.load_cached(ng.cfg.data, datasets)
                    ahead.submit(
                        nxt,
                        train.program(ng.cfg, ndata),
                        ndata,
                        ng.members,
                        chunk_size=chunk_size or plans[nxt].chunk,
                        strategy=strategy or plans[nxt].strategy,
                        segments=segments,
                    )
                done = run_group(
                    prog,
                    data,
                    g.members,
                    chunk_size=chunk_size or p.chunk,
                    strategy=strategy or p.strategy,
                    bar=bar,
                    store=store,
                    group=gi,
                    segments=segments,
                )
                if store:
                    store.save_group(gi, done)
            else:
                bar.update(grid.n_members(axes) * cfg.train.steps)
            records.append(done)
            walls.append(time.perf_counter() - t0)
    finally:
        ahead.close()
    bar.close()
    return results.to_dataset(
        cfg,
        axes,
        [g.index for g in groups],
        records,
        extra_attrs={
            "wall_time_s": sum(walls),
            "group_wall_times_s": repr(walls),
            "memory_budget_bytes": budget,
            "strategies": repr([str(strategy or p.strategy) for p in plans]),
        },
    )


def with_data(cfg: Config, axes: Sequence[grid.Axis], data) -> tuple[Config, dict]:
    """(cfg with `data` standing in for cfg.data, a data cache holding it); (cfg, {}) for
    None. UserError for what is not a Data, or a grid axis over a data key it would ignore."""
    if data is None:
        return cfg, {}
    if not isinstance(data, data_lib.Data):
        raise UserError(
            f"data must be a sigjax.data.Data (sigjax.data.from_arrays(...)), got "
            f"{type(data).__name__}"
        )
    for a in axes:
        for key in (a.key, *(k for k, _ in a.zipped)):
            if key.startswith("data."):
                raise UserError(
                    f"a grid axis over {key} changes nothing when data= is given (it replaces "
                    "the config's data); drop the axis"
                )
    described = data_lib.config_of(data)
    return dataclasses.replace(cfg, data=described), {described: data}


def make_plan(
    cfg: Config,
    axes: Sequence[grid.Axis],
    budget: int,
    datasets: dict | None = None,
    *,
    data: data_lib.Data | None = None,
    measured: bool = True,
) -> list[plan_lib.GroupPlan]:
    """The execution plan of a grid (loads each group's data to learn its shapes; a user's
    `data` replaces cfg.data as in `run`), with the lax.map batches measured on this machine
    where a run stored them (`measured`; nothing is timed here)."""
    if data is not None:
        cfg, datasets = with_data(cfg, axes, data)
    datasets = {} if datasets is None else datasets
    groups = list(grid.groups(cfg, axes))
    dims = {}
    for g in groups:
        d = data_lib.load_cached(g.cfg.data, datasets)
        n_test = d.x_test.shape[0] if d.has_test else 0
        out_dim = g.cfg.model.out_dim or d.out_dim
        dims[plan_lib.label(g, axes)] = (d.in_dim, out_dim, d.x_train.shape[0], n_test)
    plans = plan_lib.make(cfg, axes, dims, budget, groups)
    return calibrate.calibrated(plans, groups, datasets, time_missing=False) if measured else plans


def run_group(
    prog: train.Program,
    data: data_lib.Data,
    members: dict[str, np.ndarray],
    *,
    chunk_size: int | None = None,
    strategy: plan_lib.Strategy | None = None,
    bar=None,
    store: checkpoint.Store | None = None,
    group: int = 0,
    segments: int = 10,
) -> dict[str, np.ndarray]:
    """Train a group's members; each Record field as a (M, T[, L]) NumPy array.

    With several JAX processes (`jax.distributed`), each trains a contiguous share of the
    members on its own devices and the shares are gathered, so every process returns all.
    """
    hp, seeds, size, strategy = chunking(prog, members, chunk_size, strategy)
    m, n_proc = len(seeds), jax.process_count()
    fns = compiled(prog, strategy)
    sharding = member_sharding() if jax.local_device_count() > 1 else None
    plan = segment_plan(prog.n_logs - 1, segments)
    outs = []
    for c, start in enumerate(range(0, m, size)):
        n_real = min(size, m - start)
        chunk = store.load_chunk(group, c, rows=size) if store else None
        if chunk is None:
            args = chunk_args(hp, seeds, start, size, sharding)
            chunk = _run_chunk(prog, fns, data, args, plan, store, group, c, n_real, bar)
            if store:
                store.save_chunk(group, c, chunk)
        elif bar is not None:
            bar.update(n_real * prog.cfg.train.steps)
        outs.append({k: v[:n_real] for k, v in chunk.items()})
    out = {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    if n_proc > 1:
        from jax.experimental import multihost_utils

        gathered = multihost_utils.process_allgather(out)  # each (n_proc, share, …)
        n = len(members[next(iter(members))]) if members else 1
        out = {k: np.asarray(v).reshape(-1, *v.shape[2:])[:n] for k, v in gathered.items()}
    return out


def _run_chunk(prog, fns, data, args, plan, store, group, c, n_real, bar) -> dict:
    state = fns.init(data, *args)
    pieces: dict[str, list[np.ndarray]] = {}
    done = 0
    if store:
        saved = store.load_state(group, c, state)
        if saved is not None:
            shardings = jax.tree.map(lambda a: a.sharding, state)
            state, recs = saved
            state = jax.device_put(state, shardings)
            pieces = {k: [v] for k, v in recs.items()}
            done = next(iter(recs.values())).shape[1]
            if bar is not None:
                bar.update(n_real * done * prog.cfg.train.log_every)
    log_every = prog.cfg.train.log_every
    for n in _remaining(plan, done):
        state, rec = fns.advance(data, *args, state, n)
        for k, v in record_fields(rec).items():
            pieces.setdefault(k, []).append(np.asarray(v))
        done += n
        if store:
            store.save_state(group, c, state, {k: np.concatenate(v, 1) for k, v in pieces.items()})
        if bar is not None:
            bar.update(n_real * n * log_every)
    last = record_fields(fns.finish(data, *args, state))
    out = {
        k: np.concatenate([*pieces.get(k, []), np.asarray(v)[:, None]], 1) for k, v in last.items()
    }
    out["diverged_at"] = np.asarray(state.diverged_at)
    out["n_layers"] = np.full(len(out["diverged_at"]), prog.n_layers, np.int32)
    return out


def _remaining(plan: list[int], done: int) -> list[int]:
    """The segments still to run after `done` log intervals (done falls on a boundary)."""
    out, acc = [], 0
    for n in plan:
        if acc >= done:
            out.append(n)
        acc += n
    return out
