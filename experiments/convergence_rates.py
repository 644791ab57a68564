"""Convergence rates: measured against the neural tangent kernel's linearized prediction, the
largest stable learning rate against N k/λ_max, the edge of stability, and deep linear networks
against Saxe et al.'s exact curves.

Part 1. One hidden layer of sigmoid, centred sigmoid, tanh, ReLU and erf at widths 64 … 2048 on
the seed task (X ~ U[0,1]^{100×10}, y ~ U[0,1]) and a teacher task (Gaussian inputs, a tanh
teacher's outputs), full-batch gradient descent on the MSE. For each (task, activation, width)
the empirical NTK Θ of every seed at init (`sigjax.theory.linearized.member_kernels`) gives
the linearized limit η* = N k/λ_max (the median over seeds); the members train at multiples
`lr_factor` of it, recording ntk_max, ntk_min and sharpness (`sigjax.engine.curvature`). Each
member's loss is compared with its linearized prediction L_t from its own Θ and f₀
(`sigjax.theory.linearized.predicted_loss`); the gap should shrink like 1/√width. The
infinite-width kernel (`sigjax.theory.infinite_width`, standard parameterization) is compared
with the empirical one on the first THEORY_N training examples.

Part 2. The default study's setting (sigmoid_convergence: width 32, depth 3) at its largest
learning rates, recording sharpness against 2/η (`eos_at`). Variables `default_*`.

Part 3. A deep linear network (identity activation, one hidden layer) on a whitened task with
chosen singular values (`sigjax.theory.deep_linear`), from the decoupled start and from a small
orthogonal one, against the exact mode curves. Variables `saxe_*`.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from experiments import sigmoid_convergence
from sigjax import analysis, config
from sigjax import data as data_lib
from sigjax.analysis import plotting
from sigjax.config import Config
from sigjax.engine import checkpoint, curvature, grid, sweep, train
from sigjax.study import Study
from sigjax.theory import deep_linear, linearized
from sigjax.theory import infinite_width as theory_kernels

ACTIVATIONS = ("sigmoid", "centred_sigmoid", "tanh", "relu", "erf")
TASKS = ("seed_regression", "teacher_regression")
WIDTHS = (64, 128, 256, 512, 1024, 2048)
FACTORS = (0.25, 0.5, 0.9, 1.1, 1.5, 2.0, 3.0)  # learning rate in units of η* = N k/λ_max
TREND_FACTOR = 0.5  # the rate at which the width trend is read
THEORY_N = 12  # training examples the infinite-width kernel is computed on
CURVATURE = ",".join(curvature.NAMES)

CONFIG = config.replace(
    Config(),
    {
        "data.n_train": 100,
        "data.dim": 10,
        "data.out_dim": 1,
        "model.depth": 1,
        "model.head_activation": "identity",
        "init.scheme": "gaussian",
        "init.sigma_w2": 1.0,
        "init.sigma_b2": 0.0,
        "optim.name": "sgd",
        "train.loss": "mse",
        "train.batch_size": 0,
        "train.record": "loss",
        "train.metrics": CURVATURE,
        "train.steps": 400,
        "train.log_every": 5,
        "train.loss_threshold": 0.02,
    },
)
GRID = {
    "data.name": TASKS,
    "model.activation": ACTIVATIONS,
    "model.width": WIDTHS,
    "seed": (0, 1, 2, 3),
}
QUICK = ({"train.steps": 200}, {"model.width": "64,128,256,512", "seed": "0,1"})

# part 2: the default study's setting at its four largest rates
DEFAULT_ACTIVATIONS = sigmoid_convergence.ACTIVATIONS
# 0.052 … 0.61: the default study's best rates (tanh 0.118, ReLU 0.268) and those around them
DEFAULT_LRS = sigmoid_convergence.GRID["optim.lr"][2:6]
DEFAULT_DEPTH = 3
DEFAULT_STEPS = 1000
DEFAULT_SEEDS = (0, 1)
# part 3: the deep linear task
SAXE = {"n": 64, "d": 8, "k": 4, "s": (4.0, 2.0, 1.0, 0.5), "width": 32, "lr": 0.02}
SAXE_A0 = 1e-3  # the decoupled start's mode strength
SAXE_SIGMA_W2 = 0.03  # the small orthogonal start: W = √σ_w² · (semi-)orthogonal
SAXE_STEPS = 1200
SAXE_LOG_EVERY = 10


# ---------------------------------------------------------------- compute


def _axis(axes, key, default):
    return next((a.values for a in axes if a.key == key), default)


def compute(cfg: Config, axes, progress: bool = False, store=None) -> xr.Dataset:
    """Part 1 as one sweep per (task, activation, width) over (lr, seed); parts 2 and 3."""
    tasks = _axis(axes, "data.name", (cfg.data.name,))
    acts = _axis(axes, "model.activation", (cfg.model.activation,))
    widths = _axis(axes, "model.width", (cfg.model.width,))
    seeds = tuple(int(s) for s in _axis(axes, "seed", (cfg.seed,)))
    parts, offset = [], 0
    for task in tasks:
        for act in acts:
            for width in widths:
                sub = config.replace(
                    cfg, {"data.name": task, "model.activation": act, "model.width": width}
                )
                part, n_groups = _group(
                    sub, seeds, checkpoint.Shifted(store, offset) if store else None
                )
                parts.append(part.expand_dims(task=[task], activation=[act], width=[width]))
                offset += n_groups
    ds = xr.combine_by_coords(parts, combine_attrs="drop_conflicts")
    ds = ds.transpose("task", "activation", "width", "lr_factor", "seed", "step")
    ds = ds.merge(_default_part(store, offset), combine_attrs="drop_conflicts")
    ds = ds.merge(_saxe_part(), combine_attrs="drop_conflicts")
    ds.attrs["config"] = config.to_json(cfg)
    ds.attrs["grid"] = json.dumps([[a.key, list(a.values)] for a in axes])
    return ds


def _group(cfg: Config, seeds, store) -> tuple[xr.Dataset, int]:
    """One (task, activation, width): kernels at init, the sweep over lr × seed, predictions."""
    data = data_lib.load(cfg.data)
    theta, res0 = linearized.member_kernels(cfg, data, seeds)
    lam = np.linalg.eigvalsh(theta)  # (S, N k) ascending
    n_targets = res0[0].size
    eta_star = float(np.median(linearized.stable_lr(lam[:, -1], n_targets)))
    lrs = tuple(f * eta_star for f in FACTORS)
    axes = grid.make_axes({"optim.lr": lrs, "seed": seeds})
    ds = sweep.run(cfg, axes, store=store)
    ds = ds.drop_vars(["n_layers", "layer"], errors="ignore")
    ds = ds.rename(lr="lr_factor").assign_coords(lr_factor=list(FACTORS))
    ds["lr"] = ("lr_factor", np.asarray(lrs))
    steps = ds.step.values
    pred = np.stack(
        [
            np.stack([linearized.predicted_loss(theta[s], res0[s], lr, steps) for lr in lrs])
            for s in range(len(seeds))
        ],
        axis=1,
    )  # (F, S, T)
    ds["pred_loss"] = (("lr_factor", "seed", "step"), pred)
    ds["lam_max0"] = ("seed", lam[:, -1])
    ds["lam_min0"] = ("seed", lam[:, 0])
    ds["eta_star"] = eta_star
    ds["n_targets"] = n_targets
    ds["kernel_gap"] = ("seed", _theory_gap(cfg, data, theta))
    return ds, len(sweep.check(cfg, axes))


def _theory_gap(cfg: Config, data: data_lib.Data, theta: np.ndarray) -> np.ndarray:
    """‖Θ_emp − Θ_∞‖_F/‖Θ_∞‖_F on the first THEORY_N examples, per seed (one output)."""
    n = min(THEORY_N, data.x_train.shape[0])
    x = np.asarray(data.x_train[:n], np.float64)
    m = cfg.model
    _, th = theory_kernels.kernels(
        m.activation,
        m.depth,
        cfg.init.sigma_w2,
        cfg.init.sigma_b2,
        x,
        parameterization="standard",
        width=m.width,
    )
    k = data.out_dim
    emp = theta[:, : n * k : k, : n * k : k]  # the first output's block
    return np.linalg.norm(emp - th, axis=(1, 2)) / np.linalg.norm(th)


def _default_part(store, offset: int) -> xr.Dataset:
    """The default study's setting at its largest rates, with sharpness (dims `default_*`)."""
    base = config.replace(
        sigmoid_convergence.CONFIG,
        {
            "model.depth": DEFAULT_DEPTH,
            "train.steps": DEFAULT_STEPS,
            "train.record": "loss",
            "train.metrics": "sharpness",
        },
    )
    axes = grid.make_axes(
        {"model.activation": DEFAULT_ACTIVATIONS, "optim.lr": DEFAULT_LRS, "seed": DEFAULT_SEEDS}
    )
    ds = sweep.run(base, axes, store=checkpoint.Shifted(store, offset) if store else None)
    ds = ds[["loss", "sharpness", "eos_at", "diverged_at"]].drop_vars("layer", errors="ignore")
    names = {d: f"default_{d}" for d in ds.dims}
    return ds.rename({**names, **{v: f"default_{v}" for v in ds.data_vars}})


def _saxe_part() -> xr.Dataset:
    """Mode strengths of the deep linear network from both starts, measured and exact."""
    p = SAXE
    data, u, v = deep_linear.task(p["n"], p["d"], p["k"], p["s"], seed=0)
    cfg = deep_linear.config(
        data,
        p["width"],
        p["lr"],
        steps=SAXE_STEPS,
        log_every=SAXE_LOG_EVERY,
        sets={"init.scheme": "orthogonal", "init.sigma_w2": SAXE_SIGMA_W2},
    )
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(0)
    advance = jax.jit(prog.advance, static_argnums=4)
    n_logs, every = cfg.train.steps // cfg.train.log_every, cfg.train.log_every
    steps = np.arange(n_logs + 1) * every
    measured, exact, discrete, loss = [], [], [], []
    for start in ("decoupled", "orthogonal"):
        state = prog.init(hp, key)
        if start == "decoupled":
            params = jax.tree.map(
                jnp.asarray, deep_linear.decoupled_params(u, v, p["width"], SAXE_A0)
            )
            state = state.replace(params=params, opt_state=prog.optimizer(hp).init(params))
        modes, losses = [deep_linear.mode_strengths(state.params, u, v)], []
        for _ in range(n_logs):
            state, rec = advance(data, hp, key, state, 1)
            losses.append(float(rec["loss"][0]))
            modes.append(deep_linear.mode_strengths(state.params, u, v))
        losses.append(float(prog.finish(data, hp, key, state)["loss"]))
        a0 = np.maximum(np.abs(modes[0]), 1e-8)  # the exact curve from the start's strength
        measured.append(np.array(modes))
        exact.append(deep_linear.exact_modes(p["s"], a0, p["lr"], steps, p["k"]))
        discrete.append(deep_linear.discrete_modes(p["s"], a0, p["lr"], steps[-1], p["k"])[steps])
        loss.append(losses)
    dims = ("saxe_start", "saxe_step", "mode")
    coords = {"saxe_start": ["decoupled", "orthogonal"], "saxe_step": steps, "mode": [1, 2, 3, 4]}
    return xr.Dataset(
        {
            "saxe_modes": (dims, np.array(measured)),
            "saxe_exact": (dims, np.array(exact)),
            "saxe_discrete": (dims, np.array(discrete)),
            "saxe_loss": (dims[:2], np.array(loss)),
            "saxe_s": ("mode", np.asarray(p["s"])),
        },
        coords=coords,
    )


# ---------------------------------------------------------------- analysis


def as_loss(da: xr.DataArray) -> xr.Dataset:
    """A Dataset whose `loss` is da (to reuse sigjax.analysis on predicted curves)."""
    return xr.Dataset({"loss": da})


def stable_factor(ds: xr.Dataset) -> xr.DataArray:
    """The largest lr_factor at which no seed diverged, per (task, activation, width)."""
    ok = ds.diverged_at.isnull().all("seed")
    return ds.lr_factor.where(ok).max("lr_factor")


def gap(ds: xr.Dataset) -> xr.DataArray:
    """max_t |L_t − L_t^lin| / L_0 over the run, per member."""
    return (abs(ds.loss - ds.pred_loss)).max("step") / ds.loss.isel(step=0)


def width_slope(da: xr.DataArray) -> xr.DataArray:
    """Least-squares slope of log(da) on log(width) (da over `width`, other dims kept)."""
    x = np.log(da.width.astype(float))
    y = np.log(da)
    dx = x - x.mean()
    return ((dx * (y - y.mean("width"))).sum("width") / (dx**2).sum()).rename("slope")


def rates(ds: xr.Dataset) -> xr.Dataset:
    """Measured and predicted rates at TREND_FACTOR, per (task, activation, width, seed)."""
    one = ds.sel(lr_factor=TREND_FACTOR)
    lr = float(TREND_FACTOR) * ds.eta_star
    lam_rate = linearized.mode_rates(one.lam_min0, lr, ds.n_targets)  # the slowest mode's
    return xr.Dataset(
        {
            "measured": analysis.convergence_rate(one),
            "predicted": analysis.convergence_rate(as_loss(one.pred_loss)),
            "lam_min_rate": lam_rate,
        }
    )


def tables(ds: xr.Dataset) -> pd.DataFrame:
    r = rates(ds).median("seed")
    cols = {
        "lam_max": ds.lam_max0.median("seed"),
        "cond": (ds.lam_max0 / ds.lam_min0).median("seed"),
        "eta_star": ds.eta_star,
        "stable_factor": stable_factor(ds),
        "rate": r.measured,
        "rate_pred": r.predicted,
        "rate_lam_min": r.lam_min_rate,
        "gap": gap(ds).sel(lr_factor=TREND_FACTOR).median("seed"),
        "kernel_gap": ds.kernel_gap.median("seed"),
        "eos_factor": ds.lr_factor.where((ds.eos_at >= 0).any("seed")).min("lr_factor"),
    }
    frame = xr.Dataset(cols).to_dataframe().reset_index()
    keep = ["task", "activation", "width", *cols]
    return frame[keep]


def _markdown(table: pd.DataFrame, slopes: pd.DataFrame, default: pd.DataFrame) -> str:
    head = [
        "task",
        "activation",
        "width",
        "λ_max",
        "cond",
        "η*",
        "stable lr / η*",
        "rate",
        "rate (lin.)",
        "rate λ_min",
        "gap",
        "kernel gap",
        "EoS from lr/η*",
    ]
    g = lambda v: "—" if not np.isfinite(v) else f"{v:.3g}"  # noqa: E731
    lines = [
        f"Per (task, activation, width), medians over seeds. η* = N k/λ_max (Θ at init); "
        f"rates per step at lr = {TREND_FACTOR} η*: measured (fitted over the run), the same "
        "fit on the linearized prediction, and the slowest mode's −2 log|1 − 2ηλ_min/(N k)|. "
        "gap: max_t |L − L_lin|/L_0; kernel gap: ‖Θ − Θ_∞‖/‖Θ_∞‖ on the first "
        f"{THEORY_N} examples; EoS from: the smallest lr/η* with a member at sharpness ≥ 2/η.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in table.to_dict("records"):
        cells = [r["task"], r["activation"], str(r["width"])]
        cells += [g(r[c]) for c in ("lam_max", "cond", "eta_star", "stable_factor", "rate")]
        cells += [g(r[c]) for c in ("rate_pred", "rate_lam_min", "gap", "kernel_gap")]
        cells += [g(r["eos_factor"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Width trend: slope of log(gap) and log(kernel gap) on log(width) "]
    lines += ["(−0.5 is 1/√width).", "", "| task | activation | gap slope | kernel-gap slope |"]
    lines += ["|---|---|---|---|"]
    for r in slopes.to_dict("records"):
        lines.append(f"| {r['task']} | {r['activation']} | {g(r['gap'])} | {g(r['kernel'])} |")
    lines += ["", f"The default study's setting (width 32, depth {DEFAULT_DEPTH}): first step "]
    lines += ["at sharpness ≥ 2/η (median over seeds; −1: never), final loss.", ""]
    lines += [
        "| activation | lr | 2/lr | max sharpness | eos_at | final loss |",
        "|---|---|---|---|---|---|",
    ]
    for r in default.to_dict("records"):
        lines.append(
            f"| {r['activation']} | {r['lr']:.3g} | {2 / r['lr']:.3g} | {g(r['sharpness'])} "
            f"| {r['eos_at']:.0f} | {g(r['final_loss'])} |"
        )
    return "\n".join(lines) + "\n"


def _default_table(ds: xr.Dataset) -> pd.DataFrame:
    sub = ds[[v for v in ds.data_vars if str(v).startswith("default_")]]
    sub = sub.rename({n: str(n).removeprefix("default_") for n in (*sub.dims, *sub.data_vars)})
    cols = {
        "sharpness": sub.sharpness.max("step").median("seed"),
        "eos_at": sub.eos_at.median("seed"),
        "final_loss": sub.loss.isel(step=-1).median("seed"),
    }
    return xr.Dataset(cols).to_dataframe().reset_index()


def report(ds: xr.Dataset, out: Path) -> dict:
    table = tables(ds)
    table.to_csv(out / "table.csv", index=False)
    g = gap(ds).sel(lr_factor=TREND_FACTOR).median("seed")
    slopes = xr.Dataset(
        {"gap": width_slope(g), "kernel": width_slope(ds.kernel_gap.median("seed"))}
    )
    slopes = slopes.to_dataframe().reset_index()
    default = _default_table(ds)
    (out / "table.md").write_text(_markdown(table, slopes, default))
    _figures(ds, out)
    saxe = _saxe_summary(ds)
    return {
        "gap_width_slope": {
            f"{r['task']}/{r['activation']}": float(r["gap"]) for r in slopes.to_dict("records")
        },
        "kernel_gap_width_slope": {
            f"{r['task']}/{r['activation']}": float(r["kernel"]) for r in slopes.to_dict("records")
        },
        "saxe_max_mode_error": saxe,
    }


def _saxe_summary(ds: xr.Dataset) -> dict:
    """Largest |measured − exact| mode strength over the run / the largest s, per start: against
    Saxe et al.'s continuous-time curve and against the discrete recursion."""
    out = {}
    for name in ("exact", "discrete"):
        err = abs(ds.saxe_modes - ds[f"saxe_{name}"]).max(["saxe_step", "mode"]) / ds.saxe_s.max()
        out |= {f"{k}_vs_{name}": float(err.sel(saxe_start=k)) for k in ds.saxe_start.values}
    return out


# ---------------------------------------------------------------- figures


def _figures(ds: xr.Dataset, out: Path) -> None:
    acts, tasks, widths = ds.activation.values, ds.task.values, ds.width.values
    # loss curves: measured (solid) vs linearized (dashed), narrowest and widest
    fig, axes = plotting.subplots(len(tasks), len(acts), size=(3.2, 2.6), sharey="row")
    for i, task in enumerate(tasks):
        for j, act in enumerate(acts):
            ax = axes[i, j]
            for n, w in enumerate((widths[0], widths[-1])):
                one = ds.sel(task=task, activation=act, width=w, lr_factor=TREND_FACTOR, seed=0)
                c = f"C{n}"
                ax.plot(ds.step, one.loss, color=c, label=f"width {w}")
                ax.plot(ds.step, one.pred_loss, color=c, ls="--", label=f"linearized {w}")
            ax.set(yscale="log", title=f"{act}, {task}", xlabel="step")
        axes[i, 0].set_ylabel("training MSE")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    plotting.save(fig, out, "convergence_rates_curves")

    # width trend
    fig, axes = plotting.subplots(1, 3, size=(4.0, 3.0))
    g = gap(ds).sel(lr_factor=TREND_FACTOR).median("seed")
    kg = ds.kernel_gap.median("seed")
    for i, act in enumerate(acts):
        c = plotting.color(str(act), i)
        for task, ls in zip(tasks, ("-", ":"), strict=False):
            axes[0, 0].plot(widths, g.sel(task=task, activation=act), ls, color=c, marker="o")
            axes[0, 1].plot(widths, kg.sel(task=task, activation=act), ls, color=c, marker="o")
        axes[0, 0].plot([], [], color=c, label=str(act))
    for ax in axes[0, :2]:
        ref = ax.get_lines()[0].get_ydata()[0] if ax.get_lines() else 1.0
        ax.plot(widths, ref * np.sqrt(widths[0] / widths), "k--", lw=0.8, label="∝ 1/√width")
        ax.set(xscale="log", yscale="log", xlabel="width")
    axes[0, 0].set(
        ylabel="max_t |L − L_lin| / L_0", title=f"loss vs linearized (lr {TREND_FACTOR} η*)"
    )
    axes[0, 1].set(ylabel="‖Θ − Θ_∞‖ / ‖Θ_∞‖", title="empirical vs infinite-width NTK")
    axes[0, 0].legend(fontsize=6)
    # measured vs predicted rates
    r = rates(ds).median("seed")
    ax = axes[0, 2]
    for i, act in enumerate(acts):
        c = plotting.color(str(act), i)
        sel = r.sel(activation=act)
        ax.scatter(sel.predicted.values.ravel(), sel.measured.values.ravel(), color=c, s=12)
        ax.scatter(
            sel.lam_min_rate.values.ravel(), sel.measured.values.ravel(), color=c, s=12, marker="x"
        )
    lim = np.nanmax([float(r.measured.max()), float(r.predicted.max())]) * 1.5
    ax.plot([1e-6, lim], [1e-6, lim], "k:", lw=0.8)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="predicted rate (o: linearized fit, x: λ_min mode)",
        ylabel="measured rate",
        title="rates per step",
    )
    fig.tight_layout()
    plotting.save(fig, out, "convergence_rates_width")

    # stability and edge of stability
    fig, axes = plotting.subplots(1, 1 + ds.sizes["default_activation"], size=(3.6, 3.0))
    sf = stable_factor(ds)
    for i, act in enumerate(acts):
        c = plotting.color(str(act), i)
        for task, ls in zip(tasks, ("-", ":"), strict=False):
            axes[0, 0].plot(
                widths,
                sf.sel(task=task, activation=act),
                ls,
                color=c,
                marker="o",
                label=f"{act}" if task == tasks[0] else None,
            )
    axes[0, 0].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0, 0].set(
        xscale="log",
        xlabel="width",
        ylabel="largest stable lr / (N k/λ_max)",
        title="stability: measured vs linearized limit",
    )
    axes[0, 0].legend(fontsize=6)
    dflt = ds.default_sharpness.median("default_seed")
    for ax, act in zip(axes[0, 1:], ds.default_activation.values, strict=True):
        for n, lr in enumerate(ds.default_lr.values):
            c = f"C{n}"
            ax.plot(
                ds.default_step,
                dflt.sel(default_activation=act, default_lr=lr),
                color=c,
                lw=1,
                label=f"lr {lr:.2g}",
            )
            ax.axhline(2 / lr, color=c, lw=0.8, ls="--")
        ax.set(yscale="log", xlabel="step", title=f"{act}, depth {DEFAULT_DEPTH} (dashed: 2/η)")
    axes[0, 1].set_ylabel("sharpness (median over seeds)")
    axes[0, 1].legend(fontsize=6)
    fig.tight_layout()
    plotting.save(fig, out, "convergence_rates_stability")

    # deep linear
    fig, axes = plotting.subplots(1, ds.sizes["saxe_start"], size=(4.0, 3.0), sharey=True)
    for ax, start in zip(axes[0], ds.saxe_start.values, strict=True):
        for m in ds.mode.values:
            c = f"C{int(m) - 1}"
            sel = dict(saxe_start=start, mode=m)
            ax.plot(
                ds.saxe_step,
                ds.saxe_modes.sel(sel),
                color=c,
                label=f"s = {float(ds.saxe_s.sel(mode=m)):g}",
            )
            ax.plot(ds.saxe_step, ds.saxe_exact.sel(sel), color=c, ls="--", lw=0.8)
        ax.set(xlabel="step", title=f"deep linear, {start} start (dashed: exact)")
    axes[0, 0].set_ylabel("mode strength u_αᵀ W v_α")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    plotting.save(fig, out, "convergence_rates_deep_linear")


STUDY = Study(
    name="convergence_rates",
    description=(
        "measured convergence rates vs the NTK's linearized prediction over width, largest "
        "stable lr vs N k/λ_max, sharpness vs 2/η at the default study's rates, deep linear "
        "nets vs Saxe et al.; figures/convergence_rates_*.png, table.md"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    compute=compute,
    requires=("name", "activation", "width", "seed"),
    presets={"quick": QUICK},
)
