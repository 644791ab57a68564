"""Trajectories -> an `xarray.Dataset` with named dims; netCDF I/O; provenance.

Dims: one per grid axis (named by the key's last part: `lr`, `seed`, `activation`, …), in the
grid's order, then `step` (logged step numbers) and `layer` (1 = first hidden layer, the last is
the output layer). Groups of different depth pad `layer` with NaN; `n_layers` says how many are
real. `diverged_at` is the step a member diverged at, NaN if it never did.

Every recorded metric becomes a variable: a group's (M, T) array gets dims (…, step), an
(M, T, L) one (…, step, layer) (see `sigjax.engine.metrics`). The bundled ones come first, in the
order of PER_STEP and PER_LAYER, then the others in the order recorded.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from sigjax.config import Config, to_json
from sigjax.engine.grid import Axis

PER_STEP = ("loss", "test_loss", "test_accuracy")  # the bundled metrics, by their dims
PER_LAYER = ("grad_norm", "grad_norm_bias", "weight_norm", "act_mean", "act_std", "saturation")
NOT_METRICS = ("diverged_at", "n_layers")  # per-member entries of a group's records
FORMAT_VERSION = 1


def to_dataset(
    cfg: Config,
    axes: Sequence[Axis],
    group_index: Sequence[tuple[int, ...]],
    group_records: Sequence[dict[str, np.ndarray]],
    extra_attrs: dict | None = None,
) -> xr.Dataset:
    """Assemble per-group arrays into one Dataset.

    group_records[g][name] has shape (M, T) or (M, T, L_g) (M = members of the group, in C order
    over the dynamic axes), plus `diverged_at` (M,). group_index[g] is the group's position along
    the static axes.
    """
    static = [a for a in axes if not a.dynamic]
    dynamic = [a for a in axes if a.dynamic]
    s_shape = tuple(len(a.values) for a in static)
    d_shape = tuple(len(a.values) for a in dynamic)
    n_steps = cfg.train.steps // cfg.train.log_every + 1
    n_layer = max(_n_layers(r) for r in group_records)

    names, per_layer = metric_names(group_records)
    full = {}
    for name in names:
        tail = (n_steps, n_layer) if per_layer[name] else (n_steps,)
        full[name] = np.full(s_shape + d_shape + tail, np.nan, np.float32)
    full["diverged_at"] = np.full(s_shape + d_shape, np.nan, np.float32)
    full["n_layers"] = np.zeros(s_shape + d_shape, np.int32)
    for idx, rec in zip(group_index, group_records, strict=True):
        for name in names:
            if name not in rec:
                continue
            arr = rec[name].reshape(d_shape + rec[name].shape[1:])
            target = full[name][idx]
            if per_layer[name]:
                target[..., : arr.shape[-1]] = arr
            else:
                target[...] = arr
        div = rec["diverged_at"].reshape(d_shape).astype(np.float32)
        full["diverged_at"][idx] = np.where(div < 0, np.nan, div)
        full["n_layers"][idx] = _n_layers(rec)

    dims = [a.dim for a in static] + [a.dim for a in dynamic]
    data_vars = {}
    for name, arr in full.items():
        extra = ["step", "layer"] if per_layer.get(name) else ["step"] if name in per_layer else []
        data_vars[name] = (dims + extra, arr)
    coords: dict = {a.dim: list(a.values) for a in axes}
    for a in axes:  # zipped keys: a coordinate along their axis' dim
        coords |= {k.split(".")[-1]: (a.dim, list(v)) for k, v in a.zipped}
    coords["step"] = np.arange(n_steps) * cfg.train.log_every
    coords["layer"] = np.arange(1, n_layer + 1)
    ds = xr.Dataset(data_vars, coords=coords)
    ds = ds.transpose(*[a.dim for a in axes], "step", "layer")
    ds.attrs = {
        "config": to_json(cfg),
        "grid": json.dumps(
            [[a.key, list(a.values), [[k, list(v)] for k, v in a.zipped]] for a in axes]
        ),
        "format_version": FORMAT_VERSION,
        **provenance(),
        **(extra_attrs or {}),
    }
    if "sharpness" in ds:  # the edge-of-stability flag per member (sigjax.engine.curvature.eos_at)
        from sigjax.engine import curvature

        ds["eos_at"] = curvature.eos_at(ds.sharpness, ds["lr"] if "lr" in ds else cfg.optim.lr)
    return ds


def metric_names(group_records: Sequence[dict[str, np.ndarray]]) -> tuple[list[str], dict]:
    """The metrics in the groups' records (bundled first) and whether each is per layer:
    (M, T, L) arrays are, (M, T) ones are not."""
    seen: dict[str, bool] = {}
    for rec in group_records:
        for name, arr in rec.items():
            if name not in NOT_METRICS:
                layered = np.ndim(arr) == 3
                if seen.setdefault(name, layered) != layered:
                    raise ValueError(f"{name} is per layer in one group and not in another")
    bundled = [n for n in (*PER_STEP, *PER_LAYER) if n in seen]
    return bundled + [n for n in seen if n not in bundled], seen


def _n_layers(rec: dict[str, np.ndarray]) -> int:
    """Layers of a group's models: its `n_layers` record, else its per-layer fields' length."""
    if "n_layers" in rec:
        return int(rec["n_layers"].flat[0])
    layered = [a.shape[-1] for n, a in rec.items() if n not in NOT_METRICS and np.ndim(a) == 3]
    return max(layered, default=0)


def provenance() -> dict[str, str]:
    """Versions, device and code revision, as strings fit for netCDF attributes."""
    import flax
    import jax
    import jaxlib
    import optax

    import sigjax

    devices = jax.devices()
    return {
        "sigjax_version": sigjax.__version__,
        "git_commit": _git_commit(),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "flax_version": flax.__version__,
        "optax_version": optax.__version__,
        "device_kind": devices[0].device_kind,
        "device_count": str(len(devices)),
        "process_count": str(jax.process_count()),
        "host": platform.node(),
        "python_version": platform.python_version(),
    }


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def save(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write netCDF atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> xr.Dataset:
    with xr.open_dataset(path, engine="netcdf4") as ds:
        return ds.load()


def config_of(ds: xr.Dataset) -> dict:
    return json.loads(ds.attrs["config"])
