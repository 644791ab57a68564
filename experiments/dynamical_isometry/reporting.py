"""The dynamical_isometry report: table.md (spectra against the free-probability prediction, q
per layer at init, steps to threshold vs depth with bootstrap intervals) and its figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from experiments import _extra
from experiments.dynamical_isometry.figures import (
    LEVEL,
    fig_density,
    fig_spectra,
    fig_spread,
    fig_training,
    steps_view,
)
from experiments.dynamical_isometry.jacobians import TRAIN_EVAL
from experiments.dynamical_isometry.training import Q_METRIC
from sigjax import analysis, config

TRAIN_DIMS = ("activation", "scheme", "depth")  # the training part's own layout


BOOT = 2000  # bootstrap resamples of the seeds


def _boot_medians(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(…, BOOT) medians of seed resamples of x (…, seed); never reached = inf."""
    idx = rng.integers(0, x.shape[-1], (BOOT, x.shape[-1]))
    return np.median(x[..., idx], axis=-1)


def _interval(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.quantile(b, [(1 - LEVEL) / 2, (1 + LEVEL) / 2], axis=-1, method="nearest")
    return lo, hi


def training_table(ds: xr.Dataset, thr: float) -> xr.Dataset:
    """Per setting: best rate, median steps to `thr` over seeds with a bootstrap interval
    (LEVEL, percentile; inf = never reached), the share of seeds that reached it, the median
    final loss; and per (activation, depth, …) the ratio of Gaussian to orthogonal median steps
    with its interval (seeds resampled independently in each arm)."""
    view = steps_view(ds)
    best = analysis.best_lr(view, thr)
    steps = analysis.at_best_lr(analysis.steps_to_threshold(view, thr), best)
    s = steps.fillna(np.inf).transpose(..., "seed")
    rng = np.random.default_rng(0)
    boot = _boot_medians(s.values, rng)
    lo, hi = _interval(boot)
    dims = s.dims[:-1]
    out = xr.Dataset(
        {
            "best_lr": best,
            "median_steps": s.median("seed"),
            "ci_lo_steps": (dims, lo),
            "ci_hi_steps": (dims, hi),
            "q25_steps": s.quantile(0.25, "seed", method="nearest").drop_vars("quantile"),
            "q75_steps": s.quantile(0.75, "seed", method="nearest").drop_vars("quantile"),
            "reached": np.isfinite(s).mean("seed"),
            "final_loss": analysis.at_best_lr(analysis.final_loss(view), best).median("seed"),
        }
    )
    if "scheme" in s.dims and {"gaussian", "orthogonal"} <= set(s.scheme.values.tolist()):
        g = s.sel(scheme="gaussian", drop=True)
        o = s.sel(scheme="orthogonal", drop=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = _boot_medians(g.values, rng) / _boot_medians(o.values, rng)
            ratio = np.where(np.isnan(ratio), np.inf, ratio)  # both never: no finite bound
            lo, hi = _interval(ratio)
            out["speedup"] = g.median("seed") / o.median("seed")
        out["speedup_lo"], out["speedup_hi"] = (g.dims[:-1], lo), (g.dims[:-1], hi)
    return out


def q_at_init(ds: xr.Dataset) -> xr.Dataset:
    """The recorded q of every layer at step 0 (the initial nets on their first batch): mean
    and standard error over seeds (at the first learning rate: step 0 does not depend on it)
    per activation, scheme, depth and layer, and the q* each activation starts at."""
    q = ds[Q_METRIC].isel(step=0, drop=True)
    if "lr" in q.dims:
        q = q.isel(lr=0, drop=True)
    over = [d for d in q.dims if d not in (*TRAIN_DIMS, "layer")]
    n = int(np.prod([q.sizes[d] for d in over])) if over else 1
    return xr.Dataset(
        {
            "q_mean": q.mean(over),
            "q_se": q.std(over, ddof=1) / np.sqrt(n) if n > 1 else q.mean(over) * np.nan,
        }
    )


def spread(ds: xr.Dataset) -> xr.Dataset:
    """Per case, scheme and depth: mean and variance of λ = σ² with the theory's variance, the
    extreme singular values, and the share of singular values within a factor 2 of 1 (a robust
    measure of isometry: the variance of a heavy-tailed spectrum rests on a few samples)."""
    return xr.Dataset(
        {
            "mean": ds.sv2.mean("sample"),
            "var": ds.sv2.var("sample"),
            "var_theory": ds.sv2_var_theory,
            "sv_max": np.sqrt(ds.sv2.max("sample")),
            "sv_min": np.sqrt(ds.sv2.min("sample")),
            "within_2x": ((ds.sv2 > 0.25) & (ds.sv2 < 4.0)).mean("sample"),
        }
    )


def report(ds: xr.Dataset, out: Path) -> dict:
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    thr = cfg.train.loss_threshold
    sp = spread(ds)
    tt = training_table(ds, thr)
    qi = q_at_init(ds)
    sp.to_dataframe().reset_index().to_csv(out / "spectra.csv", index=False)
    ds.sv2_theory_ks.to_dataframe().reset_index().to_csv(out / "spectra_ks.csv", index=False)
    tt.drop_vars("lr", errors="ignore").to_dataframe().reset_index().to_csv(
        out / "training.csv", index=False
    )
    qi.to_dataframe().reset_index().dropna().to_csv(out / "q_at_init.csv", index=False)
    extra = _extra.extra_dims(tt.median_steps, TRAIN_DIMS)  # a user's added grid dims
    settings, note = _extra.figure_settings(tt, extra, loop=["activation"])
    (out / "table.md").write_text(_markdown(ds, sp, tt, qi, thr, cfg, note))
    fig_spectra(ds, out)
    fig_density(ds, out)
    fig_spread(ds, sp, out)
    fig_training(ds, tt, thr, out, settings, note)
    deepest = int(ds.spec_depth.max())
    fmt = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
    cells = [(c, s) for c in ds.case.values.tolist() for s in ds.spec_scheme.values.tolist()]
    head = {
        "spectra_width": int(ds.attrs["spectra_width"]),
        "spectra_depth": deepest,
        "sv2_var_at_deepest": {
            f"{c}/{s}": {
                "empirical": float(sp["var"].sel(case=c, spec_scheme=s, spec_depth=deepest)),
                "theory": float(sp.var_theory.sel(case=c, spec_scheme=s, spec_depth=deepest)),
                "mean": float(sp["mean"].sel(case=c, spec_scheme=s, spec_depth=deepest)),
                "share_within_2x": float(
                    sp.within_2x.sel(case=c, spec_scheme=s, spec_depth=deepest)
                ),
            }
            for c, s in cells
        },
        "ks_to_free_probability": {
            f"{c}/{s}/depth{int(d)}": fmt(
                float(ds.sv2_theory_ks.sel(case=c, spec_scheme=s, theory_depth=d))
            )
            for c, s in cells
            for d in ds.theory_depth.values
        },
        "critical_points": {
            c: {
                "sigma_w2": float(ds.case_sigma_w2.sel(case=c)),
                "sigma_b2": float(ds.case_sigma_b2.sel(case=c)),
                "q_star": float(ds.case_q_star.sel(case=c)),
            }
            for c in ds.case.values.tolist()
        },
        "loss_threshold": thr,
        "median_steps_to_threshold": {},
        "steps_interval": {},
    }
    if all(d in tt.dims for d in TRAIN_DIMS):
        for c in _extra.combos(tt, [*TRAIN_DIMS, *extra]):
            key = "/".join(
                [f"{c['activation']}/{c['scheme']}/depth{int(c['depth'])}"]
                + [f"{d}={_extra.value(c[d])}" for d in extra]
            )
            r = tt.sel(c)
            head["median_steps_to_threshold"][key] = fmt(float(r.median_steps))
            head["steps_interval"][key] = [fmt(float(r.ci_lo_steps)), fmt(float(r.ci_hi_steps))]
    if "speedup" in tt:
        head["gaussian_over_orthogonal_steps"] = {
            "/".join(f"{k}={_extra.value(v)}" for k, v in c.items()): [
                fmt(float(tt[v].sel(c))) for v in ("speedup", "speedup_lo", "speedup_hi")
            ]
            for c in _extra.combos(tt.speedup, list(tt.speedup.dims))
        }
    head["q_at_init"] = _q_summary(ds, qi)
    if note:
        head["figure_note"] = note
    (out / "headline.json").write_text(json.dumps(head, indent=2) + "\n")
    return head


def _q_summary(ds: xr.Dataset, qi: xr.Dataset) -> dict:
    """Per activation, scheme and depth: q*, and the recorded q of layer 1, the last hidden
    layer and the output layer at init (mean over seeds)."""
    out = {}
    if not all(d in qi.dims for d in TRAIN_DIMS):
        return out
    for c in _extra.combos(qi, list(TRAIN_DIMS)):
        r = qi.q_mean.sel(c)
        depth = int(c["depth"])
        out[f"{c['activation']}/{c['scheme']}/depth{depth}"] = {
            "q_star": float(ds.train_q_star.sel(train_activation=c["activation"])),
            "layer1": float(r.sel(layer=1)),
            "last_hidden": float(r.sel(layer=depth)),
            "output": float(r.sel(layer=depth + 1)),
        }
    return out


def _markdown(ds, sp, tt, qi, thr, cfg, note: str = "") -> str:
    depths = ds.spec_depth.values.tolist()
    show = [d for d in depths if d in (depths[0], 8, 32, depths[-1])]
    tds = ds.theory_depth.values.tolist()
    lines = [
        f"Variance of the squared singular values of J at init (width {ds.attrs['spectra_width']}, "
        f"{ds.sizes['sample']} values per cell), empirical [theory L(μ₂/μ₁² − 1 − s₁)], and the "
        "Kolmogorov–Smirnov distance of their distribution to the free-probability density:",
        "",
        "| case | σ_w² | σ_b² | q* | weights | "
        + " | ".join(f"L={d}" for d in show)
        + f" | σ within 2× of 1 at L={depths[-1]} | "
        + " | ".join(f"KS L={d}" for d in tds)
        + " |",
        "|---|---|---|---|---|" + "---|" * (len(show) + 1 + len(tds)),
    ]
    for c in ds.case.values.tolist():
        for s in ds.spec_scheme.values.tolist():
            cells = [
                f"{float(sp['var'].sel(case=c, spec_scheme=s, spec_depth=d)):.3g} "
                f"[{float(sp.var_theory.sel(case=c, spec_scheme=s, spec_depth=d)):.3g}]"
                for d in show
            ]
            ks = [
                f"{float(ds.sv2_theory_ks.sel(case=c, spec_scheme=s, theory_depth=d)):.3f}"
                for d in tds
            ]
            within = float(sp.within_2x.sel(case=c, spec_scheme=s, spec_depth=depths[-1]))
            lines.append(
                f"| {c} | {float(ds.case_sigma_w2.sel(case=c)):.4g} "
                f"| {float(ds.case_sigma_b2.sel(case=c)):.3g} "
                f"| {float(ds.case_q_star.sel(case=c)):.3g} | {s} | "
                + " | ".join(cells)
                + f" | {within:.0%} | "
                + " | ".join(ks)
                + " |"
            )
    lines += _q_markdown(ds, qi)
    lines += [
        "",
        f"Steps until the loss on {TRAIN_EVAL} fixed training examples first reaches {thr} "
        f"(logged every {cfg.train.log_every} steps; median over seeds at each setting's best "
        f"learning rate, [{LEVEL:.0%} bootstrap interval of the median]; '—': not reached in "
        f"{cfg.train.steps} steps):",
        "",
    ]
    fmt = lambda v: "—" if not np.isfinite(v) else f"{v:.0f}"  # noqa: E731
    df = tt.drop_vars("lr", errors="ignore").to_dataframe().reset_index()
    dims = [d for d in tt.median_steps.dims]
    lines.append("| " + " | ".join(dims) + " | best lr | median steps [interval] | reached |")
    lines.append("|---" * (len(dims) + 3) + "|")
    for r in df.itertuples():
        keys = " | ".join(str(getattr(r, d)) for d in dims)
        lines.append(
            f"| {keys} | {r.best_lr:.3g} | {fmt(r.median_steps)} [{fmt(r.ci_lo_steps)}, "
            f"{fmt(r.ci_hi_steps)}] | {r.reached:.0%} |"
        )
    if "speedup" in tt:
        f2 = lambda v: "—" if not np.isfinite(v) else f"{v:.2f}"  # noqa: E731
        sdims = list(tt.speedup.dims)
        lines += [
            "",
            "Median steps with Gaussian weights over those with orthogonal weights "
            f"[{LEVEL:.0%} bootstrap interval]:",
            "",
            "| " + " | ".join(sdims) + " | Gaussian / orthogonal |",
            "|---" * (len(sdims) + 1) + "|",
        ]
        for c in _extra.combos(tt.speedup, sdims):
            v = [float(tt[k].sel(c)) for k in ("speedup", "speedup_lo", "speedup_hi")]
            keys = " | ".join(_extra.value(c[d]) for d in sdims)
            lines.append(f"| {keys} | {f2(v[0])} [{f2(v[1])}, {f2(v[2])}] |")
    if note:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def _q_markdown(ds, qi) -> list[str]:
    if not all(d in qi.dims for d in TRAIN_DIMS):
        return []
    lines = [
        "",
        "Recorded q (mean squared pre-activation over a batch of 32 and the units) of the "
        "training nets at init, mean ± standard error over seeds:",
        "",
        "| activation | scheme | depth | q* | layer 1 | layer 2 | last hidden | output |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in _extra.combos(qi, list(TRAIN_DIMS)):
        d = int(c["depth"])
        m, se = qi.q_mean.sel(c), qi.q_se.sel(c)

        def cell(layer, m=m, se=se):
            return f"{float(m.sel(layer=layer)):.4f} ± {float(se.sel(layer=layer)):.4f}"

        q = float(ds.train_q_star.sel(train_activation=c["activation"]))
        lines.append(
            f"| {c['activation']} | {c['scheme']} | {d} | {q:.4g} | {cell(1)} | "
            f"{cell(min(2, d))} | {cell(d)} | {cell(d + 1)} |"
        )
    return lines
