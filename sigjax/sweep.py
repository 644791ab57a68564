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

import contextlib
import dataclasses
import functools
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from sigjax import activations, calibrate, checkpoint, config, grid, metrics, models, results, train
from sigjax import data as data_lib
from sigjax import plan as plan_lib
from sigjax.config import Config, to_json
from sigjax.errors import UserError


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
    """Train every member of the grid; one Dataset with a dim per axis (see sigjax.results).

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
        plans = calibrated(plans, groups, datasets)  # times what is not measured yet
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
                data = _load(g.cfg.data, datasets)
                prog = train.program(g.cfg, data)
                nxt = gi + 1
                if nxt < len(groups) and not (store and f"group-{nxt}" in store.entries):
                    ng = groups[nxt]
                    ndata = _load(ng.cfg.data, datasets)
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


def _load(data_cfg, cache: dict) -> data_lib.Data:
    if data_cfg not in cache:
        cache[data_cfg] = data_lib.load(data_cfg)
    return cache[data_cfg]


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
        d = _load(g.cfg.data, datasets)
        n_test = d.x_test.shape[0] if d.has_test else 0
        out_dim = g.cfg.model.out_dim or d.out_dim
        dims[plan_lib.label(g, axes)] = (d.in_dim, out_dim, d.x_train.shape[0], n_test)
    plans = plan_lib.make(cfg, axes, dims, budget, groups)
    return calibrated(plans, groups, datasets, time_missing=False) if measured else plans


CALIBRATION_STEPS = 8  # at least this many steps per timed run (whole log intervals)


def calibrated(
    plans: list[plan_lib.GroupPlan],
    groups: Sequence[grid.Group],
    datasets: dict,
    *,
    time_missing: bool = True,
) -> list[plan_lib.GroupPlan]:
    """The plans with each `lax.map` batch measured on this machine (`sigjax.calibrate`):
    groups of one workload shape share one calibration, stored per shape and machine; a shape
    not stored yet is timed now (`time_missing`) or keeps the cache model's batch."""
    path = calibrate.store_path()
    if path is None or jax.local_devices()[0].platform != "cpu":
        return plans
    n_dev = jax.local_device_count()
    machine = calibrate.machine_key(n_dev, jax.local_devices()[0].device_kind)
    out, done = [], {}
    for g, p in zip(groups, plans, strict=True):
        if not p.strategy.batch:
            out.append(p)
            continue
        data = _load(g.cfg.data, datasets)
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
        key = calibrate.key_of(machine, calibrate.workload_key(shape, per_device))
        if key not in done:
            entry = calibrate.load(path, key)
            if entry is None and not time_missing:
                done[key] = None
            elif entry is None:
                prog = train.program(c, data)
                n = min(prog.n_logs - 1, -(-CALIBRATION_STEPS // c.train.log_every))
                best, times = calibrate.fastest(
                    calibrate.candidates(p.strategy.batch, per_device),
                    lambda b: _time_batch(prog, data, g.members, p, b, n),  # noqa: B023
                )
                entry = {"batch": best, "times": times, "steps": n * c.train.log_every}
                calibrate.save(path, key, entry)
            done[key] = entry
        entry = done[key]
        if entry is None:
            out.append(p)
            continue
        strategy = dataclasses.replace(p.strategy, batch=entry["batch"])
        if entry["batch"] >= per_device:
            strategy = dataclasses.replace(strategy, batch=0)  # one vmap over all of them
        why = f"{p.why}; {calibrate.summary(entry, p.strategy.batch)}"
        out.append(dataclasses.replace(p, strategy=strategy, why=why))
    return out


def _time_batch(prog, data, members, p: plan_lib.GroupPlan, batch: int, n: int) -> float:
    """Seconds of n log intervals of a chunk under the plan's strategy with lax.map batch
    `batch` (compiled and run once first; the faster of two timed runs)."""
    strategy = dataclasses.replace(p.strategy, batch=batch)
    hp, seeds, size, _ = _chunking(prog, members, p.chunk, strategy)
    sharding = member_sharding() if jax.local_device_count() > 1 else None
    args = _chunk_args(hp, seeds, 0, size, sharding)
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


PLAIN = plan_lib.Strategy()  # one device, one vmap
# init and finish run once per chunk: LLVM's optimisation is not worth its compile time there
# (threefry-heavy init compiled in 0.5 s instead of 2.1 s for 256 members of a 40-128x4-10
# MLP; its values then differ from an optimised build's in the last bit of ~5% of weights).
RUN_ONCE = {"xla_backend_optimization_level": 0}


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A group's jitted pieces over a chunk of members; each takes (data, hparams, seeds, …)."""

    init: Callable
    advance: Callable  # (data, hp, seeds, state, n_segments) — n_segments static
    finish: Callable


@functools.lru_cache(maxsize=64)
def compiled(prog: train.Program, strategy: plan_lib.Strategy = PLAIN) -> Compiled:
    """Cached per Program (static config and shapes, and the content tokens of its activations,
    model family and metrics) and strategy: a repeated group reuses its executables. Only
    `advance`, where the time goes, follows the strategy; `init` and `finish` are one vmap
    (split over devices by the sharding of their inputs)."""
    key = jax.random.key

    def init(data, hp, seed):
        return prog.init(hp, key(seed))

    def finish(data, hp, seed, state):
        return prog.finish(data, hp, key(seed), state)

    def members(data, hp, seeds, state, n):
        def one(args):
            h, seed, st = args
            return prog.advance(data, h, key(seed), st, n, strategy.unroll)

        if strategy.batch:
            return jax.lax.map(one, (hp, seeds, state), batch_size=strategy.batch)
        return jax.vmap(one)((hp, seeds, state))

    advance, last = members, jax.vmap(finish, in_axes=(None, 0, 0, 0))
    if strategy.devices > 1:
        mesh = Mesh(np.array(jax.local_devices()[: strategy.devices]), ("members",))
        split, whole = PartitionSpec("members"), PartitionSpec()

        def advance(data, hp, seeds, state, n):
            return jax.shard_map(
                partial(members, n=n),
                mesh=mesh,
                in_specs=(whole, split, split, split),
                out_specs=split,
            )(data, hp, seeds, state)

        # The final measurement runs the metrics, like `advance`: split explicitly too. Left to
        # the partitioner, a LAPACK call (an NTK metric's eigendecomposition) cannot be split
        # by members and is gathered across the host devices, and that gather hangs.
        last = jax.shard_map(
            jax.vmap(finish, in_axes=(None, 0, 0, 0)),
            mesh=mesh,
            in_specs=(whole, split, split, split),
            out_specs=split,
        )

    batched = partial(jax.vmap, in_axes=(None, 0, 0))
    return Compiled(
        init=jax.jit(batched(init), compiler_options=RUN_ONCE),
        advance=jax.jit(advance, static_argnums=4, donate_argnums=3),  # the state is replaced
        finish=jax.jit(last, compiler_options=RUN_ONCE),
    )


def segment_plan(n_intervals: int, segments: int) -> list[int]:
    """Split n_intervals log intervals into at most `segments` equal parts (plus a remainder)."""
    size = max(1, -(-n_intervals // max(1, segments)))
    plan = [size] * (n_intervals // size)
    if n_intervals % size:
        plan.append(n_intervals % size)
    return plan


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
    hp, seeds, size, strategy = _chunking(prog, members, chunk_size, strategy)
    m, n_proc = len(seeds), jax.process_count()
    fns = compiled(prog, strategy)
    sharding = member_sharding() if jax.local_device_count() > 1 else None
    plan = segment_plan(prog.n_logs - 1, segments)
    outs = []
    for c, start in enumerate(range(0, m, size)):
        n_real = min(size, m - start)
        chunk = store.load_chunk(group, c, rows=size) if store else None
        if chunk is None:
            args = _chunk_args(hp, seeds, start, size, sharding)
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


def _chunking(prog, members, chunk_size, strategy):
    """(hp, seeds) of this process' members, the chunk size and the strategy of run_group."""
    hp, seeds = member_inputs(prog, members)
    n_proc = jax.process_count()
    if n_proc > 1:
        share = -(-len(seeds) // n_proc)
        idx = np.arange(share * jax.process_index(), share * (jax.process_index() + 1))
        idx = np.minimum(idx, len(seeds) - 1)  # the last share is padded with its last member
        hp, seeds = {k: v[idx] for k, v in hp.items()}, seeds[idx]
    m = len(seeds)
    n_dev = jax.local_device_count()
    size = m if chunk_size is None else max(1, min(chunk_size, m))
    size = -(-size // n_dev) * n_dev  # a multiple of the device count
    strategy = strategy or plan_lib.Strategy(devices=n_dev)
    if strategy.devices not in (1, n_dev):
        raise ValueError(f"a strategy over {strategy.devices} devices, but {n_dev} are local")
    return hp, seeds, size, strategy


def _chunk_args(hp, seeds, start: int, size: int, sharding):
    """The (hparams, seeds) device arrays of the chunk of `size` members from `start`."""
    idx = np.arange(start, start + size)
    idx = np.where(idx < len(seeds), idx, 0)  # pad with member 0: same shapes, same program
    args = ({k: v[idx] for k, v in hp.items()}, seeds[idx].astype(np.uint32))
    return jax.device_put(args, sharding) if sharding else jax.tree.map(jnp.asarray, args)


def precompile(
    prog: train.Program,
    data: data_lib.Data,
    members: dict[str, np.ndarray],
    *,
    chunk_size: int | None = None,
    strategy: plan_lib.Strategy | None = None,
    segments: int = 10,
) -> None:
    """Compile every program `run_group` will call with these arguments, without running any:
    ahead-of-time `lower(...).compile()` on the same jitted functions and argument shapes
    and shardings fills the cache their calls look up, so run_group compiles nothing."""
    hp, seeds, size, strategy = _chunking(prog, members, chunk_size, strategy)
    fns = compiled(prog, strategy)
    sharding = member_sharding() if jax.local_device_count() > 1 else None
    args = _chunk_args(hp, seeds, 0, size, sharding)
    init = fns.init.lower(data, *args).compile()
    state = jax.eval_shape(fns.init, data, *args)
    if sharding is not None:  # init's outputs are committed to its sharding (on one device: not)
        state = _specs(state, init.output_shardings)
    # the calls run_group makes, in its order: a segment program's output state may carry
    # another (equivalent) sharding than init's, and the next call is keyed on it
    seen = set()
    for n in segment_plan(prog.n_logs - 1, segments):
        key = (n, repr(jax.tree.map(lambda s: getattr(s, "sharding", None), state)))
        if key in seen:
            continue
        seen.add(key)
        exe = fns.advance.lower(data, *args, state, n).compile()
        if sharding is not None:
            state = _specs(state, exe.output_shardings[0])
    fns.finish.lower(data, *args, state).compile()


def _specs(tree, shardings):
    """ShapeDtypeStructs of tree's arrays with these shardings (weak types kept)."""
    return jax.tree.map(
        lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh, weak_type=s.weak_type),
        tree,
        shardings,
    )


class Ahead:
    """Compiles the next group's programs in a background thread while this one runs.

    XLA compiles with the GIL released, so a compile overlaps the running group's steps (and,
    on a first group, its own compile). A failure here is dropped: the group's own run meets
    it again and reports it where it belongs."""

    def __init__(self, enabled: bool = True):
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="sigjax-compile")
            if enabled
            else None
        )
        self._pending: dict[int, Future] = {}

    def submit(self, key: int, *args, **kwargs) -> None:
        if self._pool is not None and key not in self._pending:
            self._pending[key] = self._pool.submit(precompile, *args, **kwargs)

    def wait(self, key: int) -> None:
        """Block until the compile for `key` (if any) has finished."""
        fut = self._pending.pop(key, None)
        if fut is not None:
            with contextlib.suppress(Exception):
                fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


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


def record_fields(rec: train.Record) -> dict[str, jax.Array]:
    """A Record's recorded metrics, by name."""
    return dict(rec.values)


def member_sharding() -> NamedSharding:
    """The member axis split over all local devices."""
    mesh = Mesh(np.array(jax.local_devices()), ("members",))
    return NamedSharding(mesh, PartitionSpec("members"))
