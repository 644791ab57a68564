"""The glorot2010 report's figures: activation trajectories per layer, the per-layer
activation and gradient distributions, their variances, and validation error vs step."""

from __future__ import annotations

from experiments.glorot2010.tables import (
    all_settings,
    at_best,
    best_lr,
    figure_settings,
    first_note,
    label,
    variant,
)
from experiments.glorot2010.training import WHEN
from sigjax.analysis import plotting


def trajectory(ds, setting, act, scheme):
    """The first seed at the best learning rate of one variant."""
    sel = {**setting, "activation": act, "scheme": scheme}
    lr = float(best_lr(ds).sel(sel))
    return ds.sel(sel).sel(lr=lr).isel(seed=0)


def _hidden(one) -> list[int]:
    return list(range(1, int(one.n_layers)))


def fig_activations(ds, out):
    settings, note = figure_settings(ds)
    schemes = ds.scheme.values.tolist()
    acts = ds.activation.values.tolist()
    cols = [(s, sc) for s in settings for sc in schemes]
    fig, axes = plotting.subplots(len(acts), len(cols), size=(3.0, 2.2), sharex=True)
    cmap = plotting.plt.get_cmap("viridis")
    for i, act in enumerate(acts):
        for j, (s, sc) in enumerate(cols):
            ax = axes[i, j]
            one = trajectory(ds, s, act, sc)
            hidden = _hidden(one)
            for layer in hidden:
                c = cmap((layer - 1) / max(len(hidden) - 1, 1))
                p = one.sel(layer=layer)
                ax.plot(one.step, p.probe_mean, color=c, lw=1.4, label=f"layer {layer}")
                for q in (p.probe_p02, p.probe_p98):
                    ax.plot(one.step, q, color=c, lw=0.8, ls=":")
            lo = 0.0 if act == "sigmoid" else -1.0
            ax.set_ylim(lo - 0.05, 1.05)
            lr = float(best_lr(ds).sel({**s, "activation": act, "scheme": sc}))
            ax.text(
                0.98,
                0.02,
                f"lr {lr:g}",
                ha="right",
                va="bottom",
                fontsize=7,
                transform=ax.transAxes,
            )
            if i == 0:
                ax.set_title(f"{label(s)}, {sc}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{act}\nactivation")
            if i == len(acts) - 1:
                ax.set_xlabel("step")
    axes[0, 0].legend(fontsize=6, loc="lower left")
    fig.suptitle(
        "Activations on 300 fixed test examples during training (best lr, first seed): "
        "mean (solid), 2nd and 98th percentiles (dotted)" + (f"\n{note}" if note else ""),
        fontsize=10,
    )
    fig.tight_layout()
    plotting.save(fig, out, "activations")


def _pick_act(ds) -> str:
    acts = ds.activation.values.tolist()
    return "tanh" if "tanh" in acts else acts[0]


def fig_distributions(ds, out):
    s = all_settings(ds)[0]
    act = _pick_act(ds)
    best = best_lr(ds)
    panels = [
        ("hist_act", "init", "activation value"),
        ("hist_act", "final", "activation value"),
        ("hist_backprop", "init", "∂ℓ/∂z_l (÷ std at top hidden layer)"),
        ("hist_backprop", "final", "∂ℓ/∂z_l (÷ std at top hidden layer)"),
        ("hist_wgrad", "init", "∂L/∂W_l (÷ std at top hidden layer)"),
    ]
    schemes = ds.scheme.values.tolist()
    fig, axes = plotting.subplots(len(schemes), len(panels), size=(3.0, 2.4))
    cmap = plotting.plt.get_cmap("viridis")
    for i, sc in enumerate(schemes):
        sel = {**s, "activation": act, "scheme": sc}
        one = at_best(ds.sel(sel), best.sel(sel))
        hidden = list(range(1, int(one.n_layers.max())))
        for j, (var, when, xlabel) in enumerate(panels):
            ax = axes[i, j]
            h = one[var].sel(when=when).mean("seed")
            x = h[h.dims[-1]]
            for layer in hidden:
                c = cmap((layer - 1) / max(len(hidden) - 1, 1))
                ax.plot(x, h.sel(layer=layer), color=c, lw=1, label=f"layer {layer}")
            ax.set_yscale("log")
            ax.set_ylim(bottom=1e-3 * float(h.sel(layer=hidden).max()))
            if i == 0:
                ax.set_title(f"{var.split('_')[1]} at {when}", fontsize=9)
            if i == len(schemes) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
        axes[i, 0].set_ylabel(f"{sc}\ndensity")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(
        f"{act}, {label(s)}{first_note(ds)}: per-layer histograms on 300 test examples "
        "(mean over seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    plotting.save(fig, out, "distributions")


def fig_variances(ds, out):
    s = all_settings(ds)[0]
    best = best_lr(ds)
    acts = ds.activation.values.tolist()
    rows = [
        ("var_backprop", "Var ∂ℓ/∂z_l"),
        ("var_wgrad", "Var ∂L/∂W_l"),
        ("var_act", "Var a_l"),
    ]
    fig, axes = plotting.subplots(len(rows), len(acts), size=(3.2, 2.5), sharex=True)
    for j, act in enumerate(acts):
        for sc_i, sc in enumerate(ds.scheme.values.tolist()):
            sel = {**s, "activation": act, "scheme": sc}
            one = at_best(ds.sel(sel), best.sel(sel))
            hidden = list(range(1, int(one.n_layers.max())))
            for i, (var, name) in enumerate(rows):
                for when, ls in zip(WHEN, ("-", "--"), strict=True):
                    v = one[var].sel(when=when, layer=hidden).mean("seed")
                    v = v / v.sel(layer=hidden[-1])
                    axes[i, j].plot(
                        hidden,
                        v,
                        ls,
                        marker="o",
                        ms=3,
                        color=f"C{sc_i}",
                        label=f"{sc}, {'init' if when == 'init' else 'after training'}",
                    )
                axes[i, j].set_yscale("log")
                if j == 0:
                    axes[i, j].set_ylabel(f"{name}\n÷ top hidden layer")
        axes[0, j].set_title(act)
        axes[-1, j].set_xlabel("hidden layer (1 = next to the input)")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(
        f"{label(s)}{first_note(ds)}: per-layer variances (300 test examples, mean over seeds)",
        fontsize=10,
    )
    fig.tight_layout()
    plotting.save(fig, out, "variances")


def fig_val_error(ds, out):
    settings, note = figure_settings(ds)
    best = best_lr(ds)
    fig, axes = plotting.subplots(1, len(settings), size=(4.0, 3.0))
    for j, s in enumerate(settings):
        ax = axes[0, j]
        i = 0
        for act in ds.activation.values.tolist():
            for sc in ds.scheme.values.tolist():
                sel = {**s, "activation": act, "scheme": sc}
                err = 1.0 - at_best(ds.val_accuracy.sel(sel), best.sel(sel))
                ls = "-" if sc == "standard" else "--"
                plotting.band(ax, err, color=plotting.color(act, i), ls=ls, label=variant(act, sc))
                i += 1
        ax.set(title=label(s), xlabel="step", ylabel="validation error (median, 10-90 %)")
        ax.set_ylim(0, 1)
    axes[0, -1].legend(fontsize=7)
    if note:
        fig.suptitle(note, fontsize=10)
    fig.tight_layout()
    plotting.save(fig, out, "val_error")
