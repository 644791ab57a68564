"""The remedies study's report: table.md, table.csv and the figures, from its results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from experiments.remedies.checks import (
    HE_INITS,
    YANG_BATCH,
    YANG_SIGMA_W2,
    bn_growth_prediction,
    chi_prediction,
    growth_factor,
)
from experiments.remedies.training import critical_init
from sigjax import analysis, config
from sigjax.analysis import plotting


def settings(ds: xr.Dataset) -> list[dict]:
    return [
        {"name": n, "depth": d} for n in ds.name.values.tolist() for d in ds.depth.values.tolist()
    ]


def _label(s: dict) -> str:
    return f"{s['name']}, depth {s['depth']}"


def target_of(ds: xr.Dataset) -> xr.DataArray:
    t = json.loads(ds.attrs["targets"])
    return xr.DataArray([t[n] for n in ds.name.values.tolist()], coords={"name": ds.name})


def steps_to_target(ds: xr.Dataset) -> xr.DataArray:
    """First logged step with validation accuracy >= the dataset's target (NaN: never)."""
    reached = ds.val_accuracy >= target_of(ds)
    return (
        ds.step[reached.argmax("step")].where(reached.any("step")).astype(float).drop_vars("step")
    )


def top_saturation(ds: xr.Dataset) -> xr.DataArray:
    """Saturated share of the top hidden layer's units (layer n_layers − 1), over steps."""
    return ds.saturation.isel(layer=(ds.n_layers - 2).clip(0), drop=True)


def table(ds: xr.Dataset) -> list[dict]:
    """One row per (dataset, depth, remedy): the numbers table.md shows."""
    ratio = analysis.grad_ratio(ds).median("seed")
    sat = top_saturation(ds).median("seed")
    steps = steps_to_target(ds)
    rows = []
    for s in settings(ds):
        for r in ds.remedy.values.tolist():
            sel = {**s, "remedy": r}
            acc = ds.test_accuracy.sel(sel).values
            st = steps.sel(sel).values
            b = int(ds.best_rate.sel(sel))
            rows.append(
                {
                    **s,
                    "remedy": r,
                    "best_lr": float(ds.best_lr.sel(sel)),
                    "lr_edge": "low" if b == 0 else "high" if b == ds.sizes["rate"] - 1 else "",
                    "tune_val_accuracy": float(ds.tune_val_accuracy.sel(sel).isel(rate=b).mean()),
                    "test_accuracy_mean": float(np.nanmean(acc))
                    if np.isfinite(acc).any()
                    else np.nan,
                    "test_accuracy_std": float(np.nanstd(acc, ddof=1))
                    if np.isfinite(acc).sum() > 1
                    else np.nan,
                    "n_seeds": int(acc.size),
                    "n_diverged": int(np.isfinite(ds.diverged_at.sel(sel).values).sum()),
                    "median_steps_to_target": float(
                        np.median(np.where(np.isfinite(st), st, np.inf))
                    ),
                    "n_reached": int(np.isfinite(st).sum()),
                    "grad_ratio_init": float(ratio.sel(sel).isel(step=0)),
                    "grad_ratio_final": float(ratio.sel(sel).isel(step=-1)),
                    "top_saturation_init": float(sat.sel(sel).isel(step=0)),
                    "top_saturation_final": float(sat.sel(sel).isel(step=-1)),
                }
            )
    return rows


def _markdown(rows: list[dict], ds: xr.Dataset) -> str:
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    t = json.loads(ds.attrs["targets"])
    lines = [
        f"Width {cfg.model.width}, SGD-family optimizers on minibatches of {cfg.train.batch_size}, "
        f"{cfg.train.steps} steps, softmax cross-entropy. Learning rate: the rate of "
        f"{ds.sizes['rate']} (half a decade apart) with the best mean final validation accuracy "
        f"over {ds.sizes['tune_seed']} tuning seeds; '◂'/'▸': the best rate is the grid's lowest / "
        f"highest (the optimum may lie outside). Test accuracy: mean ± std over "
        f"{ds.sizes['seed']} other seeds at that rate (eval mode), diverged seeds left out and "
        f"counted. Steps to target: median first logged step with validation accuracy ≥ "
        + ", ".join(f"{v:g} ({k})" for k, v in t.items())
        + " ('—': not reached by half the seeds; [k/n] seeds that reached it). Gradient ratio "
        "‖∂L/∂W₁‖/‖∂L/∂W_out‖ and top hidden layer saturation (share of units with "
        "|φ'| < 4 % of its maximum): median over seeds, at init → after training. Critical "
        f"init: σ_w² = {ds.attrs['critical_sigma_w2']:.2f}, σ_b² = "
        f"{ds.attrs['critical_sigma_b2']:g} (χ₁ = 1).",
        "",
    ]
    head = ["remedy", "lr", "test accuracy", "steps to target", "grad ratio init → final"]
    head += ["top saturation init → final"]
    for s in settings(ds):
        lines += [f"### {_label(s)}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            if r["name"] != s["name"] or r["depth"] != s["depth"]:
                continue
            edge = {"low": "◂", "high": "▸"}.get(r["lr_edge"], "")
            acc = f"{100 * r['test_accuracy_mean']:.1f} ± {100 * r['test_accuracy_std']:.1f}"
            if r["n_diverged"]:
                acc += f" ({r['n_diverged']} diverged)"
            m = r["median_steps_to_target"]
            st = "—" if not np.isfinite(m) else f"{m:.0f}"
            cells = [
                r["remedy"],
                f"{edge}{r['best_lr']:.3g}",
                acc,
                f"{st} [{r['n_reached']}/{r['n_seeds']}]",
                f"{r['grad_ratio_init']:.3g} → {r['grad_ratio_final']:.3g}",
                f"{r['top_saturation_init']:.2f} → {r['top_saturation_final']:.2f}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def yang_summary(ds: xr.Dataset) -> list[dict]:
    """Per (activation, norm, depth): the measured growth factor (median, IQR over seeds) and
    the prediction (batch norm: bn_growth_prediction; none: the mean-field χ profile)."""
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    q0 = float(ds.attrs.get("yang_q_input", 1.0))
    rows = []
    for act in ds.yang_activation.values.tolist():
        for norm in ds.yang_norm.values.tolist():
            for depth in ds.yang_depth.values.tolist():
                g = ds.yang_grad_norm.sel(yang_activation=act, yang_norm=norm, yang_depth=depth)
                f = growth_factor(g.values, depth)
                w = YANG_SIGMA_W2[act]
                pred = (
                    bn_growth_prediction(act)
                    if norm == "batch"
                    else chi_prediction(act, w, depth, w * q0)
                )
                rows.append(
                    {
                        "activation": act,
                        "norm": norm,
                        "depth": depth,
                        "growth": float(np.median(f)),
                        "q25": float(np.quantile(f, 0.25)),
                        "q75": float(np.quantile(f, 0.75)),
                        "predicted": pred,
                        "first_over_last_hidden": float(
                            np.median(g.values[:, 0] / g.values[:, depth - 1])
                        ),
                    }
                )
    del cfg
    return rows


def he_summary(ds: xr.Dataset) -> list[dict]:
    rows = []
    for init in ds.he_init.values.tolist():
        one = ds.sel(he_init=init)
        val = one.he_val_accuracy.isel(step=-1).fillna(0.0).mean("he_seed")
        b = int(val.argmax("he_rate"))
        at = one.isel(he_rate=b)
        acc = at.he_test_accuracy.values
        g = at.he_grad_norm.isel(step=0)
        rows.append(
            {
                "init": init,
                "sigma_w2": HE_INITS[init],
                "best_lr": float(ds.he_rate[b]),
                "test_accuracy_mean": float(np.nanmean(acc)) if np.isfinite(acc).any() else np.nan,
                "test_accuracy_std": float(np.nanstd(acc)) if np.isfinite(acc).any() else np.nan,
                "final_loss": float(at.he_loss.isel(step=-1).median()),
                "initial_loss": float(at.he_loss.isel(step=0).median()),
                "grad_ratio_init": float((g.isel(he_layer=0) / g.isel(he_layer=-1)).median()),
                "n_diverged": int(np.isfinite(at.he_diverged_at.values).sum()),
            }
        )
    return rows


def _literature_md(ds, rows, yang, he) -> str:
    def acc(r: str) -> str:
        here = (s["name"], s["depth"])
        hit = [x for x in rows if x["remedy"] == r and (x["name"], x["depth"]) == here]
        return f"{100 * hit[0]['test_accuracy_mean']:.1f}" if hit else "—"

    lines = ["## Ioffe & Szegedy 2015: batch norm in a sigmoid network", ""]
    lines += ["| setting | plain sigmoid | sigmoid + BN | ReLU (He) |", "|---|---|---|---|"]
    for s in settings(ds):
        cells = [acc(r) for r in ("plain", "batchnorm", "relu")]
        lines.append(f"| {_label(s)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Yang et al. 2019: gradient growth per layer at init",
        "",
        f"(‖∇W_2‖/‖∇W_depth‖)^(1/(depth−2)) over hidden layers, batch of {YANG_BATCH}, median "
        f"[IQR] over {ds.sizes['yang_seed']} seeds; predicted: with batch norm "
        "sqrt(E[φ'(z)²]/Var φ(z)) (large-batch limit), without it the mean-field χ profile.",
        "",
        "| activation | norm | depth | measured | predicted | ‖∇W₁‖/‖∇W_depth‖ |",
        "|---|---|---|---|---|---|",
    ]
    for y in yang:
        lines.append(
            f"| {y['activation']} | {y['norm']} | {y['depth']} | {y['growth']:.4f} "
            f"[{y['q25']:.4f}, {y['q75']:.4f}] | {y['predicted']:.4f} | "
            f"{y['first_over_last_hidden']:.3g} |"
        )
    lines += [
        "",
        f"## He et al. 2015: {ds.attrs['he_depth']}-layer ReLU, He vs Xavier init",
        "",
        "| init | σ_w² | best lr | test accuracy | loss init → final | grad ratio at init "
        "| diverged |",
        "|---|---|---|---|---|---|---|",
    ]
    for h in he:
        lines.append(
            f"| {h['init']} | {h['sigma_w2']:g} | {h['best_lr']:g} | "
            f"{100 * h['test_accuracy_mean']:.1f} ± {100 * h['test_accuracy_std']:.1f} | "
            f"{h['initial_loss']:.3f} → {h['final_loss']:.3f} | {h['grad_ratio_init']:.3g} | "
            f"{h['n_diverged']} |"
        )
    return "\n".join(lines) + "\n"


def report(ds: xr.Dataset, out: Path) -> dict:
    import pandas as pd

    rows = table(ds)
    pd.DataFrame(rows).to_csv(out / "table.csv", index=False)
    yang, he = yang_summary(ds), he_summary(ds)
    text = _markdown(rows, ds) + "\n" + _literature_md(ds, rows, yang, he)
    (out / "table.md").write_text(text)
    _fig_val_accuracy(ds, out)
    _fig_ratio_vs_steps(ds, rows, out)
    _fig_layers_at_init(ds, out)
    _fig_yang(ds, yang, out)
    _fig_he(ds, he, out)
    head = {
        "table": {
            f"{r['name']}/depth{r['depth']}/{r['remedy']}": {
                k: r[k]
                for k in (
                    "best_lr",
                    "lr_edge",
                    "test_accuracy_mean",
                    "test_accuracy_std",
                    "median_steps_to_target",
                    "grad_ratio_init",
                    "top_saturation_init",
                )
            }
            for r in rows
        },
        "yang2019": yang,
        "he2015": he,
        "critical_init": {"sigma_w2": critical_init()[0], "sigma_b2": critical_init()[1]},
    }
    return head


def _style(i: int) -> dict:
    return {"color": plotting.plt.get_cmap("tab20")(i % 20), "ls": ("-", "--", ":")[i // 20 % 3]}


def _fig_val_accuracy(ds, out):
    ss = settings(ds)
    fig, axes = plotting.subplots(1, len(ss), size=(5.0, 3.8))
    for ax, s in zip(axes[0], ss, strict=True):
        for i, r in enumerate(ds.remedy.values.tolist()):
            v = ds.val_accuracy.sel(**s, remedy=r).median("seed")
            ax.plot(ds.step, v, label=r, lw=1.2, **_style(i))
        ax.axhline(float(target_of(ds).sel(name=s["name"])), color="k", lw=0.8, ls=":")
        ax.set(title=_label(s), xlabel="step", ylabel="validation accuracy (median over seeds)")
        ax.set_ylim(0, 1)
    axes[0, -1].legend(fontsize=6, ncol=2, loc="lower right")
    fig.tight_layout()
    plotting.save(fig, out, "val_accuracy")


def _fig_ratio_vs_steps(ds, rows, out):
    ss = settings(ds)
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    fig, axes = plotting.subplots(1, len(ss), size=(4.6, 3.8))
    for ax, s in zip(axes[0], ss, strict=True):
        for i, r in enumerate(
            x for x in rows if x["name"] == s["name"] and x["depth"] == s["depth"]
        ):
            m = r["median_steps_to_target"]
            never = not np.isfinite(m)
            y = 1.15 * cfg.train.steps if never else m
            ax.scatter(
                r["grad_ratio_init"],
                y,
                marker="x" if never else "o",
                **{"color": _style(i)["color"]},
            )
            ax.annotate(r["remedy"], (r["grad_ratio_init"], y), fontsize=6)
        ax.axhline(cfg.train.steps, color="k", lw=0.8, ls=":")
        ax.set(
            xscale="log",
            title=_label(s),
            xlabel="‖∂L/∂W₁‖ / ‖∂L/∂W_out‖ at init (median)",
            ylabel="median steps to target (× above the line: never)",
        )
    fig.tight_layout()
    plotting.save(fig, out, "ratio_vs_steps")


def _fig_layers_at_init(ds, out):
    ss = settings(ds)
    fig, axes = plotting.subplots(1, len(ss), size=(5.0, 3.8))
    for ax, s in zip(axes[0], ss, strict=True):
        for i, r in enumerate(ds.remedy.values.tolist()):
            one = ds.sel(**s, remedy=r)
            n = int(one.n_layers)
            g = one.grad_norm.isel(step=0).median("seed").values[:n]
            ax.plot(np.arange(1, n + 1), g / g[-1], label=r, marker=".", lw=1, **_style(i))
        ax.set(
            yscale="log",
            title=_label(s),
            xlabel="layer (1 = input side; last = output)",
            ylabel="‖∂L/∂W_l‖ / ‖∂L/∂W_out‖ at init",
        )
    axes[0, -1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    plotting.save(fig, out, "grad_layers_init")


def _fig_yang(ds, yang, out):
    acts = ds.yang_activation.values.tolist()
    fig, axes = plotting.subplots(2, len(acts), size=(4.4, 3.4))
    deepest = int(ds.yang_depth.max())
    for j, act in enumerate(acts):
        ax = axes[0, j]
        for k, norm in enumerate(ds.yang_norm.values.tolist()):
            rs = [y for y in yang if y["activation"] == act and y["norm"] == norm]
            d = [y["depth"] for y in rs]
            err = [[y["growth"] - y["q25"] for y in rs], [y["q75"] - y["growth"] for y in rs]]
            ax.errorbar(
                d,
                [y["growth"] for y in rs],
                yerr=err,
                marker="o",
                color=f"C{k}",
                label=f"{norm}: measured",
            )
            ax.plot(
                d, [y["predicted"] for y in rs], ls="--", color=f"C{k}", label=f"{norm}: predicted"
            )
            g = ds.yang_grad_norm.sel(yang_activation=act, yang_norm=norm, yang_depth=deepest)
            med = g.median("yang_seed").values[: deepest + 1]
            axes[1, j].plot(
                np.arange(1, deepest + 2),
                med / med[deepest - 1],
                marker=".",
                color=f"C{k}",
                label=norm,
            )
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set(title=act, xlabel="depth", ylabel="per-layer growth of ‖∂L/∂W_l‖ toward the input")
        ax.legend(fontsize=6)
        axes[1, j].set(
            yscale="log",
            xlabel="layer",
            ylabel=f"‖∂L/∂W_l‖ / top hidden layer's (depth {deepest})",
        )
        axes[1, j].legend(fontsize=6)
    fig.tight_layout()
    plotting.save(fig, out, "yang2019")


def _fig_he(ds, he, out):
    fig, axes = plotting.subplots(1, 2, size=(4.4, 3.4))
    for i, h in enumerate(he):
        one = ds.sel(he_init=h["init"], he_rate=h["best_lr"])
        kw = {
            "color": f"C{i}",
            "label": f"{h['init']} (σ_w² = {h['sigma_w2']:g}, lr {h['best_lr']:g})",
        }
        plotting.band(axes[0, 0], one.he_loss, over="he_seed", **kw)
        plotting.band(axes[0, 1], one.he_val_accuracy, over="he_seed", **kw)
    axes[0, 0].set(yscale="log", xlabel="step", ylabel="training loss (minibatch)")
    axes[0, 1].set(xlabel="step", ylabel="validation accuracy", ylim=(0, 1))
    axes[0, 0].set_title(f"{ds.attrs['he_depth']}-layer ReLU (He et al. 2015, Fig. 3)")
    axes[0, 1].legend(fontsize=7)
    fig.tight_layout()
    plotting.save(fig, out, "he2015")
