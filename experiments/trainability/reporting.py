"""The trainability report: table.md (agreement with 6ξ_c beside the baselines, the fitted
boundary) and the accuracy heat maps with the theory's curve."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from experiments import _extra
from experiments.trainability.tables import (
    agreement,
    baselines,
    boundary,
    chance_accuracy,
    extra_dims,
    final_accuracy,
    fitted_factor,
    theory_curve,
)
from experiments.trainability.training import DEPTH_FACTOR
from sigjax import theory
from sigjax.analysis import plotting

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


def markdown(t: pd.DataFrame, ds: xr.Dataset) -> str:
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
    chance = chance_accuracy(ds)
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
    (out / "table.md").write_text(markdown(t, ds) + (f"\nNote: {note}.\n" if note else ""))
    _figure(ds, t, out, note=note)
    if note:
        head["figure_note"] = note
    return head
