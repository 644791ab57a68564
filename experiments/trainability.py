"""Trainability vs depth and σ_w²: do the mean-field depth scales bound what trains?

Schoenholz et al. (2017, Figs. 5-6): a random net of depth L can be trained only if L ≲ 6 ξ_c,
where ξ_c = -1/log χ_c is the depth over which two inputs' correlation relaxes to its fixed point
(χ_c = χ₁ in the ordered phase). ξ_c diverges on the critical line χ₁ = 1, so the trainable
region is a band of depths around the critical σ_w² that widens with depth budget.

This study trains MLPs (width 64 by default) on a real task (scikit-learn's 8×8 digits,
standardised, softmax cross-entropy, SGD, batch 64) for a fixed number of steps, on a grid of
depth × σ_w² × learning rate × seed at σ_b² = 0.05 (W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²)), for
tanh (critical σ_w² ≈ 1.76) and the sigmoid (critical σ_w² ≈ 103). Each activation has its own
σ_w² axis (`SIGMA_W2`) and learning-rate axis (`LR`); a `--grid init.sigma_w2=…` or
`--grid optim.lr=…` replaces both. σ_w², the rate and the seed are traced (one compile per
activation and depth).

Selection never sees the test set: the last n_test training examples (as many as the test
split holds) are held out as a validation split, and each (activation, depth, σ_w²) cell takes
the rate with the best mean final validation accuracy over seeds (rates within `TIE` of it tie;
the lower mean validation loss breaks the tie). A cell whose chosen rate is the smallest or
largest of its axis is flagged (`lr_at_edge`). The cell's value is the mean test accuracy at
that rate; it is trainable when that is above halfway from chance to the activation's best cell.

Two comparisons with theory (`sigjax.theory.grid.mean_field_grid` gives ξ_c):
- the agreement score (share of cells where "trainable" equals depth ≤ 6 ξ_c), reported beside
  the scores of trivial rules that ignore σ_w²: every cell trainable, none trainable, and the
  best rule "depth ≤ D" (D chosen afterwards, so it is an upper bound for such rules);
- per σ_w², the fitted trainable-depth boundary L_fit (where the mean test accuracy crosses the
  trainability threshold, interpolated in log depth) against 6 ξ_c, and the factor k of the fit
  L_fit ≈ k ξ_c over the σ_w² whose boundary lies inside the depth grid (the paper's k ≈ 6).

Outputs: results.nc (the sweep, dims activation × depth × lr × sigma_w2 × seed …; val_loss,
val_accuracy, test_loss, test_accuracy; a cell outside an activation's own axes is NaN),
figures/trainability.png, table.md / table.csv (one row per cell), boundary.csv.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from experiments import _extra
from sigjax import analysis, config, theory
from sigjax import data as data_lib
from sigjax.analysis import plotting
from sigjax.config import Config
from sigjax.engine import checkpoint, metrics, sweep
from sigjax.errors import UserError
from sigjax.nn import losses
from sigjax.study import Study
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
    return data_lib.Data(
        x_train=full.x_train[: n - k],
        y_train=full.y_train[: n - k],
        x_test=jnp.concatenate([full.x_train[n - k :], full.x_test]),
        y_test=jnp.concatenate([full.y_train[n - k :], full.y_test]),
        n_classes=full.n_classes,
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


# ---------------------------------------------------------------- analysis


def _final(ds: xr.Dataset, var: str) -> xr.DataArray:
    return ds[var].isel(step=-1, drop=True)


def _ran(ds: xr.Dataset) -> xr.DataArray:
    """True for members that exist (inside their activation's own axes)."""
    return ds.loss.isel(step=0, drop=True).notnull()


def select_lr(ds: xr.Dataset) -> xr.Dataset:
    """Per cell (every dim but lr and seed): `best_lr` (best mean final validation accuracy
    over seeds, a diverged member counting as 0; ties within TIE broken by the lower mean
    validation loss), `lr_at_edge` (the choice is the smallest or largest rate of the cell's
    axis), `val_accuracy`, `test_accuracy` and `test_accuracy_std` (over seeds) at that rate.
    Cells outside an activation's axes are NaN."""
    ran = _ran(ds)
    seed = ["seed"] if "seed" in ran.dims else []
    valid = ran.all(seed) if seed else ran
    val = _final(ds, "val_accuracy").fillna(0.0).where(ran)
    score = val.mean(seed).where(valid, -np.inf)
    vloss = _final(ds, "val_loss").fillna(1e30).where(ran).mean(seed)
    tied = valid & (score >= score.max("lr") - TIE)
    best = vloss.where(tied, np.inf).idxmin("lr")
    lr = ds.lr.broadcast_like(valid)
    lo, hi = lr.where(valid).min("lr"), lr.where(valid).max("lr")
    test = analysis.at_best_lr(_final(ds, "test_accuracy").fillna(0.0), best)
    keep = valid.any("lr")
    out = xr.Dataset(
        {
            "best_lr": best,
            "lr_at_edge": (best == lo) | (best == hi),
            "val_accuracy": analysis.at_best_lr(score, best),
            "test_accuracy": test.mean(seed),
            "test_accuracy_std": test.std(seed) if seed else 0.0 * test,
        }
    )
    return out.where(keep)


def final_accuracy(ds: xr.Dataset) -> xr.DataArray:
    """Mean final test accuracy at each cell's validation-selected rate: dims (activation,
    depth, sigma_w2, and any extra grid dims)."""
    return select_lr(ds).test_accuracy


def theory_curve(activation: str, sigma_b2: float, lo: float, hi: float, n: int = 160):
    """(σ_w², ξ_c) on a fine log grid from lo to hi."""
    w = np.logspace(np.log10(lo), np.log10(hi), n)
    return w, mean_field_grid(activation, w, sigma_b2)["xi_c"]


def _chance(ds: xr.Dataset) -> float:
    """Accuracy of guessing (1/classes)."""
    n = int(ds.attrs.get("n_classes", 0))
    return 1.0 / n if n else 0.0


MAP_DIMS = ("activation", "depth", "sigma_w2")  # one heat map per activation


def extra_dims(acc: xr.DataArray) -> list[str]:
    """Grid dims beyond a heat map's (a user's `--grid model.width=…`): one map per setting."""
    return _extra.extra_dims(acc, MAP_DIMS)


def agreement(ds: xr.Dataset) -> pd.DataFrame:
    """Per (activation, extra setting, depth, σ_w²): the chosen rate and whether it is at its
    axis' edge, validation and test accuracy, trainable (test accuracy above halfway from
    chance to the best of that activation and setting), the theory's call (depth ≤ 6 ξ_c) and
    whether they agree. Extra grid dims come as columns after `activation`."""
    sel = select_lr(ds)
    acc = sel.test_accuracy
    extra = extra_dims(acc)
    chance = _chance(ds)
    rows = []
    for setting in _extra.combos(acc, ["activation", *extra]):
        s = sel.sel(setting)
        act = setting["activation"]
        best = float(s.test_accuracy.max())
        thr = chance + 0.5 * (best - chance)
        for d in s.depth.values:
            for w in s.sigma_w2.values:
                c = s.sel(depth=d, sigma_w2=w)
                v = float(c.test_accuracy)
                if not np.isfinite(v):
                    continue
                xi = float(ds.xi_c.sel(activation=act, sigma_w2=w))
                rows.append(
                    {
                        **setting,
                        "activation": str(act),
                        "depth": int(d),
                        "sigma_w2": float(w),
                        "chi_1": float(ds.chi_1.sel(activation=act, sigma_w2=w)),
                        "xi_c": xi,
                        "best_lr": float(c.best_lr),
                        "lr_at_edge": bool(c.lr_at_edge),
                        "val_accuracy": float(c.val_accuracy),
                        "test_accuracy": v,
                        "test_accuracy_std": float(c.test_accuracy_std),
                        "threshold": thr,
                        "trainable": v >= thr,
                        "theory_trainable": d <= DEPTH_FACTOR * xi,
                    }
                )
    t = pd.DataFrame(rows)
    t["agree"] = t.trainable == t.theory_trainable
    return t


def baselines(sub: pd.DataFrame) -> dict:
    """Agreement with the measured trainability of 6 ξ_c and of rules that ignore σ_w²: every
    cell trainable, none, and the best "depth ≤ D" (D chosen in hindsight; "depth ≤ 8" too)."""
    tr = sub.trainable.to_numpy()
    depth = sub.depth.to_numpy()
    rules = {d: float(np.mean((depth <= d) == tr)) for d in sorted({0, *depth.tolist()})}
    best_d = max(rules, key=lambda d: (rules[d], -d))
    return {
        "6xi_c": float(sub.agree.mean()),
        "all_trainable": float(tr.mean()),
        "none_trainable": float(1 - tr.mean()),
        "depth_le_8": float(np.mean((depth <= 8) == tr)),
        "best_depth_rule": {"max_depth": int(best_d), "agreement": rules[best_d]},
    }


def boundary(sub: pd.DataFrame) -> pd.DataFrame:
    """Per σ_w² of one map: the fitted trainable-depth boundary L_fit, where the mean test
    accuracy first falls below the threshold going deeper (interpolated linearly in log depth
    between the last depth above it and the first below), beside 6 ξ_c. `censored` is "below"
    when the shallowest depth already fails, "above" when every depth trains (L_fit NaN), ""
    otherwise; `retrains` marks a column where a deeper depth is trainable again."""
    rows = []
    for w, col in sub.groupby("sigma_w2", sort=True):
        col = col.sort_values("depth")
        d, a, thr = col.depth.to_numpy(float), col.test_accuracy.to_numpy(), col.threshold.iloc[0]
        fail = np.flatnonzero(a < thr)
        fit, censored = np.nan, ""
        if fail.size == 0:
            censored = "above"
        elif fail[0] == 0:
            censored = "below"
        else:
            i = fail[0]
            t = (a[i - 1] - thr) / (a[i - 1] - a[i])
            fit = float(2 ** (np.log2(d[i - 1]) + t * (np.log2(d[i]) - np.log2(d[i - 1]))))
        xi = float(col.xi_c.iloc[0])
        rows.append(
            {
                "sigma_w2": float(w),
                "xi_c": xi,
                "six_xi_c": DEPTH_FACTOR * xi,
                "L_fit": fit,
                "censored": censored,
                "L_fit_over_xi_c": fit / xi if np.isfinite(fit) and np.isfinite(xi) else np.nan,
                "retrains": bool(fail.size and np.any(a[fail[0] :] >= thr)),
                "depth_range": (int(d.min()), int(d.max())),
            }
        )
    return pd.DataFrame(rows)


def fitted_factor(b: pd.DataFrame) -> dict:
    """k of L_fit ≈ k ξ_c (geometric mean of L_fit/ξ_c over the uncensored σ_w² with finite
    ξ_c), the spread of log10(L_fit/ξ_c), and how many censored columns fit 6 ξ_c's call (every
    depth trains and 6 ξ_c ≥ the deepest; or none and 6 ξ_c < the shallowest)."""
    r = b.L_fit_over_xi_c.to_numpy()
    r = r[np.isfinite(r)]
    lo = b.depth_range.map(lambda x: x[0])
    hi = b.depth_range.map(lambda x: x[1])
    cens = b[b.censored != ""]
    ok = ((cens.censored == "above") & (cens.six_xi_c >= hi[cens.index])) | (
        (cens.censored == "below") & (cens.six_xi_c < lo[cens.index])
    )
    return {
        "k": float(np.exp(np.mean(np.log(r)))) if r.size else None,
        "log10_spread": float(np.std(np.log10(r))) if r.size > 1 else None,
        "n_fitted": int(r.size),
        "n_censored": int(len(cens)),
        "n_censored_consistent_with_6xi_c": int(ok.sum()),
    }


# ---------------------------------------------------------------- report


def _maps(t: pd.DataFrame, extra: list[str]):
    """(title, rows) of each heat map: one per activation and extra setting, in table order."""
    keys = ["activation", *extra]
    for key, sub in t.groupby(keys, sort=False):
        setting = dict(zip(keys, key, strict=True))
        act = setting.pop("activation")
        yield (f"{act}, {_extra.label(setting)}" if setting else act), sub


def _pct(v: float) -> str:
    return f"{v:.0%}"


def _boundary_cell(r) -> str:
    lo, hi = r.depth_range
    if r.censored == "above":
        return f"> {hi}"
    if r.censored == "below":
        return f"< {lo}"
    return f"{r.L_fit:.3g}" + (" (retrains deeper)" if r.retrains else "")


def _markdown(t: pd.DataFrame, ds: xr.Dataset) -> str:
    cfg = json.loads(ds.attrs["config"])
    grid_used = dict(json.loads(ds.attrs["grid"]))
    lrs = grid_used.get("optim.lr", {})
    n_seeds = ds.sizes.get("seed", 1)
    n_tr, n_val, n_te = json.loads(ds.attrs.get("n_train_val_test", "[0, 0, 0]"))
    lr_text = "; ".join(f"{a}: {', '.join(f'{v:g}' for v in vs)}" for a, vs in lrs.items())
    lines = [
        f"Mean final test accuracy over {n_seeds} seed(s) after {cfg['train']['steps']} SGD "
        f"steps ({cfg['data']['name']}: {n_tr} train / {n_val} validation / {n_te} test, "
        f"width {cfg['model']['width']}, σ_b² = {cfg['init']['sigma_b2']}), each cell at the "
        f"rate with the best mean validation accuracy (rates {lr_text}). Rows: depth; columns: "
        "σ_w². `*` = the theory says trainable (depth ≤ 6 ξ_c); `e` = the chosen rate is at "
        "the edge of its grid.",
        "",
    ]
    for act, sub in _maps(t, extra_dims(final_accuracy(ds))):
        base = baselines(sub)
        bnd = boundary(sub)
        fit = fitted_factor(bnd)
        piv = sub.pivot(index="depth", columns="sigma_w2", values="test_accuracy")
        star = sub.pivot(index="depth", columns="sigma_w2", values="theory_trainable")
        edge = sub.pivot(index="depth", columns="sigma_w2", values="lr_at_edge")
        xi = sub.drop_duplicates("sigma_w2").set_index("sigma_w2").xi_c
        bd = base["best_depth_rule"]
        lines.append(
            f"**{act}**: agreement with 6 ξ_c {_pct(base['6xi_c'])} of {len(sub)} cells; "
            f"trivial rules: all trainable {_pct(base['all_trainable'])}, none "
            f"{_pct(base['none_trainable'])}, depth ≤ 8 {_pct(base['depth_le_8'])}, best "
            f"depth ≤ {bd['max_depth']} {_pct(bd['agreement'])}. Threshold "
            f"{sub.threshold.iloc[0]:.2f}; {int(sub.lr_at_edge.sum())} cells chose an edge rate."
        )
        lines.append("")
        lines.append("| depth | " + " | ".join(f"{w:.3g}" for w in piv.columns) + " |")
        lines.append("|---|" + "---|" * len(piv.columns))
        lines.append("| 6 ξ_c | " + " | ".join(f"{6 * xi[w]:.3g}" for w in piv.columns) + " |")
        b_by_w = bnd.set_index("sigma_w2")
        lines.append(
            "| L_fit | " + " | ".join(_boundary_cell(b_by_w.loc[w]) for w in piv.columns) + " |"
        )
        for d, row in piv.iterrows():
            cells = [
                f"{v:.2f}{'*' if star.loc[d, w] else ''}{'e' if edge.loc[d, w] else ''}"
                for w, v in row.items()
                if np.isfinite(v)
            ]
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")
        k = "n/a" if fit["k"] is None else f"{fit['k']:.2g}"
        spread = (
            "" if fit["log10_spread"] is None else f" (spread ×{10 ** fit['log10_spread']:.2g})"
        )
        lines.append(
            f"Fitted boundary: L_fit ≈ {k} ξ_c{spread} over {fit['n_fitted']} σ_w² with the "
            f"boundary inside the depth grid; {fit['n_censored_consistent_with_6xi_c']} of "
            f"{fit['n_censored']} censored columns as 6 ξ_c predicts."
        )
        lines.append("")
    return "\n".join(lines)


def _figure(ds: xr.Dataset, t: pd.DataFrame, out: Path, dpi: int = 100, note: str = "") -> None:
    """A heat map per activation (and per extra setting, or at the first one; see `note`),
    with 6 ξ_c, ξ_c, the critical σ_w² and the fitted boundary L_fit drawn over it."""
    acc = final_accuracy(ds)
    settings, _ = _extra.figure_settings(acc, extra_dims(acc), loop=["activation"])
    b = json.loads(ds.attrs["config"])["init"]["sigma_b2"]
    fig, axes = plotting.subplots(1, len(settings), size=(3.4, 2.9))
    chance = _chance(ds)
    mesh = None
    for ax, setting in zip(axes[0], settings, strict=True):
        act = str(setting["activation"])
        a = acc.sel(setting).dropna("sigma_w2", how="all")
        w, d = a.sigma_w2.values, a.depth.values
        mesh = ax.pcolormesh(
            w, d, a.values, shading="nearest", cmap="viridis", vmin=chance, vmax=1.0
        )
        lo, hi = w.min() / 1.3, w.max() * 1.3
        wf, xi = theory_curve(act, b, lo, hi)
        ax.plot(wf, DEPTH_FACTOR * xi, "w-", lw=1.6, label="6 ξ_c")
        ax.plot(wf, xi, "w--", lw=1.0, label="ξ_c")
        crit = float(theory.critical_sigma_w2(act, b))
        ax.axvline(crit, color="0.85", ls=":", lw=1, label="critical σ_w²")
        sub = t[np.logical_and.reduce([t[k] == v for k, v in setting.items()])]
        bnd = boundary(sub)
        inside = bnd[bnd.censored == ""]
        ax.plot(
            inside.sigma_w2,
            inside.L_fit,
            "o",
            ms=4,
            mfc="none",
            mec="#E69F00",
            mew=1.2,
            label="fitted boundary",
        )
        up = bnd[bnd.censored == "above"]
        ax.plot(up.sigma_w2, np.full(len(up), d.max() * 1.2), "^", ms=4, color="#E69F00")
        down = bnd[bnd.censored == "below"]
        ax.plot(down.sigma_w2, np.full(len(down), d.min() / 1.2), "v", ms=4, color="#E69F00")
        for r in sub.itertuples():
            ax.text(
                r.sigma_w2,
                r.depth,
                f"{r.test_accuracy:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                fontstyle="italic" if r.lr_at_edge else "normal",
                color="k" if r.test_accuracy > 0.6 else "w",
            )
        rest = _extra.label({k: v for k, v in setting.items() if k != "activation"})
        ax.set(
            xscale="log",
            yscale="log",
            xlim=(lo, hi),
            ylim=(d.min() / 1.45, d.max() * 1.45),
            title=f"{act} ({rest})" if rest else act,
            xlabel="σ_w²",
            ylabel="depth",
        )
        ax.set_yticks(d, [str(int(v)) for v in d])
        ax.minorticks_off()
        ax.set_xticks(w[:: max(1, len(w) // 4)], [f"{v:.3g}" for v in w[:: max(1, len(w) // 4)]])
    if note:
        fig.suptitle(note)
    fig.tight_layout()
    plotting.fig_legend(fig, axes, facecolor="0.35", frameon=True, labelcolor="w", ncol=4)
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.9, pad=0.02)
        cbar.set_label("test accuracy (rate chosen on validation)")
    plotting.save(fig, out, "trainability", dpi)


def report(ds: xr.Dataset, out: Path) -> dict:
    t = agreement(ds)
    acc = final_accuracy(ds)
    _, note = _extra.figure_settings(acc, extra_dims(acc), loop=["activation"])
    t.to_csv(out / "table.csv", index=False)
    bounds = []
    head: dict = {"agreement_with_6xi_c": {}, "best_test_accuracy": {}}
    for name, sub in _maps(t, extra_dims(acc)):
        base = baselines(sub)
        bnd = boundary(sub)
        bounds.append(bnd.assign(map=name))
        head["agreement_with_6xi_c"][name] = base["6xi_c"]
        head.setdefault("agreement_baselines", {})[name] = base
        head.setdefault("fitted_boundary", {})[name] = fitted_factor(bnd)
        head.setdefault("lr_at_edge_cells", {})[name] = int(sub.lr_at_edge.sum())
        best = sub.loc[sub.test_accuracy.idxmax()]
        head["best_test_accuracy"][name] = {
            "accuracy": float(best.test_accuracy),
            "depth": int(best.depth),
            "sigma_w2": float(best.sigma_w2),
        }
        deepest = sub[sub.trainable]
        head.setdefault("deepest_trainable", {})[name] = (
            int(deepest.depth.max()) if len(deepest) else None
        )
    pd.concat(bounds).to_csv(out / "boundary.csv", index=False)
    (out / "table.md").write_text(_markdown(t, ds) + (f"\nNote: {note}.\n" if note else ""))
    _figure(ds, t, out, note=note)
    if note:
        head["figure_note"] = note
    return head


STUDY = Study(
    name="trainability",
    description=(
        "depth x sigma_w2 x lr x seed grid trained on digits for tanh and sigmoid at "
        "sigma_b2 = 0.05; rate chosen on a validation split; test accuracy heat map with xi_c, "
        "6 xi_c and the fitted trainable-depth boundary; figures/trainability.png, table.md"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    compute=compute,
    presets={"quick": ({}, {}), "full": FULL},
)
