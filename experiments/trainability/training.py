"""The trainability study's data (a validation split carved from the training set), its
validation and test metrics, config and grid, and the sweeps (each activation on its own
σ_w² and learning-rate axes)."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from sigjax import config
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import checkpoint, metrics, sweep
from sigjax.errors import UserError
from sigjax.nn import losses
from sigjax.theory.grid import mean_field_grid

ACTIVATIONS = ("tanh", "sigmoid")
SIGMA_W2 = {  # each activation's own σ_w² axis around its critical value (σ_b² = 0.05)
    # 6 ξ_c from 7 (σ_w² = 0.5) through ∞ (1.76) down to 24 (12.7)
    "tanh": tuple(float(v) for v in np.geomspace(0.5, 12.7, 7)),
    # from Glorot's σ_w² = 1 through the critical ≈ 103 into the chaotic phase
    "sigmoid": tuple(float(v) for v in np.logspace(0.0, 3.0, 7)),
}
LR = {  # each activation's own rate axis (the sigmoid's φ' ≤ ¼ asks for larger rates)
    "tanh": (0.003, 0.01, 0.03, 0.1, 0.3),
    "sigmoid": (0.1, 0.3, 1.0, 3.0),
}
DEPTH_FACTOR = 6.0  # trainable if depth ≲ 6 ξ_c
TIE = 0.005  # mean validation accuracies within half a percentage point of the best tie
FINAL = ("val_loss", "val_accuracy", "test_loss", "test_accuracy")

CONFIG = config.replace(
    Config(),
    {
        "data.name": "digits",
        "data.seed": 42,
        "data.standardize": True,
        "model.width": 64,
        "model.activation": "tanh",
        "init.scheme": "gaussian",
        "init.sigma_b2": 0.05,
        "optim.name": "sgd",
        "train.loss": "softmax_ce",
        "train.batch_size": 64,
        "train.steps": 300,
        "train.log_every": 100,
        "train.record": "loss",
    },
)
GRID = {
    "model.activation": ACTIVATIONS,
    "model.depth": (4, 8, 16, 32, 64),
    "seed": (0, 1, 2),
}
FULL = (  # one shared σ_w² axis over [0.5, 1000] for both activations, depths to 256
    {"model.width": 256, "train.steps": 3000, "train.log_every": 300},
    {
        "init.sigma_w2": [repr(float(v)) for v in np.logspace(np.log10(0.5), 3.0, 34)],
        "model.depth": [str(d) for d in (4, 8, 16, 32, 64, 128, 192, 256)],
        "optim.lr": ["0.001", "0.003", "0.01", "0.03", "0.1", "0.3", "1", "3"],
        "seed": ["0", "1", "2", "3"],
    },
)

# ---------------------------------------------------------------- data: train / validation / test


def split_validation(full: data_lib.Data) -> data_lib.Data:
    """The training split without its last n_test examples; the "test" slot holds those
    examples (the validation split) followed by the test split: two halves of n_test each,
    which the metrics `VAL_TEST` read apart."""
    if not full.has_test or not full.n_classes:
        raise UserError(
            "trainability needs a classification task with a test split (it selects the rate "
            "on a validation split carved from the training set and reports test accuracy)"
        )
    n, k = int(full.x_train.shape[0]), int(full.x_test.shape[0])
    if n < 2 * k:
        raise UserError(
            f"trainability holds out as many training examples as the test split has ({k}) "
            f"for validation, but the training split has only {n}"
        )
    held = full.hold_out(k)
    return held.replace(
        x_test=jnp.concatenate([held.x_test, full.x_test]),
        y_test=jnp.concatenate([held.y_test, full.y_test]),
    )


def _half(ctx: metrics.Context, second: bool):
    n = ctx.data.x_test.shape[0] // 2
    part = slice(n, None) if second else slice(0, n)
    return ctx.test_output[part], ctx.data.y_test[part]


def _val_loss(ctx: metrics.Context):
    return losses.get(ctx.cfg.train.loss)(*_half(ctx, False))


def _val_accuracy(ctx: metrics.Context):
    return losses.accuracy(*_half(ctx, False), ctx.cfg.train.loss)


def _test_loss(ctx: metrics.Context):
    return losses.get(ctx.cfg.train.loss)(*_half(ctx, True))


def _test_accuracy(ctx: metrics.Context):
    return losses.accuracy(*_half(ctx, True), ctx.cfg.train.loss)


# registered metric name -> the result variable it becomes
VAL_TEST = {
    "trainability_val_loss": ("val_loss", _val_loss),
    "trainability_val_accuracy": ("val_accuracy", _val_accuracy),
    "trainability_test_loss": ("test_loss", _test_loss),
    "trainability_test_accuracy": ("test_accuracy", _test_accuracy),
}


# ---------------------------------------------------------------- compute


def _own_axis(axes, key: str, table: dict, activation: str) -> tuple:
    """The grid's values for `key` when given, else the activation's own axis from `table`."""
    for a in axes:
        if a.key == key:
            return a.values
    return table.get(activation, table["tanh"])


def _sigma_w2_axes(axes, activation: str) -> tuple:
    return _own_axis(axes, "init.sigma_w2", SIGMA_W2, activation)


def compute(cfg: Config, axes, progress: bool = False, store=None) -> xr.Dataset:
    """One sweep per activation over its own σ_w² and rate axes; concatenated along
    `activation` (outer join: a cell outside an activation's axes is NaN)."""
    from sigjax.engine import grid

    if any(k == "init.sigma_b2" for a in axes for k in (a.key, *(k for k, _ in a.zipped))):
        raise UserError(
            "trainability draws its theory at one σ_b²: fix it with --set init.sigma_b2=VALUE "
            "(a grid over init.sigma_b2 would be compared with the wrong ξ_c)"
        )
    if cfg.train.loss not in losses.CLASSIFICATION:
        raise UserError(
            f"trainability scores accuracy: train.loss must be one of "
            f"{', '.join(losses.CLASSIFICATION)}, got {cfg.train.loss!r}"
        )
    full = data_lib.load(cfg.data)
    data = split_validation(full)
    for name, (_, fn) in VAL_TEST.items():
        metrics.register(name, fn)
    listed = [m for m in cfg.train.metrics.split(",") if m.strip()]
    run_cfg = config.replace(cfg, {"train.metrics": ",".join([*listed, *VAL_TEST])})

    acts = next((a.values for a in axes if a.key == "model.activation"), None)
    acts = acts or (cfg.model.activation,)
    own = ("model.activation", "init.sigma_w2", "optim.lr")
    rest = [a for a in axes if a.key not in own]
    parts, offset, used = [], 0, {"init.sigma_w2": {}, "optim.lr": {}}
    for act in acts:
        own_axes = (
            grid.Axis("init.sigma_w2", tuple(_sigma_w2_axes(axes, act))),
            grid.Axis("optim.lr", tuple(_own_axis(axes, "optim.lr", LR, act))),
        )
        sub_axes = (*rest, *own_axes)
        sub_cfg = config.replace(run_cfg, {"model.activation": act})
        sub_store = checkpoint.Shifted(store, offset) if store is not None else None
        parts.append(sweep.run(sub_cfg, sub_axes, progress=progress, store=sub_store, data=data))
        offset += len(sweep.check(sub_cfg, sub_axes))
        for a in own_axes:
            used[a.key][act] = list(a.values)
    ds = xr.concat(
        parts,
        dim=pd.Index(list(acts), name="activation"),
        join="outer",
        combine_attrs="override",
        data_vars="all",
    )
    # the engine's test metrics saw both halves; the registered ones saw each half
    ds = ds.drop_vars([v for v in ("test_loss", "test_accuracy") if v in ds])
    ds = ds.rename({name: var for name, (var, _) in VAL_TEST.items()})
    if "depth" in ds.dims:
        ds["n_layers"] = (ds.depth + 1).astype(np.int32).broadcast_like(ds.loss.isel(step=0))
    # theory at every grid point (σ_b² from the config)
    b = cfg.init.sigma_b2
    xi = np.full((len(acts), ds.sizes["sigma_w2"]), np.nan)
    chi = np.full_like(xi, np.nan)
    for i, act in enumerate(acts):
        mf = mean_field_grid(act, ds.sigma_w2.values, b)
        xi[i], chi[i] = mf["xi_c"], mf["chi_1"]
    ds["xi_c"] = (("activation", "sigma_w2"), xi)
    ds["chi_1"] = (("activation", "sigma_w2"), chi)
    ds.attrs["n_classes"] = int(full.n_classes)
    ds.attrs["n_train_val_test"] = json.dumps(
        [int(data.x_train.shape[0]), int(full.x_test.shape[0]), int(full.x_test.shape[0])]
    )
    ds.attrs["config"] = config.to_json(cfg)
    ds.attrs["grid"] = json.dumps(
        [[a.key, list(a.values)] for a in axes if a.key not in own[1:]]
        + [[k, v] for k, v in used.items()]
    )
    ds.attrs["wall_time_s"] = float(sum(p.attrs.get("wall_time_s", 0.0) for p in parts))
    return ds
