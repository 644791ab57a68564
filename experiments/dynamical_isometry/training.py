"""The dynamical_isometry study's training sweep: nets on the critical line at q*, their
inputs scaled so that the first layer starts at q*, q measured per layer (`preact_q`), and
steps to a training-loss threshold vs depth."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from experiments.dynamical_isometry.jacobians import (
    SMALL_Q,
    SPEC_SCHEMES,
    TRAIN_EVAL,
    critical_params,
    spectra,
    spectra_depths,
    spectra_width,
)
from sigjax import config
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import checkpoint, grid, metrics, sweep
from sigjax.errors import UserError
from sigjax.nn import initializers

# ----------------------------------------------------------------- training speed

TRAIN_Q_STAR = {"tanh": SMALL_Q}  # activations trained on their critical line at this q*
Q_METRIC = "preact_q"  # recorded per layer: the mean squared pre-activation


def preact_q(ctx: metrics.Context) -> jax.Array:
    """(n_layers,) mean of z_l² over the batch and units: the empirical q of every layer (at
    step 0, the initial net on its first batch)."""
    return jnp.stack([jnp.mean(z**2) for z in ctx.inter.pre])


CONFIG = config.replace(
    Config(),
    {
        "data.name": "mnist1d",
        "data.seed": 42,
        "model.width": 64,
        "model.depth": 8,
        "model.activation": "tanh",
        "model.head_activation": "identity",
        "init.scheme": "gaussian",
        "optim.name": "sgd",
        "train.loss": "softmax_ce",
        "train.batch_size": 32,
        "train.steps": 600,
        "train.log_every": 5,
        "train.loss_threshold": 1.75,
    },
)
GRID = {
    "model.activation": ("tanh", "relu"),
    "init.scheme": SPEC_SCHEMES,
    "model.depth": (2, 8, 32),
    "optim.lr": (0.01, 0.03, 0.1, 0.3),
    "seed": (0, 1, 2, 3, 4),
}
FULL = (
    {"model.width": 256, "train.steps": 5000, "train.log_every": 10},
    {
        "model.depth": (2, 4, 8, 16, 32, 64, 128, 256),
        "optim.lr": tuple(float(v) for v in np.logspace(-3, 0, 7)),
        "seed": tuple(range(8)),
    },
)
# Static keys a run's data scale depends on (with every data.* key): each combination trains
# through its own sweep, on its own scaled copy of the data.
PART_KEYS = ("model.activation", "init.scheme", "model.width")


def train_params(activation: str) -> tuple[float, float]:
    """(σ_w², σ_b²) for training: the critical line at TRAIN_Q_STAR, He init for ReLU."""
    w2, b2, _ = critical_params(activation, TRAIN_Q_STAR.get(activation))
    return w2, b2


def train_q_star(activation: str) -> float:
    """The q* a trained net of this activation starts at (1 for ReLU's He init)."""
    return critical_params(activation, TRAIN_Q_STAR.get(activation))[2]


def _group_cfg(cfg: Config) -> Config:
    """cfg with the activation's σ_w², σ_b² and the q metric (registered here) recorded."""
    metrics.register(Q_METRIC, preact_q, per_layer=True)
    w2, b2 = train_params(cfg.model.activation)
    listed = [n.strip() for n in cfg.train.metrics.split(",") if n.strip()]
    return config.replace(
        cfg,
        {
            "init.sigma_w2": w2,
            "init.sigma_b2": b2,
            "train.metrics": ",".join(dict.fromkeys([*listed, Q_METRIC])),
        },
    )


def input_scale(cfg: Config, x_train: np.ndarray) -> float:
    """The factor c for inputs c·x whose first pre-activations have mean variance q*.

    Layer 1 computes h = x W + b with Var W_ij = σ_w²·v (v = `initializers.kernel_variance` of
    the scheme: 1/n_in for Gaussian, 1/max(n_in, width) for a semi-orthogonal W, whose rows are
    orthonormal when n_in < width) and Var b = σ_b², so over the weights
    E[h_j²] = σ_w² v Σ_i x_i² + σ_b²; averaged over the training set that is q* when
    mean_x Σ_i x_i² = (q* − σ_b²)/(σ_w² v)."""
    w2, b2 = train_params(cfg.model.activation)
    q = train_q_star(cfg.model.activation)
    n_in = x_train.shape[1]
    v = initializers.kernel_variance(cfg.init.scheme, n_in, cfg.model.width)
    target = (q - b2) / (w2 * v)
    return float(np.sqrt(target / np.mean(np.sum(np.asarray(x_train, np.float64) ** 2, 1))))


def make_data(cfg: Config) -> data_lib.Data:
    """The training set scaled by `input_scale`, with its first TRAIN_EVAL examples in the
    "test" slot: every logged step then records the loss on those fixed training examples."""
    full = data_lib.load(cfg.data)
    c = input_scale(cfg, np.asarray(full.x_train))
    x = full.x_train * c
    n = min(TRAIN_EVAL, x.shape[0])
    return data_lib.from_arrays(
        x, full.y_train, x[:n], full.y_train[:n], task="classification", n_classes=full.n_classes
    )


def _part_axis(a: grid.Axis) -> bool:
    keys = (a.key, *(k for k, _ in a.zipped))
    return any(k in PART_KEYS or k.startswith("data.") for k in keys)


def _part_store(store: checkpoint.Store | None, i: int) -> checkpoint.Store | None:
    """Part i's own checkpoint in a subdirectory (same fingerprint); a fresh run's directory
    is new, so a part checkpoint found there belongs to the run being resumed."""
    if store is None:
        return None
    sub = checkpoint.Store(store.dir / f"part-{i}", store.fp)
    sub.open(resume=sub.manifest.exists())
    return sub


def train_sweep(cfg: Config, axes, progress: bool = False, store=None) -> xr.Dataset:
    """The training grid: one `sweep.run` per combination of the PART_KEYS / data axes (its
    own scaled data, σ_w², σ_b² and the q metric), the parts stacked along their dims.
    `loss` is the minibatch loss, `train_eval_loss` / `_accuracy` those on the fixed examples."""
    outer = [a for a in axes if _part_axis(a)]
    inner = [a for a in axes if not _part_axis(a)]
    parts = []
    for i, g in enumerate(grid.groups(cfg, outer)):
        gcfg = _group_cfg(g.cfg)
        ds = sweep.run(
            gcfg, inner, data=make_data(gcfg), progress=progress, store=_part_store(store, i)
        )
        ds = ds.expand_dims({a.dim: [a.values[j]] for a, j in zip(outer, g.index, strict=True)})
        parts.append(ds)
    shape = [len(a.values) for a in outer]

    def nest(items, shape):
        if not shape:
            return items[0]
        k = len(items) // shape[0]
        return [nest(items[j * k : (j + 1) * k], shape[1:]) for j in range(shape[0])]

    out = (
        xr.combine_nested(nest(parts, shape), concat_dim=[a.dim for a in outer])
        if outer
        else parts[0]
    )
    # the layout the report and earlier results use: (…, depth, scheme, dynamic dims…)
    first = [a.dim for a in outer if a.dim != "scheme"] + [a.dim for a in inner if not a.dynamic]
    first += ["scheme"] if "scheme" in out.dims else []
    out = out.transpose(*first, ...)
    out.attrs = {
        **parts[0].attrs,
        "config": config.to_json(cfg),
        "grid": json.dumps([[a.key, list(a.values)] for a in axes]),
        "wall_time_s": sum(float(p.attrs.get("wall_time_s", 0.0)) for p in parts),
    }
    return out.rename({"test_loss": "train_eval_loss", "test_accuracy": "train_eval_accuracy"})


def compute(cfg: Config, axes, progress: bool, store) -> xr.Dataset:
    """The spectra (seconds to a minute), then the training sweep (see the module docstring)."""
    if any(k.startswith("init.sigma") for a in axes for k in (a.key, *(z for z, _ in a.zipped))):
        raise UserError("dynamical_isometry sets init.sigma_w2 / init.sigma_b2 per activation")
    depth_axis = next((a for a in axes if a.key == "model.depth"), None)
    max_depth = max(depth_axis.values) if depth_axis else cfg.model.depth
    seed_axis = next((a for a in axes if a.key == "seed"), None)
    seeds = seed_axis.values if seed_axis else (cfg.seed,)
    spec = spectra(spectra_width(cfg.model.width), spectra_depths(max_depth), seeds[:3])
    ds = train_sweep(cfg, axes, progress, store)
    acts = ds.activation.values.tolist() if "activation" in ds.dims else [cfg.model.activation]
    w = [train_params(a) for a in acts]
    extra = xr.Dataset(
        {
            "train_sigma_w2": ("train_activation", [v[0] for v in w]),
            "train_sigma_b2": ("train_activation", [v[1] for v in w]),
            "train_q_star": ("train_activation", [train_q_star(a) for a in acts]),
        },
        coords={"train_activation": acts},
    )
    out = xr.merge([ds, spec, extra], combine_attrs="override")
    out.attrs = {**ds.attrs, "spectra_width": spectra_width(cfg.model.width)}
    return out
