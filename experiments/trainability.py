"""Trainability vs depth and σ_w²: do the mean-field depth scales bound what trains?

Schoenholz et al. (2017, Figs. 5-6): a random net of depth L can be trained only if L ≲ 6 ξ_c,
where ξ_c = -1/log χ_c is the depth over which two inputs' correlation relaxes to its fixed point
(χ_c = χ₁ in the ordered phase). ξ_c diverges on the critical line χ₁ = 1, so the trainable
region is a band of depths around the critical σ_w² that widens with depth budget.

This study trains MLPs (width 64 by default) on a real task (scikit-learn's 8×8 digits,
standardised, softmax cross-entropy, SGD, batch 64) for a fixed number of steps, on a grid of depth
× σ_w² at σ_b² = 0.05 (W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²)), for tanh (critical σ_w² ≈ 1.76) and
the sigmoid (critical σ_w² ≈ 103: its σ_w² axis is log-spaced over [10, 1000]). Each activation
has its own σ_w² axis (`SIGMA_W2`; a `--grid init.sigma_w2=…` replaces both); σ_w² and the learning
rate are traced (one compile per activation and depth); the full preset instead puts both on
one σ_w² axis over [0.5, 1000]. Each cell reports the final test accuracy
at the better of the learning rates in the grid, and the theory curves ξ_c and 6 ξ_c (from
`experiments.phase_diagram.mean_field_grid`) are drawn over the heat maps.

Outputs: results.nc (the sweep, dims activation × depth × lr × sigma_w2 …; a cell outside an
activation's own σ_w² axis is NaN), figures/trainability.png, table.md / table.csv.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from experiments import _extra, phase_diagram
from sigjax import config, plotting, sweep
from sigjax.config import Config
from sigjax.errors import UserError
from sigjax.study import Study

ACTIVATIONS = ("tanh", "sigmoid")
SIGMA_W2 = {  # each activation's own σ_w² axis around its critical value (σ_b² = 0.05)
    "tanh": tuple(float(v) for v in np.logspace(np.log10(0.5), np.log10(8.0), 9)),
    # from Glorot's σ_w² = 1 through the critical ≈ 103 into the chaotic phase
    "sigmoid": tuple(float(v) for v in np.logspace(0.0, 3.0, 10)),
}
DEPTH_FACTOR = 6.0  # trainable if depth ≲ 6 ξ_c

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
    },
)
GRID = {
    "model.activation": ACTIVATIONS,
    "model.depth": (4, 8, 16, 32),
    "optim.lr": (0.03, 0.3),
}
FULL = (  # one shared σ_w² axis over [0.5, 1000] for both activations
    {"model.width": 256, "train.steps": 2000, "train.log_every": 200},
    {
        "init.sigma_w2": [repr(float(v)) for v in np.logspace(np.log10(0.5), 3.0, 34)],
        "model.depth": [str(d) for d in (4, 8, 16, 24, 32, 48, 64, 96, 128)],
        "optim.lr": ["0.01", "0.03", "0.1", "0.3"],
        "seed": ["0", "1"],
    },
)

# ---------------------------------------------------------------- compute


class _Shifted:
    """A checkpoint store seen through a group offset, so several sweeps share one run's store.

    The group index is shifted; further arguments (chunk, state, `rows=` …) pass as given."""

    def __init__(self, store, offset: int):
        self.store, self.offset = store, offset

    def save_group(self, g, *args, **kw):
        return self.store.save_group(g + self.offset, *args, **kw)

    def load_group(self, g, *args, **kw):
        return self.store.load_group(g + self.offset, *args, **kw)

    def save_chunk(self, g, *args, **kw):
        return self.store.save_chunk(g + self.offset, *args, **kw)

    def load_chunk(self, g, *args, **kw):
        return self.store.load_chunk(g + self.offset, *args, **kw)

    def save_state(self, g, *args, **kw):
        return self.store.save_state(g + self.offset, *args, **kw)

    def load_state(self, g, *args, **kw):
        return self.store.load_state(g + self.offset, *args, **kw)


def _sigma_w2_axes(axes, activation: str) -> tuple:
    for a in axes:
        if a.key == "init.sigma_w2":
            return a.values
    return SIGMA_W2.get(activation, SIGMA_W2["tanh"])


def compute(cfg: Config, axes, progress: bool = False, store=None) -> xr.Dataset:
    """One sweep per activation over its own σ_w² axis; concatenated along `activation`."""
    if any(k == "init.sigma_b2" for a in axes for k in (a.key, *(k for k, _ in a.zipped))):
        raise UserError(
            "trainability draws its theory at one σ_b²: fix it with --set init.sigma_b2=VALUE "
            "(a grid over init.sigma_b2 would be compared with the wrong ξ_c)"
        )
    from sigjax import data as data_lib
    from sigjax import grid

    acts = next((a.values for a in axes if a.key == "model.activation"), None)
    acts = acts or (cfg.model.activation,)
    rest = [a for a in axes if a.key not in ("model.activation", "init.sigma_w2")]
    parts, offset, used = [], 0, {}
    for act in acts:
        w_axis = grid.Axis("init.sigma_w2", tuple(_sigma_w2_axes(axes, act)))
        sub_axes = (*rest, w_axis)
        sub_cfg = config.replace(cfg, {"model.activation": act})
        sub_store = _Shifted(store, offset) if store is not None else None
        parts.append(sweep.run(sub_cfg, sub_axes, progress=progress, store=sub_store))
        offset += len(sweep.check(sub_cfg, sub_axes))
        used[act] = list(w_axis.values)
    ds = xr.concat(
        parts,
        dim=pd.Index(list(acts), name="activation"),
        join="outer",
        combine_attrs="override",
        data_vars="all",
    )
    if "depth" in ds.dims:
        ds["n_layers"] = (ds.depth + 1).astype(np.int32).broadcast_like(ds.loss.isel(step=0))
    # theory at every grid point (σ_b² from the config)
    b = cfg.init.sigma_b2
    xi = np.full((len(acts), ds.sizes["sigma_w2"]), np.nan)
    chi = np.full_like(xi, np.nan)
    for i, act in enumerate(acts):
        mf = phase_diagram.mean_field_grid(act, ds.sigma_w2.values, b)
        xi[i], chi[i] = mf["xi_c"], mf["chi_1"]
    ds["xi_c"] = (("activation", "sigma_w2"), xi)
    ds["chi_1"] = (("activation", "sigma_w2"), chi)
    ds.attrs["n_classes"] = int(data_lib.load(cfg.data).n_classes)
    ds.attrs["config"] = config.to_json(cfg)
    ds.attrs["grid"] = json.dumps(
        [[a.key, list(a.values)] for a in axes if a.key != "init.sigma_w2"]
        + [["init.sigma_w2", used]]
    )
    ds.attrs["wall_time_s"] = float(sum(p.attrs.get("wall_time_s", 0.0) for p in parts))
    return ds


# ---------------------------------------------------------------- analysis and report


def final_accuracy(ds: xr.Dataset) -> xr.DataArray:
    """Final test accuracy (train loss where there is no test set) at each cell's best lr,
    averaged over seeds: dims (activation, depth, sigma_w2)."""
    if "test_accuracy" in ds:
        acc = ds.test_accuracy.isel(step=-1, drop=True).fillna(0.0)
    else:
        acc = -ds.loss.isel(step=-1, drop=True).fillna(np.inf)
    if "seed" in acc.dims:
        acc = acc.mean("seed")
    if "lr" in acc.dims:
        acc = acc.max("lr")
    keep = ds.loss.isel(step=0, drop=True).notnull()
    keep = keep.any([d for d in keep.dims if d not in acc.dims])
    return acc.where(keep)


def theory_curve(activation: str, sigma_b2: float, lo: float, hi: float, n: int = 160):
    """(σ_w², ξ_c) on a fine log grid from lo to hi."""
    w = np.logspace(np.log10(lo), np.log10(hi), n)
    return w, phase_diagram.mean_field_grid(activation, w, sigma_b2)["xi_c"]


def _chance(ds: xr.Dataset) -> float:
    """Accuracy of guessing (1/classes; 0 for a regression task)."""
    n = int(ds.attrs.get("n_classes", 0))
    return 1.0 / n if n else 0.0


MAP_DIMS = ("activation", "depth", "sigma_w2")  # one heat map per activation


def extra_dims(acc: xr.DataArray) -> list[str]:
    """Grid dims beyond a heat map's (a user's `--grid model.width=…`): one map per setting."""
    return _extra.extra_dims(acc, MAP_DIMS)


def agreement(ds: xr.Dataset) -> pd.DataFrame:
    """Per (activation, extra setting, depth, σ_w²): accuracy, trainable (above halfway from
    chance to the best of that activation and setting), the theory's call (depth ≤ 6 ξ_c) and
    whether they agree. Extra grid dims come as columns after `activation`."""
    acc = final_accuracy(ds)
    extra = extra_dims(acc)
    chance = _chance(ds)
    rows = []
    for setting in _extra.combos(acc, ["activation", *extra]):
        a = acc.sel(setting)
        act = setting["activation"]
        best = float(a.max())
        thr = chance + 0.5 * (best - chance)
        for d in a.depth.values:
            for w in a.sigma_w2.values:
                v = float(a.sel(depth=d, sigma_w2=w))
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
                        "test_accuracy": v,
                        "trainable": v >= thr,
                        "theory_trainable": d <= DEPTH_FACTOR * xi,
                    }
                )
    t = pd.DataFrame(rows)
    t["agree"] = t.trainable == t.theory_trainable
    return t


def _maps(t: pd.DataFrame, extra: list[str]):
    """(title, rows) of each heat map: one per activation and extra setting, in table order."""
    keys = ["activation", *extra]
    for key, sub in t.groupby(keys, sort=False):
        setting = dict(zip(keys, key, strict=True))
        act = setting.pop("activation")
        yield (f"{act}, {_extra.label(setting)}" if setting else act), sub


def _markdown(t: pd.DataFrame, ds: xr.Dataset) -> str:
    cfg = json.loads(ds.attrs["config"])
    lrs = list(ds.lr.values) if "lr" in ds.dims else [cfg["optim"]["lr"]]
    lines = [
        f"Final test accuracy after {cfg['train']['steps']} SGD steps ({cfg['data']['name']}, "
        f"width {cfg['model']['width']}, σ_b² = {cfg['init']['sigma_b2']}, best of lr "
        f"{', '.join(f'{v:g}' for v in lrs)}). Rows: depth; columns: σ_w². "
        "`*` = the theory says trainable (depth ≤ 6 ξ_c).",
        "",
    ]
    for act, sub in _maps(t, extra_dims(final_accuracy(ds))):
        piv = sub.pivot(index="depth", columns="sigma_w2", values="test_accuracy")
        star = sub.pivot(index="depth", columns="sigma_w2", values="theory_trainable")
        xi = sub.drop_duplicates("sigma_w2").set_index("sigma_w2").xi_c
        lines.append(f"**{act}** (agreement with 6 ξ_c: {sub.agree.mean():.0%} of cells)")
        lines.append("")
        lines.append("| depth | " + " | ".join(f"{w:.3g}" for w in piv.columns) + " |")
        lines.append("|---|" + "---|" * len(piv.columns))
        lines.append("| 6 ξ_c | " + " | ".join(f"{6 * xi[w]:.3g}" for w in piv.columns) + " |")
        for d, row in piv.iterrows():
            cells = [
                f"{v:.2f}{'*' if star.loc[d, w] else ''}" for w, v in row.items() if np.isfinite(v)
            ]
            lines.append(f"| {d} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _figure(ds: xr.Dataset, t: pd.DataFrame, out: Path, dpi: int = 100, note: str = "") -> None:
    """A heat map per activation (and per extra setting, or at the first one; see `note`)."""
    acc = final_accuracy(ds)
    settings, _ = _extra.figure_settings(acc, extra_dims(acc), loop=["activation"])
    b = json.loads(ds.attrs["config"])["init"]["sigma_b2"]
    fig, axes = plotting.subplots(1, len(settings), size=(4.6, 3.6))
    chance = _chance(ds)
    mesh = None
    for ax, setting in zip(axes[0], settings, strict=True):
        act = str(setting["activation"])
        a = acc.sel(setting).dropna("sigma_w2", how="all")
        w, d = a.sigma_w2.values, a.depth.values
        mesh = ax.pcolormesh(
            w, d, a.values, shading="nearest", cmap="viridis", vmin=chance, vmax=1.0
        )
        lo, hi = w.min() / 1.2, w.max() * 1.2
        wf, xi = theory_curve(act, b, lo, hi)
        ax.plot(wf, DEPTH_FACTOR * xi, "w-", lw=2, label="6 ξ_c")
        ax.plot(wf, xi, "w--", lw=1.2, label="ξ_c")
        crit = float(phase_diagram.theory.critical_sigma_w2(act, b))
        ax.axvline(crit, color="r", ls=":", lw=1, label=f"critical σ_w² = {crit:.3g}")
        sub = t[np.logical_and.reduce([t[k] == v for k, v in setting.items()])]
        rest = _extra.label({k: v for k, v in setting.items() if k != "activation"})
        where = f"{act} ({rest})\n" if rest else f"{act}, "
        for r in sub.itertuples():
            ax.text(
                r.sigma_w2,
                r.depth,
                f"{r.test_accuracy:.2f}",
                ha="center",
                va="center",
                fontsize=5.5,
                color="k" if r.test_accuracy > 0.6 else "w",
            )
        ax.set(
            xscale="log",
            yscale="log",
            xlim=(lo, hi),
            ylim=(d.min() / 1.3, d.max() * 1.3),
            title=f"{where}σ_b² = {b:g}: agreement {sub.agree.mean():.0%}",
            xlabel="σ_w²",
            ylabel="depth",
        )
        ax.set_yticks(d, [str(int(v)) for v in d])
        ax.minorticks_off()
        ax.set_xticks(w[:: max(1, len(w) // 5)], [f"{v:.3g}" for v in w[:: max(1, len(w) // 5)]])
        ax.legend(
            fontsize=7,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.16),
            ncol=3,
            facecolor="0.4",
            labelcolor="w",
        )
    if note:
        fig.suptitle(note, fontsize=10)
    fig.tight_layout()
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.85, pad=0.02)
        cbar.set_label("final test accuracy (best lr)")
    plotting.save(fig, out, "trainability", dpi)


def report(ds: xr.Dataset, out: Path) -> dict:
    t = agreement(ds)
    acc = final_accuracy(ds)
    _, note = _extra.figure_settings(acc, extra_dims(acc), loop=["activation"])
    t.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(_markdown(t, ds) + (f"\nNote: {note}.\n" if note else ""))
    _figure(ds, t, out, note=note)
    head: dict = {"agreement_with_6xi_c": {}, "best_test_accuracy": {}}
    for name, sub in _maps(t, extra_dims(acc)):
        head["agreement_with_6xi_c"][name] = float(sub.agree.mean())
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
    if note:
        head["figure_note"] = note
    return head


STUDY = Study(
    name="trainability",
    description=(
        "depth x sigma_w2 grid trained on digits for tanh and sigmoid at sigma_b2 = 0.05, "
        "test accuracy heat map with xi_c and 6 xi_c from theory; "
        "figures/trainability.png, table.md"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    compute=compute,
    presets={"quick": ({}, {}), "full": FULL},
)
