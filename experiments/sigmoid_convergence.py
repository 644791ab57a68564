"""The seed study: how much slower does the sigmoid converge, and why?

Part 1, the blog's own example done right. One sigmoid layer on X ~ U[0,1]^{100×10},
y ~ U[0,1]^{100×1}, weights and bias ~ U[0,1] as in the blog, MSE, gradient descent at lr 0.01
for 1000 steps. The blog's backward pass, `np.dot(X.T, err) * sigmoid_derivative(y_pred)`,
multiplies a (10, 1) by a (100, 1) array (NumPy refuses: the shapes do not broadcast) and drops
the MSE's factor 2/N. The correct gradient applies the chain rule per sample *before* summing
over the batch: δ = (2/N)(ŷ − y) ⊙ ŷ(1 − ŷ), ∂L/∂W = Xᵀδ, ∂L/∂b = Σ δ.

Part 2, the study the blog argues for: sigmoid, centred sigmoid σ(x) − ½, tanh and ReLU, with 1, 3
and 6 hidden layers of width 32 on the same task, 16 seeds × 8 learning rates each, all members
of a group in one compiled program. Measured: steps to reach the loss threshold, loss at fixed
steps, and the gradient-norm ratio ‖∂L/∂W_1‖ / ‖∂L/∂W_out‖ over training.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from experiments import _extra
from sigjax import analysis, config
from sigjax import data as data_lib
from sigjax.analysis import plotting
from sigjax.config import Config
from sigjax.engine import train
from sigjax.study import Study

# ---------------------------------------------------------------- part 1: the blog's example


def blog_problem(seed: int = 0):
    """The blog's data and initial parameters: X (100, 10), y (100, 1), w (10, 1), b (1,)."""
    rng = np.random.default_rng(seed)
    x, y = rng.random((100, 10)), rng.random((100, 1))
    w, b = rng.random((10, 1)), rng.random(1)
    return x, y, w, b


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def blog_manual_grad(x, y, w, b):
    """The correct gradient of mean((σ(Xw + b) − y)²) with respect to (w, b), by hand."""
    y_pred = _sigmoid(x @ w + b)
    delta = (2.0 / len(x)) * (y_pred - y) * y_pred * (1.0 - y_pred)  # (N, 1), per sample
    return x.T @ delta, delta.sum(axis=0)


def blog_loss(w, b, x, y):
    return jnp.mean((jax.nn.sigmoid(x @ w + b) - y) ** 2)


def blog_descent(seed: int = 0, steps: int = 1000, lr: float = 0.01) -> np.ndarray:
    """Loss before each of `steps` manual gradient-descent steps, and after the last."""
    x, y, w, b = blog_problem(seed)
    losses = []
    for _ in range(steps):
        losses.append(np.mean((_sigmoid(x @ w + b) - y) ** 2))
        dw, db = blog_manual_grad(x, y, w, b)
        w, b = w - lr * dw, b - lr * db
    losses.append(np.mean((_sigmoid(x @ w + b) - y) ** 2))
    return np.array(losses)


def blog_engine(seed: int = 0, steps: int = 1000, lr: float = 0.01) -> np.ndarray:
    """The same descent through sigjax's model and training step (from the blog's init)."""
    x, y, w, b = blog_problem(seed)
    cfg = config.replace(
        Config(),
        {
            "model.depth": 0,
            "model.head_activation": "sigmoid",
            "optim.lr": lr,
            "train.steps": steps,
            "train.log_every": 1,
        },
    )
    data = data_lib.Data(x_train=jnp.asarray(x, jnp.float32), y_train=jnp.asarray(y, jnp.float32))
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(seed)
    state = prog.init(hp, key)
    params = {
        "layer_1": {"kernel": jnp.asarray(w, jnp.float32), "bias": jnp.asarray(b, jnp.float32)}
    }
    state = state.replace(params=params, opt_state=prog.optimizer(hp).init(params))
    state, recs = jax.jit(prog.advance, static_argnums=4)(data, hp, key, state, steps)
    last = prog.finish(data, hp, key, state)
    return np.append(np.asarray(recs.loss), float(last.loss))


# ---------------------------------------------------------------- part 2: the study

ACTIVATIONS = ("sigmoid", "centred_sigmoid", "tanh", "relu")
CONFIG = config.replace(
    Config(),
    {
        "data.name": "seed_regression",
        "data.n_train": 100,
        "data.dim": 10,
        "data.out_dim": 1,
        "model.width": 32,
        "model.head_activation": "identity",
        "init.scheme": "gaussian",
        "init.sigma_w2": 1.0,
        "init.sigma_b2": 0.0,
        "optim.name": "sgd",
        "train.loss": "mse",
        "train.batch_size": 0,
        "train.steps": 1000,
        "train.log_every": 10,
        "train.loss_threshold": 0.075,
    },
)
GRID = {
    "model.activation": ACTIVATIONS,
    "model.depth": (1, 3, 6),
    "optim.lr": tuple(float(v) for v in np.logspace(-2, 0.5, 8)),
    "seed": tuple(range(16)),
}


LOSS_AT = 250  # the table's loss at a fixed step (the largest logged step up to it)


def loss_step(ds: xr.Dataset, at: int = LOSS_AT) -> int | None:
    """The largest logged step <= `at`; None when that is the final step (the table's final
    loss column then holds the same numbers)."""
    steps = ds.step.values
    step = int(steps[steps <= at].max())
    return None if step == int(steps[-1]) else step


def report(ds: xr.Dataset, out: Path) -> dict:
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    thr = cfg.train.loss_threshold
    best = analysis.best_lr(ds, thr)
    extra = _extra.extra_dims(best, ("activation", "depth"))  # a user's added grid dims
    steps = analysis.steps_to_threshold(ds, thr)
    at_best = lambda da: analysis.at_best_lr(da, best)  # noqa: E731
    never = 10.0 * cfg.train.steps  # "never reached" ranks after every real step count
    s_best = at_best(steps).fillna(never)
    ratio = analysis.grad_ratio(ds)
    at = loss_step(ds)
    cols = {
        "best_lr": best,
        "median_steps": s_best.median("seed"),
        "q25_steps": s_best.quantile(0.25, "seed").drop_vars("quantile"),
        "q75_steps": s_best.quantile(0.75, "seed").drop_vars("quantile"),
        "reached": (s_best < never).mean("seed"),
    }
    if at is not None:
        cols[f"loss_at_{at}"] = at_best(ds.loss.sel(step=at, drop=True)).median("seed")
    cols |= {
        "final_loss": at_best(analysis.final_loss(ds)).median("seed"),
        "rate": at_best(analysis.convergence_rate(ds)).median("seed"),
        "grad_ratio_init": at_best(ratio.isel(step=0, drop=True)).median("seed"),
        "grad_ratio_final": at_best(ratio.isel(step=-1, drop=True)).median("seed"),
        "stable_lr_max": analysis.divergence_boundary(ds),
    }
    table = xr.Dataset(cols).transpose("activation", "depth", *extra).to_dataframe().reset_index()
    for col in ("median_steps", "q25_steps", "q75_steps"):
        table[col] = table[col].where(table[col] < never, np.inf)
    table.to_csv(out / "table.csv", index=False)
    settings, note = _extra.figure_settings(best, extra)
    (out / "table.md").write_text(_markdown(table, thr, extra, at, note))
    _figure(ds, best, steps, thr, out, settings, note)
    blog_manual = blog_descent()
    blog_sigjax = blog_engine()
    blog = {
        "loss_start": float(blog_manual[0]),
        "loss_end": float(blog_manual[-1]),
        "loss_best_constant": float(np.var(blog_problem()[1])),
        "max_abs_diff_sigjax_vs_manual": float(np.max(np.abs(blog_manual - blog_sigjax))),
    }
    (out / "blog_example.json").write_text(json.dumps(blog, indent=2) + "\n")
    key = lambda r: "/".join(  # noqa: E731
        [f"{r['activation']}/depth{r['depth']}", *(f"{d}={_extra.value(r[d])}" for d in extra)]
    )
    head = {
        "loss_threshold": thr,
        "median_steps_to_threshold": {
            key(r): (None if np.isnan(r["median_steps"]) else float(r["median_steps"]))
            for r in table.to_dict("records")
        },
        "blog_example": blog,
    }
    if note:
        head["figure_note"] = note
    return head


def _markdown(table, thr: float, extra=(), at: int | None = LOSS_AT, note: str = "") -> str:
    """The table as Markdown: one row per setting, the extra grid dims after depth; a loss@STEP
    column where STEP (the step actually shown) is not the final one."""
    loss_at = [f"loss@{at}"] if at is not None else []
    head = ["activation", "depth", *extra, "best lr", "median steps [IQR]", "reached", *loss_at]
    head += ["final loss", "rate /step", "‖∇W₁‖/‖∇W_out‖ init → final", "largest stable lr"]
    lines = [
        f"Steps to reach MSE ≤ {thr} at each setting's best learning rate "
        "(median [IQR] over seeds; '—' = not reached within the run). rate: the fitted "
        "exponential decay rate of the loss per step over the run (median over seeds).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    fmt = lambda v: "—" if not np.isfinite(v) else f"{v:.0f}"  # noqa: E731
    for r in table.to_dict("records"):
        cells = [str(r["activation"]), str(r["depth"])]
        cells += [_extra.value(r[d]) for d in extra]
        cells += [
            f"{r['best_lr']:.3g}",
            f"{fmt(r['median_steps'])} [{fmt(r['q25_steps'])}, {fmt(r['q75_steps'])}]",
            f"{r['reached']:.0%}",
        ]
        cells += [f"{r[f'loss_at_{at}']:.4f}"] if at is not None else []
        cells += [
            f"{r['final_loss']:.4f}",
            "—" if not np.isfinite(r["rate"]) else f"{r['rate']:.3g}",
            f"{r['grad_ratio_init']:.3g} → {r['grad_ratio_final']:.3g}",
            f"{r['stable_lr_max']:.3g}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if note:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def _figure(ds, best, steps, thr, out, settings=({},), note: str = "") -> None:
    """figures/convergence (a row per depth and extra setting) and figures/grad_norm_layers
    (the deepest nets, a row per extra setting)."""
    depths = ds.depth.values
    rows = [(s, d) for s in settings for d in depths]
    lrs = ds.lr.values
    fig, axes = plotting.subplots(len(rows), 3, size=(2.35, 1.65))
    for row, (setting, depth) in enumerate(rows):
        sub = ds.sel(setting).sel(depth=depth)
        b, st = best.sel(setting), steps.sel(setting)
        for i, act in enumerate(ds.activation.values):
            one = sub.sel(activation=act)
            lr = float(b.sel(activation=act, depth=depth))
            kw = {"color": plotting.color(str(act), i), "label": str(act)}
            plotting.band(axes[row, 0], one.loss.sel(lr=lr), **kw)
            ratio = analysis.grad_ratio(one.sel(lr=lr))
            plotting.band(axes[row, 1], ratio, **kw)
            s = st.sel(activation=act, depth=depth)
            med = plotting.finite_or(s.fillna(np.inf).median("seed"), np.nan)
            axes[row, 2].plot(lrs, med, "o-", ms=3, color=kw["color"])
        never = [
            str(a)
            for a in ds.activation.values
            if not np.isfinite(
                st.sel(activation=a, depth=depth).fillna(np.inf).median("seed")
            ).any()
        ]
        if never:
            axes[row, 2].text(
                0.97,
                0.95,
                "never reached:\n" + ",\n".join(never),
                ha="right",
                va="top",
                transform=axes[row, 2].transAxes,
            )
        # one line per part, so that a long setting stays within its row
        where = "\n".join([f"depth {depth}", *_extra.label(setting).split(", ")]).strip()
        axes[row, 0].axhline(thr, color="k", lw=0.7, ls=":", label=f"MSE = {thr}")
        axes[row, 0].set(yscale="log", ylabel=f"{where}\ntraining MSE")
        axes[row, 1].axhline(1.0, color="k", lw=0.7, ls=":")
        axes[row, 1].set(yscale="log", ylabel="‖∇W₁‖ / ‖∇W_out‖")
        # every row on the same, whole learning-rate axis (points that never reach are gaps)
        axes[row, 2].set(
            xscale="log", xlim=(lrs.min() / 1.5, lrs.max() * 1.5), ylabel=f"steps to MSE ≤ {thr}"
        )
        if np.any(st.sel(depth=depth) > 0):  # a log axis needs a positive value
            axes[row, 2].set_yscale("log")
    axes[0, 0].set_title("loss at best lr")
    axes[0, 1].set_title("gradient ratio, first / output layer")
    axes[0, 2].set_title("median steps vs learning rate")
    for ax in axes[-1, :2]:
        ax.set_xlabel("step")
    axes[-1, 2].set_xlabel("learning rate")
    fig.tight_layout(h_pad=0.6, w_pad=0.8)
    legend = plotting.fig_legend(fig, axes[:1, 0], ncol=5)
    if note:
        legend.set_title(note)
    plotting.save(fig, out, "convergence")

    deepest = depths.max()
    acts = ds.activation.values
    fig, axes = plotting.subplots(len(settings), len(acts), size=(1.75, 1.7), sharey=True)
    cmap = plotting.plt.get_cmap("viridis")
    for row, setting in enumerate(settings):
        deep = ds.sel(setting).sel(depth=deepest)
        for ax, act in zip(axes[row], acts, strict=True):
            lr = float(best.sel(setting).sel(activation=act, depth=deepest))
            one = deep.sel(activation=act, lr=lr)
            n = int(one.n_layers.max())
            for layer in range(1, n + 1):
                g = one.grad_norm.sel(layer=layer).median("seed")
                ax.plot(
                    one.step, g, color=cmap((layer - 1) / max(n - 1, 1)), label=f"layer {layer}"
                )
            title = f"{act}, {_extra.label(setting)}" if setting else str(act)
            ax.set(yscale="log", xlabel="step")
            ax.set_title(title, color=plotting.color(str(act)))
        axes[row, 0].set_ylabel(f"median ‖∂L/∂W_l‖\n(depth {deepest})")
    fig.tight_layout(w_pad=0.5)
    legend = plotting.fig_legend(fig, axes[:1, :1], ncol=8)
    if note:
        legend.set_title(note)
    plotting.save(fig, out, "grad_norm_layers")


STUDY = Study(
    name="sigmoid_convergence",
    description=(
        "sigmoid vs centred sigmoid vs tanh vs ReLU, depth 1/3/6, 16 seeds x 8 learning rates "
        "on the seed blog's task: steps to threshold, per-layer gradient norms; "
        "figures/convergence.png, table.md"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    requires=("activation", "depth", "lr", "seed"),
)
