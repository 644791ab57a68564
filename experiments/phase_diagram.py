"""Phase diagrams of signal propagation: where do tanh, sigmoid, erf and softsign nets sit?

Pure mean-field theory (no training): for each activation, on a grid of (σ_w², σ_b²), the
fixed point q*, the per-layer gradient factor χ₁ = σ_w² E[φ'(√q* z)²], the correlation fixed
point c* and its slope χ_c, and the depth scale ξ_c = -1/log χ_c over which two inputs'
correlation relaxes to c* (Schoenholz et al. 2017: a net trains only if its depth is ≲ 6 ξ_c).
The critical line χ₁ = 1 separates the ordered phase (χ₁ < 1: gradients vanish, inputs become
indistinguishable) from the chaotic one (χ₁ > 1: gradients explode, nearby inputs decorrelate).

Glorot & Bengio (2010) initialisations are marked: "standard" U[±1/√fan_in] has
Var W = 1/(3 fan_in), i.e. σ_w² = 1/3, σ_b² = 0; "normalized" has Var W = 2/(fan_in + fan_out),
i.e. σ_w² = 1 for equal widths. The sigmoid's critical σ_w² is ≈ 103 (its mean ½ acts as a bias
of variance σ_w²/16 in tanh units; see docs/theory.md), so on its panel both sit deep in the
ordered phase.

Outputs: results.nc (the grid), figures/phase_diagram.png, table.md / table.csv.

q* and χ₁ come from `sigjax.theory` on the whole grid. In the chaotic phase χ_c needs c*, which
`theory.mean_field` finds with a nested adaptive quadrature at 0.1-0.5 s per point; here it is
solved for all grid points at once by Newton's method on the convex c-map with a lower-order
rule (`chaotic_corr`), checked against `theory.mean_field` on a few points at every run (the
largest relative difference in ξ_c is stored as `xi_c_check_rel_err`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from experiments import _extra
from sigjax import config, theory
from sigjax.analysis import plotting
from sigjax.config import Config
from sigjax.engine import grid, results
from sigjax.study import Study
from sigjax.theory.grid import chaotic_corr, mean_field_grid  # noqa: F401

ACTIVATIONS = ("tanh", "sigmoid", "erf", "softsign")
# Glorot & Bengio's two initialisations as mean-field variances (equal widths, zero biases)
GLOROT = {"standard": 1.0 / 3.0, "normalized": 1.0}
XI_LEVELS = (1, 3, 10, 30)  # ξ_c contours drawn on the maps
TABLE_SIGMA_B2 = {"b0": 0.0, "b005": 0.05, "b05": 0.5}  # critical σ_w² listed in table.md
CHECK_POINTS = 2  # chaotic grid points per activation re-solved with theory.mean_field

CONFIG = config.replace(Config(), {"init.scheme": "gaussian"})
SWEPT = ("model.activation", "init.sigma_w2", "init.sigma_b2")  # all the theory reads
GRID = {
    "model.activation": ACTIVATIONS,
    "init.sigma_w2": tuple(float(v) for v in np.logspace(-1, 3, 61)),
    "init.sigma_b2": tuple(float(v) for v in np.linspace(0.0, 1.0, 17)),
}
FULL = {
    "init.sigma_w2": [float(v) for v in np.logspace(-1, 3, 161)],
    "init.sigma_b2": [float(v) for v in np.linspace(0.0, 2.0, 61)],
}

# ---------------------------------------------------------------- compute


def compute(cfg: Config, axes, progress: bool = False, store=None) -> xr.Dataset:
    """The theory on the grid: dims (activation, sigma_b2, sigma_w2) and the critical line."""
    _extra.refuse_other_axes("phase_diagram", axes, SWEPT)
    acts = grid.values_of(axes, "model.activation", cfg.model.activation)
    ws = np.asarray(grid.values_of(axes, "init.sigma_w2", cfg.init.sigma_w2), float)
    bs = np.asarray(grid.values_of(axes, "init.sigma_b2", cfg.init.sigma_b2), float)
    names = ("q_star", "chi_1", "c_star", "chi_c", "xi_c", "xi_q")
    grids = {k: [] for k in names}
    crit = {"critical_sigma_w2": [], "critical_q_star": [], "critical_chi_1": []}
    glorot = {k: [] for k in ("glorot_chi_1", "glorot_q_star", "glorot_xi_c")}
    check_err = 0.0
    rng = np.random.default_rng(0)
    for act in acts:
        mf = mean_field_grid(act, ws[None, :], bs[:, None])
        for k in names:
            grids[k].append(mf[k])
        cw, cq = theory.critical_point(act, bs)
        crit["critical_sigma_w2"].append(cw)
        crit["critical_q_star"].append(cq)
        ok = np.isfinite(cw)
        c1 = np.full(bs.shape, np.nan)
        c1[ok] = theory.chi_1(act, cw[ok], bs[ok])
        crit["critical_chi_1"].append(c1)
        g = mean_field_grid(act, np.array(list(GLOROT.values())), 0.0)
        glorot["glorot_chi_1"].append(g["chi_1"])
        glorot["glorot_q_star"].append(g["q_star"])
        glorot["glorot_xi_c"].append(g["xi_c"])
        # spot check of the fast chaotic solver against the reference quadrature
        hot = np.argwhere(mf["chi_1"] > 1.05)
        for i, j in hot[rng.choice(len(hot), min(CHECK_POINTS, len(hot)), replace=False)]:
            ref = theory.mean_field(act, ws[j], bs[i])
            err = abs(mf["xi_c"][i, j] / float(ref.xi_c) - 1.0)
            check_err = max(check_err, float(err))
    dims = ("activation", "sigma_b2", "sigma_w2")
    data = {k: (dims, np.stack(v)) for k, v in grids.items()}
    data |= {k: (("activation", "sigma_b2"), np.stack(v)) for k, v in crit.items()}
    data |= {k: (("activation", "init"), np.stack(v)) for k, v in glorot.items()}
    ds = xr.Dataset(
        data,
        coords={
            "activation": list(acts),
            "sigma_b2": bs,
            "sigma_w2": ws,
            "init": list(GLOROT),
            "init_sigma_w2": ("init", list(GLOROT.values())),
        },
    )
    ds.attrs = {
        "config": config.to_json(cfg),
        "grid": json.dumps([[a.key, list(a.values)] for a in axes]),
        "xi_c_check_rel_err": check_err,
        **results.provenance(),
    }
    return ds


# ---------------------------------------------------------------- report


def _table(ds: xr.Dataset) -> pd.DataFrame:
    rows = []
    for act in ds.activation.values:
        act = str(act)
        row = {"activation": act}
        for tag, b in TABLE_SIGMA_B2.items():
            w, q = theory.critical_point(act, b)
            row[f"crit_sigma_w2_{tag}"] = float(w)
            row[f"crit_q_star_{tag}"] = float(q)
        for init in GLOROT:
            sub = ds.sel(activation=act, init=init)
            chi = float(sub.glorot_chi_1)
            row[f"{init}_chi_1"] = chi
            row[f"{init}_xi_c"] = float(sub.glorot_xi_c)
            row[f"{init}_grad_factor_10_layers"] = chi**5  # ‖g‖ ratio over 10 layers: χ₁^(10/2)
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    lines = [
        "Critical σ_w² (χ₁ = 1) and where Glorot & Bengio's initialisations sit (σ_b² = 0; "
        "standard σ_w² = 1/3, normalized σ_w² = 1). ‖g‖ ratio over 10 layers = χ₁^5.",
        "",
        "| activation | σ_w²* (σ_b²=0) | σ_w²* (0.05) | σ_w²* (0.5) | standard: χ₁ / ξ_c / ‖g‖×10 "
        "layers | normalized: χ₁ / ξ_c / ‖g‖×10 layers |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.activation} | {r.crit_sigma_w2_b0:.4g} | {r.crit_sigma_w2_b005:.4g} "
            f"| {r.crit_sigma_w2_b05:.4g} "
            f"| {r.standard_chi_1:.3g} / {r.standard_xi_c:.3g} / "
            f"{r.standard_grad_factor_10_layers:.2g} "
            f"| {r.normalized_chi_1:.3g} / {r.normalized_xi_c:.3g} / "
            f"{r.normalized_grad_factor_10_layers:.2g} |"
        )
    return "\n".join(lines) + "\n"


def contour_label_spots(
    w: np.ndarray, b: np.ndarray, xi: np.ndarray, levels, crit_w: np.ndarray
) -> list[tuple[float, float, float]]:
    """(σ_w², σ_b², level): where to write each ξ_c contour's value so that no two labels, and
    no label and the critical line, overlap.

    ξ_c diverges on the critical line, so the contours crowd against it from both sides (an
    inline `clabel` piles their labels up there). Each level is labelled once on each side of
    the line, on the grid row nearest its own height (levels staggered from bottom to top,
    else the next nearest row), at a crossing of that row at least a label's half width from
    the line and clear of the labels already placed; a branch with no such spot goes unlabelled.
    Positions are judged in axes fractions (log σ_w², linear σ_b²) on the grid xi (len(b),
    len(w)); crit_w (len(b),) is the critical σ_w² of each row (NaN: none).
    """
    lw = np.log10(w)
    u_of = lambda x: (np.log10(x) - lw[0]) / (lw[-1] - lw[0])  # noqa: E731
    v = (b - b[0]) / (b[-1] - b[0]) if len(b) > 1 else np.zeros(len(b))
    levels = list(levels)
    placed: list[tuple[float, float, float, float, float]] = []  # (x, y, level, u, v)
    for k, level in enumerate(levels):
        target = 0.15 + 0.7 * k / max(len(levels) - 1, 1)
        for side in (-1, 1):  # ordered (left of the critical line), chaotic (right)
            for i in np.argsort(np.abs(v - target), kind="stable"):
                if not 0.1 <= v[i] <= 0.95:  # clear of the Glorot markers at σ_b² = 0
                    continue
                row = np.log(np.where(np.isfinite(xi[i]), xi[i], 1e6)) - np.log(level)
                cross = np.flatnonzero(np.sign(row[:-1]) * np.sign(row[1:]) < 0)
                uc = u_of(crit_w[i]) if np.isfinite(crit_w[i]) else np.nan
                spot = None
                for j in cross:
                    t = row[j] / (row[j] - row[j + 1])
                    x = 10 ** (lw[j] + t * (lw[j + 1] - lw[j]))
                    u = u_of(x)
                    if not 0.05 <= u <= 0.95:
                        continue
                    if np.isfinite(uc) and (np.sign(u - uc) != side or abs(u - uc) < 0.035):
                        continue
                    if not np.isfinite(uc) and side > 0:
                        continue  # no critical line: one branch, labelled once
                    if any(abs(u - pu) < 0.08 and abs(v[i] - pv) < 0.09 for *_, pu, pv in placed):
                        continue
                    spot = (float(x), float(b[i]), float(level), u, float(v[i]))
                    break
                if spot is not None:
                    placed.append(spot)
                    break
    return [(x, y, level) for x, y, level, _, _ in placed]


def _figure(ds: xr.Dataset, out: Path, dpi: int = 100) -> None:
    acts = [str(a) for a in ds.activation.values]
    ncols = min(2, len(acts))
    nrows = -(-len(acts) // ncols)
    fig, axes = plotting.subplots(nrows, ncols, size=(3.05, 2.2), sharex=True, sharey=True)
    w, b = ds.sigma_w2.values, ds.sigma_b2.values
    mesh = None
    for ax, act in zip(axes.flat, acts, strict=False):
        sub = ds.sel(activation=act)
        logchi = np.log10(sub.chi_1.values)
        b_fine = np.linspace(b.min(), b.max(), 101) if len(b) > 1 else b
        if len(w) > 1 and len(b) > 1:
            mesh = ax.pcolormesh(
                w, b, logchi, cmap="RdBu_r", vmin=-2, vmax=2, shading="nearest", rasterized=True
            )
            xi = np.where(np.isfinite(sub.xi_c.values), sub.xi_c.values, 1e6)
            ax.contour(w, b, xi, levels=XI_LEVELS, colors="k", linewidths=0.5, alpha=0.7)
            ax.plot([], [], "k-", lw=0.5, alpha=0.7, label="ξ_c contours (layers)")
            crit_rows = theory.critical_sigma_w2(act, b)
            for x, y, level in contour_label_spots(w, b, xi, XI_LEVELS, crit_rows):
                ax.text(
                    x,
                    y,
                    f"{level:g}",
                    ha="center",
                    va="center",
                    bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.8},
                )
        ax.plot(theory.critical_sigma_w2(act, b_fine), b_fine, "k-", lw=1.8, label="χ₁ = 1")
        for init, marker in zip(GLOROT, ("^", "s"), strict=True):
            g = sub.sel(init=init)
            ax.plot(
                float(g.init_sigma_w2),
                0.0,
                marker,
                color="gold",
                mec="k",
                mew=0.6,
                ms=6,
                clip_on=False,
                zorder=5,
                label=f"Glorot {init} (σ_w² = {float(g.init_sigma_w2):.2g})",
            )
        crit0 = float(sub.critical_sigma_w2[0])
        ax.set(
            xscale="log",
            xlim=(w.min(), w.max()),
            ylim=(b.min(), b.max()),
            title=f"{act}: σ_w²* = {crit0:.4g} at σ_b² = {b[0]:g}",
        )
    for ax in axes[-1]:
        ax.set_xlabel("σ_w² (weight variance × fan-in)")
    for ax in axes[:, 0]:
        ax.set_ylabel("σ_b²")
    for ax in axes.flat[len(acts) :]:
        ax.set_visible(False)
    fig.tight_layout(h_pad=0.8, w_pad=0.8)
    plotting.fig_legend(fig, axes.flat[:1], ncol=4)
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.85, pad=0.02, aspect=30)
        cbar.set_label("log₁₀ χ₁ (per-layer factor of ‖gradient‖²)")
    plotting.save(fig, out, "phase_diagram", dpi)


def _num(v: float) -> float | str:
    """A float for JSON: non-finite values as the strings "inf" / "nan" (float() reads them)."""
    return float(v) if np.isfinite(v) else str(float(v))


def report(ds: xr.Dataset, out: Path) -> dict:
    table = _table(ds)
    table.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(_markdown(table))
    _figure(ds, out)
    t = table.set_index("activation")
    return {
        "critical_sigma_w2_at_sigma_b2_0": t["crit_sigma_w2_b0"].to_dict(),
        "critical_sigma_w2_at_sigma_b2_0.05": t["crit_sigma_w2_b005"].to_dict(),
        "glorot_standard_chi_1": t["standard_chi_1"].to_dict(),
        "glorot_normalized_chi_1": t["normalized_chi_1"].to_dict(),
        "glorot_normalized_xi_c": {k: _num(v) for k, v in t["normalized_xi_c"].items()},
        "max_abs_chi_1_minus_1_on_critical_line": float(
            np.nanmax(np.abs(ds.critical_chi_1.values - 1.0))
        ),
        "xi_c_fast_solver_max_rel_err": float(ds.attrs["xi_c_check_rel_err"]),
    }


STUDY = Study(
    name="phase_diagram",
    description=(
        "mean-field theory: log chi_1 map, critical line and xi_c contours on the "
        "(sigma_w2, sigma_b2) plane for tanh, sigmoid, erf, softsign, with Glorot's inits "
        "marked; figures/phase_diagram.png, table.md"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    compute=compute,
    presets={"quick": ({}, {}), "full": ({}, FULL)},
)
