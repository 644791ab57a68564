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
split (the last eighth of the training set, never trained on: `glorot2010.split_data`); stage 2
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

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from experiments import _extra
from experiments.glorot2010 import split_data
from sigjax import analysis, config, theory
from sigjax import data as data_lib
from sigjax.analysis import plotting
from sigjax.config import Config
from sigjax.engine import programs, results, sweep, train
from sigjax.nn import losses
from sigjax.study import Study
from sigjax.theory import numerics as theory_numerics

# ----------------------------------------------------------------------------- the remedies

CRITICAL_SIGMA_B2 = 0.05  # the critical init's bias variance (σ_w² then follows from χ₁ = 1)
N_RATES = 6
SGD_RATES = tuple(float(v) for v in np.logspace(-2, 0.5, N_RATES))  # 0.01 … 3.16
ADAM_RATES = tuple(float(v) for v in np.logspace(-4, -1.5, N_RATES))  # 1e-4 … 3.16e-2
TUNE_SEEDS = (1000, 1001)  # stage 1 (rate selection); the reported seeds are the grid's
TARGETS = {"mnist1d": 0.5, "digits": 0.9}  # validation accuracy for steps-to-target
CLIP = 1.0  # global gradient norm bound of the clipping remedy
WARMUP = 0.1  # share of the steps ramping the rate up, for warmup-cosine
INV_SQRT_DEPTH = "1/sqrt(depth)"  # a residual scale resolved per depth


@functools.cache
def critical_init() -> tuple[float, float]:
    """(σ_w², σ_b²) on the sigmoid's χ₁ = 1 line at σ_b² = CRITICAL_SIGMA_B2."""
    w = float(theory.critical_sigma_w2("sigmoid", CRITICAL_SIGMA_B2))
    return w, CRITICAL_SIGMA_B2


CRITICAL = "critical"  # placeholder for critical_init() in REMEDIES (resolved lazily)
ADAM = {"optim.name": "adam"}
WCOS = {"optim.schedule": "warmup_cosine", "optim.warmup": WARMUP}
RES = {"model.arch": "resmlp"}

# name -> config keys on top of CONFIG (the rate grid follows optim.name)
REMEDIES: dict[str, dict[str, Any]] = {
    "plain": {},
    "glorot": {"init.scheme": "glorot_uniform"},
    "he": {"init.scheme": "he_normal"},
    "critical": {"init.sigma_w2": CRITICAL, "init.sigma_b2": CRITICAL},
    "centred": {"model.activation": "centred_sigmoid"},
    "batchnorm": {"model.norm": "batch"},
    "layernorm": {"model.norm": "layer"},
    "residual": {**RES, "init.residual_scale": 1.0},
    "residual_sqrt": {**RES, "init.residual_scale": INV_SQRT_DEPTH},
    "adam": ADAM,
    "warmup_cosine": WCOS,
    "clip": {"optim.clip": CLIP},
    "glorot+adam+wcos": {"init.scheme": "glorot_uniform", **ADAM, **WCOS},
    "bn+adam": {"model.norm": "batch", **ADAM},
    "res_sqrt+ln+adam+wcos": {
        **RES,
        "init.residual_scale": INV_SQRT_DEPTH,
        "model.norm": "layer",
        **ADAM,
        **WCOS,
    },
    "tanh": {"model.activation": "tanh"},
    "relu": {"model.activation": "relu", "init.scheme": "he_normal"},
}
BASELINES = ("tanh", "relu")
# keys that change the compiled program; the rest (init scheme, traced values) are members
STATIC = ("model.activation", "model.norm", "model.arch", "optim.name", "optim.schedule")


def remedy_config(name: str, cfg: Config) -> Config:
    """cfg with remedy `name` applied (its placeholders resolved at cfg's depth)."""
    sets = {}
    for key, value in REMEDIES[name].items():
        if value == CRITICAL:
            w, b = critical_init()
            value = w if key == "init.sigma_w2" else b
        elif value == INV_SQRT_DEPTH:
            value = 1.0 / math.sqrt(cfg.model.depth)
        sets[key] = value
    return config.replace(cfg, sets)


def rates(cfg: Config) -> tuple[float, ...]:
    return ADAM_RATES if cfg.optim.name == "adam" else SGD_RATES


def static_key(cfg: Config) -> tuple:
    return tuple(config.get(cfg, k) for k in STATIC)


# ----------------------------------------------------------------------------- training


@dataclass
class Group:
    """Remedies that share a compiled program: their configs, in REMEDIES order."""

    cfgs: dict[str, Config] = field(default_factory=dict)


def groups_of(cfg: Config, names) -> list[Group]:
    out: dict[tuple, Group] = {}
    for n in names:
        rc = remedy_config(n, cfg)
        out.setdefault(static_key(rc), Group()).cfgs[n] = rc
    return list(out.values())


def train_members(
    cfgs: list[Config],
    data: data_lib.Data,
    test: dict | None,
    lrs: np.ndarray,
    seeds: np.ndarray,
    bar=None,
) -> dict[str, np.ndarray]:
    """Train member i with config cfgs[i] (equal but for init scheme and traced values) at
    rate lrs[i] and seed seeds[i], all in one compiled program.

    Returns NumPy arrays with a leading member axis: the Record fields (M, T[, L]) (its test
    metrics are on data's test split, the validation split here), diverged_at (M,) (-1: never)
    and, given `test` ({"x", "y"}), test_accuracy_final and test_loss_final (M,) on it in eval
    mode (NaN for a diverged member).
    """
    base = config.replace(cfgs[0], {"init.scheme": "gaussian"})
    hp = {k: np.array([train.hparams_of(c, np.float32)[k] for c in cfgs]) for k in train.HPARAMS}
    hp["lr"] = np.asarray(lrs, np.float32)
    seeds = jnp.asarray(np.asarray(seeds).astype(np.uint32))
    prog = train.program(base, data)
    fns = programs.compiled(prog)
    schemes = sorted({c.init.scheme for c in cfgs})
    parts, where = [], []
    for s in schemes:  # each scheme's initial weights, from its own (cheap) init program
        idx = np.flatnonzero([c.init.scheme == s for c in cfgs])
        p = train.program(config.replace(base, {"init.scheme": s}), data)
        sub = {k: jnp.asarray(v[idx]) for k, v in hp.items()}
        parts.append(programs.compiled(p).init(data, sub, seeds[idx]))
        where.append(idx)
    order = np.argsort(np.concatenate(where))
    state = jax.tree.map(lambda *xs: jnp.concatenate(xs)[order], *parts)
    hp = {k: jnp.asarray(v) for k, v in hp.items()}
    pieces: dict[str, list] = {}
    for n in sweep.segment_plan(prog.n_logs - 1, 4):
        state, rec = fns.advance(data, hp, seeds, state, n)
        for k, v in programs.record_fields(rec).items():
            pieces.setdefault(k, []).append(np.asarray(v))
        if bar is not None:
            bar.update(len(cfgs) * n * prog.cfg.train.log_every)
    last = programs.record_fields(fns.finish(data, hp, seeds, state))
    out = {k: np.concatenate([*pieces[k], np.asarray(v)[:, None]], 1) for k, v in last.items()}
    if test is not None:
        acc, loss = _evaluate(prog, state.params, state.model_state, test["x"], test["y"])
        alive = np.asarray(state.diverged_at) < 0
        out["test_accuracy_final"] = np.where(alive, np.asarray(acc), np.nan)
        out["test_loss_final"] = np.where(alive, np.asarray(loss), np.nan)
    out["diverged_at"] = np.asarray(state.diverged_at)
    return out


@functools.partial(jax.jit, static_argnums=0)
def _evaluate(prog: train.Program, params, model_state, x, y):
    """(accuracy, loss) of every member on (x, y) in eval mode: two (M,) arrays."""

    def one(p, s):
        out = prog.family.apply(prog.model, p, s, x, train=False)[0]
        return losses.accuracy(out, y, prog.cfg.train.loss), losses.get(prog.cfg.train.loss)(out, y)

    return jax.vmap(one)(params, model_state)


def pick_rate(val_accuracy: np.ndarray) -> int:
    """Index of the rate with the highest mean final validation accuracy over seeds
    (val_accuracy: (rates, seeds); a diverged member, NaN, counts as accuracy 0)."""
    return int(np.argmax(np.nan_to_num(val_accuracy, nan=0.0).mean(axis=1)))


KEEP = ("loss", "test_loss", "test_accuracy", "grad_norm", "saturation")  # stage-2 records
RENAME = {"test_loss": "val_loss", "test_accuracy": "val_accuracy"}


def _run_setting(cfg, names, seeds, data, test, store, gi, bar):
    """Both stages for one (dataset, depth): {remedy: (stage-1 arrays, stage-2 arrays)}."""
    out = {}
    for g in groups_of(cfg, names):
        names_g = list(g.cfgs)
        tune = store.load_group(gi) if store else None
        if tune is None:
            cfgs, lrs, ss = [], [], []
            for n in names_g:
                for r in rates(g.cfgs[n]):
                    for s in TUNE_SEEDS:
                        cfgs.append(g.cfgs[n]), lrs.append(r), ss.append(s)
            res = train_members(cfgs, data, None, np.array(lrs), np.array(ss), bar)
            tune = {
                "val_accuracy": res["test_accuracy"][:, -1],
                "val_loss": res["test_loss"][:, -1],
            }
            if store:
                store.save_group(gi, tune)
        gi += 1
        shape = (len(names_g), N_RATES, len(TUNE_SEEDS))
        acc = tune["val_accuracy"].reshape(shape)
        best = [pick_rate(a) for a in acc]
        rep = store.load_group(gi) if store else None
        if rep is None:
            cfgs = [g.cfgs[n] for n in names_g for _ in seeds]
            lrs = [rates(g.cfgs[n])[b] for n, b in zip(names_g, best, strict=True) for _ in seeds]
            ss = np.tile(seeds, len(names_g))
            res = train_members(cfgs, data, test, np.array(lrs), ss, bar)
            rep = {k: v for k, v in res.items() if k in KEEP or k.endswith("_final")}
            rep["diverged_at"] = res["diverged_at"]
            if store:
                store.save_group(gi, rep)
        gi += 1
        for i, n in enumerate(names_g):
            rows = slice(i * len(seeds), (i + 1) * len(seeds))
            out[n] = (
                {
                    "val_accuracy": acc[i],
                    "val_loss": tune["val_loss"].reshape(shape)[i],
                    "best": best[i],
                },
                {k: v[rows] for k, v in rep.items()},
            )
    return out, gi


# ----------------------------------------------------------------------------- literature checks

YANG_DEPTHS = (5, 10, 15, 20)
YANG_ACTIVATIONS = ("sigmoid", "relu")
YANG_NORMS = ("none", "batch")
YANG_BATCH = 256  # examples per gradient at init (the prediction is the large-batch limit)
YANG_SEEDS = 8
YANG_SIGMA_W2 = {"sigmoid": 1.0, "relu": 2.0}  # plain sigmoid; ReLU at its own critical point


def bn_growth_prediction(activation: str) -> float:
    """Per-layer growth of ‖∂L/∂W_l‖ toward the input at init under batch norm, in the limit of
    wide layers and large batches: sqrt(E[φ'(z)²] / Var[φ(z)]), z ~ N(0, 1).

    Why: batch norm makes every pre-activation N(0, 1) over the batch and divides the backward
    signal by the batch std of W a, σ_w·std φ(z), while W's transpose multiplies it by σ_w, so
    the squared gradient grows by E[φ'(z)²] / Var[φ(z)] per layer whatever σ_w² is (the centring
    projections remove 2 of B directions). For ReLU this is π/(π − 1), Yang et al.'s
    large-batch gradient-explosion rate for ReLU.
    """
    p = theory_numerics.phi(activation)  # float64 quadrature that splits at the kinks
    e = lambda f: float(theory_numerics.gauss_expect(f, 1.0, p.kinks))  # noqa: E731
    var = e(lambda x: p.f(x) ** 2) - e(p.f) ** 2
    return math.sqrt(e(lambda x: p.d1(x) ** 2) / var)


def growth_factor(grad_norm: np.ndarray, depth: int) -> np.ndarray:
    """Per-layer growth of ‖∂L/∂W_l‖ toward the input over the hidden layers 2..depth (the
    first sees the data, the output layer its own loss): (‖∇W_2‖ / ‖∇W_depth‖)^(1/(depth-2)).
    grad_norm (..., layer) with layer 1..depth+1."""
    return (grad_norm[..., 1] / grad_norm[..., depth - 1]) ** (1.0 / (depth - 2))


def chi_prediction(activation: str, sigma_w2: float, depth: int, q_start: float) -> float:
    """The mean-field growth factor of ‖∂L/∂W_l‖ over hidden layers 2..depth without batch norm
    (sigjax.theory.gradient_profile of the weight gradients, biases 0)."""
    prof = theory.gradient_profile(activation, sigma_w2, 0.0, depth, q_start, weights=True)
    return float((prof[1] / prof[depth - 1]) ** (0.5 / (depth - 2)))


def yang_check(cfg: Config, depths=YANG_DEPTHS) -> dict[str, np.ndarray]:
    """‖∂L/∂W_l‖ at init on one batch of YANG_BATCH training examples: (act, norm, depth, seed,
    layer) NaN-padded, for every activation, norm and depth."""
    full = data_lib.load(cfg.data)
    x, y = full.x_train[:YANG_BATCH], full.y_train[:YANG_BATCH]
    data = data_lib.Data(x_train=x, y_train=y, n_classes=full.n_classes)
    out = np.full(
        (len(YANG_ACTIVATIONS), len(YANG_NORMS), len(depths), YANG_SEEDS, max(depths) + 1), np.nan
    )
    for i, act in enumerate(YANG_ACTIVATIONS):
        for j, norm in enumerate(YANG_NORMS):
            for k, depth in enumerate(depths):
                c = config.replace(
                    cfg,
                    {
                        "model.activation": act,
                        "model.norm": norm,
                        "model.depth": depth,
                        "model.arch": "mlp",
                        "init.scheme": "gaussian",
                        "init.sigma_w2": YANG_SIGMA_W2[act],
                        "init.sigma_b2": 0.0,
                        "train.record": "gradients",
                    },
                )
                out[i, j, k, :, : depth + 1] = _init_grads(train.program(c, data), data)
    return {"yang_grad_norm": out, "yang_q_input": np.asarray(jnp.mean(x**2), np.float64)}


def _init_grads(prog: train.Program, data: data_lib.Data) -> np.ndarray:
    hp = train.hparams_of(prog.cfg)

    def one(seed):
        st = prog.init(hp, jax.random.key(seed))
        _, rec, _ = prog.measure(data, st.params, data.x_train, data.y_train, st.model_state)
        return rec["grad_norm"]

    return np.asarray(jax.jit(jax.vmap(one))(jnp.arange(YANG_SEEDS)))


HE_DEPTH = 30
HE_INITS = {"xavier": 1.0, "he": 2.0}  # σ_w² of N(0, σ_w²/n_in): their Xavier, their own
HE_RATES = (0.003, 0.01, 0.03, 0.1)
HE_SEEDS = 4


def he_check(cfg: Config, data, test, bar=None) -> dict[str, np.ndarray]:
    """A HE_DEPTH-layer ReLU net, "xavier" vs "he" init, every rate × HE_SEEDS seeds: the
    records (init, rate, seed, step[, layer]) and the final test accuracy (init, rate, seed)."""
    c = config.replace(
        cfg,
        {
            "model.activation": "relu",
            "model.depth": HE_DEPTH,
            "model.arch": "mlp",
            "model.norm": "none",
            "init.scheme": "gaussian",
        },
    )
    cfgs, lrs, seeds = [], [], []
    for w in HE_INITS.values():
        for r in HE_RATES:
            for s in range(HE_SEEDS):
                cfgs.append(config.replace(c, {"init.sigma_w2": w})), lrs.append(r), seeds.append(s)
    res = train_members(cfgs, data, test, np.array(lrs), np.array(seeds), bar)
    shape = (len(HE_INITS), len(HE_RATES), HE_SEEDS)
    keep = ("loss", "test_accuracy", "grad_norm", "test_accuracy_final", "diverged_at")
    return {f"he_{k}": res[k].reshape(shape + res[k].shape[1:]) for k in keep}


# ----------------------------------------------------------------------------- the study

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
    names = list(REMEDIES)
    datasets = grid_values(axes, "data.name", cfg.data.name)
    depths = grid_values(axes, "model.depth", cfg.model.depth)
    seeds = np.asarray(grid_values(axes, "seed", cfg.seed), np.int64)
    loaded = {}
    for d in datasets:  # every dataset loads (or fails) before anything trains
        dc = config.replace(cfg, {"data.name": d}).data
        train_data, _, _, test = split_data(data_lib.load(dc))
        loaded[d] = (train_data, test)
    per_remedy = len(seeds) + N_RATES * len(TUNE_SEEDS)
    he_members = len(HE_INITS) * len(HE_RATES) * HE_SEEDS * HE_DEPTH / cfg.model.depth
    total = cfg.train.steps * (len(datasets) * len(depths) * len(names) * per_remedy + he_members)
    bar = tqdm(
        total=total, unit="step", unit_scale=True, disable=not progress, desc="members x steps"
    )
    gi, runs = 0, {}
    for d in datasets:
        for depth in depths:
            c = config.replace(cfg, {"data.name": d, "model.depth": int(depth)})
            runs[d, depth], gi = _run_setting(c, names, seeds, *loaded[d], store, gi, bar)
    he = store.load_group(gi) if store else None
    if he is None:
        he = he_check(config.replace(cfg, {"data.name": datasets[0]}), *loaded[datasets[0]], bar)
        if store:
            store.save_group(gi, he)
    yang_depths = FULL_YANG_DEPTHS if max(depths) > 10 else YANG_DEPTHS
    yang = store.load_group(gi + 1) if store else None
    if yang is None:
        yang = yang_check(config.replace(cfg, {"data.name": datasets[0]}), yang_depths)
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
                    var = RENAME.get(key, key).removesuffix("_final")
                    if key == "diverged_at":
                        arr = np.where(arr < 0, np.nan, arr)
                    tail = ("seed", "step", "layer")[: arr.ndim]
                    put(var, tail, idx, arr)
                n_layers[idx] = rep["grad_norm"].shape[-1]
    lr = np.array([rates(remedy_config(n, cfg)) for n in names])
    ds = xr.Dataset(
        {k: v for k, v in out.items()},
        coords={
            "name": list(datasets),
            "depth": [int(d) for d in depths],
            "remedy": names,
            "seed": seeds,
            "step": steps,
            "layer": np.arange(1, n_layer + 1),
            "rate": np.arange(N_RATES),
            "tune_seed": list(TUNE_SEEDS),
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
        he_init=list(HE_INITS), he_rate=list(HE_RATES), he_seed=np.arange(HE_SEEDS)
    )
    ds["yang_grad_norm"] = (
        ("yang_activation", "yang_norm", "yang_depth", "yang_seed", "yang_layer"),
        yang["yang_grad_norm"].astype(np.float32),
    )
    ds = ds.assign_coords(
        yang_activation=list(YANG_ACTIVATIONS),
        yang_norm=list(YANG_NORMS),
        yang_depth=list(yang_depths),
        yang_layer=np.arange(1, max(yang_depths) + 2),
    )
    ds.attrs = {
        "config": config.to_json(cfg),
        "format_version": results.FORMAT_VERSION,
        "critical_sigma_w2": critical_init()[0],
        "critical_sigma_b2": critical_init()[1],
        "targets": json.dumps(TARGETS),
        "yang_q_input": float(yang["yang_q_input"]),
        "he_depth": HE_DEPTH,
        **results.provenance(),
    }
    return ds


# ----------------------------------------------------------------------------- report


def settings(ds: xr.Dataset) -> list[dict]:
    return [
        {"name": n, "depth": d} for n in ds.name.values.tolist() for d in ds.depth.values.tolist()
    ]


def _label(s: dict) -> str:
    return f"{s['name']}, depth {s['depth']}"


def target_of(ds: xr.Dataset) -> xr.DataArray:
    t = json.loads(ds.attrs["targets"])
    return xr.DataArray([t[n] for n in ds.name.values.tolist()], coords={"name": ds.name})


def steps_to_target(ds: xr.Dataset) -> xr.DataArray:
    """First logged step with validation accuracy >= the dataset's target (NaN: never)."""
    reached = ds.val_accuracy >= target_of(ds)
    return (
        ds.step[reached.argmax("step")].where(reached.any("step")).astype(float).drop_vars("step")
    )


def top_saturation(ds: xr.Dataset) -> xr.DataArray:
    """Saturated share of the top hidden layer's units (layer n_layers − 1), over steps."""
    return ds.saturation.isel(layer=(ds.n_layers - 2).clip(0), drop=True)


def table(ds: xr.Dataset) -> list[dict]:
    """One row per (dataset, depth, remedy): the numbers table.md shows."""
    ratio = analysis.grad_ratio(ds).median("seed")
    sat = top_saturation(ds).median("seed")
    steps = steps_to_target(ds)
    rows = []
    for s in settings(ds):
        for r in ds.remedy.values.tolist():
            sel = {**s, "remedy": r}
            acc = ds.test_accuracy.sel(sel).values
            st = steps.sel(sel).values
            b = int(ds.best_rate.sel(sel))
            rows.append(
                {
                    **s,
                    "remedy": r,
                    "best_lr": float(ds.best_lr.sel(sel)),
                    "lr_edge": "low" if b == 0 else "high" if b == ds.sizes["rate"] - 1 else "",
                    "tune_val_accuracy": float(ds.tune_val_accuracy.sel(sel).isel(rate=b).mean()),
                    "test_accuracy_mean": float(np.nanmean(acc))
                    if np.isfinite(acc).any()
                    else np.nan,
                    "test_accuracy_std": float(np.nanstd(acc, ddof=1))
                    if np.isfinite(acc).sum() > 1
                    else np.nan,
                    "n_seeds": int(acc.size),
                    "n_diverged": int(np.isfinite(ds.diverged_at.sel(sel).values).sum()),
                    "median_steps_to_target": float(
                        np.median(np.where(np.isfinite(st), st, np.inf))
                    ),
                    "n_reached": int(np.isfinite(st).sum()),
                    "grad_ratio_init": float(ratio.sel(sel).isel(step=0)),
                    "grad_ratio_final": float(ratio.sel(sel).isel(step=-1)),
                    "top_saturation_init": float(sat.sel(sel).isel(step=0)),
                    "top_saturation_final": float(sat.sel(sel).isel(step=-1)),
                }
            )
    return rows


def _markdown(rows: list[dict], ds: xr.Dataset) -> str:
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    t = json.loads(ds.attrs["targets"])
    lines = [
        f"Width {cfg.model.width}, SGD-family optimizers on minibatches of {cfg.train.batch_size}, "
        f"{cfg.train.steps} steps, softmax cross-entropy. Learning rate: the rate of "
        f"{ds.sizes['rate']} (half a decade apart) with the best mean final validation accuracy "
        f"over {ds.sizes['tune_seed']} tuning seeds; '◂'/'▸': the best rate is the grid's lowest / "
        f"highest (the optimum may lie outside). Test accuracy: mean ± std over "
        f"{ds.sizes['seed']} other seeds at that rate (eval mode), diverged seeds left out and "
        f"counted. Steps to target: median first logged step with validation accuracy ≥ "
        + ", ".join(f"{v:g} ({k})" for k, v in t.items())
        + " ('—': not reached by half the seeds; [k/n] seeds that reached it). Gradient ratio "
        "‖∂L/∂W₁‖/‖∂L/∂W_out‖ and top hidden layer saturation (share of units with "
        "|φ'| < 4 % of its maximum): median over seeds, at init → after training. Critical "
        f"init: σ_w² = {ds.attrs['critical_sigma_w2']:.2f}, σ_b² = "
        f"{ds.attrs['critical_sigma_b2']:g} (χ₁ = 1).",
        "",
    ]
    head = ["remedy", "lr", "test accuracy", "steps to target", "grad ratio init → final"]
    head += ["top saturation init → final"]
    for s in settings(ds):
        lines += [f"### {_label(s)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            if r["name"] != s["name"] or r["depth"] != s["depth"]:
                continue
            edge = {"low": "◂", "high": "▸"}.get(r["lr_edge"], "")
            acc = f"{100 * r['test_accuracy_mean']:.1f} ± {100 * r['test_accuracy_std']:.1f}"
            if r["n_diverged"]:
                acc += f" ({r['n_diverged']} diverged)"
            m = r["median_steps_to_target"]
            st = "—" if not np.isfinite(m) else f"{m:.0f}"
            cells = [
                r["remedy"],
                f"{edge}{r['best_lr']:.3g}",
                acc,
                f"{st} [{r['n_reached']}/{r['n_seeds']}]",
                f"{r['grad_ratio_init']:.3g} → {r['grad_ratio_final']:.3g}",
                f"{r['top_saturation_init']:.2f} → {r['top_saturation_final']:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def yang_summary(ds: xr.Dataset) -> list[dict]:
    """Per (activation, norm, depth): the measured growth factor (median, IQR over seeds) and
    the prediction (batch norm: bn_growth_prediction; none: the mean-field χ profile)."""
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    q0 = float(ds.attrs.get("yang_q_input", 1.0))
    rows = []
    for act in ds.yang_activation.values.tolist():
        for norm in ds.yang_norm.values.tolist():
            for depth in ds.yang_depth.values.tolist():
                g = ds.yang_grad_norm.sel(yang_activation=act, yang_norm=norm, yang_depth=depth)
                f = growth_factor(g.values, depth)
                w = YANG_SIGMA_W2[act]
                pred = (
                    bn_growth_prediction(act)
                    if norm == "batch"
                    else chi_prediction(act, w, depth, w * q0)
                )
                rows.append(
                    {
                        "activation": act,
                        "norm": norm,
                        "depth": depth,
                        "growth": float(np.median(f)),
                        "q25": float(np.quantile(f, 0.25)),
                        "q75": float(np.quantile(f, 0.75)),
                        "predicted": pred,
                        "first_over_last_hidden": float(
                            np.median(g.values[:, 0] / g.values[:, depth - 1])
                        ),
                    }
                )
    del cfg
    return rows


def he_summary(ds: xr.Dataset) -> list[dict]:
    rows = []
    for init in ds.he_init.values.tolist():
        one = ds.sel(he_init=init)
        val = one.he_val_accuracy.isel(step=-1).fillna(0.0).mean("he_seed")
        b = int(val.argmax("he_rate"))
        at = one.isel(he_rate=b)
        acc = at.he_test_accuracy.values
        g = at.he_grad_norm.isel(step=0)
        rows.append(
            {
                "init": init,
                "sigma_w2": HE_INITS[init],
                "best_lr": float(ds.he_rate[b]),
                "test_accuracy_mean": float(np.nanmean(acc)) if np.isfinite(acc).any() else np.nan,
                "test_accuracy_std": float(np.nanstd(acc)) if np.isfinite(acc).any() else np.nan,
                "final_loss": float(at.he_loss.isel(step=-1).median()),
                "initial_loss": float(at.he_loss.isel(step=0).median()),
                "grad_ratio_init": float((g.isel(he_layer=0) / g.isel(he_layer=-1)).median()),
                "n_diverged": int(np.isfinite(at.he_diverged_at.values).sum()),
            }
        )
    return rows


def _literature_md(ds, rows, yang, he) -> str:
    def acc(r: str) -> str:
        here = (s["name"], s["depth"])
        hit = [x for x in rows if x["remedy"] == r and (x["name"], x["depth"]) == here]
        return f"{100 * hit[0]['test_accuracy_mean']:.1f}" if hit else "—"

    lines = ["## Ioffe & Szegedy 2015: batch norm in a sigmoid network", ""]
    lines += ["| setting | plain sigmoid | sigmoid + BN | ReLU (He) |", "|---|---|---|---|"]
    for s in settings(ds):
        cells = [acc(r) for r in ("plain", "batchnorm", "relu")]
        lines.append(f"| {_label(s)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Yang et al. 2019: gradient growth per layer at init",
        "",
        f"(‖∇W_2‖/‖∇W_depth‖)^(1/(depth−2)) over hidden layers, batch of {YANG_BATCH}, median "
        f"[IQR] over {ds.sizes['yang_seed']} seeds; predicted: with batch norm "
        "sqrt(E[φ'(z)²]/Var φ(z)) (large-batch limit), without it the mean-field χ profile.",
        "",
        "| activation | norm | depth | measured | predicted | ‖∇W₁‖/‖∇W_depth‖ |",
        "|---|---|---|---|---|---|",
    ]
    for y in yang:
        lines.append(
            f"| {y['activation']} | {y['norm']} | {y['depth']} | {y['growth']:.4f} "
            f"[{y['q25']:.4f}, {y['q75']:.4f}] | {y['predicted']:.4f} | "
            f"{y['first_over_last_hidden']:.3g} |"
        )
    lines += [
        "",
        f"## He et al. 2015: {ds.attrs['he_depth']}-layer ReLU, He vs Xavier init",
        "",
        "| init | σ_w² | best lr | test accuracy | loss init → final | grad ratio at init "
        "| diverged |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in he:
        lines.append(
            f"| {h['init']} | {h['sigma_w2']:g} | {h['best_lr']:g} | "
            f"{100 * h['test_accuracy_mean']:.1f} ± {100 * h['test_accuracy_std']:.1f} | "
            f"{h['initial_loss']:.3f} → {h['final_loss']:.3f} | {h['grad_ratio_init']:.3g} | "
            f"{h['n_diverged']} |"
        )
    return "\n".join(lines) + "\n"


def report(ds: xr.Dataset, out: Path) -> dict:
    import pandas as pd

    rows = table(ds)
    pd.DataFrame(rows).to_csv(out / "table.csv", index=False)
    yang, he = yang_summary(ds), he_summary(ds)
    text = _markdown(rows, ds) + "\n" + _literature_md(ds, rows, yang, he)
    (out / "table.md").write_text(text)
    _fig_val_accuracy(ds, out)
    _fig_ratio_vs_steps(ds, rows, out)
    _fig_layers_at_init(ds, out)
    _fig_yang(ds, yang, out)
    _fig_he(ds, he, out)
    head = {
        "table": {
            f"{r['name']}/depth{r['depth']}/{r['remedy']}": {
                k: r[k]
                for k in (
                    "best_lr",
                    "lr_edge",
                    "test_accuracy_mean",
                    "test_accuracy_std",
                    "median_steps_to_target",
                    "grad_ratio_init",
                    "top_saturation_init",
                )
            }
            for r in rows
        },
        "yang2019": yang,
        "he2015": he,
        "critical_init": {"sigma_w2": critical_init()[0], "sigma_b2": critical_init()[1]},
    }
    return head


def _style(i: int) -> dict:
    return {"color": plotting.plt.get_cmap("tab20")(i % 20), "ls": ("-", "--", ":")[i // 20 % 3]}


def _fig_val_accuracy(ds, out):
    ss = settings(ds)
    fig, axes = plotting.subplots(1, len(ss), size=(5.0, 3.8))
    for ax, s in zip(axes[0], ss, strict=True):
        for i, r in enumerate(ds.remedy.values.tolist()):
            v = ds.val_accuracy.sel(**s, remedy=r).median("seed")
            ax.plot(ds.step, v, label=r, lw=1.2, **_style(i))
        ax.axhline(float(target_of(ds).sel(name=s["name"])), color="k", lw=0.8, ls=":")
        ax.set(title=_label(s), xlabel="step", ylabel="validation accuracy (median over seeds)")
        ax.set_ylim(0, 1)
    axes[0, -1].legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    plotting.save(fig, out, "val_accuracy")


def _fig_ratio_vs_steps(ds, rows, out):
    ss = settings(ds)
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    fig, axes = plotting.subplots(1, len(ss), size=(4.6, 3.8))
    for ax, s in zip(axes[0], ss, strict=True):
        for i, r in enumerate(
            x for x in rows if x["name"] == s["name"] and x["depth"] == s["depth"]
        ):
            m = r["median_steps_to_target"]
            never = not np.isfinite(m)
            y = 1.15 * cfg.train.steps if never else m
            ax.scatter(
                r["grad_ratio_init"],
                y,
                marker="x" if never else "o",
                **{"color": _style(i)["color"]},
            )
            ax.annotate(r["remedy"], (r["grad_ratio_init"], y), fontsize=6)
        ax.axhline(cfg.train.steps, color="k", lw=0.8, ls=":")
        ax.set(
            xscale="log",
            title=_label(s),
            xlabel="‖∂L/∂W₁‖ / ‖∂L/∂W_out‖ at init (median)",
            ylabel="median steps to target (× above the line: never)",
        )
    fig.tight_layout()
    plotting.save(fig, out, "ratio_vs_steps")


def _fig_layers_at_init(ds, out):
    ss = settings(ds)
    fig, axes = plotting.subplots(1, len(ss), size=(5.0, 3.8))
    for ax, s in zip(axes[0], ss, strict=True):
        for i, r in enumerate(ds.remedy.values.tolist()):
            one = ds.sel(**s, remedy=r)
            n = int(one.n_layers)
            g = one.grad_norm.isel(step=0).median("seed").values[:n]
            ax.plot(np.arange(1, n + 1), g / g[-1], label=r, marker=".", lw=1, **_style(i))
        ax.set(
            yscale="log",
            title=_label(s),
            xlabel="layer (1 = input side; last = output)",
            ylabel="‖∂L/∂W_l‖ / ‖∂L/∂W_out‖ at init",
        )
    axes[0, -1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    plotting.save(fig, out, "grad_layers_init")


def _fig_yang(ds, yang, out):
    acts = ds.yang_activation.values.tolist()
    fig, axes = plotting.subplots(2, len(acts), size=(4.4, 3.4))
    deepest = int(ds.yang_depth.max())
    for j, act in enumerate(acts):
        ax = axes[0, j]
        for k, norm in enumerate(ds.yang_norm.values.tolist()):
            rs = [y for y in yang if y["activation"] == act and y["norm"] == norm]
            d = [y["depth"] for y in rs]
            err = [[y["growth"] - y["q25"] for y in rs], [y["q75"] - y["growth"] for y in rs]]
            ax.errorbar(
                d,
                [y["growth"] for y in rs],
                yerr=err,
                marker="o",
                color=f"C{k}",
                label=f"{norm}: measured",
            )
            ax.plot(
                d, [y["predicted"] for y in rs], ls="--", color=f"C{k}", label=f"{norm}: predicted"
            )
            g = ds.yang_grad_norm.sel(yang_activation=act, yang_norm=norm, yang_depth=deepest)
            med = g.median("yang_seed").values[: deepest + 1]
            axes[1, j].plot(
                np.arange(1, deepest + 2),
                med / med[deepest - 1],
                marker=".",
                color=f"C{k}",
                label=norm,
            )
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set(title=act, xlabel="depth", ylabel="per-layer growth of ‖∂L/∂W_l‖ toward the input")
        ax.legend(fontsize=6)
        axes[1, j].set(
            yscale="log",
            xlabel="layer",
            ylabel=f"‖∂L/∂W_l‖ / top hidden layer's (depth {deepest})",
        )
        axes[1, j].legend(fontsize=6)
    fig.tight_layout()
    plotting.save(fig, out, "yang2019")


def _fig_he(ds, he, out):
    fig, axes = plotting.subplots(1, 2, size=(4.4, 3.4))
    for i, h in enumerate(he):
        one = ds.sel(he_init=h["init"], he_rate=h["best_lr"])
        kw = {
            "color": f"C{i}",
            "label": f"{h['init']} (σ_w² = {h['sigma_w2']:g}, lr {h['best_lr']:g})",
        }
        plotting.band(axes[0, 0], one.he_loss, over="he_seed", **kw)
        plotting.band(axes[0, 1], one.he_val_accuracy, over="he_seed", **kw)
    axes[0, 0].set(yscale="log", xlabel="step", ylabel="training loss (minibatch)")
    axes[0, 1].set(xlabel="step", ylabel="validation accuracy", ylim=(0, 1))
    axes[0, 0].set_title(f"{ds.attrs['he_depth']}-layer ReLU (He et al. 2015, Fig. 3)")
    axes[0, 1].legend(fontsize=7)
    fig.tight_layout()
    plotting.save(fig, out, "he2015")


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
    report=report,
    compute=compute,
    requires=("name", "depth", "seed"),
    presets={"quick": ({}, {}), "full": FULL},
)
