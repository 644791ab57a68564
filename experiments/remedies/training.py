"""The remedies study's models, training and literature checks: the configs of every
remedy, the two-stage learning-rate selection, and the Yang et al. and He et al. checks
(see experiments/remedies/__init__.py for the study)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sigjax import config, theory
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import programs, sweep, train
from sigjax.nn import losses

# ----------------------------------------------------------------------------- the remedies

CRITICAL_SIGMA_B2 = 0.05  # the critical init's bias variance (σ_w² then follows from χ₁ = 1)
N_RATES = 6
SGD_RATES = tuple(float(v) for v in np.logspace(-2, 0.5, N_RATES))  # 0.01 … 3.16
ADAM_RATES = tuple(float(v) for v in np.logspace(-4, -1.5, N_RATES))  # 1e-4 … 3.16e-2
TUNE_SEEDS = (1000, 1001)  # stage 1 (rate selection); the reported seeds are the grid's
VAL_FRACTION = 8  # the last 1/8 of each training set is the validation split (as in glorot2010)
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


def run_setting(cfg, names, seeds, data, test, store, gi, bar):
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
