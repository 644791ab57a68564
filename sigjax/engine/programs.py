"""A static group's compiled programs over a chunk of members, and how members become inputs.

`compiled(prog, strategy)` jits one member's `init`, `advance` and `finish` (`engine.train`)
over a chunk of members: `advance`, where the time goes, follows the planner's `Strategy` (one
vmap, `lax.map` over vmapped batches, split over devices with `shard_map`); init and finish are
one vmap, compiled without backend optimisation since they run once per chunk. `precompile`
and `Ahead` compile a group's programs ahead of its run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from sigjax import data as data_lib
from sigjax.engine import plan as plan_lib
from sigjax.engine import train


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


def chunking(prog, members, chunk_size, strategy):
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


def chunk_args(hp, seeds, start: int, size: int, sharding):
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
    hp, seeds, size, strategy = chunking(prog, members, chunk_size, strategy)
    fns = compiled(prog, strategy)
    sharding = member_sharding() if jax.local_device_count() > 1 else None
    args = chunk_args(hp, seeds, 0, size, sharding)
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


def record_fields(rec: train.Record) -> dict[str, jax.Array]:
    """A Record's recorded metrics, by name."""
    return dict(rec.values)


def member_sharding() -> NamedSharding:
    """The member axis split over all local devices."""
    mesh = Mesh(np.array(jax.local_devices()), ("members",))
    return NamedSharding(mesh, PartitionSpec("members"))
