"""Pennington, Schoenholz & Ganguli (NeurIPS 2017), "Resurrecting the sigmoid in deep learning
through dynamical isometry: theory and practice".

Part 1, spectra. The input–output Jacobian of a depth-L net, J = ∂x^L/∂x^0 = Π_l W_l D_l
(row-vector convention, D_l = diag φ'(h^l)), at initialisation, for Gaussian and orthogonal
weights, each activation on its critical line χ₁ = 1 (σ_w², σ_b² from `sigjax.theory`) at a
small q* where it has one, the input drawn so that the first pre-activations already have
variance q*. Width max(128, model.width), depths 2, 4, … up to max(128, the deepest trained
net); the product of per-layer factors of one deep net gives the Jacobians of all its prefixes
at once. The free-probability prediction for the variance of the squared singular values (the
eigenvalues λ of JJᵀ, mean χ₁^L = 1) is

    Var λ = L (μ₂/μ₁² − 1 − s₁),   μ_k = E[φ'(h)^{2k}], h ~ N(0, q*),

with s₁ = −1 for Gaussian and 0 for orthogonal weights: linear growth in depth either way,
with a slope that is tiny only for orthogonal weights and an activation whose φ'² barely varies
around q* (tanh, erf, the centred sigmoid at small q*). ReLU (μ₂/μ₁² = 2) has no such regime,
and neither has the plain sigmoid: its mean of ½ puts its only critical point at q* ≈ 46.

Part 2, training speed. Steps until the training loss (on 1000 fixed training examples) first
reaches a threshold, against depth, for orthogonal vs Gaussian weights: tanh on its critical
line at q* = 1/64 and ReLU at He init (σ_w² = 2, σ_b² = 0), SGD with the learning rate swept
per depth (every init scheme, learning rate and seed of one depth trains in one program), on
MNIST-1D. The quick setting (the default) is width 64, depths 2/8/32, 600 steps; `--full` is
width 256, depths 2 to 256, 5000 steps, more rates and seeds (a GPU's worth).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl
import xarray as xr

from experiments import _extra
from sigjax import (
    activations,
    analysis,
    config,
    initializers,
    models,
    plotting,
    probed_sweep,
    theory,
)
from sigjax import data as data_lib
from sigjax import theory_numerics as nm
from sigjax.config import Config
from sigjax.errors import UserError
from sigjax.study import Study

SMALL_Q = 1.0 / 64.0  # Pennington et al.'s small q*
# Spectra: (label, activation, target q*); None: σ_b² = 0 (ReLU: He init with q¹ = 1).
CASES = (
    ("relu", "relu", None),
    ("tanh q*=1/64", "tanh", SMALL_Q),
    ("tanh q*=1", "tanh", 1.0),
    ("erf q*=1/64", "erf", SMALL_Q),
    ("centred sigmoid q*=1/64", "centred_sigmoid", SMALL_Q),
    ("sigmoid (q*≈46)", "sigmoid", None),
)
SPEC_SCHEMES = ("gaussian", "orthogonal")
TRAIN_EVAL = 1000  # training examples on which the training loss is measured
MIN_SPECTRA_DEPTH = 128
MIN_SPECTRA_WIDTH = 128

# ----------------------------------------------------------------- critical points


def critical_params(activation: str, q_target: float | None) -> tuple[float, float, float]:
    """(σ_w², σ_b², q*) with χ₁ = 1: at q* = q_target where the critical line reaches it, else at
    σ_b² = 0 (the smallest q* on the line). ReLU: He init (2, 0) with q* = 1 (any q is fixed).

    On the critical line σ_w² E[φ'²] = 1 and q* = σ_w² E[φ²] + σ_b² (expectations at h ~ N(0, q*)),
    so a target q* gives σ_w² = 1/E[φ'²] and σ_b² = q* − E[φ²]/E[φ'²] directly; a negative σ_b²
    means the line never reaches that q* (the sigmoid: E[φ²]/E[φ'²] ≥ 4).
    """
    if activation == "relu":
        return 2.0, 0.0, 1.0
    if q_target is not None:
        p = nm.phi(activation)
        e_phi2 = float(nm.gauss_expect(lambda x: p.f(x) ** 2, q_target, p.kinks))
        e_dphi2 = float(nm.gauss_expect(lambda x: p.d1(x) ** 2, q_target, p.kinks))
        b2 = q_target - e_phi2 / e_dphi2
        if b2 >= 0:
            return 1.0 / e_dphi2, b2, float(q_target)
    w0, q0 = (float(v) for v in theory.critical_point(activation, 0.0))
    return w0, 0.0, q0


def moments(activation: str, q: float) -> tuple[float, float]:
    """μ₁ = E[φ'(h)²], μ₂ = E[φ'(h)⁴] for h ~ N(0, q)."""
    p = nm.phi(activation)
    m1 = float(nm.gauss_expect(lambda x: p.d1(x) ** 2, q, p.kinks))
    m2 = float(nm.gauss_expect(lambda x: p.d1(x) ** 4, q, p.kinks))
    return m1, m2


def theory_variance(activation: str, q: float, scheme: str, depth) -> np.ndarray:
    """Var λ(JJᵀ) = L (μ₂/μ₁² − 1 − s₁), s₁ = −1 (Gaussian) or 0 (orthogonal)."""
    m1, m2 = moments(activation, q)
    s1 = -1.0 if scheme == "gaussian" else 0.0
    return np.asarray(depth, float) * (m2 / m1**2 - 1.0 - s1)


# ----------------------------------------------------------------- Jacobians


def layer_jacobians(kernels, biases, x0, activation) -> jax.Array:
    """The Jacobians of every prefix of a square net: (L, N, N), entry l-1 being
    ∂x^l/∂x^0 = W_1 D_1 ⋯ W_l D_l (row convention, the transpose of `jax.jacfwd`'s).

    kernels (L, N, N) and biases (L, N) stacked over layers; h^l = x^{l-1} W_l + b_l,
    x^l = φ(h^l), D_l = diag φ'(h^l); `activation` is a registry name or an elementwise
    function. One `lax.scan` over layers.
    """
    fn = activations.get(activation).fn if isinstance(activation, str) else activation

    def body(carry, wb):
        jac, x = carry
        w, b = wb
        h = x @ w + b
        x, d = jax.jvp(fn, (h,), (jnp.ones_like(h),))
        jac = (jac @ w) * d[None, :]
        return (jac, x), jac

    eye = jnp.eye(x0.shape[-1], dtype=x0.dtype)
    return jax.lax.scan(body, (eye, x0), (kernels, biases))[1]


def stack_params(params: models.Params) -> tuple[jax.Array, jax.Array]:
    """(kernels (L, N, N), biases (L, N)) of a sigjax MLP whose layers are all N × N."""
    names = models.layer_names(params)
    return (
        jnp.stack([params[n]["kernel"] for n in names]),
        jnp.stack([params[n]["bias"] for n in names]),
    )


def jacobian(params: models.Params, x0: jax.Array, activation: str) -> jax.Array:
    """∂x^L/∂x^0 of a sigjax MLP with square layers and head_activation = activation."""
    return layer_jacobians(*stack_params(params), x0, activation)[-1]


@partial(jax.jit, static_argnames=("scheme", "depth", "width"))
def draw_net(key, *, scheme: str, depth: int, width: int):
    """Base kernels (L, N, N) of a sigjax init scheme, unit-variance biases (L, N) and a
    standard normal input (N,); a case scales them by its σ_w, σ_b and input scale. Every case
    of a (scheme, seed) shares these draws (common random numbers)."""
    keys = jax.random.split(key, depth + 1)
    init = initializers.get(scheme)

    def layer(k):
        kernel = init(jax.random.fold_in(k, 0), (width, width))
        return kernel, jax.random.normal(jax.random.fold_in(k, 1), (width,))

    w, b = jax.lax.map(layer, keys[:depth])  # not vmap: a batched QR compiles far slower
    return w, b, jax.random.normal(keys[-1], (width,))


@partial(jax.jit, static_argnames=("names", "record"))
def _prefix_jacobians(w, b, z0, sigma_w2, sigma_b2, x_var, which, *, names, record):
    """The Jacobians of the prefixes of depths `record` of the net (√σ_w² w, √σ_b² b) at the
    input √x_var z0; the activation is names[which] (a traced switch: one compiled program
    serves every case)."""
    fns = [activations.get(n).fn for n in names]
    jacs = layer_jacobians(
        w * jnp.sqrt(sigma_w2),
        b * jnp.sqrt(sigma_b2),
        z0 * jnp.sqrt(x_var),
        lambda h: jax.lax.switch(which, fns, h),
    )
    return jacs[jnp.asarray(record) - 1]


def spectra_width(width: int) -> int:
    """The spectra's width: the trained nets' width, at least MIN_SPECTRA_WIDTH."""
    return max(MIN_SPECTRA_WIDTH, int(width))


def spectra_depths(max_depth: int) -> tuple[int, ...]:
    """2, 4, 8, … up to max(MIN_SPECTRA_DEPTH, the deepest trained net)."""
    top = max(MIN_SPECTRA_DEPTH, int(max_depth))
    out, d = [], 2
    while d <= top:
        out.append(d)
        d *= 2
    return tuple(out)


def spectra(width: int, depths, seeds, cases=CASES, schemes=SPEC_SCHEMES) -> xr.Dataset:
    """Squared singular values of J for every case × scheme × depth, pooled over one net per
    seed (a net of the largest depth gives every smaller depth as a prefix)."""
    depths = tuple(int(d) for d in depths)
    n = len(seeds) * width
    sv2 = np.full((len(cases), len(schemes), len(depths), n), np.nan)
    names = tuple(dict.fromkeys(c[1] for c in cases))
    params = [critical_params(act, q_target) for _, act, q_target in cases]
    jacs = {}
    for si, scheme in enumerate(schemes):
        for k, seed in enumerate(seeds):
            key = jax.random.fold_in(jax.random.key(int(seed)), si)
            net = draw_net(key, scheme=scheme, depth=max(depths), width=width)
            for ci, (_, act, _) in enumerate(cases):
                w2, b2, q = params[ci]
                x_var = (q - b2) / w2  # the first pre-activations then have variance q*
                jacs[ci, si, k] = _prefix_jacobians(
                    *net, w2, b2, x_var, names.index(act), names=names, record=depths
                )
    # One BLAS thread: OpenBLAS's idle workers otherwise spin against XLA's on a small CPU
    # (interleaved, the two ran ten times slower here).
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        for (ci, si, k), jac in jacs.items():
            s = np.linalg.svd(np.asarray(jac, np.float64), compute_uv=False)
            sv2[ci, si, :, k * width : (k + 1) * width] = s**2
    labels = [c[0] for c in cases]
    theory_var = np.array(
        [
            [theory_variance(act, params[ci][2], sch, depths) for sch in schemes]
            for ci, (_, act, _) in enumerate(cases)
        ]
    )
    return xr.Dataset(
        {
            "sv2": (("case", "spec_scheme", "spec_depth", "sample"), sv2),
            "sv2_var_theory": (("case", "spec_scheme", "spec_depth"), theory_var),
            "case_sigma_w2": ("case", [p[0] for p in params]),
            "case_sigma_b2": ("case", [p[1] for p in params]),
            "case_q_star": ("case", [p[2] for p in params]),
            "case_activation": ("case", [c[1] for c in cases]),
        },
        coords={
            "case": labels,
            "spec_scheme": list(schemes),
            "spec_depth": list(depths),
            "sample": np.arange(n),
        },
    )


# ----------------------------------------------------------------- training speed

TRAIN_Q_STAR = {"tanh": SMALL_Q}  # activations trained on their critical line at this q*

CONFIG = config.replace(
    Config(),
    {
        "data.name": "mnist1d",
        "data.seed": 42,
        "model.width": 64,
        "model.depth": 8,
        "model.activation": "tanh",
        "model.head_activation": "identity",
        "init.scheme": "gaussian",
        "optim.name": "sgd",
        "train.loss": "softmax_ce",
        "train.batch_size": 32,
        "train.steps": 600,
        "train.log_every": 20,
        "train.loss_threshold": 1.75,
    },
)
GRID = {
    "model.activation": ("tanh", "relu"),
    "init.scheme": SPEC_SCHEMES,
    "model.depth": (2, 8, 32),
    "optim.lr": (0.01, 0.03, 0.1, 0.3),
    "seed": (0, 1, 2),
}
FULL = (
    {"model.width": 256, "train.steps": 5000, "train.log_every": 50},
    {
        "model.depth": (2, 4, 8, 16, 32, 64, 128, 256),
        "optim.lr": tuple(float(v) for v in np.logspace(-3, 0, 7)),
        "seed": tuple(range(8)),
    },
)


def train_params(activation: str) -> tuple[float, float]:
    """(σ_w², σ_b²) for training: the critical line at TRAIN_Q_STAR, He init for ReLU."""
    w2, b2, _ = critical_params(activation, TRAIN_Q_STAR.get(activation))
    return w2, b2


def _group_cfg(cfg: Config) -> Config:
    w2, b2 = train_params(cfg.model.activation)
    return config.replace(cfg, {"init.sigma_w2": w2, "init.sigma_b2": b2})


def make_data(cfg: Config):
    """The training set, with its first TRAIN_EVAL examples in the "test" slot: every logged
    step then records the loss on those fixed training examples."""
    full = data_lib.load(cfg.data)
    n = min(TRAIN_EVAL, full.x_train.shape[0])
    data = data_lib.Data(
        x_train=full.x_train,
        y_train=full.y_train,
        x_test=full.x_train[:n],
        y_test=full.y_train[:n],
        n_classes=full.n_classes,
    )
    return data, {}


def compute(cfg: Config, axes, progress: bool, store) -> xr.Dataset:
    """The spectra (a few seconds), then the training sweep (see the module docstring)."""
    if any(a.key.startswith("init.sigma") for a in axes):
        raise UserError("dynamical_isometry sets init.sigma_w2 / init.sigma_b2 per activation")
    depth_axis = next((a for a in axes if a.key == "model.depth"), None)
    max_depth = max(depth_axis.values) if depth_axis else cfg.model.depth
    seed_axis = next((a for a in axes if a.key == "seed"), None)
    seeds = seed_axis.values if seed_axis else (cfg.seed,)
    spec = spectra(spectra_width(cfg.model.width), spectra_depths(max_depth), seeds)
    ds = probed_sweep.run_merged(
        cfg, axes, make_data=make_data, group_cfg=_group_cfg, progress=progress, store=store
    )
    ds = ds.rename({"test_loss": "train_eval_loss", "test_accuracy": "train_eval_accuracy"})
    acts = ds.activation.values.tolist() if "activation" in ds.dims else [cfg.model.activation]
    w = [train_params(a) for a in acts]
    extra = xr.Dataset(
        {
            "train_sigma_w2": ("train_activation", [v[0] for v in w]),
            "train_sigma_b2": ("train_activation", [v[1] for v in w]),
        },
        coords={"train_activation": acts},
    )
    out = xr.merge([ds, spec, extra], combine_attrs="override")
    out.attrs = {**ds.attrs, "spectra_width": spectra_width(cfg.model.width)}
    return out


# ----------------------------------------------------------------- report


def _steps_view(ds: xr.Dataset) -> xr.Dataset:
    """The training-sweep part with `loss` = the loss on the fixed training examples."""
    keep = [v for v in ds.data_vars if "step" in ds[v].dims or v in ("diverged_at", "n_layers")]
    view = ds[keep].drop_vars("loss").rename({"train_eval_loss": "loss"})
    return view


TRAIN_DIMS = ("activation", "scheme", "depth")  # the training part's own layout


def training_table(ds: xr.Dataset, thr: float) -> xr.Dataset:
    view = _steps_view(ds)
    best = analysis.best_lr(view, thr)
    steps = analysis.at_best_lr(analysis.steps_to_threshold(view, thr), best)
    never = np.inf
    s = steps.fillna(never)
    return xr.Dataset(
        {
            "best_lr": best,
            "median_steps": s.median("seed"),
            "q25_steps": s.quantile(0.25, "seed", method="nearest").drop_vars("quantile"),
            "q75_steps": s.quantile(0.75, "seed", method="nearest").drop_vars("quantile"),
            "reached": np.isfinite(s).mean("seed"),
            "final_loss": analysis.at_best_lr(analysis.final_loss(view), best).median("seed"),
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
    sp.to_dataframe().reset_index().to_csv(out / "spectra.csv", index=False)
    tt.drop_vars("lr", errors="ignore").to_dataframe().reset_index().to_csv(
        out / "training.csv", index=False
    )
    extra = _extra.extra_dims(tt.median_steps, TRAIN_DIMS)  # a user's added grid dims
    settings, note = _extra.figure_settings(tt, extra, loop=["activation"])
    (out / "table.md").write_text(_markdown(ds, sp, tt, thr, cfg, note))
    _fig_spectra(ds, out)
    _fig_spread(ds, sp, out)
    _fig_training(ds, tt, thr, out, settings, note)
    deepest = int(ds.spec_depth.max())
    fmt = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
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
            for c in ds.case.values.tolist()
            for s in ds.spec_scheme.values.tolist()
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
        "median_steps_to_threshold": {
            "/".join(
                [f"{c['activation']}/{c['scheme']}/depth{int(c['depth'])}"]
                + [f"{d}={_extra.value(c[d])}" for d in extra]
            ): fmt(float(tt.median_steps.sel(c)))
            for c in _extra.combos(tt, [*TRAIN_DIMS, *extra])
        }
        if all(d in tt.dims for d in TRAIN_DIMS)
        else {},
    }
    if note:
        head["figure_note"] = note
    (out / "headline.json").write_text(json.dumps(head, indent=2) + "\n")
    return head


def _markdown(ds, sp, tt, thr, cfg, note: str = "") -> str:
    depths = ds.spec_depth.values.tolist()
    show = [d for d in depths if d in (depths[0], 8, 32, depths[-1])]
    lines = [
        f"Variance of the squared singular values of J at init (width {ds.attrs['spectra_width']}, "
        f"{ds.sizes['sample']} values per cell), empirical [theory L(μ₂/μ₁² − 1 − s₁)]:",
        "",
        "| case | σ_w² | σ_b² | q* | weights | "
        + " | ".join(f"L={d}" for d in show)
        + f" | σ within 2× of 1 at L={depths[-1]} |",
        "|---|---|---|---|---|" + "---|" * (len(show) + 1),
    ]
    for c in ds.case.values.tolist():
        for s in ds.spec_scheme.values.tolist():
            cells = [
                f"{float(sp['var'].sel(case=c, spec_scheme=s, spec_depth=d)):.3g} "
                f"[{float(sp.var_theory.sel(case=c, spec_scheme=s, spec_depth=d)):.3g}]"
                for d in show
            ]
            within = float(sp.within_2x.sel(case=c, spec_scheme=s, spec_depth=depths[-1]))
            lines.append(
                f"| {c} | {float(ds.case_sigma_w2.sel(case=c)):.4g} "
                f"| {float(ds.case_sigma_b2.sel(case=c)):.3g} "
                f"| {float(ds.case_q_star.sel(case=c)):.3g} | {s} | "
                + " | ".join(cells)
                + f" | {within:.0%} |"
            )
    lines += [
        "",
        f"Steps until the loss on {TRAIN_EVAL} fixed training examples first reaches {thr} "
        "(median [IQR] over seeds at each setting's best learning rate; '—': not reached in "
        f"{cfg.train.steps} steps):",
        "",
    ]
    fmt = lambda v: "—" if not np.isfinite(v) else f"{v:.0f}"  # noqa: E731
    df = tt.drop_vars("lr", errors="ignore").to_dataframe().reset_index()
    dims = [d for d in tt.median_steps.dims]
    lines.append("| " + " | ".join(dims) + " | best lr | median steps [IQR] | reached |")
    lines.append("|---" * (len(dims) + 3) + "|")
    for r in df.itertuples():
        keys = " | ".join(str(getattr(r, d)) for d in dims)
        lines.append(
            f"| {keys} | {r.best_lr:.3g} | {fmt(r.median_steps)} [{fmt(r.q25_steps)}, "
            f"{fmt(r.q75_steps)}] | {r.reached:.0%} |"
        )
    if note:
        lines += ["", f"Note: {note}."]
    return "\n".join(lines) + "\n"


def _fig_spectra(ds, out):
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


def _log_ticks(ax, values, axis="x"):
    """Plain tick labels at `values` on a log axis (no minor labels)."""
    from matplotlib.ticker import NullFormatter

    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    set_ticks([float(v) for v in values], [f"{v:g}" for v in values])
    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_formatter(NullFormatter())


def _fig_spread(ds, sp, out):
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
        _log_ticks(ax, depths)
    axes[0, 0].set_ylabel("Var of squared singular values of J")
    axes[0, -1].legend(fontsize=7, title="dotted: L(μ₂/μ₁² − 1 − s₁)", title_fontsize=7)
    fig.tight_layout()
    plotting.save(fig, out, "spread")


def _fig_training(ds, tt, thr, out, settings=None, note: str = "") -> None:
    """Steps to threshold vs depth (top) and the deepest nets' loss (bottom), a column per
    activation and extra setting (`settings`: dicts to select with; default every activation)."""
    if settings is None:
        settings = _extra.combos(tt, ["activation"] if "activation" in tt.dims else [])
    fig, axes = plotting.subplots(2, len(settings), size=(4.0, 3.0))
    view = _steps_view(ds)
    for j, setting in enumerate(settings):
        one = tt.sel(setting)
        vone = view.sel(setting)
        ax = axes[0, j]
        top = float(ds.step.values[-1]) * 1.3
        for i, sc in enumerate(one.scheme.values.tolist()):
            r = one.sel(scheme=sc)
            d = r.depth.values
            med, lo, hi = (
                plotting.finite_or(r[k], top) for k in ("median_steps", "q25_steps", "q75_steps")
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
        _log_ticks(ax, one.depth.values)
        ax.set_ylabel(f"steps to training loss ≤ {thr}\n(median, IQR over seeds)")
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


STUDY = Study(
    name="dynamical_isometry",
    description=(
        "Pennington et al. 2017: Jacobian singular-value spectra at init (Gaussian vs orthogonal, "
        "relu/tanh/erf/sigmoid on the critical line, depth 2-128) and steps to a training-loss "
        "threshold vs depth; table.md, figures/"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    compute=compute,
    presets={"quick": ({}, {}), "full": FULL},
)
