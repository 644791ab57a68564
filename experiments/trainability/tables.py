"""The trainability study's analysis: the learning rate chosen on validation, final
accuracies, the fitted trainable-depth boundary per σ_w² against 6ξ_c, and the trivial
predictors it is scored against."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from experiments import _extra
from experiments.trainability.training import DEPTH_FACTOR, TIE
from sigjax import analysis
from sigjax.theory.grid import mean_field_grid

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


def chance_accuracy(ds: xr.Dataset) -> float:
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
    chance = chance_accuracy(ds)
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
