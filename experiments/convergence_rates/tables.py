"""The convergence_rates study's analysis: measured rates against ηλ_min, the gap to the
linearized prediction vs width, the largest stable rate against 2/λ_max, and table.md."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from experiments.convergence_rates.training import DEFAULT_DEPTH, THEORY_N, TREND_FACTOR
from sigjax import analysis
from sigjax.theory import linearized


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


def markdown(table: pd.DataFrame, slopes: pd.DataFrame, default: pd.DataFrame) -> str:
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


def default_table(ds: xr.Dataset) -> pd.DataFrame:
    sub = ds[[v for v in ds.data_vars if str(v).startswith("default_")]]
    sub = sub.rename({n: str(n).removeprefix("default_") for n in (*sub.dims, *sub.data_vars)})
    cols = {
        "sharpness": sub.sharpness.max("step").median("seed"),
        "eos_at": sub.eos_at.median("seed"),
        "final_loss": sub.loss.isel(step=-1).median("seed"),
    }
    return xr.Dataset(cols).to_dataframe().reset_index()
