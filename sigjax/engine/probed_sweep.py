"""Sweeps whose members also differ in init scheme, with probes at every log interval.

An init scheme changes only the initial weights, so several schemes can be members of one
compiled program: `run_merged` trains a grid whose `init.scheme` axis is merged into each static
group's member axis, and evaluates study-supplied `probe` functions (at init and after each log
interval) and `final` functions (once, on the initial and final parameters). Used by studies
that look inside the network while it trains (activation percentiles, per-layer histograms).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from sigjax import config
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import checkpoint, grid, metrics, programs, results, sweep, train


def train_group(
    progs: Sequence[train.Program],
    data: data_lib.Data,
    members: dict[str, np.ndarray],
    *,
    probe: Callable | None = None,
    final: Callable | None = None,
    bar=None,
) -> dict[str, np.ndarray]:
    """Train one static group whose members are every (program, dynamic member) pair.

    `progs` share everything but the init scheme, so one compiled program serves them all; the
    member axis of every output runs over progs (outer) and `members` (inner, C order).
    `probe(prog, params) -> {name: (n_layers,) array}` is evaluated at init and after every log
    interval (NaN once a member diverged); `final(prog, init_params, final_params) -> {name:
    array}` once at the end. Three programs compile: init, one log interval, and the end.
    Returns NumPy arrays: Record fields (M, T[, L]), probe fields (M, T, L), final fields
    (M, …) and diverged_at (M,) (-1: never).
    """
    prog = progs[0]
    hp, seeds = programs.member_inputs(prog, members)
    n_s = len(progs)
    hp = {k: jnp.asarray(np.tile(v, n_s)) for k, v in hp.items()}
    which = jnp.asarray(np.repeat(np.arange(n_s), len(seeds)).astype(np.int32))
    seeds = jnp.asarray(np.tile(seeds, n_s).astype(np.int32))
    key = jax.random.key
    no_probe = lambda p: {}  # noqa: E731
    look = (lambda p: probe(prog, p)) if probe else no_probe

    def init(h, s, i):
        states = [p.init(h, key(s)) for p in progs]
        st = jax.tree.map(lambda *xs: jnp.stack(xs)[i], *states)
        return st, look(st.params)

    def interval(data, h, s, st):
        st, rec = prog.advance(data, h, key(s), st, 1)
        rec = jax.tree.map(lambda r: r[0], rec)
        return st, rec, train.mask(look(st.params), st.diverged_at < 0)

    def end(data, h, s, st, p0):
        rec = prog.finish(data, h, key(s), st)
        res = final(prog, p0, st.params) if final else {}
        return rec, train.mask(res, st.diverged_at < 0)

    # lax.map, not vmap: the same numbers, and about half the compile time on a CPU
    state, pr = jax.jit(lambda *a: jax.lax.map(lambda b: init(*b), a))(hp, seeds, which)
    init_params = state.params
    step = jax.jit(jax.vmap(interval, in_axes=(None, 0, 0, 0)))
    pieces = {k: [np.asarray(v)] for k, v in pr.items()}
    for _ in range(prog.n_logs - 1):
        state, rec, pr = step(data, hp, seeds, state)
        for k, v in {**programs.record_fields(rec), **pr}.items():
            pieces.setdefault(k, []).append(np.asarray(v))
        if bar is not None:
            bar.update(len(seeds) * prog.cfg.train.log_every)
    rec, res = jax.jit(lambda d, *a: jax.lax.map(lambda b: end(d, *b), a))(
        data, hp, seeds, state, init_params
    )
    out = {k: np.stack(v, 1) for k, v in pieces.items()}
    for k, v in programs.record_fields(rec).items():
        v = np.asarray(v)[:, None]
        out[k] = np.concatenate([out[k], v], 1) if k in out else v
    out |= {k: np.asarray(v) for k, v in res.items()}
    out["diverged_at"] = np.asarray(state.diverged_at)
    return out


def run_merged(
    cfg: Config,
    axes: Sequence[grid.Axis],
    *,
    make_data: Callable[[Config], tuple[data_lib.Data, dict]],
    probe: Callable | None = None,
    final: Callable | None = None,
    group_cfg: Callable[[Config], Config] = lambda c: c,
    progress: bool = False,
    store: checkpoint.Store | None = None,
    tails: dict[str, tuple[str, ...]] | None = None,
    coords: dict[str, Sequence] | None = None,
) -> xr.Dataset:
    """Train a grid in which the init-scheme axis is merged into each static group's members.

    Groups run over the static axes other than init.scheme; `make_data(cfg)` gives a group's
    training data and extra arguments for `probe` / `final` (bound as keyword arguments).
    `group_cfg` may adjust a group's config (e.g. its weight variance). A checkpoint store keeps
    finished groups, so an interrupted run resumes with the next group. The Dataset has dims
    (other static axes…, scheme, dynamic axes…) + each variable's tail dims from `tails`.
    """
    sweep.check(cfg, axes)
    scheme_axis = next((a for a in axes if a.key == "init.scheme"), None)
    schemes = scheme_axis.values if scheme_axis else (cfg.init.scheme,)
    static = [a for a in axes if not a.dynamic and a.key != "init.scheme"]
    dynamic = [a for a in axes if a.dynamic]
    groups = list(grid.groups(cfg, [*static, *dynamic]))
    total = len(groups) * len(schemes) * grid.n_members(dynamic) * cfg.train.steps
    bar = tqdm(
        total=total, unit="step", unit_scale=True, disable=not progress, desc="members x steps"
    )
    cache: dict = {}
    for g in groups:  # every dataset loads (or fails) before anything trains
        gcfg = group_cfg(g.cfg)
        if gcfg.data not in cache:
            cache[gcfg.data] = make_data(gcfg)
    outs, walls = [], []
    for gi, g in enumerate(groups):
        done = store.load_group(gi) if store else None
        if done is None:
            t0 = time.perf_counter()
            gcfg = group_cfg(g.cfg)
            data, extra = cache[gcfg.data]
            progs = [train.program(config.replace(gcfg, {"init.scheme": s}), data) for s in schemes]
            bind = _bind(extra)
            done = train_group(
                progs,
                data,
                g.members,
                probe=bind(probe),
                final=bind(final),
                bar=bar,
            )
            done["wall_time_s"] = np.float64(time.perf_counter() - t0)
            if store:
                store.save_group(gi, done)
        else:
            bar.update(len(schemes) * grid.n_members(dynamic) * cfg.train.steps)
        walls.append(float(done.pop("wall_time_s", np.nan)))
        outs.append(done)
    bar.close()
    return assemble(
        cfg,
        static,
        schemes,
        dynamic,
        [g.index for g in groups],
        outs,
        tails or {},
        coords or {},
        attrs={"wall_time_s": sum(walls), "group_wall_times_s": repr(walls)},
    )


def _bind(extra: dict):
    def bind(fn):
        if fn is None:
            return None
        return lambda prog, *args: fn(prog, *args, **extra)

    return bind


DEFAULT_TAILS = {
    **{k: ("step",) for k in results.PER_STEP},
    **{k: ("step", "layer") for k in results.PER_LAYER},
    "diverged_at": (),
}


def assemble(cfg, static, schemes, dynamic, group_index, outs, tails, coords, attrs):
    """One Dataset from the groups' arrays; the layer axis is padded with NaN to the deepest."""
    # every recorded metric keeps its dims (registered ones by their declaration)
    recorded = {
        k: ("step", "layer") if metrics.REGISTRY[k].per_layer else ("step",)
        for k in outs[0]
        if k in metrics.REGISTRY
    }
    tails = {**DEFAULT_TAILS, **recorded, **tails}
    s_shape = tuple(len(a.values) for a in static)
    d_shape = (len(schemes), *(len(a.values) for a in dynamic))
    n_layer = max(o["grad_norm"].shape[-1] for o in outs)
    names = [k for k in outs[0] if k in tails]
    data_vars = {}
    for name in names:
        dims = tails[name]
        shape = list(outs[0][name].shape[1:])
        if "layer" in dims:
            shape[dims.index("layer")] = n_layer
        full = np.full(s_shape + d_shape + tuple(shape), np.nan, np.float32)
        for idx, o in zip(group_index, outs, strict=True):
            arr = o[name].reshape(d_shape + o[name].shape[1:]).astype(np.float32)
            if "layer" in dims:
                where = (Ellipsis,) + tuple(
                    slice(0, arr.shape[len(d_shape) + i]) if d == "layer" else slice(None)
                    for i, d in enumerate(dims)
                )
                full[idx][where] = arr
            else:
                full[idx] = arr
        if name == "diverged_at":
            full = np.where(full < 0, np.nan, full)
        dim_names = [a.dim for a in static] + ["scheme"] + [a.dim for a in dynamic] + list(dims)
        data_vars[name] = (dim_names, full)
    n_layers = np.zeros(s_shape + d_shape, np.int32)
    for idx, o in zip(group_index, outs, strict=True):
        n_layers[idx] = o["grad_norm"].shape[-1]
    data_vars["n_layers"] = (
        [a.dim for a in static] + ["scheme"] + [a.dim for a in dynamic],
        n_layers,
    )
    c = {a.dim: list(a.values) for a in (*static, *dynamic)}
    c["scheme"] = list(schemes)
    c["step"] = np.arange(cfg.train.steps // cfg.train.log_every + 1) * cfg.train.log_every
    c["layer"] = np.arange(1, n_layer + 1)
    c.update({k: list(v) for k, v in coords.items()})
    ds = xr.Dataset(data_vars, coords=c)
    ds.attrs = {
        "config": config.to_json(cfg),
        "grid": json.dumps(
            [[a.key, list(a.values)] for a in (*static, *dynamic)]
            + [["init.scheme", list(schemes)]]
        ),
        "format_version": results.FORMAT_VERSION,
        **results.provenance(),
        **attrs,
    }
    return ds
