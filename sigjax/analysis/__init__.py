"""Convergence measures on a results Dataset (see sigjax.engine.results for its dims).

Every function keeps the grid dims it does not reduce, so `steps_to_threshold(ds, 0.05)` on a
(activation, depth, lr, seed, step) run is an (activation, depth, lr, seed) DataArray.

Fitted rates (`convergence_rate`, `half_life`, `power_law_exponent`) are per optimizer step, on
the logged steps: in the linearized regime each eigenmode of the tangent kernel decays at its own
rate (see sigjax.theory.infinite_width), so a fitted rate is a summary of a sum of exponentials.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from sigjax.errors import UserError

MEMBER_DIMS_EXCLUDED = ("step", "layer")


def member_dims(ds: xr.Dataset) -> list[str]:
    return [d for d in ds.loss.dims if d not in MEMBER_DIMS_EXCLUDED]


def steps_to_threshold(ds: xr.Dataset, threshold: float) -> xr.DataArray:
    """First logged step with loss <= threshold; NaN where never reached (or diverged first)."""
    reached = ds.loss <= threshold
    first = reached.argmax("step")
    return ds.step[first].where(reached.any("step")).astype(float).drop_vars("step")


def final_loss(ds: xr.Dataset) -> xr.DataArray:
    """Loss at the last logged step (NaN for diverged members)."""
    return ds.loss.isel(step=-1, drop=True)


def layer_at(da: xr.DataArray, ds: xr.Dataset, which: str) -> xr.DataArray:
    """da (…, layer) at the first layer or the output layer (`which` = 'first' | 'last')."""
    if which == "first":
        return da.sel(layer=1, drop=True)
    index = (ds.n_layers - 1).clip(0)
    return da.isel(layer=index, drop=True) if "layer" in da.dims else da


def grad_ratio(ds: xr.Dataset) -> xr.DataArray:
    """‖∂L/∂W_1‖ / ‖∂L/∂W_out‖ over steps: below 1 means gradients shrink toward the input.

    NaN for nets without a hidden layer (the first layer is the output layer).
    """
    first = layer_at(ds.grad_norm, ds, "first")
    last = layer_at(ds.grad_norm, ds, "last")
    return (first / last).where(ds.n_layers > 1)


def _median_over_seeds(da: xr.DataArray, fill: float = np.inf) -> xr.DataArray:
    da = da.fillna(fill)
    return da.median("seed") if "seed" in da.dims else da


def best_lr(ds: xr.Dataset, threshold: float) -> xr.DataArray:
    """Per setting (all dims but lr and seed), the learning rate that reaches the threshold in
    the fewest steps (median over seeds, never-reached counting as infinitely many); where no
    rate reaches it, the one with the lowest median final loss."""
    steps = _median_over_seeds(steps_to_threshold(ds, threshold))
    loss = _median_over_seeds(final_loss(ds))
    reachable = np.isfinite(steps).any("lr")
    by_steps = steps.idxmin("lr") if bool(reachable.any()) else None
    by_loss = loss.idxmin("lr")
    return by_loss if by_steps is None else by_steps.where(reachable, by_loss)


def at_best_lr(da: xr.DataArray, best: xr.DataArray) -> xr.DataArray:
    """da selected at each setting's best learning rate (pointwise over the other dims)."""
    return da.sel(lr=best, drop=True)


def divergence_boundary(ds: xr.Dataset) -> xr.DataArray:
    """The largest learning rate at which no seed diverged (NaN if every rate diverged)."""
    stable = ~ds.diverged_at.notnull()
    if "seed" in stable.dims:
        stable = stable.all("seed")
    lr = ds.lr.broadcast_like(stable)
    return lr.where(stable).max("lr")


# ----------------------------------------------------------------------------- fitted rates

MIN_POINTS = 3  # a fit needs this many finite points in its window, else NaN
MIN_EXCESS = 1e-2  # floor="min": points below this share of the largest excess are left out

Window = tuple[float | None, float | None] | None
Floor = float | str | xr.DataArray | None


def _log_excess(ds: xr.Dataset, window: Window, floor: Floor) -> xr.DataArray:
    """log(loss - floor) over the window's logged steps, float64, NaN where it is not usable:
    the excess is not positive or not finite, the member diverged, or (floor="min") the excess
    is below MIN_EXCESS of the member's largest in the window."""
    loss = ds.loss.astype(np.float64)
    if window is not None:
        if not isinstance(window, (tuple, list)) or len(window) != 2:
            raise UserError(f"window must be (first step, last step), got {window!r}")
        lo = -np.inf if window[0] is None else float(window[0])
        hi = np.inf if window[1] is None else float(window[1])
        inside = (loss.step >= lo) & (loss.step <= hi)
        if not bool(inside.any()):
            steps = loss.step.values
            raise UserError(
                f"window {tuple(window)!r} holds no logged step (logged: {steps[0]}..{steps[-1]})"
            )
        loss = loss.sel(step=inside)
    if floor is None:
        excess = loss
    elif isinstance(floor, str):
        if floor != "min":
            raise UserError(f"floor must be None, 'min' or a number, got {floor!r}")
        excess = loss - ds.loss.astype(np.float64).min("step")  # the minimum over the whole run
        excess = excess.where(excess >= MIN_EXCESS * excess.max("step"))
    else:
        excess = loss - floor
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.log(excess.where(excess > 0))
    y = y.where(np.isfinite(y))
    if "diverged_at" in ds:
        y = y.where(ds.diverged_at.isnull())
    return y


def _fit_slope(y: xr.DataArray, x: xr.DataArray) -> xr.DataArray:
    """Least-squares slope of y on x over `step`, per member, on the points where y is finite;
    NaN with fewer than MIN_POINTS of them."""
    ok = y.notnull() & np.isfinite(x)
    xm = x.where(ok)
    dx = xm - xm.mean("step")
    dy = y.where(ok) - y.where(ok).mean("step")
    slope = (dx * dy).sum("step") / (dx * dx).sum("step")
    return slope.where(ok.sum("step") >= MIN_POINTS)


def convergence_rate(ds: xr.Dataset, window: Window = None, floor: Floor = None) -> xr.DataArray:
    """Fitted exponential rate r per member (per step): loss − floor ≈ A·exp(−r·step).

    The least-squares slope of log(loss − floor) on step over the logged steps in
    `window` = (first, last) (inclusive, either None for open; None: the whole logged run),
    negated, so a decaying loss has r > 0. floor None: the plain loss; a number (or a DataArray
    over the member dims): the loss above it; "min": the loss above the member's smallest logged
    loss, fitted where that excess is at least MIN_EXCESS of its largest in the window (the
    points close to the minimum are noise about it). Points with a non-positive or non-finite
    excess are left out; NaN for diverged members and with fewer than MIN_POINTS points.
    """
    y = _log_excess(ds, window, floor)
    return (-_fit_slope(y, y.step.astype(np.float64))).rename("rate")


def half_life(
    ds: xr.Dataset, window: Window = None, floor: Floor = None, measured: bool = False
) -> xr.DataArray:
    """Steps for the loss (above the floor) to halve, per member.

    measured=False: ln 2 / convergence_rate (inf where the fitted rate is <= 0). measured=True:
    counted on the curve itself: from the window's first usable point to the first step where
    the excess is at most half of its value there, interpolated linearly in log(excess) between
    the two logged steps around the crossing; NaN where it never halves in the window.
    Arguments as in `convergence_rate`.
    """
    if not measured:
        r = convergence_rate(ds, window, floor)
        with np.errstate(divide="ignore"):
            return xr.where(r > 0, np.log(2.0) / r, np.inf).where(r.notnull()).rename("half_life")
    y = _log_excess(ds, window, floor)
    out = xr.apply_ufunc(
        _halving_steps, y, y.step.astype(float), input_core_dims=[["step"], ["step"]]
    )
    return out.rename("half_life")


def _halving_steps(y: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(…, T) log-excesses at steps t (NaN = unusable) -> steps from the first usable point to
    the first one at or below half of it, log-linearly interpolated; NaN where none."""
    ok = np.isfinite(y)
    idx = np.arange(y.shape[-1])
    first = np.argmax(ok, axis=-1)
    y0 = np.take_along_axis(y, first[..., None], -1)
    below = ok & (y <= y0 - np.log(2.0))
    hit = below.any(-1)
    k = np.argmax(below, axis=-1)
    # the last usable point before the crossing (there is one: the first point is above it)
    last_ok = np.maximum.accumulate(np.where(ok, idx, -1), axis=-1)
    j = np.take_along_axis(last_ok, np.maximum(k - 1, 0)[..., None], -1)[..., 0].clip(0)
    yj, yk = (np.take_along_axis(y, i[..., None], -1)[..., 0] for i in (j, k))
    with np.errstate(divide="ignore", invalid="ignore"):  # members that never halve: masked
        frac = (y0[..., 0] - np.log(2.0) - yj) / (yk - yj)
        cross = t[j] + frac * (t[k] - t[j])
    return np.where(hit, cross - t[first], np.nan)


def power_law_exponent(ds: xr.Dataset, window: Window = None, floor: Floor = None) -> xr.DataArray:
    """Fitted exponent p per member: loss − floor ≈ A·step^(−p), for decays that are not
    exponential. The least-squares slope of log(loss − floor) on log(step), negated, over the
    window's logged steps > 0 (step 0 has no logarithm). Arguments and NaNs as in
    `convergence_rate`.
    """
    y = _log_excess(ds, window, floor)
    step = y.step.astype(np.float64)
    with np.errstate(divide="ignore"):
        log_step = np.log(step.where(step > 0))
    return (-_fit_slope(y, log_step)).rename("power_law_exponent")


def summary_table(ds: xr.Dataset, threshold: float) -> pd.DataFrame:
    """One row per member: its grid coordinates and scalar outcomes (`rate`: the fitted
    exponential rate of the loss over the whole run, `convergence_rate(ds)`)."""
    cols = {
        "final_loss": final_loss(ds),
        "best_loss": ds.loss.min("step"),
        "steps_to_threshold": steps_to_threshold(ds, threshold),
        "rate": convergence_rate(ds),
        "diverged_at": ds.diverged_at,
    }
    if "eos_at" in ds:  # recorded with train.metrics=sharpness (-1: never at 2/lr)
        cols["eos_at"] = ds.eos_at
    if "grad_norm" in ds:  # not recorded with train.record=loss
        cols["grad_ratio_init"] = grad_ratio(ds).isel(step=0, drop=True)
        cols["grad_ratio_final"] = grad_ratio(ds).isel(step=-1, drop=True)
    frame = xr.Dataset(cols).to_dataframe().reset_index()
    return frame[[*member_dims(ds), *cols]]
