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

from sigjax import analysis, config, plotting, train
from sigjax import data as data_lib
from sigjax.config import Config
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


def report(ds: xr.Dataset, out: Path) -> dict:
    cfg = config.from_dict(json.loads(ds.attrs["config"]))
    thr = cfg.train.loss_threshold
    best = analysis.best_lr(ds, thr)
    steps = analysis.steps_to_threshold(ds, thr)
    at_best = lambda da: analysis.at_best_lr(da, best)  # noqa: E731
    never = 10.0 * cfg.train.steps  # "never reached" ranks after every real step count
    s_best = at_best(steps).fillna(never)
    ratio = analysis.grad_ratio(ds)
    table = (
        xr.Dataset(
            {
                "best_lr": best,
                "median_steps": s_best.median("seed"),
                "q25_steps": s_best.quantile(0.25, "seed").drop_vars("quantile"),
                "q75_steps": s_best.quantile(0.75, "seed").drop_vars("quantile"),
                "reached": (s_best < never).mean("seed"),
                "loss_at_250": at_best(ds.loss.sel(step=250, method="nearest", drop=True)).median(
                    "seed"
                ),
                "final_loss": at_best(analysis.final_loss(ds)).median("seed"),
                "grad_ratio_init": at_best(ratio.isel(step=0, drop=True)).median("seed"),
                "grad_ratio_final": at_best(ratio.isel(step=-1, drop=True)).median("seed"),
                "stable_lr_max": analysis.divergence_boundary(ds),
            }
        )
        .to_dataframe()
        .reset_index()
    )
    for col in ("median_steps", "q25_steps", "q75_steps"):
        table[col] = table[col].where(table[col] < never, np.inf)
    table.to_csv(out / "table.csv", index=False)
    (out / "table.md").write_text(_markdown(table, thr))
    _figure(ds, best, steps, thr, out)
    blog_manual = blog_descent()
    blog_sigjax = blog_engine()
    blog = {
        "loss_start": float(blog_manual[0]),
        "loss_end": float(blog_manual[-1]),
        "loss_best_constant": float(np.var(blog_problem()[1])),
        "max_abs_diff_sigjax_vs_manual": float(np.max(np.abs(blog_manual - blog_sigjax))),
    }
    (out / "blog_example.json").write_text(json.dumps(blog, indent=2) + "\n")
    med = table.set_index(["activation", "depth"])["median_steps"]
    return {
        "loss_threshold": thr,
        "median_steps_to_threshold": {
            f"{a}/depth{d}": (None if np.isnan(v) else float(v)) for (a, d), v in med.items()
        },
        "blog_example": blog,
    }


def _markdown(table, thr: float) -> str:
    lines = [
        f"Steps to reach MSE ≤ {thr} at each setting's best learning rate "
        "(median [IQR] over seeds; '—' = not reached within the run).",
        "",
        "| activation | depth | best lr | median steps [IQR] | reached | loss@250 | final loss "
        "| ‖∇W₁‖/‖∇W_out‖ init → final | largest stable lr |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "—" if not np.isfinite(v) else f"{v:.0f}"  # noqa: E731
    for r in table.itertuples():
        lines.append(
            f"| {r.activation} | {r.depth} | {r.best_lr:.3g} | {fmt(r.median_steps)} "
            f"[{fmt(r.q25_steps)}, {fmt(r.q75_steps)}] | {r.reached:.0%} | {r.loss_at_250:.4f} "
            f"| {r.final_loss:.4f} | {r.grad_ratio_init:.3g} → {r.grad_ratio_final:.3g} "
            f"| {r.stable_lr_max:.3g} |"
        )
    return "\n".join(lines) + "\n"


def _figure(ds, best, steps, thr, out) -> None:
    depths = ds.depth.values
    fig, axes = plotting.subplots(len(depths), 3, size=(4.3, 3.0))
    for row, depth in enumerate(depths):
        sub = ds.sel(depth=depth)
        for i, act in enumerate(ds.activation.values):
            one = sub.sel(activation=act)
            lr = float(best.sel(activation=act, depth=depth))
            kw = {"color": plotting.color(str(act), i), "label": f"{act} (lr {lr:.2g})"}
            plotting.band(axes[row, 0], one.loss.sel(lr=lr), **kw)
            ratio = analysis.grad_ratio(one.sel(lr=lr))
            plotting.band(axes[row, 1], ratio, **kw)
            s = steps.sel(activation=act, depth=depth)
            med = plotting.finite_or(s.fillna(np.inf).median("seed"), np.nan)
            axes[row, 2].plot(ds.lr, med, "o-", color=kw["color"], label=str(act))
        never = [
            str(a)
            for a in ds.activation.values
            if not np.isfinite(
                steps.sel(activation=a, depth=depth).fillna(np.inf).median("seed")
            ).any()
        ]
        if never:
            axes[row, 2].text(
                0.03,
                0.03,
                "never reached: " + ", ".join(never),
                fontsize=7,
                transform=axes[row, 2].transAxes,
            )
        axes[row, 0].axhline(thr, color="k", lw=0.8, ls=":")
        axes[row, 0].set(yscale="log", ylabel=f"depth {depth}\ntraining MSE")
        axes[row, 1].axhline(1.0, color="k", lw=0.8, ls=":")
        axes[row, 1].set(yscale="log", ylabel="‖∇W₁‖ / ‖∇W_out‖")
        axes[row, 2].set(xscale="log", ylabel=f"median steps to MSE ≤ {thr}")
        if np.any(steps.sel(depth=depth) > 0):  # a log axis needs a positive value
            axes[row, 2].set_yscale("log")
        axes[row, 0].legend(fontsize=7)
    axes[0, 0].set_title("loss at best lr (median, 10–90 % of seeds)")
    axes[0, 1].set_title("gradient ratio first / output layer")
    axes[0, 2].set_title("steps to threshold vs learning rate")
    for ax in axes[-1, :2]:
        ax.set_xlabel("step")
    axes[-1, 2].set_xlabel("learning rate")
    fig.tight_layout()
    plotting.save(fig, out, "convergence")

    deep = ds.sel(depth=depths.max())
    fig, axes = plotting.subplots(1, len(deep.activation), size=(3.6, 3.0), sharey=True)
    for ax, act in zip(axes[0], deep.activation.values, strict=True):
        one = deep.sel(activation=act, lr=float(best.sel(activation=act, depth=depths.max())))
        n = int(one.n_layers.max())
        cmap = plotting.plt.get_cmap("viridis")
        for layer in range(1, n + 1):
            g = one.grad_norm.sel(layer=layer).median("seed")
            ax.plot(one.step, g, color=cmap((layer - 1) / max(n - 1, 1)), label=f"layer {layer}")
        ax.set(yscale="log", title=str(act), xlabel="step")
    axes[0, 0].set_ylabel(f"median ‖∂L/∂W_l‖ (depth {depths.max()})")
    axes[0, -1].legend(fontsize=6)
    fig.tight_layout()
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
