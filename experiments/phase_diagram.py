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
from sigjax import config, grid, plotting, results, theory
from sigjax import theory_numerics as nm
from sigjax.config import Config
from sigjax.study import Study

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

# ---------------------------------------------------------------- fast chaotic c*, χ_c

_FEATURES = np.array([0.0] + [s * 2.0**k for k in range(-2, 5) for s in (-1.0, 1.0)])


def _nodes(mu: np.ndarray, sd: np.ndarray, order: int, t_max: float = 8.0, panels: int = 8):
    """Gauss-Legendre nodes/weights for E f(X), X ~ N(mu, sd²), shape broadcast + (M,).

    Panels: `panels` equal ones in t = (x - mu)/sd on [-t_max, t_max], split further at φ's own
    scale (x = 0, ±¼ … ±16) so that a narrow φ' (the sigmoid at q* ~ 100) is resolved.
    """
    mu, sd = np.broadcast_arrays(np.asarray(mu, float), np.asarray(sd, float))
    xg, wg = np.polynomial.legendre.leggauss(order)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (_FEATURES - mu[..., None]) / sd[..., None]
    t = np.clip(np.nan_to_num(t, nan=-t_max), -t_max, t_max)
    fixed = np.broadcast_to(np.linspace(-t_max, t_max, panels + 1), mu.shape + (panels + 1,))
    edges = np.sort(np.concatenate([fixed, t], axis=-1), axis=-1)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    tn = 0.5 * (a + b) + 0.5 * (b - a) * xg
    w = 0.5 * (b - a) * wg * nm.gauss_pdf(tn)
    x = mu[..., None, None] + sd[..., None, None] * tn
    shape = mu.shape + (tn.shape[-2] * order,)
    return x.reshape(shape), w.reshape(shape)


def _pair(p: nm.Phi, q: np.ndarray, c: np.ndarray, order: int):
    """(E[φ(u1)φ(u2)], E[φ'(u1)φ'(u2)]) for u1, u2 ~ N(0, q) with correlation c (1-D arrays)."""
    sd = np.sqrt(q)
    x1, w1 = _nodes(np.zeros_like(q), sd, order)
    s2 = (sd * np.sqrt(np.maximum(1.0 - c**2, 0.0)))[:, None]
    x2, w2 = _nodes(c[:, None] * x1, np.broadcast_to(s2, x1.shape), order)
    ff = np.sum(w1 * p.f(x1) * np.sum(w2 * p.f(x2), -1), -1)
    dd = np.sum(w1 * p.d1(x1) * np.sum(w2 * p.d1(x2), -1), -1)
    return ff, dd


def chaotic_corr(
    activation: str,
    sigma_w2: np.ndarray,
    sigma_b2: np.ndarray,
    q_star: np.ndarray,
    order: int = 8,
    chunk: int = 64,
    tol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """(c*, χ_c) at chaotic points (χ₁ > 1, finite q* > 0), 1-D arrays of equal length.

    g(c) = cmap(c) - c is convex on [0, 1] (the c-map's Hermite expansion has nonnegative
    coefficients), g(1) = 0 and g'(1) = χ₁ - 1 > 0, so Newton's method started at c = 0 climbs
    monotonically to the stable root c* in [0, 1) (c* = 0 when g(0) = 0, e.g. odd φ, σ_b² = 0).
    Each step needs E[φφ] (the map) and E[φ'φ'] (its slope, σ_w² E[φ'φ'] = χ_c at c*).
    """
    p = nm.phi(activation)
    w, b, q = (np.asarray(v, float).ravel() for v in (sigma_w2, sigma_b2, q_star))
    c_out, chi_out = np.zeros(w.size), np.zeros(w.size)
    for s in range(0, w.size, chunk):
        sl = slice(s, s + chunk)
        ww, bb, qq = w[sl], b[sl], q[sl]
        c = np.zeros(ww.size)
        todo = np.arange(ww.size)
        for _ in range(80):
            ff, dd = _pair(p, qq[todo], c[todo], order)
            g = (ww[todo] * ff + bb[todo]) / qq[todo] - c[todo]
            slope = ww[todo] * dd - 1.0
            step = np.where(slope < 0, -g / np.where(slope < 0, slope, -1.0), 0.0)
            new = np.clip(c[todo] + np.maximum(step, 0.0), 0.0, 1.0 - 1e-15)
            moved = np.abs(new - c[todo]) > tol
            c[todo] = new
            todo = todo[moved]
            if todo.size == 0:
                break
        _, dd = _pair(p, qq, c, order)
        c_out[sl], chi_out[sl] = c, ww * dd
    return c_out, chi_out


def mean_field_grid(activation: str, sigma_w2, sigma_b2) -> dict[str, np.ndarray]:
    """q*, χ₁, c*, χ_c, ξ_c, ξ_q on broadcast(σ_w², σ_b²) (the fast chaotic solver inside)."""
    w, b = np.broadcast_arrays(np.asarray(sigma_w2, float), np.asarray(sigma_b2, float))
    shape, w, b = w.shape, w.ravel(), b.ravel()
    p = nm.phi(activation)
    q = theory.q_star(activation, w, b)
    # χ₁ = σ_w² E[φ'(√q* z)²], as theory.chi_1 computes it, without solving for q* twice
    chi1 = w * nm.gauss_expect(lambda x: p.d1(x) ** 2, np.maximum(q, nm.Q_FLOOR), p.kinks)
    c = np.ones_like(w)
    chi_c = chi1.copy()
    hot = (chi1 > 1) & np.isfinite(q) & (q > 0)
    if hot.any():
        c[hot], chi_c[hot] = chaotic_corr(activation, w[hot], b[hot], q[hot])
    with np.errstate(divide="ignore", invalid="ignore"):
        xi_c = np.where(chi_c >= 1 - 1e-15, np.inf, -1.0 / np.log(chi_c))
        slope = theory.length_map_slope(activation, q, w)
        xi_q = np.where(slope >= 1 - 1e-15, np.inf, -1.0 / np.log(slope))
    out = {"q_star": q, "chi_1": chi1, "c_star": c, "chi_c": chi_c, "xi_c": xi_c, "xi_q": xi_q}
    return {k: np.reshape(v, shape) for k, v in out.items()}


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


def _figure(ds: xr.Dataset, out: Path, dpi: int = 100) -> None:
    acts = [str(a) for a in ds.activation.values]
    ncols = min(2, len(acts))
    nrows = -(-len(acts) // ncols)
    fig, axes = plotting.subplots(nrows, ncols, size=(4.6, 3.4))
    w, b = ds.sigma_w2.values, ds.sigma_b2.values
    mesh = None
    for ax, act in zip(axes.flat, acts, strict=False):
        sub = ds.sel(activation=act)
        logchi = np.log10(sub.chi_1.values)
        if len(w) > 1 and len(b) > 1:
            mesh = ax.pcolormesh(
                w, b, logchi, cmap="RdBu_r", vmin=-2, vmax=2, shading="nearest", rasterized=True
            )
            xi = np.where(np.isfinite(sub.xi_c.values), sub.xi_c.values, 1e6)
            cs = ax.contour(w, b, xi, levels=XI_LEVELS, colors="k", linewidths=0.6, alpha=0.6)
            ax.clabel(cs, fontsize=6, fmt="ξ=%g")
        b_fine = np.linspace(b.min(), b.max(), 101) if len(b) > 1 else b
        ax.plot(
            theory.critical_sigma_w2(act, b_fine), b_fine, "k-", lw=2, label="critical line χ₁ = 1"
        )
        for init, marker in zip(GLOROT, ("^", "s"), strict=True):
            g = sub.sel(init=init)
            ax.plot(
                float(g.init_sigma_w2),
                0.0,
                marker,
                color="gold",
                mec="k",
                ms=8,
                clip_on=False,
                zorder=5,
                label=f"Glorot {init} (χ₁ = {float(g.glorot_chi_1):.2g})",
            )
        crit0 = float(sub.critical_sigma_w2[0])
        ax.set(
            xscale="log",
            xlim=(w.min(), w.max()),
            ylim=(b.min(), b.max()),
            title=f"{act}: σ_w²* = {crit0:.4g} at σ_b² = {b[0]:g}",
            xlabel="σ_w² (weight variance × fan-in)",
            ylabel="σ_b²",
        )
        ax.legend(fontsize=6, loc="upper left")
    for ax in axes.flat[len(acts) :]:
        ax.set_visible(False)
    fig.tight_layout()
    if mesh is not None:
        cbar = fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.8, pad=0.02)
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
