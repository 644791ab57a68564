"""The convergence_rates figures: loss curves against the linearized prediction, the gap vs
width, stability against 2/λ_max, and Saxe's deep linear curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from experiments.convergence_rates.tables import gap, rates, stable_factor
from experiments.convergence_rates.training import DEFAULT_DEPTH, TREND_FACTOR
from sigjax.analysis import plotting


def draw_figures(ds: xr.Dataset, out: Path) -> None:
    acts, tasks, widths = ds.activation.values, ds.task.values, ds.width.values
    # loss curves: measured (solid) vs linearized (dashed), narrowest and widest
    fig, axes = plotting.subplots(len(tasks), len(acts), size=(3.2, 2.6), sharey="row")
    for i, task in enumerate(tasks):
        for j, act in enumerate(acts):
            ax = axes[i, j]
            for n, w in enumerate((widths[0], widths[-1])):
                one = ds.sel(task=task, activation=act, width=w, lr_factor=TREND_FACTOR, seed=0)
                c = f"C{n}"
                ax.plot(ds.step, one.loss, color=c, label=f"width {w}")
                ax.plot(ds.step, one.pred_loss, color=c, ls="--", label=f"linearized {w}")
            ax.set(yscale="log", title=f"{act}, {task}", xlabel="step")
        axes[i, 0].set_ylabel("training MSE")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    plotting.save(fig, out, "convergence_rates_curves")

    # width trend
    fig, axes = plotting.subplots(1, 3, size=(4.0, 3.0))
    g = gap(ds).sel(lr_factor=TREND_FACTOR).median("seed")
    kg = ds.kernel_gap.median("seed")
    for i, act in enumerate(acts):
        c = plotting.color(str(act), i)
        for task, ls in zip(tasks, ("-", ":"), strict=False):
            axes[0, 0].plot(widths, g.sel(task=task, activation=act), ls, color=c, marker="o")
            axes[0, 1].plot(widths, kg.sel(task=task, activation=act), ls, color=c, marker="o")
        axes[0, 0].plot([], [], color=c, label=str(act))
    for ax in axes[0, :2]:
        ref = ax.get_lines()[0].get_ydata()[0] if ax.get_lines() else 1.0
        ax.plot(widths, ref * np.sqrt(widths[0] / widths), "k--", lw=0.8, label="∝ 1/√width")
        ax.set(xscale="log", yscale="log", xlabel="width")
    axes[0, 0].set(
        ylabel="max_t |L − L_lin| / L_0", title=f"loss vs linearized (lr {TREND_FACTOR} η*)"
    )
    axes[0, 1].set(ylabel="‖Θ − Θ_∞‖ / ‖Θ_∞‖", title="empirical vs infinite-width NTK")
    axes[0, 0].legend(fontsize=6)
    # measured vs predicted rates
    r = rates(ds).median("seed")
    ax = axes[0, 2]
    for i, act in enumerate(acts):
        c = plotting.color(str(act), i)
        sel = r.sel(activation=act)
        ax.scatter(sel.predicted.values.ravel(), sel.measured.values.ravel(), color=c, s=12)
        ax.scatter(
            sel.lam_min_rate.values.ravel(), sel.measured.values.ravel(), color=c, s=12, marker="x"
        )
    lim = np.nanmax([float(r.measured.max()), float(r.predicted.max())]) * 1.5
    ax.plot([1e-6, lim], [1e-6, lim], "k:", lw=0.8)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="predicted rate (o: linearized fit, x: λ_min mode)",
        ylabel="measured rate",
        title="rates per step",
    )
    fig.tight_layout()
    plotting.save(fig, out, "convergence_rates_width")

    # stability and edge of stability
    fig, axes = plotting.subplots(1, 1 + ds.sizes["default_activation"], size=(3.6, 3.0))
    sf = stable_factor(ds)
    for i, act in enumerate(acts):
        c = plotting.color(str(act), i)
        for task, ls in zip(tasks, ("-", ":"), strict=False):
            axes[0, 0].plot(
                widths,
                sf.sel(task=task, activation=act),
                ls,
                color=c,
                marker="o",
                label=f"{act}" if task == tasks[0] else None,
            )
    axes[0, 0].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0, 0].set(
        xscale="log",
        xlabel="width",
        ylabel="largest stable lr / (N k/λ_max)",
        title="stability: measured vs linearized limit",
    )
    axes[0, 0].legend(fontsize=6)
    dflt = ds.default_sharpness.median("default_seed")
    for ax, act in zip(axes[0, 1:], ds.default_activation.values, strict=True):
        for n, lr in enumerate(ds.default_lr.values):
            c = f"C{n}"
            ax.plot(
                ds.default_step,
                dflt.sel(default_activation=act, default_lr=lr),
                color=c,
                lw=1,
                label=f"lr {lr:.2g}",
            )
            ax.axhline(2 / lr, color=c, lw=0.8, ls="--")
        ax.set(yscale="log", xlabel="step", title=f"{act}, depth {DEFAULT_DEPTH} (dashed: 2/η)")
    axes[0, 1].set_ylabel("sharpness (median over seeds)")
    axes[0, 1].legend(fontsize=6)
    fig.tight_layout()
    plotting.save(fig, out, "convergence_rates_stability")

    # deep linear
    fig, axes = plotting.subplots(1, ds.sizes["saxe_start"], size=(4.0, 3.0), sharey=True)
    for ax, start in zip(axes[0], ds.saxe_start.values, strict=True):
        for m in ds.mode.values:
            c = f"C{int(m) - 1}"
            sel = dict(saxe_start=start, mode=m)
            ax.plot(
                ds.saxe_step,
                ds.saxe_modes.sel(sel),
                color=c,
                label=f"s = {float(ds.saxe_s.sel(mode=m)):g}",
            )
            ax.plot(ds.saxe_step, ds.saxe_exact.sel(sel), color=c, ls="--", lw=0.8)
        ax.set(xlabel="step", title=f"deep linear, {start} start (dashed: exact)")
    axes[0, 0].set_ylabel("mode strength u_αᵀ W v_α")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    plotting.save(fig, out, "convergence_rates_deep_linear")
