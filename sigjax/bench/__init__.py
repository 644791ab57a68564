"""`sigjax bench`: how fast sweeps run on this machine, against its matmul peak and PyTorch.

Workloads (fixed, so figures can be compared across machines and versions):

- W: 256 models (16 learning rates log-spaced 1e-3..1 x 16 seeds), MLP 40-128x4-10, sigmoid,
  softmax cross-entropy, plain SGD, minibatches of 128 from a fixed 4000 x 40 teacher dataset,
  1000 steps, loss and per-layer gradient norms recorded every step.
- W_small: as W with 40-32x2-10 (per-operation overhead dominates).
- W_large: 64 models (16 learning rates x 4 seeds), 40-1024x4-10, 20 steps (large GEMMs; at
  100 steps the member at lr 0.1 passes a loss spike near step 25 that amplifies float32
  reassociation differences to 3e-4 for a few steps, so trajectories of two correct
  implementations no longer agree to 1e-4 there).
- tiny: 16 models (one seed), 40-8x2-10, 20 steps: a smoke test of the benchmark itself.

FLOP are counted as 6 x weights x batch per model-step (forward 2, backward 4; bias adds and
activations are not counted): 42.7 MFLOP for W.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import time

import jax
import numpy as np

from sigjax import config
from sigjax import data as data_lib
from sigjax.engine import grid, plan, programs, sweep, train
from sigjax.errors import UserError
from sigjax.nn import models

BATCH = 128


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    seeds: int  # models = 16 learning rates x seeds
    width: int
    depth: int
    steps: int

    @property
    def members(self) -> int:
        return 16 * self.seeds


WORKLOADS = {
    w.name: w
    for w in (
        Workload("W", 16, 128, 4, 1000),
        Workload("W_small", 16, 32, 2, 1000),
        Workload("W_large", 4, 1024, 4, 20),
        Workload("tiny", 1, 8, 2, 20),
    )
}
DEFAULT = ("W", "W_small", "W_large")  # what `--workload all` runs
PROBE_STEPS = 200  # at most this many steps for side measurements (recording cost, plain vmap)


def workload_config(w: Workload, steps: int, record: str = "gradients", precision="float32"):
    """The sigjax Config of a workload (the learning rate and seed are swept)."""
    return config.replace(
        config.Config(),
        {
            "model.depth": w.depth,
            "model.width": w.width,
            "model.activation": "sigmoid",
            "data.name": "teacher",
            "data.n_train": 4000,
            "data.dim": 40,
            "data.out_dim": 10,
            "train.loss": "softmax_ce",
            "train.batch_size": BATCH,
            "train.steps": steps,
            "train.log_every": 1,
            "train.record": record,
            "train.precision": precision,
            "optim.name": "sgd",
        },
    )


def members_of(w: Workload, seeds: int | None = None) -> dict[str, np.ndarray]:
    """16 log-spaced learning rates x seeds, learning rate major (member = lr_i, seed_j)."""
    lrs = np.logspace(-3, 0, 16).astype(np.float32)
    s = seeds or w.seeds
    return {"optim.lr": np.repeat(lrs, s), "seed": np.tile(np.arange(s), 16)}


def n_weights(w: Workload) -> int:
    """Entries of the weight matrices (the matmul FLOP count's unit)."""
    widths = [40, *([w.width] * w.depth), 10]
    return sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))


def gemm_peak(n: int = 2048, repeats: int = 7) -> dict:
    """Float32 GEMM GFLOP/s of an n x n x n matmul through XLA and NumPy (medians)."""
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
    mm = jax.jit(lambda x, y: x @ y)
    mm(a, a).block_until_ready()
    xla = _median(lambda: mm(a, a).block_until_ready(), repeats)
    an = np.asarray(a)
    an @ an
    npy = _median(lambda: an @ an, repeats)
    flop = 2 * n**3
    return {"size": n, "xla_gflops": flop / xla / 1e9, "numpy_gflops": flop / npy / 1e9}


def _median(f, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


@dataclasses.dataclass
class Timed:
    compile_s: float
    wall_s: float
    loss: np.ndarray  # (N, steps) loss before each update
    grad_norm: np.ndarray | None  # (N, steps, L)
    params0: dict  # initial parameters, each leaf (N, …)


def time_run(prog, data, members, strategy: plan.Strategy, steps: int) -> Timed:
    """Compile (timed apart) and run `steps` steps of every member in one segment."""
    hp, seeds = programs.member_inputs(prog, members)
    args = (hp, seeds.astype(np.int32))
    if strategy.devices > 1:
        args = jax.device_put(args, programs.member_sharding())
    else:
        args = jax.device_put(args)
    fns = programs.compiled(prog, strategy)
    t0 = time.perf_counter()  # tracing and compiling everything a sweep group compiles
    init = fns.init.lower(data, *args).compile()
    compile_s = time.perf_counter() - t0
    state = jax.block_until_ready(init(data, *args))
    t0 = time.perf_counter()
    advance = fns.advance.lower(data, *args, state, steps).compile()
    fns.finish.lower(data, *args, state).compile()
    compile_s += time.perf_counter() - t0
    params0 = jax.tree.map(np.asarray, state.params)
    t0 = time.perf_counter()
    state, rec = advance(data, *args, state)
    jax.block_until_ready(rec)
    wall = time.perf_counter() - t0
    gn = None if rec.grad_norm is None else np.asarray(rec.grad_norm)
    return Timed(compile_s, wall, np.asarray(rec.loss), gn, params0)


def peak_memory() -> dict:
    """Peak bytes so far: host RSS of this process, and device memory where JAX reports it."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"host_peak_rss_bytes": rss * (1 if platform.system() == "Darwin" else 1024)}
    stats = jax.local_devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_bytes"] = int(stats["peak_bytes_in_use"])
    return out


def bench_workload(
    w: Workload,
    peak: float,
    steps: int | None = None,
    seeds: int | None = None,
    compare: tuple[str, ...] = (),
    precision: str = "float32",
    log=print,
) -> dict:
    """Every figure of one workload (see the module docstring); `log` gets progress lines."""
    steps = steps or w.steps
    members = members_of(w, seeds)
    n = len(members["seed"])
    cfg = workload_config(w, steps, precision=precision)
    data = data_lib.load(cfg.data)
    prog = train.program(cfg, data)
    budget = plan.default_budget()
    axes = grid.make_axes({("optim.lr", "seed"): list(zip(*members.values(), strict=True))})
    p = sweep.make_plan(cfg, axes, budget)[0]
    if p.chunk < n:
        raise UserError(f"{w.name}: {n} members do not fit the memory budget in one chunk")
    flop = 6 * n_weights(w) * BATCH
    log(f"{w.name}: {n} models, {steps} steps, {p.strategy} ({p.why})")
    run = time_run(prog, data, members, p.strategy, steps)
    gflops = flop * n * steps / run.wall_s / 1e9
    out = {
        "workload": w.name,
        "members": n,
        "widths": [40, *([w.width] * w.depth), 10],
        "steps": steps,
        "batch": BATCH,
        "precision": precision,
        "mflop_per_model_step": flop / 1e6,
        "total_tflop": flop * n * steps / 1e12,
        "strategy": str(p.strategy),
        "plan": p.why,
        "compile_s": run.compile_s,
        "wall_s": run.wall_s,
        "member_steps_per_s": n * steps / run.wall_s,
        "gflops": gflops,
        "share_of_peak": gflops / peak,
        "diverged": int(np.sum(~np.isfinite(run.loss[:, -1]))),
        **peak_memory(),
    }
    log(
        f"  {run.wall_s:.2f} s ({gflops:.0f} GFLOP/s, {gflops / peak:.0%} of peak), "
        f"compile {run.compile_s:.2f} s"
    )
    probe = max(1, min(steps // 5, PROBE_STEPS))
    out |= _side_measurements(prog, data, members, p.strategy, probe, log)
    if precision == "bf16":
        out |= _bf16_effect(w, data, members, p.strategy, run, steps)
    if compare:
        out["torch"] = _compare_torch(prog, data, members, run, steps, log)
    return out


def _side_measurements(prog, data, members, strategy, steps, log) -> dict:
    """Step time without recording gradient norms, and with the plain one-vmap strategy."""
    base = time_run(prog, data, members, strategy, steps).wall_s
    cfg_loss = dataclasses.replace(
        prog.cfg, train=dataclasses.replace(prog.cfg.train, record="loss", steps=steps)
    )
    bare = time_run(train.program(cfg_loss, data), data, members, strategy, steps).wall_s
    plain = plan.Strategy(devices=strategy.devices)
    vmap = base if plain == strategy else time_run(prog, data, members, plain, steps).wall_s
    log(
        f"  recording gradient norms costs {base / bare - 1:+.1%}; "
        f"the plan runs {vmap / base:.2f}x the plain vmap"
    )
    return {
        "probe_steps": steps,
        "recording_overhead": base / bare - 1,
        "plain_vmap_wall_s": vmap,
        "plan_speedup_vs_plain_vmap": vmap / base,
        "probe_wall_s": base,
    }


def _bf16_effect(w, data, members, strategy, run16: Timed, steps: int) -> dict:
    cfg = workload_config(w, steps)
    run32 = time_run(train.program(cfg, data), data, members, strategy, steps)
    rel = np.abs(run16.loss - run32.loss) / np.abs(run32.loss)
    g = np.abs(run16.grad_norm - run32.grad_norm) / np.maximum(run32.grad_norm, 1e-30)
    return {
        "float32_wall_s": run32.wall_s,
        "bf16_speedup": run32.wall_s / run16.wall_s,
        "bf16_loss_rel_diff_median": float(np.nanmedian(rel)),
        "bf16_loss_rel_diff_final_max": float(np.nanmax(rel[:, -1])),
        "bf16_grad_norm_rel_diff_median": float(np.nanmedian(g)),
    }


def _compare_torch(prog, data, members, run: Timed, steps: int, log) -> dict:
    from sigjax.bench import pytorch as bench_torch

    why = bench_torch.available()
    if why:
        raise UserError(why)
    hp, seeds = programs.member_inputs(prog, members)
    keys = jax.vmap(jax.random.key)(seeds.astype(np.int32))
    n = data.x_train.shape[0]
    idx_of = jax.vmap(  # (steps, N, batch): member i's rows at step s, as sigjax draws them
        jax.vmap(
            lambda k, s: data_lib.batch_indices(train.Program.data_key(k, s), n, BATCH),
            in_axes=(0, None),
        ),
        in_axes=(None, 0),
    )
    batches = np.asarray(idx_of(keys, np.arange(steps)))
    names = models.layer_names(run.params0)
    inputs = dict(
        kernels=[run.params0[k]["kernel"] for k in names],
        biases=[run.params0[k]["bias"] for k in names],
        lrs=hp["lr"],
        x=np.asarray(data.x_train),
        y=np.asarray(data.y_train),
        batches=batches,
    )
    out = {}
    for recipe in bench_torch.RECIPES:
        r = bench_torch.run(recipe, **inputs)
        diff = float(np.max(np.abs(r["loss"] - run.loss) / np.maximum(np.abs(run.loss), 1e-6)))
        entry = {
            "threads": r["threads"],
            "compile_s": r["compile_s"],
            "max_loss_rel_diff": diff,
            "equal": diff <= 1e-4,
            "note": r["note"],
        }
        if entry["equal"]:  # a time is reported only for the same computation
            entry |= {"wall_s": r["wall_s"], "sigjax_speedup": r["wall_s"] / run.wall_s}
            log(
                f"  torch {recipe}: {r['wall_s']:.2f} s ({r['threads']} threads); sigjax "
                f"{entry['sigjax_speedup']:.2f}x faster; loss trajectories agree to {diff:.1e}"
            )
        else:
            log(f"  torch {recipe}: loss trajectories differ by {diff:.1e} > 1e-4; no time")
        out[recipe] = entry
    return out


def run(
    workloads: list[str],
    steps: int | None = None,
    seeds: int | None = None,
    compare: tuple[str, ...] = (),
    precision: str = "float32",
    log=print,
) -> dict:
    """The whole benchmark: machine, GEMM peak, and each workload's figures."""
    for name in workloads:
        if name not in WORKLOADS:
            raise UserError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}, all")
    if steps is not None and steps < 1:
        raise UserError(f"--steps must be positive, got {steps}")
    if seeds is not None and seeds < 1:
        raise UserError(f"--members must be a positive multiple of 16, got {16 * seeds}")
    for c in compare:
        if c != "torch":
            raise UserError(f"--compare {c!r}: only torch is supported")
    if compare:
        from sigjax.bench import pytorch as bench_torch

        why = bench_torch.available()
        if why:
            raise UserError(why)
    dev = jax.local_devices()[0]
    peak = gemm_peak()
    log(
        f"float32 GEMM peak: XLA {peak['xla_gflops']:.0f} GFLOP/s, "
        f"NumPy {peak['numpy_gflops']:.0f} GFLOP/s ({peak['size']}^3, median)"
    )
    out = {
        "machine": {
            "platform": dev.platform,
            "device_kind": dev.device_kind,
            "devices": jax.local_device_count(),
            "cpu_count": os.cpu_count() or 1,
            "processor": platform.processor() or platform.machine(),
            "jax_version": jax.__version__,
        },
        "gemm_peak": peak,
        "workloads": [],
    }
    for name in workloads:
        out["workloads"].append(
            bench_workload(
                WORKLOADS[name], peak["xla_gflops"], steps, seeds, compare, precision, log
            )
        )
    return out


def table(result: dict) -> str:
    """A Markdown table of a `run` result."""
    head = (
        "| workload | models | steps | strategy | compile s | wall s | member·steps/s | "
        "GFLOP/s | share of peak | grad-norm recording | vs plain vmap |"
    )
    lines = [head, "|" + "---|" * 11]
    for w in result["workloads"]:
        lines.append(
            f"| {w['workload']} | {w['members']} | {w['steps']} | {w['strategy']} | "
            f"{w['compile_s']:.2f} | {w['wall_s']:.2f} | {w['member_steps_per_s']:,.0f} | "
            f"{w['gflops']:.0f} | {w['share_of_peak']:.0%} | {w['recording_overhead']:+.1%} | "
            f"{w['plan_speedup_vs_plain_vmap']:.2f}x |"
        )
    torch_rows = [
        (w["workload"], r, e) for w in result["workloads"] for r, e in w.get("torch", {}).items()
    ]
    if torch_rows:
        lines += [
            "",
            "| workload | PyTorch recipe | threads | torch wall s | sigjax speedup | "
            "max loss rel. diff |",
            "|---|---|---|---|---|---|",
        ]
        for name, recipe, e in torch_rows:
            wall = f"{e['wall_s']:.2f}" if "wall_s" in e else "not equal"
            speed = f"{e['sigjax_speedup']:.2f}x" if "sigjax_speedup" in e else "-"
            lines.append(
                f"| {name} | {recipe} | {e['threads']} | {wall} | {speed} | "
                f"{e['max_loss_rel_diff']:.1e} |"
            )
    return "\n".join(lines)
