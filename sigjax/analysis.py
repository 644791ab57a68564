"""Convergence measures on a results Dataset (see sigjax.results for its dims).

Every function keeps the grid dims it does not reduce, so `steps_to_threshold(ds, 0.05)` on a
(activation, depth, lr, seed, step) run is an (activation, depth, lr, seed) DataArray.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

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


def summary_table(ds: xr.Dataset, threshold: float) -> pd.DataFrame:
    """One row per member: its grid coordinates and scalar outcomes."""
    cols = {
        "final_loss": final_loss(ds),
        "best_loss": ds.loss.min("step"),
        "steps_to_threshold": steps_to_threshold(ds, threshold),
        "diverged_at": ds.diverged_at,
        "grad_ratio_init": grad_ratio(ds).isel(step=0, drop=True),
        "grad_ratio_final": grad_ratio(ds).isel(step=-1, drop=True),
    }
    frame = xr.Dataset(cols).to_dataframe().reset_index()
    return frame[[*member_dims(ds), *cols]]
