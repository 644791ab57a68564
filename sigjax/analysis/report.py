"""A readable summary and standard figures for any run directory (`sigjax show DIR`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from sigjax import analysis
from sigjax.analysis import plotting
from sigjax.engine import results
from sigjax.errors import UserError, first_line

# What `describe` and `standard_figures` read, by the variable that brings them along.
NEEDS = {"loss": ("diverged_at",), "grad_norm": ("n_layers",)}


def load_run(directory: str | Path) -> tuple[xr.Dataset, dict]:
    """(results, config.json's contents) of a run directory; UserError naming what is wrong."""
    path = Path(directory)
    if not path.is_dir():
        raise UserError(f"{path} is not a directory")
    if not (path / "results.nc").exists():
        raise UserError(f"{path} is not a sigjax run directory (no results.nc)")
    try:
        ds = results.load(path / "results.nc")
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"cannot read {path / 'results.nc'}: {first_line(e)}") from None
    for var, needed in NEEDS.items():
        lacking = [n for n in needed if var in ds and n not in ds]
        if var in ds and "step" not in ds[var].dims:
            lacking.append("the step dim")
        if lacking:
            raise UserError(
                f"{path / 'results.nc'} has {var} but lacks {', '.join(lacking)}; "
                "it was damaged or not written by sigjax"
            )
    meta = {}
    if (path / "config.json").exists():
        try:
            meta = json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {path / 'config.json'}: {first_line(e)}") from None
        if not isinstance(meta, dict):
            raise UserError(f"{path / 'config.json'} is not a JSON object")
    return ds, meta


def loss_threshold(meta: dict, default: float = 0.05) -> float:
    """The run's train.loss_threshold from its config.json contents (default when absent)."""
    try:
        value = float(meta.get("config", {}).get("train", {}).get("loss_threshold", default))
    except (AttributeError, TypeError, ValueError):
        raise UserError("config.json: train.loss_threshold is not a number") from None
    return value


def _static_dims(ds: xr.Dataset) -> list[str]:
    return [d for d in analysis.member_dims(ds) if d not in ("lr", "seed")]


def describe(ds: xr.Dataset, threshold: float) -> str:
    """Groups, members, best settings and divergence boundary, as text."""
    if "loss" not in ds:  # a study of untrained networks or of theory alone
        return _describe_other(ds)
    dims = analysis.member_dims(ds)
    n = int(ds.loss.notnull().any("step").sum())  # padded cells of ragged grids do not count
    lines = [
        f"study {ds.attrs.get('study', '?')}: {n} trained models over "
        + " × ".join(f"{d}={ds.sizes[d]}" for d in dims),
        f"steps {int(ds.step[-1])}, "
        f"wall time {float(ds.attrs.get('wall_time_s', np.nan)):.1f} s on "
        f"{ds.attrs.get('device_count', '?')} {ds.attrs.get('device_kind', '?')} device(s), "
        f"sigjax {ds.attrs.get('sigjax_version', '?')} @ {ds.attrs.get('git_commit', '?')[:12]}",
        f"diverged: {int(ds.diverged_at.notnull().sum())} of {n}",
    ]
    if "lr" not in ds.dims:
        final = analysis.final_loss(ds)
        lines.append(f"final loss: median {float(final.median()):.4g}")
        return "\n".join(lines) + "\n"
    best = analysis.best_lr(ds, threshold)
    steps = analysis.at_best_lr(analysis.steps_to_threshold(ds, threshold), best)
    final = analysis.at_best_lr(analysis.final_loss(ds), best)
    boundary = analysis.divergence_boundary(ds)
    over = [d for d in ("seed",) if d in steps.dims]
    columns = {
        "best_lr": best,
        "median_steps": steps.fillna(np.inf).median(over) if over else steps,
        "final_loss": final.median(over) if over else final,
        "largest_stable_lr": boundary,
    }
    # selecting at the best lr leaves the selected lr behind as a coordinate: drop it, it is
    # best_lr again
    table = xr.Dataset({k: v.reset_coords(drop=True) for k, v in columns.items()}).to_dataframe()
    lines.append(f"per setting, at its best learning rate (threshold {threshold}):")
    lines.append(table.to_string(float_format=lambda v: f"{v:.4g}"))
    return "\n".join(lines) + "\n"


def _describe_other(ds: xr.Dataset) -> str:
    lines = [
        f"study {ds.attrs.get('study', '?')}: "
        + " × ".join(f"{d}={n}" for d, n in ds.sizes.items()),
        f"wall time {float(ds.attrs.get('wall_time_s', np.nan)):.1f} s, "
        f"sigjax {ds.attrs.get('sigjax_version', '?')}",
        "variables: " + ", ".join(f"{v} ({', '.join(ds[v].dims)})" for v in ds.data_vars),
    ]
    return "\n".join(lines) + "\n"


def standard_figures(ds: xr.Dataset, out: str | Path) -> list[Path]:
    """Loss curves and per-layer gradient norms, one panel per static setting."""
    if "loss" not in ds or "grad_norm" not in ds:
        raise UserError("this run has no training trajectories to plot; see its own figures/")
    static = _static_dims(ds)
    settings = (
        ds.drop_vars([v for v in ds.data_vars if "step" not in ds[v].dims]).stack(setting=static)
        if static
        else ds.expand_dims(setting=[0])
    )
    n = settings.sizes["setting"]
    fig, axes = plotting.subplots(2, n, size=(3.4, 2.8))
    for i in range(n):
        one = settings.isel(setting=i)
        name = ", ".join(f"{d}={one[d].item()}" for d in static) or "all"
        rest = [d for d in ("lr",) if d in one.dims]
        loss = (
            one.loss.median([d for d in ("seed",) if d in one.dims])
            if "seed" in one.dims
            else one.loss
        )
        for j, lr in enumerate(one.lr.values if rest else [None]):
            curve = loss.sel(lr=lr) if rest else loss
            axes[0, i].plot(
                one.step, curve, color=f"C{j % 10}", label=None if lr is None else f"lr {lr:.3g}"
            )
        axes[0, i].set(yscale="log", title=name, xlabel="step")
        g = one.grad_norm
        g = g.median([d for d in g.dims if d not in ("step", "layer")])
        for layer in g.layer.values:
            axes[1, i].plot(one.step, g.sel(layer=layer), label=f"layer {layer}")
        axes[1, i].set(yscale="log", xlabel="step")
    axes[0, 0].set_ylabel("median loss")
    axes[1, 0].set_ylabel("median ‖∂L/∂W_l‖")
    axes[0, -1].legend(fontsize=6)
    axes[1, -1].legend(fontsize=6)
    fig.tight_layout()
    return plotting.save(fig, out, "show_overview")
