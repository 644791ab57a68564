"""What makes a deep sigmoid network train, by how much, and why: the remedies, one at a time.

Sigmoid MLPs of depth 10 (and 20 under `--full`), width 64 (`--full`: 128), on MNIST-1D and
digits, softmax cross-entropy, minibatch SGD (batch 32), each remedy alone and a few strong
combinations, against tanh and ReLU baselines of the same depth (`REMEDIES`):

- init: plain N(0, 1/n) (σ_w² = 1), Glorot's normalized U[±√6/√(n_in + n_out)], He N(0, 2/n),
  and the mean-field critical point of the sigmoid (σ_w² on the χ₁ = 1 line at σ_b² = 0.05,
  `critical_init`: σ_w² ≈ 103, far out, with q* ≈ 46: a heavily saturated net);
- activation: the centred sigmoid σ(x) − ½;
- architecture: batch norm and layer norm before each hidden nonlinearity; the residual MLP
  h ← h + α·φ(W h + b) with α = 1 and α = 1/√depth;
- optimizer: Adam, warmup + cosine decay of the rate, global-norm gradient clipping;
- combinations: Glorot + Adam + warmup-cosine, batch norm + Adam, residual (α = 1/√depth) +
  layer norm + Adam + warmup-cosine;
- baselines: tanh with σ_w² = 1 and ReLU with He init (each activation's own critical init).

The learning rate: every remedy has a log-spaced grid of `N_RATES` rates half a decade apart
(SGD 0.01…3.2, Adam 1e-4…3.2e-2). Stage 1 trains every rate with `TUNE_SEEDS` (seeds kept apart
from the reported ones) and picks the rate with the highest mean final accuracy on a validation
split (the last eighth of the training set, never trained on: `Data.hold_out`); stage 2
trains the grid's seeds at that rate, and the table reports them. A rate at either end of its
grid is flagged in the table. Members that differ only in init scheme and traced values
(σ_w², σ_b², α, clip, warmup, rate, seed) share one compiled program.

Measured (stage 2): validation loss and accuracy at every logged step, the test accuracy of the
final model (eval mode: batch norm's running averages), per-layer gradient norms and
saturation; table.md gives the test accuracy (mean ± std over seeds), the steps to a target
validation accuracy (`TARGETS`), the gradient ratio ‖∂L/∂W₁‖/‖∂L/∂W_out‖ and the top hidden
layer's saturation, at init and after training.

Three literature checks run with it:
- Ioffe & Szegedy (2015): does batch norm make the sigmoid net train, and how close to ReLU?
  (read off the main table);
- Yang et al. (2019): per-layer gradient growth at init with and without batch norm, depths up
  to 20 (`--full`: 50), against the large-batch prediction (`bn_growth_prediction`) and, without
  batch norm, the mean-field χ₁ profile (`sigjax.theory.gradient_profile`);
- He et al. (2015): a 30-layer ReLU net trained with He init (σ_w² = 2) and with the "Xavier"
  scaling of their comparison (Var W = 1/n_in, σ_w² = 1).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from experiments import _extra
from experiments.remedies import checks, reporting, training
from sigjax import config
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import results
from sigjax.study import Study

CONFIG = config.replace(
    Config(),
    {
        "data.name": "mnist1d",
        "data.seed": 42,
        "model.depth": 10,
        "model.width": 64,
        "model.activation": "sigmoid",
        "model.head_activation": "identity",
        "init.scheme": "gaussian",
        "init.sigma_w2": 1.0,
        "init.sigma_b2": 0.0,
        "optim.name": "sgd",
        "train.loss": "softmax_ce",
        "train.batch_size": 32,
        "train.steps": 1000,
        "train.log_every": 50,
    },
)
GRID = {"data.name": ("mnist1d", "digits"), "model.depth": (10,), "seed": tuple(range(12))}
FULL = (
    {"model.width": 128, "train.steps": 5000, "train.log_every": 100},
    {"model.depth": (10, 20), "seed": tuple(range(16))},
)
AXES = ("data.name", "model.depth", "seed")
FULL_YANG_DEPTHS = (5, 10, 20, 30, 40, 50)


def compute(cfg: Config, axes, progress: bool, store) -> xr.Dataset:
    _extra.refuse_other_axes("remedies", axes, AXES)
    names = list(training.REMEDIES)
    datasets = grid_values(axes, "data.name", cfg.data.name)
    depths = grid_values(axes, "model.depth", cfg.model.depth)
    seeds = np.asarray(grid_values(axes, "seed", cfg.seed), np.int64)
    loaded = {}
    for d in datasets:  # every dataset loads (or fails) before anything trains
        dc = config.replace(cfg, {"data.name": d}).data
        full = data_lib.load(dc)
        val = full.hold_out(max(1, full.x_train.shape[0] // training.VAL_FRACTION))
        loaded[d] = (val, {"x": full.x_test, "y": full.y_test})
    per_remedy = len(seeds) + training.N_RATES * len(training.TUNE_SEEDS)
    he_members = (
        len(checks.HE_INITS)
        * len(checks.HE_RATES)
        * checks.HE_SEEDS
        * checks.HE_DEPTH
        / cfg.model.depth
    )
    total = cfg.train.steps * (len(datasets) * len(depths) * len(names) * per_remedy + he_members)
    bar = tqdm(
        total=total, unit="step", unit_scale=True, disable=not progress, desc="members x steps"
    )
    gi, runs = 0, {}
    for d in datasets:
        for depth in depths:
            c = config.replace(cfg, {"data.name": d, "model.depth": int(depth)})
            runs[d, depth], gi = training.run_setting(c, names, seeds, *loaded[d], store, gi, bar)
    he = store.load_group(gi) if store else None
    if he is None:
        he = checks.he_check(
            config.replace(cfg, {"data.name": datasets[0]}), *loaded[datasets[0]], bar
        )
        if store:
            store.save_group(gi, he)
    yang_depths = FULL_YANG_DEPTHS if max(depths) > 10 else checks.YANG_DEPTHS
    yang = store.load_group(gi + 1) if store else None
    if yang is None:
        yang = checks.yang_check(config.replace(cfg, {"data.name": datasets[0]}), yang_depths)
        if store:
            store.save_group(gi + 1, yang)
    bar.close()
    return assemble(cfg, datasets, depths, seeds, names, runs, he, yang, yang_depths)


def grid_values(axes, key: str, default) -> list:
    return list(next((a.values for a in axes if a.key == key), (default,)))


HE_VARS = {  # he_check's arrays -> (results variable, dims after init, rate, seed)
    "he_loss": ("he_loss", ("step",)),
    "he_test_accuracy": ("he_val_accuracy", ("step",)),
    "he_grad_norm": ("he_grad_norm", ("step", "he_layer")),
    "he_test_accuracy_final": ("he_test_accuracy", ()),
    "he_diverged_at": ("he_diverged_at", ()),
}


def assemble(cfg, datasets, depths, seeds, names, runs, he, yang, yang_depths) -> xr.Dataset:
    """One Dataset: stage 2 over (name, depth, remedy, seed, step[, layer]), stage 1 over
    (name, depth, remedy, rate, tune_seed), the checks over their own dims."""
    n_layer = max(v[1]["grad_norm"].shape[-1] for r in runs.values() for v in r.values())
    lead = (len(datasets), len(depths), len(names))
    dims = ["name", "depth", "remedy"]
    steps = np.arange(cfg.train.steps // cfg.train.log_every + 1) * cfg.train.log_every
    out: dict[str, tuple] = {}

    def put(var, tail_dims, idx, arr):
        if var not in out:
            shape = lead + tuple(
                n_layer if t == "layer" else s for t, s in zip(tail_dims, arr.shape, strict=True)
            )
            out[var] = (dims + list(tail_dims), np.full(shape, np.nan, np.float32))
        out[var][1][idx][tuple(slice(0, s) for s in arr.shape)] = arr

    n_layers = np.zeros(lead, np.int32)
    best = np.full(lead, np.nan)
    for i, d in enumerate(datasets):
        for j, depth in enumerate(depths):
            for k, n in enumerate(names):
                tune, rep = runs[d, depth][n]
                idx = (i, j, k)
                put("tune_val_accuracy", ("rate", "tune_seed"), idx, tune["val_accuracy"])
                put("tune_val_loss", ("rate", "tune_seed"), idx, tune["val_loss"])
                best[idx] = tune["best"]
                for key, arr in rep.items():
                    var = training.RENAME.get(key, key).removesuffix("_final")
                    if key == "diverged_at":
                        arr = np.where(arr < 0, np.nan, arr)
                    tail = ("seed", "step", "layer")[: arr.ndim]
                    put(var, tail, idx, arr)
                n_layers[idx] = rep["grad_norm"].shape[-1]
    lr = np.array([training.rates(training.remedy_config(n, cfg)) for n in names])
    ds = xr.Dataset(
        {k: v for k, v in out.items()},
        coords={
            "name": list(datasets),
            "depth": [int(d) for d in depths],
            "remedy": names,
            "seed": seeds,
            "step": steps,
            "layer": np.arange(1, n_layer + 1),
            "rate": np.arange(training.N_RATES),
            "tune_seed": list(training.TUNE_SEEDS),
            "lr": (("remedy", "rate"), lr),
        },
    )
    ds["n_layers"] = (dims, n_layers)
    ds["best_rate"] = (dims, best)
    ds["best_lr"] = ds.lr.isel(rate=ds.best_rate.astype(int))
    for key, (var, tail) in HE_VARS.items():
        arr = he[key].astype(np.float32)
        if key == "he_diverged_at":
            arr = np.where(arr < 0, np.nan, arr)
        ds[var] = (("he_init", "he_rate", "he_seed", *tail), arr)
    ds = ds.assign_coords(
        he_init=list(checks.HE_INITS),
        he_rate=list(checks.HE_RATES),
        he_seed=np.arange(checks.HE_SEEDS),
    )
    ds["yang_grad_norm"] = (
        ("yang_activation", "yang_norm", "yang_depth", "yang_seed", "yang_layer"),
        yang["yang_grad_norm"].astype(np.float32),
    )
    ds = ds.assign_coords(
        yang_activation=list(checks.YANG_ACTIVATIONS),
        yang_norm=list(checks.YANG_NORMS),
        yang_depth=list(yang_depths),
        yang_layer=np.arange(1, max(yang_depths) + 2),
    )
    ds.attrs = {
        "config": config.to_json(cfg),
        "format_version": results.FORMAT_VERSION,
        "critical_sigma_w2": training.critical_init()[0],
        "critical_sigma_b2": training.critical_init()[1],
        "targets": json.dumps(training.TARGETS),
        "yang_q_input": float(yang["yang_q_input"]),
        "he_depth": checks.HE_DEPTH,
        **results.provenance(),
    }
    return ds


# ----------------------------------------------------------------------------- report


STUDY = Study(
    name="remedies",
    description=(
        "what makes a deep sigmoid net train: init, centred sigmoid, batch/layer norm, residual, "
        "Adam, warmup-cosine, clipping and combinations vs tanh/ReLU, depth 10 on MNIST-1D and "
        "digits, rate chosen on validation; Ioffe-Szegedy, Yang et al., He et al. checks; "
        "table.md, figures/"
    ),
    config=CONFIG,
    grid=GRID,
    report=reporting.report,
    compute=compute,
    requires=("name", "depth", "seed"),
    presets={"quick": ({}, {}), "full": FULL},
)
