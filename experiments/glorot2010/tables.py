"""The glorot2010 tables: the best learning rate per variant on validation, test errors over
seeds, the ordering claims with Welch tests and bootstrap intervals, Jacobian singular values
and gradient ratios."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from experiments import _extra
from sigjax import config
from sigjax.config import Config

PAPER_ORDER = ("softsign", "tanh", "sigmoid")


def variant(act: str, scheme: str) -> str:
    if scheme == "standard":
        return act
    if scheme in ("normalized", "glorot_uniform"):
        return f"{act}-N"
    return f"{act} ({scheme})"


TIE = 0.01  # mean validation errors within one percentage point of the best count as a tie


def best_lr(ds: xr.Dataset) -> xr.DataArray:
    """Per setting, the learning rate with the lowest mean final validation error (a diverged
    member counts as error 1); rates within TIE of it are a tie, which the lower mean final
    validation loss breaks (so a net stuck at chance at every rate gets the rate that fits
    best, not the one whose constant guess happened to hit a slightly larger class)."""
    err = (1.0 - ds.val_accuracy.isel(step=-1, drop=True)).fillna(1.0).mean("seed")
    loss = ds.val_loss.isel(step=-1, drop=True).fillna(np.inf).mean("seed")
    tied = err <= err.min("lr") + TIE
    return loss.where(tied, np.inf).idxmin("lr")


def at_best(da: xr.DataArray, best: xr.DataArray) -> xr.DataArray:
    return da.sel(lr=best, drop=True)


def all_settings(ds: xr.Dataset) -> list[dict]:
    """Every combination of the dims other than activation, scheme, lr, seed, step, layer…"""
    skip = {"activation", "scheme", "lr", "seed", "step", "layer", "when", "abin", "gbin"}
    dims = [d for d in ds.final_test_error.dims if d not in skip]
    combos = [{}]
    for d in dims:
        combos = [c | {d: v} for c in combos for v in ds[d].values.tolist()]
    return combos


def label(setting: dict) -> str:
    return ", ".join(
        f"{v}" if k == "name" else f"{k} {_extra.value(v)}" for k, v in setting.items()
    )


OWN_SETTINGS = ("name", "depth")  # the paper's own columns: every figure repeats them


def figure_settings(ds: xr.Dataset) -> tuple[list[dict], str]:
    """The settings the per-setting figures draw: every dataset (and depth) times every
    setting of a user's other grid dims when there are few, else their first values; and a
    note saying what is left out ('' when nothing)."""
    dims = list(all_settings(ds)[0])
    own = [d for d in dims if d in OWN_SETTINGS]
    extra = [d for d in dims if d not in own]
    return _extra.figure_settings(ds.final_test_error, extra, loop=own)


def first_note(ds: xr.Dataset) -> str:
    """What a figure drawn at the first setting alone leaves out ('' when there is one)."""
    n = len(all_settings(ds))
    return f" (the first of {n} settings; table.md has them all)" if n > 1 else ""


def table(ds: xr.Dataset) -> list[dict]:
    best = best_lr(ds)
    err = at_best(ds.final_test_error, best)
    val = at_best((1.0 - ds.val_accuracy.isel(step=-1, drop=True)), best)
    div = at_best(ds.diverged_at.notnull(), best)
    rows = []
    acts = [a for a in PAPER_ORDER if a in ds.activation.values.tolist()]
    acts += [a for a in ds.activation.values.tolist() if a not in acts]
    for setting in all_settings(ds):
        for act in acts:
            for scheme in ds.scheme.values.tolist():
                sel = {**setting, "activation": act, "scheme": scheme}
                e = err.sel(sel).values * 100
                rows.append(
                    {
                        **setting,
                        "variant": variant(act, scheme),
                        "activation": act,
                        "scheme": scheme,
                        "best_lr": float(best.sel(sel)),
                        "val_error_mean": float(np.nanmean(val.sel(sel).values) * 100),
                        "test_error_mean": float(np.nanmean(e)),
                        "test_error_std": float(np.nanstd(e, ddof=1))
                        if np.sum(~np.isnan(e)) > 1
                        else float("nan"),
                        "n_seeds": int(np.sum(~np.isnan(e))),
                        "n_diverged": int(div.sel(sel).sum()),
                    }
                )
    return rows


def seed_errors(ds: xr.Dataset) -> xr.DataArray:
    """Test error (%) of every seed at its variant's best learning rate (NaN: diverged)."""
    return at_best(ds.final_test_error, best_lr(ds)) * 100


N_BOOT = 10000  # bootstrap resamples of the seeds (a fixed NumPy stream: the same every run)


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p-value of mean(a) = mean(b), over the finite values (NaN when
    either side has fewer than 2 values or both are constant)."""
    from scipy import stats

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if min(len(a), len(b)) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return float("nan")
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def gain_interval(
    std_a, norm_a, std_b, norm_b, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(estimate, lo, hi) of (mean std_a − mean norm_a) − (mean std_b − mean norm_b): how much
    more activation a gains from normalized init than b, with a percentile bootstrap interval
    (each of the four groups of seeds resampled on its own)."""
    rng = np.random.default_rng(seed)
    groups = [np.asarray(g, float)[np.isfinite(g)] for g in (std_a, norm_a, std_b, norm_b)]
    means = [rng.choice(g, (N_BOOT, len(g))).mean(1) for g in groups]
    boot = (means[0] - means[1]) - (means[2] - means[3])
    est = (groups[0].mean() - groups[1].mean()) - (groups[2].mean() - groups[3].mean())
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(est), float(lo), float(hi)


def claims(ds: xr.Dataset) -> list[dict]:
    """The paper's ordering claims, tested over seeds at each variant's best learning rate, per
    setting: normalized beats standard (per activation), the best model beats the runner-up
    (Welch p-values, errors in %), and softsign gains less from normalized init than tanh
    (bootstrap 95 % interval of the difference of the two gains)."""
    err = seed_errors(ds)
    acts = ds.activation.values.tolist()
    schemes = ds.scheme.values.tolist()
    out = []
    for setting in all_settings(ds):
        e = err.sel(setting)

        def seeds(act, scheme, e=e):
            return e.sel(activation=act, scheme=scheme).values

        row = {**setting}
        if "normalized" in schemes and "standard" in schemes:
            for act in acts:
                s, n = seeds(act, "standard"), seeds(act, "normalized")
                out.append(
                    row
                    | {
                        "claim": f"{variant(act, 'normalized')} < {act}",
                        "difference": float(np.nanmean(s) - np.nanmean(n)),
                        "p_value": welch_p(s, n),
                    }
                )
            if {"tanh", "softsign"} <= set(acts):
                est, lo, hi = gain_interval(
                    seeds("tanh", "standard"),
                    seeds("tanh", "normalized"),
                    seeds("softsign", "standard"),
                    seeds("softsign", "normalized"),
                )
                out.append(
                    row
                    | {
                        "claim": "gain(tanh) > gain(softsign)",
                        "difference": est,
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                )
        ranked = sorted(
            ((np.nanmean(seeds(a, sc)), a, sc) for a in acts for sc in schemes),
            key=lambda t: np.inf if np.isnan(t[0]) else t[0],
        )
        if len(ranked) > 1:
            (m1, a1, s1), (m2, a2, s2) = ranked[:2]
            out.append(
                row
                | {
                    "claim": f"{variant(a1, s1)} best (vs {variant(a2, s2)})",
                    "difference": float(m2 - m1),
                    "p_value": welch_p(seeds(a1, s1), seeds(a2, s2)),
                }
            )
    return out


def _depths(ds: xr.Dataset, cfg: Config) -> str:
    """'4 hidden layers', or '4 and 5 hidden layers (a column each)' for a depth axis."""
    if "depth" in ds.dims:
        d = ds.depth.values.tolist()
        listed = ", ".join(map(str, d[:-1])) + f" and {d[-1]}" if len(d) > 1 else f"{d[0]}"
        return f"{listed} hidden layers (a column each)"
    return f"{cfg.model.depth} hidden layers"


def _p(p: float) -> str:
    return "n/a (constant)" if np.isnan(p) else f"{p:.2g}"


def markdown(rows: list[dict], ds: xr.Dataset, tests: list[dict]) -> str:
    settings = [label(s) for s in all_settings(ds)]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    n_seeds = ds.sizes.get("seed", 1)
    lines = [
        f"Test error (%) at each variant's best learning rate (chosen on the validation split), "
        f"mean ± std over {n_seeds} seeds; {_depths(ds, cfg)} of width {cfg.model.width}, "
        f"SGD with minibatches of {cfg.train.batch_size}, {cfg.train.steps} steps. "
        "'-N': normalized initialisation.",
        "",
        "| variant | " + " | ".join(settings) + " |",
        "|---|" + "---|" * len(settings),
    ]
    for v in variants:
        cells = []
        for s in all_settings(ds):
            r = next(r for r in rows if r["variant"] == v and all(r[k] == s[k] for k in s))
            cell = f"{r['test_error_mean']:.1f} ± {r['test_error_std']:.1f} (lr {r['best_lr']:g})"
            if r["n_diverged"]:
                cell += f", {r['n_diverged']} diverged"
            cells.append(cell)
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    if tests:
        lines += [
            "",
            "Ordering claims over the seeds above: difference of mean test errors (points; "
            "positive: the claim's direction), two-sided Welch t-test p-value, or for the gain "
            "comparison a bootstrap 95 % interval.",
            "",
            "| setting | claim | difference | test |",
            "|---|---|---|---|",
        ]
        for t in tests:
            test = (
                f"95 % CI [{t['ci_low']:.1f}, {t['ci_high']:.1f}]"
                if "ci_low" in t
                else f"p = {_p(t['p_value'])}"
            )
            setting = label({k: t[k] for k in all_settings(ds)[0]})
            lines.append(f"| {setting} | {t['claim']} | {t['difference']:+.1f} | {test} |")
    return "\n".join(lines) + "\n"


def jacobian_svs(ds: xr.Dataset) -> xr.DataArray:
    """Average singular value of the hidden-to-hidden layer Jacobians ∂h_l/∂h_{l-1} (l = 2 ..
    depth) at init, mean over seeds (the first learning rate: init does not depend on it)."""
    sv = ds.jac_sv.sel(when="init", drop=True).isel(lr=0, drop=True)
    hidden = (sv.layer >= 2) & (sv.layer <= ds.n_layers.isel(lr=0, drop=True) - 1)
    return sv.where(hidden).mean(["layer", "seed"])


def gradient_ratios(ds: xr.Dataset) -> xr.Dataset:
    """Var at the first hidden layer / Var at the top hidden layer, mean over seeds at the best
    learning rate, for back-propagated gradients, weight gradients and activations."""
    best = best_lr(ds)
    top = ds.n_layers - 1  # index of the top hidden layer +1 … layers are 1-based
    out = {}
    for name in ("var_backprop", "var_wgrad", "var_act"):
        da = at_best(ds[name], best)
        first = da.sel(layer=1, drop=True)
        last = da.isel(layer=(at_best(top, best) - 1).clip(0), drop=True)
        out[name] = (first / last).mean("seed")
    return xr.Dataset(out)
