"""The convergence_rates study's runs: the empirical NTK at init fixing each setting's
learning-rate unit η*, the sweeps over widths with curvature metrics, the linearized and
infinite-width predictions, and the deep linear network part."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from experiments import sigmoid_convergence
from sigjax import config
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import checkpoint, curvature, grid, sweep, train
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
