"""Gradient and correlation propagation in wide random MLPs: mean-field theory vs measurement.

At initialisation only (no training). For wide, deep nets W ~ N(0, σ_w²/N), b ~ N(0, σ_b²)
at points in the ordered phase, on the critical line and in the chaotic phase (tanh and sigmoid
at σ_b² = 0.05, the sigmoid also at Glorot's "normalized" σ_w² = 1, σ_b² = 0, and ReLU at He's
σ_w² = 2), many seeds in one compiled program, this measures

* the back-propagated gradient δ_l = ∂L/∂z_l with respect to each hidden layer's
  pre-activations (read off as the bias gradient of one input), for a random linear readout
  L = r·φ(z_depth) (sigjax's output layer, out_dim 1). Mean-field theory predicts
  E‖δ_l‖² = χ(q^l) E‖δ_{l+1}‖², so once q^l = q* the per-layer log ratio
  log(‖δ_l‖²/‖δ_{l+1}‖²) ≈ log χ₁ (Schoenholz et al. 2017). Inputs are scaled so that
  q¹ = σ_w² mean(x²) + σ_b² = q*: every layer sits at the fixed point from the start.
* the correlation c^l = z_a·z_b / (‖z_a‖‖z_b‖) of two inputs' pre-activations across layers,
  against iterating the correlation map c ↦ (σ_w² E[φ(u1)φ(u2)] + σ_b²)/q* from c¹.
* q^l = mean(z_l²) against q*.

Gradients go through `jax.grad` of sigjax's own model (`models.MLP`, `models.init_params` with
traced σ_w², σ_b², so one compile per activation), vmapped over inputs and over seeds. The loss is
multiplied by χ₁^(-(depth-1)/4) (the log ratios do not depend on it) and norms are taken as
max|δ|·‖δ/max|δ|‖, so that deep ordered nets (χ₁ ≈ 0.05 for the sigmoid at Glorot's σ_w² = 1)
neither underflow nor overflow in float32.

Outputs: results.nc, table.md / table.csv (measured vs predicted), figures/gradient_propagation.png.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import xarray as xr

from experiments import _extra
from sigjax import config, theory
from sigjax.analysis import plotting
from sigjax.config import Config
from sigjax.engine import grid, results
from sigjax.nn import models
from sigjax.study import Study

# activation -> (label, σ_w² (None: the critical value at this σ_b²), σ_b²)
POINTS = {
    "tanh": (("ordered", 1.0, 0.05), ("critical", None, 0.05), ("chaotic", 4.0, 0.05)),
    "sigmoid": (
        ("ordered (Glorot normalized)", 1.0, 0.0),
        ("ordered", 30.0, 0.05),
        ("critical", None, 0.05),
        ("chaotic", 300.0, 0.05),
    ),
    "relu": (("critical (He)", 2.0, 0.0),),
}
COSINES = (0.1, 0.5, 0.9)  # cosines of the input pairs (before the first layer)
SEED_BATCH = 8  # seeds vmapped together (batches run one after another)

CONFIG = config.replace(
    Config(),
    {
        "model.width": 500,
        "model.depth": 30,
        "model.head_activation": "identity",
        "model.out_dim": 1,
        "init.scheme": "gaussian",
        "data.seed": 0,  # the input vectors
    },
)
GRID = {"model.activation": tuple(POINTS), "seed": tuple(range(6))}
FULL = ({"model.width": 2000, "model.depth": 50}, {"seed": [str(s) for s in range(32)]})


def points(activation: str) -> list[tuple[str, float, float]]:
    """(label, σ_w², σ_b²) of the activation's points, critical σ_w² resolved."""
    out = []
    for label, w, b in POINTS.get(activation, (("critical", None, 0.05),)):
        if w is None:
            w = float(theory.critical_sigma_w2(activation, b))
        out.append((label, float(w), float(b)))
    return out


def base_inputs(width: int, seed: int) -> np.ndarray:
    """(2·len(COSINES), width) inputs with mean(x²) = 1, pairs (2i, 2i+1) at cosine COSINES[i]."""
    rng = np.random.default_rng(seed)
    xs = []
    for cos in COSINES:
        u, v = rng.standard_normal((2, width))
        u /= np.linalg.norm(u)
        v -= (v @ u) * u
        v /= np.linalg.norm(v)
        xs += [u, cos * u + math.sqrt(1.0 - cos**2) * v]
    return np.sqrt(width) * np.stack(xs).astype(np.float32)


def _log_sqnorm(x: jax.Array) -> jax.Array:
    """log Σ x² over the last axis, computed as 2 log(max|x| · ‖x / max|x|‖) (no under/overflow)."""
    m = jnp.max(jnp.abs(x), axis=-1, keepdims=True)
    m = jnp.where(m > 0, m, 1.0)
    return 2.0 * (jnp.log(m[..., 0]) + 0.5 * jnp.log(jnp.sum((x / m) ** 2, axis=-1)))


def make_init(width: int, depth: int, scheme: str = "gaussian"):
    """jit((seeds (S,), σ_w², σ_b²) -> parameters with a leading seed axis).

    The parameters do not depend on the activation, so one compiled init serves them all.
    """
    proto = models.MLP(
        widths=(width,) * depth, out_dim=1, activation="identity", kernel_init=scheme
    )

    def init(seed, sw2, sb2):
        return models.init_params(proto, jax.random.key(seed), width, sw2, sb2)

    return jax.jit(jax.vmap(init, in_axes=(0, None, None)))


def make_measure(model: models.MLP):
    """jit((params with a seed axis, mean x², log loss scale, inputs (B, in)) ->
    (log‖δ_l‖² (S, B, L), q^l (S, B, L), c^l (S, B/2, L))) over the model's hidden layers."""
    depth = len(model.widths)
    names = [f"layer_{i + 1}" for i in range(depth)]

    def member(params, msq, log_scale, x0):
        kernels = {k: v["kernel"] for k, v in params.items()}
        biases = {k: v["bias"] for k, v in params.items()}

        def loss(bias, xi):
            p = {k: {"kernel": kernels[k], "bias": bias[k]} for k in kernels}
            out, inter = models.apply(model, p, xi[None, :])
            return jnp.exp(log_scale) * jnp.sum(out), inter.pre

        x = x0 * jnp.sqrt(msq)
        g, pre = jax.vmap(jax.grad(loss, has_aux=True), in_axes=(None, 0))(biases, x)
        delta = jnp.stack([g[n] for n in names], axis=1)  # (B, L, N): ∂L/∂z_l per input
        log_g = _log_sqnorm(delta) - 2.0 * log_scale
        z = jnp.stack([pre[i][:, 0, :] for i in range(depth)], axis=1)  # (B, L, N)
        q = jnp.mean(z**2, axis=-1)
        za, zb = z[0::2], z[1::2]
        c = jnp.sum(za * zb, -1) / jnp.sqrt(jnp.sum(za**2, -1) * jnp.sum(zb**2, -1))
        return log_g, q, c

    return jax.jit(jax.vmap(member, in_axes=(0, None, None, None)))


def measure(init, fn, seeds: np.ndarray, w, b, msq, log_scale, x0, batch: int = SEED_BATCH):
    """fn over all seeds, in batches of `batch` (the last one padded), as float64 arrays."""
    size = min(batch, len(seeds))
    outs = []
    for s in range(0, len(seeds), size):
        chunk = seeds[s : s + size]
        pad = np.concatenate([chunk, np.repeat(chunk[:1], size - len(chunk))])
        params = init(jnp.asarray(pad, jnp.int32), w, b)
        res = fn(params, msq, log_scale, x0)
        outs.append([np.asarray(r, np.float64)[: len(chunk)] for r in res])
        del params
    return [np.concatenate(parts) for parts in zip(*outs, strict=True)]


def predicted_correlations(activation, w, b, q, c1: np.ndarray, depth: int) -> np.ndarray:
    """c^1..c^depth from iterating the correlation map (at q*) from c^1: c1.shape + (depth,)."""
    cs = [np.asarray(c1, float)]
    for _ in range(depth - 1):
        cs.append(theory.correlation_map(activation, cs[-1], w, b, q_start=q))
    return np.stack(cs, axis=-1)


def compute(cfg: Config, axes, progress: bool = False, store=None) -> xr.Dataset:
    _extra.refuse_other_axes("gradient_propagation", axes, ("model.activation", "seed"))
    acts = grid.values_of(axes, "model.activation", cfg.model.activation)
    seeds = np.asarray(grid.values_of(axes, "seed", cfg.seed), np.int32)
    width, depth = cfg.model.width, cfg.model.depth
    x0 = jnp.asarray(base_inputs(width, cfg.data.seed))
    init = make_init(width, depth, cfg.init.scheme)
    rows, meas = [], {"log_g": [], "q": [], "c": []}
    pred_c = []
    for act in acts:
        model = models.MLP(
            widths=(width,) * depth,
            out_dim=1,
            activation=act,
            head_activation="identity",
            kernel_init=cfg.init.scheme,
        )
        fn = make_measure(model)
        for label, w, b in points(act):
            q = float(theory.q_star(act, w, b))
            chi = float(theory.chi_1(act, w, b))
            msq = (q - b) / w  # mean(x²) that puts the first layer at q¹ = q*
            log_scale = -(depth - 1) / 4.0 * math.log(chi)
            log_g, qm, cm = measure(init, fn, seeds, w, b, msq, log_scale, x0)
            for k, v in zip(("log_g", "q", "c"), (log_g, qm, cm), strict=True):
                meas[k].append(np.asarray(v, np.float64))
            c1 = np.array([(w * msq * cos + b) / q for cos in COSINES])
            pred_c.append(predicted_correlations(act, w, b, q, c1, depth))
            rows.append((act, label, w, b, q, chi))
    act_, label_, w_, b_, q_, chi_ = (list(v) for v in zip(*rows, strict=True))
    layer = np.arange(1, depth + 1)
    ds = xr.Dataset(
        {
            "log_grad_sqnorm": (("point", "seed", "input", "layer"), np.stack(meas["log_g"])),
            "q": (("point", "seed", "input", "layer"), np.stack(meas["q"])),
            "corr": (("point", "seed", "pair", "layer"), np.stack(meas["c"])),
            "corr_pred": (("point", "pair", "layer"), np.stack(pred_c)),
            "q_star_pred": ("point", np.array(q_)),
            "chi_1_pred": ("point", np.array(chi_)),
        },
        coords={
            "point": np.arange(len(rows)),
            "activation": ("point", act_),
            "phase": ("point", label_),
            "sigma_w2": ("point", np.array(w_)),
            "sigma_b2": ("point", np.array(b_)),
            "seed": seeds,
            "input": np.arange(int(x0.shape[0])),
            "pair": np.arange(len(COSINES)),
            "cosine": ("pair", list(COSINES)),
            "layer": layer,
        },
    )
    ds.attrs = {
        "config": config.to_json(cfg),
        "grid": json.dumps([[a.key, list(a.values)] for a in axes]),
        **results.provenance(),
    }
    return ds


# ---------------------------------------------------------------- analysis and report


def log_ratios(ds: xr.Dataset) -> xr.DataArray:
    """log(‖δ_l‖²/‖δ_{l+1}‖²) for l = 1..depth-1: dims (point, seed, input, layer)."""
    g = ds.log_grad_sqnorm
    return (g - g.shift(layer=-1)).isel(layer=slice(0, -1))


def summary(ds: xr.Dataset) -> pd.DataFrame:
    """One row per point: predicted vs measured per-layer log χ₁, q*, and correlations."""
    r = log_ratios(ds)
    dims = ("seed", "input", "layer")
    n = r.isel(point=0).size
    # seed-level means (the layer mean telescopes: (log g_1 - log g_{L-1+1})/(L-1))
    per_seed = r.mean(("input", "layer"))
    out = pd.DataFrame(
        {
            "activation": ds.activation.values,
            "phase": ds.phase.values,
            "sigma_w2": ds.sigma_w2.values,
            "sigma_b2": ds.sigma_b2.values,
            "log_chi_1_pred": np.log(ds.chi_1_pred.values),
            "log_chi_1_meas": r.mean(dims).values,
            "log_chi_1_std": r.std(dims).values,
            "log_chi_1_sem": (per_seed.std("seed") / np.sqrt(ds.sizes["seed"])).values,
            # log of the mean ratio: estimates log E[ratio], which theory predicts without the
            # Jensen gap E log X ≈ log E X − Var(log X)/2 of the mean log ratio
            "log_mean_ratio": np.log(np.exp(r).mean(dims)).values,
            "n_ratios": n,
            "q_star_pred": ds.q_star_pred.values,
            "q_meas": ds.q.mean(("seed", "input", "layer")).values,
            "corr_max_abs_err": np.abs(ds.corr.mean("seed") - ds.corr_pred)
            .max(("pair", "layer"))
            .values,
            "corr_last_pred": ds.corr_pred.isel(layer=-1).mean("pair").values,
            "corr_last_meas": ds.corr.isel(layer=-1).mean(("seed", "pair")).values,
        }
    )
    out["z_score"] = (out.log_chi_1_meas - out.log_chi_1_pred) / out.log_chi_1_sem
    return out


def _signed(v: float) -> str:
    """+0.2945, −0.2757 to 4 decimals; 0 for a critical point's log χ₁ (not "-0.0000")."""
    return "0" if abs(v) < 5e-5 else f"{v:+.4f}"


def _markdown(t: pd.DataFrame, ds: xr.Dataset) -> str:
    cfg = json.loads(ds.attrs["config"])["model"]
    lines = [
        f"Random MLPs, width {cfg['width']}, depth {cfg['depth']}, {ds.sizes['seed']} seeds × "
        f"{ds.sizes['input']} inputs: per-layer log(‖∂L/∂z_l‖² / ‖∂L/∂z_(l+1)‖²) "
        "(mean ± std over seeds, inputs and layers; ± s.e.m. over seeds; and the log of the "
        "mean ratio, free of the Jensen gap −Var/2) vs log χ₁; "
        "mean pre-activation variance vs q*; largest |seed-mean c^l − c-map iterate| "
        f"over layers and the {ds.sizes['pair']} input pairs.",
        "",
        "| activation | phase | σ_w² | σ_b² | log χ₁ predicted | measured (± std) | ± s.e.m. "
        "| log mean ratio | q* predicted | q measured | max abs Δc |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in t.itertuples():
        lines.append(
            f"| {r.activation} | {r.phase} | {r.sigma_w2:.4g} | {r.sigma_b2:g} "
            f"| {_signed(r.log_chi_1_pred)} | {r.log_chi_1_meas:+.4f} ± {r.log_chi_1_std:.3f} "
            f"| {r.log_chi_1_sem:.4f} | {r.log_mean_ratio:+.4f} | {r.q_star_pred:.4g} "
            f"| {r.q_meas:.4g} "
            f"| {r.corr_max_abs_err:.3f} |"
        )
    return "\n".join(lines) + "\n"


MARKERS = {"ordered": "v", "critical": "o", "chaotic": "^"}  # by the phase's first word


def _figure(ds: xr.Dataset, t: pd.DataFrame, out: Path, dpi: int = 100) -> None:
    """Per activation: gradients (top) and correlations (bottom) across layers, its points in
    shades of its colour; last column: log ratio vs log χ₁ and q vs q* for all points."""
    acts = list(dict.fromkeys(str(a) for a in ds.activation.values))
    fig, axes = plotting.subplots(2, len(acts) + 1, size=(1.75, 1.75))
    layer = ds.layer.values
    depth = layer[-1]
    for col, act in enumerate(acts):
        ax_g, ax_c = axes[0, col], axes[1, col]
        pts = np.flatnonzero(ds.activation.values == act)
        for p, color in zip(pts, plotting.shades(act, len(pts)), strict=True):
            one = ds.isel(point=p)
            kind = one.phase.item().split(" (")[0]
            marker = MARKERS.get(kind, "o")
            label = f"{kind}, σ_w² {float(one.sigma_w2):.3g}"
            rel = (one.log_grad_sqnorm - one.log_grad_sqnorm.sel(layer=depth)) / np.log(10)
            per_seed = rel.mean("input")
            ax_g.fill_between(
                layer, per_seed.min("seed"), per_seed.max("seed"), color=color, alpha=0.25, lw=0
            )
            ax_g.plot(
                layer, per_seed.median("seed"), marker, ms=2.2, color=color, label=label, lw=0
            )
            theo = (depth - layer) * np.log10(float(one.chi_1_pred))
            ax_g.plot(layer, theo, "-", lw=0.8, color=color)
            for j in range(ds.sizes["pair"]):
                ax_c.plot(layer, one.corr.isel(pair=j).mean("seed"), marker, ms=1.8, color=color)
                ax_c.plot(layer, one.corr_pred.isel(pair=j), "-", lw=0.7, color=color)
        ax_g.set_title(act, color=plotting.color(act))
        ax_g.legend(loc="lower right", handletextpad=0.2, borderaxespad=0.1, labelspacing=0.2)
        ax_c.set(xlabel="layer l", ylim=(-0.05, 1.05))
    axes[0, 0].set_ylabel("log₁₀ ‖∂L/∂z_l‖² / ‖∂L/∂z_L‖²")
    axes[1, 0].set_ylabel("correlation c^l")
    ax = axes[0, -1]
    lim = [t.log_chi_1_pred.min() - 0.3, t.log_chi_1_pred.max() + 0.3]
    ax.plot(lim, lim, "k:", lw=0.7)
    for act, sub in t.groupby("activation", sort=False):
        ax.errorbar(
            sub.log_chi_1_pred,
            sub.log_chi_1_meas,
            yerr=sub.log_chi_1_std,
            fmt="o",
            ms=3,
            color=plotting.color(act),
            label=act,
            capsize=1.5,
            elinewidth=0.8,
        )
    ax.set(
        title="per-layer log ratio",
        xlabel="log χ₁ (theory)",
        ylabel="log(‖δ_l‖²/‖δ_l+1‖²) ± std",
    )
    ax.legend(loc="upper left", handletextpad=0.1)
    ax = axes[1, -1]
    ok = t.q_star_pred > 0
    lo, hi = t.q_star_pred[ok].min() / 2, t.q_star_pred[ok].max() * 2
    ax.plot([lo, hi], [lo, hi], "k:", lw=0.7)
    for act, sub in t.groupby("activation", sort=False):
        ax.plot(sub.q_star_pred, sub.q_meas, "o", ms=3, color=plotting.color(act), label=act)
    ax.set(xscale="log", yscale="log", xlabel="q* (theory)", ylabel="q measured")
    fig.tight_layout(h_pad=0.5, w_pad=0.4)
    fig.text(
        0.5,
        1.0,
        "markers: measured (median over seeds, band: min–max); lines: theory (χ₁^(L−l), c-map)",
        ha="center",
        va="bottom",
    )
    plotting.save(fig, out, "gradient_propagation", dpi)


def report(ds: xr.Dataset, out: Path) -> dict:
    t = summary(ds)
    t.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(_markdown(t, ds))
    _figure(ds, t, out)
    return {
        f"{r.activation}/{r.phase}": {
            "sigma_w2": float(r.sigma_w2),
            "sigma_b2": float(r.sigma_b2),
            "log_chi_1_pred": float(r.log_chi_1_pred),
            "log_chi_1_meas": float(r.log_chi_1_meas),
            "log_chi_1_std": float(r.log_chi_1_std),
            "log_chi_1_sem": float(r.log_chi_1_sem),
            "log_mean_ratio": float(r.log_mean_ratio),
            "q_star_pred": float(r.q_star_pred),
            "q_meas": float(r.q_meas),
            "corr_max_abs_err": float(r.corr_max_abs_err),
        }
        for r in t.itertuples()
    }


STUDY = Study(
    name="gradient_propagation",
    description=(
        "wide random tanh/sigmoid/ReLU nets at init, ordered/critical/chaotic: measured "
        "per-layer gradient log-ratio vs log chi_1, correlations vs the c-map, q vs q*; "
        "figures/gradient_propagation.png, table.md"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    compute=compute,
    presets={"quick": ({}, {}), "full": FULL},
)
