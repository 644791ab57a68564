"""The dynamical_isometry report's figures: spectra, the free-probability density, the
variance of the squared singular values, and steps to threshold vs depth."""

from __future__ import annotations

import numpy as np
import xarray as xr

from experiments import _extra
from sigjax.analysis import plotting


def fig_spectra(ds, out):
    cases = ds.case.values.tolist()
    schemes = ds.spec_scheme.values.tolist()
    fig, axes = plotting.subplots(len(schemes), len(cases), size=(2.7, 2.3), sharex=True)
    cmap = plotting.plt.get_cmap("viridis")
    all_depths = ds.spec_depth.values.tolist()
    depths = sorted({*all_depths[::2], all_depths[-1]})  # every other depth, and the deepest
    edges = np.logspace(-3, 2, 51)
    for j, c in enumerate(cases):
        for i, s in enumerate(schemes):
            ax = axes[i, j]
            for k, d in enumerate(depths):
                sv = np.sqrt(ds.sv2.sel(case=c, spec_scheme=s, spec_depth=d).values)
                h, _ = np.histogram(sv, bins=edges)
                dens = h / len(sv) / np.diff(np.log10(edges))
                col = cmap(k / max(len(depths) - 1, 1))
                ax.plot(np.sqrt(edges[1:] * edges[:-1]), dens, color=col, lw=1, label=f"L={d}")
            deep = np.sqrt(ds.sv2.sel(case=c, spec_scheme=s, spec_depth=depths[-1]).values)
            below = float(np.mean(deep < edges[0]))
            if below > 0:
                ax.text(
                    0.03,
                    0.92,
                    f"L={depths[-1]}: {below:.0%} < 1e-3",
                    fontsize=7,
                    transform=ax.transAxes,
                )
            ax.set(xscale="log", yscale="log", ylim=(1e-2, 30))
            if i == 0:
                ax.set_title(c, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{s} weights\ndensity per decade")
            if i == len(schemes) - 1:
                ax.set_xlabel("singular value of J")
    axes[0, 0].legend(fontsize=6, loc="lower left")
    fig.suptitle(
        f"Singular values of the input-output Jacobian at init on the critical line "
        f"(width {ds.attrs.get('spectra_width', '?')}, depth L)",
        fontsize=10,
    )
    fig.tight_layout()
    plotting.save(fig, out, "spectra")


def fig_density(ds, out):
    """Per case and scheme: the histogram of the singular values σ of J (density per decade
    of σ, solid) against the free-probability prediction, 2 ln10 · λρ(λ) at λ = σ² (dashed),
    at each theory depth; each panel's axis spans its own samples."""
    cases = ds.case.values.tolist()
    schemes = ds.spec_scheme.values.tolist()
    depths = ds.theory_depth.values.tolist()
    fig, axes = plotting.subplots(len(schemes), len(cases), size=(2.3, 2.0))
    cmap = plotting.plt.get_cmap("viridis")
    for j, c in enumerate(cases):
        for i, s in enumerate(schemes):
            ax = axes[i, j]
            allv = ds.sv2.sel(case=c, spec_scheme=s, spec_depth=depths).values
            allv = allv[np.isfinite(allv) & (allv > 0)]
            lo, hi = np.log10(np.sqrt(np.quantile(allv, [0.005, 1.0])))
            pad = max(0.1 * (hi - lo), 0.01)
            edges = np.linspace(lo - pad, hi + pad, 41)
            for k, d in enumerate(depths):
                col = cmap(k / max(len(depths) - 1, 1))
                sv = np.sqrt(ds.sv2.sel(case=c, spec_scheme=s, spec_depth=d).values)
                h, _ = np.histogram(np.log10(sv), bins=edges)
                dens = h / len(sv) / np.diff(edges)
                ax.stairs(dens, 10**edges, color=col, lw=1, label=f"L={d}")
                lam = ds.sv2_theory_lam.sel(case=c, spec_scheme=s, theory_depth=d).values
                rho = ds.sv2_theory_density.sel(case=c, spec_scheme=s, theory_depth=d).values
                ax.plot(np.sqrt(lam), 2 * np.log(10) * lam * rho, "--", color=col, lw=0.9)
            ax.set(xscale="log", xlim=(10 ** edges[0], 10 ** edges[-1]))
            ax.set_ylim(bottom=0)
            if i == 0:
                ax.set_title(c)
            if j == 0:
                ax.set_ylabel(f"{s} weights\ndensity per decade of σ")
            if i == len(schemes) - 1:
                ax.set_xlabel("singular value σ of J")
    axes[0, 0].legend(loc="upper left", title="solid: sampled\ndashed: free prob.")
    fig.suptitle(
        f"Singular values of J at init against the free-probability density "
        f"(width {ds.attrs.get('spectra_width', '?')})"
    )
    fig.tight_layout()
    plotting.save(fig, out, "density")


def log_ticks(ax, values, axis="x"):
    """Plain tick labels at `values` on a log axis (no minor labels)."""
    from matplotlib.ticker import NullFormatter

    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_ticks([float(v) for v in values], [f"{v:g}" for v in values])
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_formatter(NullFormatter())


def fig_spread(ds, sp, out):
    schemes = ds.spec_scheme.values.tolist()
    fig, axes = plotting.subplots(1, len(schemes), size=(4.2, 3.4), sharey=True)
    depths = ds.spec_depth.values
    markers = "osD^vP*X"
    for j, s in enumerate(schemes):
        ax = axes[0, j]
        for i, c in enumerate(ds.case.values.tolist()):
            col, m = f"C{i}", markers[i % len(markers)]
            v = sp["var"].sel(case=c, spec_scheme=s)
            ax.plot(depths, v, "-", marker=m, color=col, ms=4, mfc="none", label=c)
            ax.plot(depths, sp.var_theory.sel(case=c, spec_scheme=s), ":", color=col, lw=1)
        ax.set(xscale="log", yscale="log", title=f"{s} weights", xlabel="depth L")
        log_ticks(ax, depths)
    axes[0, 0].set_ylabel("Var of squared singular values of J")
    axes[0, -1].legend(fontsize=7, title="dotted: L(μ₂/μ₁² − 1 − s₁)", title_fontsize=7)
    fig.tight_layout()
    plotting.save(fig, out, "spread")


def fig_training(ds, tt, thr, out, settings=None, note: str = "") -> None:
    """Steps to threshold vs depth (top) and the deepest nets' loss (bottom), a column per
    activation and extra setting (`settings`: dicts to select with; default every activation)."""
    if settings is None:
        settings = _extra.combos(tt, ["activation"] if "activation" in tt.dims else [])
    fig, axes = plotting.subplots(2, len(settings), size=(4.0, 3.0))
    view = steps_view(ds)
    for j, setting in enumerate(settings):
        one = tt.sel(setting)
        vone = view.sel(setting)
        ax = axes[0, j]
        top = float(ds.step.values[-1]) * 1.3
        for i, sc in enumerate(one.scheme.values.tolist()):
            r = one.sel(scheme=sc)
            d = r.depth.values
            med, lo, hi = (
                plotting.finite_or(r[k], top)
                for k in ("median_steps", "ci_lo_steps", "ci_hi_steps")
            )
            shift = 1.0 + 0.04 * (i - 0.5)  # side by side, not on top of each other
            ax.errorbar(
                d * shift,
                med,
                yerr=[med - lo, hi - med],
                fmt="o-",
                color=f"C{i}",
                capsize=3,
                label=sc,
            )
            miss = ~np.isfinite(r.median_steps.values)
            if miss.any():
                ax.plot(d[miss] * shift, [top] * int(miss.sum()), "x", color=f"C{i}", ms=9)
        title = _extra.label(setting).removeprefix("activation=") or "all"
        ax.set(xscale="log", yscale="log", xlabel="depth", title=title)
        log_ticks(ax, one.depth.values)
        ax.set_ylabel(f"steps to training loss ≤ {thr}\n(median over seeds, {LEVEL:.0%} interval)")
        if not np.isfinite(one.median_steps.values).all():
            msg = f"x at top: not reached in {int(ds.step.values[-1])} steps"
            ax.text(0.02, 0.95, msg, fontsize=7, transform=ax.transAxes, va="top")
        deepest = vone.depth.values.max()
        ax2 = axes[1, j]
        for i, sc in enumerate(one.scheme.values.tolist()):
            lr = float(one.best_lr.sel(scheme=sc, depth=deepest))
            plotting.band(
                ax2,
                vone.loss.sel(scheme=sc, depth=deepest, lr=lr),
                color=f"C{i}",
                label=f"{sc} (lr {lr:.2g})",
            )
        ax2.axhline(thr, color="k", lw=0.8, ls=":")
        ax2.set(xlabel="step", ylabel=f"training loss, depth {deepest}\n(median, 10-90 %)")
        ax2.legend(fontsize=7)
        axes[0, j].legend(fontsize=7, loc="lower right")
    if note:
        fig.suptitle(note, fontsize=10)
    fig.tight_layout()
    plotting.save(fig, out, "training")


def steps_view(ds: xr.Dataset) -> xr.Dataset:
    """The training-sweep part with `loss` = the loss on the fixed training examples."""
    keep = [v for v in ds.data_vars if "step" in ds[v].dims or v in ("diverged_at", "n_layers")]
    view = ds[keep].drop_vars("loss").rename({"train_eval_loss": "loss"})
    return view


LEVEL = 0.95  # the intervals' coverage
