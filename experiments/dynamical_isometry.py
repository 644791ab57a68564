"""Pennington, Schoenholz & Ganguli (NeurIPS 2017), "Resurrecting the sigmoid in deep learning
through dynamical isometry: theory and practice".

Part 1, spectra. The input–output Jacobian of a depth-L net, J = ∂x^L/∂x^0 = Π_l W_l D_l
(row-vector convention, D_l = diag φ'(h^l)), at initialisation, for Gaussian and orthogonal
weights, each activation on its critical line χ₁ = 1 (σ_w², σ_b² from `sigjax.theory`) at a
small q* where it has one, the input drawn so that the first pre-activations already have
variance q*. Width max(128, model.width), depths 2, 4, … up to max(128, the deepest trained
net); the product of per-layer factors of one deep net gives the Jacobians of all its prefixes
at once. The whole density of the squared singular values is compared with the
free-probability prediction S_{JJᵀ} = Π_l S_{WᵀW} S_{D_l²} (`sigjax.theory.free_probability`), by
the Kolmogorov–Smirnov distance and in a figure; its variance is

    Var λ = L (μ₂/μ₁² − 1 − s₁),   μ_k = E[φ'(h)^{2k}], h ~ N(0, q*),

with s₁ = −1 for Gaussian and 0 for orthogonal weights. ReLU (μ₂/μ₁² = 2) has no isometric
regime, nor has the logistic sigmoid with i.i.d. biases (its mean of ½ puts its only critical
point at q* ≈ 46); with the biases b_l = c_l − ½·1ᵀW_l (l ≥ 2) it is the centred-sigmoid net
exactly (σ(z) = ½ + (σ(z) − ½)), a case of its own here.

Part 2, training speed. Steps until the training loss (on 1000 fixed training examples) first
reaches a threshold, against depth, for orthogonal vs Gaussian weights: tanh on its critical
line at q* = 1/64 and ReLU at He init (σ_w² = 2, σ_b² = 0, q* = 1), SGD with the learning rate
swept per depth, on MNIST-1D with its inputs scaled per activation and init scheme so that the
first layer's pre-activations have variance q* (`input_scale`; the recorded metric `preact_q`
checks every layer at init). Every (activation, scheme) runs through `sigjax.engine.sweep` with its
own scaled data, one compiled program per depth. The quick setting (the default) is width 64,
depths 2/8/32, 600 steps logged every 5, 5 seeds; `--full` is width 256, depths 2 to 256, 5000
steps, more rates and seeds (a GPU's worth).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl
import xarray as xr

from experiments import _extra
from sigjax import analysis, config, theory
from sigjax import data as data_lib
from sigjax.analysis import plotting
from sigjax.config import Config
from sigjax.engine import checkpoint, grid, metrics, sweep
from sigjax.errors import UserError
from sigjax.nn import activations, initializers, models
from sigjax.study import Study
from sigjax.theory import free_probability as fp
from sigjax.theory import numerics as nm

SMALL_Q = 1.0 / 64.0  # Pennington et al.'s small q*
SHIFTED = "sigmoid, b = c − ½·1ᵀW"


class Case(NamedTuple):
    """A spectra case: label, activation, target q* (None: σ_b² = 0; ReLU: He init with q¹ = 1)
    and whether layer l ≥ 2's biases are shifted by −½·1ᵀW_l (the sigmoid net that equals the
    centred-sigmoid one: it takes the centred sigmoid's critical point and D² law)."""

    label: str
    activation: str
    q_target: float | None
    bias_shift: bool = False


CASES = (
    Case("relu", "relu", None),
    Case("tanh q*=1/64", "tanh", SMALL_Q),
    Case("tanh q*=1", "tanh", 1.0),
    Case("erf q*=1/64", "erf", SMALL_Q),
    Case("centred sigmoid q*=1/64", "centred_sigmoid", SMALL_Q),
    Case("sigmoid (q*≈46)", "sigmoid", None),
    Case(SHIFTED, "sigmoid", SMALL_Q, True),
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


def case_params(case: Case) -> tuple[float, float, float]:
    """(σ_w², σ_b², q*) of a spectra case (a shifted sigmoid takes the centred sigmoid's)."""
    return critical_params(theory_activation(case), case.q_target)


def theory_activation(case: Case) -> str:
    """The activation whose D² law the case's prediction uses (σ' = (σ − ½)')."""
    return "centred_sigmoid" if case.bias_shift else case.activation


def sigmoid_biases(kernels: jax.Array, biases: jax.Array) -> jax.Array:
    """Biases (L, N) under which a sigmoid net equals the centred-sigmoid net (kernels (L, N, N),
    biases (L, N)) exactly: b_1 = c_1 and b_l = c_l − ½·1ᵀW_l for l ≥ 2 (row convention), since
    then every pre-activation is the same and x^l = ½ + (σ(h^l) − ½). Not i.i.d.: each b_l is a
    sum of its layer's weights (variance σ_w²/4 for either init scheme)."""
    shift = 0.5 * kernels.sum(axis=1)  # (L, N): ½ Σ_i W_l[i, j]
    return biases - shift.at[0].set(0.0)


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
def _prefix_jacobians(w, b, z0, sigma_w2, sigma_b2, x_var, which, shift, *, names, record):
    """The Jacobians of the prefixes of depths `record` of the net (√σ_w² w, √σ_b² b) at the
    input √x_var z0; the activation is names[which] and `shift` (a traced bool) replaces the
    biases by `sigmoid_biases` (traced switches: one compiled program serves every case)."""
    fns = [activations.get(n).fn for n in names]
    w, b = w * jnp.sqrt(sigma_w2), b * jnp.sqrt(sigma_b2)
    jacs = layer_jacobians(
        w,
        jnp.where(shift, sigmoid_biases(w, b), b),
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


def theory_depths(depths) -> tuple[int, ...]:
    """The spectra depths the free-probability density is computed at: 2, 8, 32, the deepest."""
    depths = tuple(int(d) for d in depths)
    return tuple(d for d in depths if d in (depths[0], 8, 32, depths[-1]))


THEORY_POINTS = 120  # λ points per predicted density


def predicted(sv2: np.ndarray, law: fp.Law, sigma_w2: float, depth: int, weights: str):
    """(λ grid, predicted density ρ(λ) of λ(JJᵀ), KS distance to the sample sv2). The grid is
    half log-spaced over the sample's range ×/÷ 2 (the tails, and above the spectrum: the
    predicted CDF is one minus the mass above) and half linear from the sample's 0.5 %
    quantile to a quarter of that span above its largest value (the bulk and the upper edge
    of a narrow spectrum)."""
    finite = np.sort(sv2[np.isfinite(sv2)])
    top = float(finite[-1])
    lo = max(float(finite[0]) / 2.0, top * 1e-14, 1e-300)
    half = THEORY_POINTS // 2
    q_lo = float(np.quantile(finite, 0.005))
    bulk = np.linspace(q_lo, top + 0.25 * (top - q_lo), THEORY_POINTS - half)
    lam = np.unique(np.concatenate([np.geomspace(lo, top * 2.0, half), bulk[bulk > 0]]))
    lam = np.concatenate([lam, np.full(THEORY_POINTS - lam.size, np.nan)])  # a fixed size
    ok = np.isfinite(lam)
    rho = np.full(lam.shape, np.nan)
    rho[ok] = fp.density(lam[ok], law, sigma_w2, depth, weights)
    emp = np.searchsorted(finite, lam[ok], side="right") / finite.size
    good = np.isfinite(rho[ok]).all()
    ks = float(np.max(np.abs(fp.cdf(lam[ok], rho[ok]) - emp))) if good else np.nan
    return lam, rho, ks


def spectra(width: int, depths, seeds, cases=CASES, schemes=SPEC_SCHEMES) -> xr.Dataset:
    """Squared singular values of J for every case × scheme × depth, pooled over one net per
    seed (a net of the largest depth gives every smaller depth as a prefix), with the
    free-probability density and its KS distance to them at `theory_depths`."""
    cases = tuple(Case(*c) for c in cases)
    depths = tuple(int(d) for d in depths)
    n = len(seeds) * width
    sv2 = np.full((len(cases), len(schemes), len(depths), n), np.nan)
    names = tuple(dict.fromkeys(c.activation for c in cases))
    params = [case_params(c) for c in cases]
    jacs = {}
    for si, scheme in enumerate(schemes):
        for k, seed in enumerate(seeds):
            key = jax.random.fold_in(jax.random.key(int(seed)), si)
            net = draw_net(key, scheme=scheme, depth=max(depths), width=width)
            for ci, case in enumerate(cases):
                w2, b2, q = params[ci]
                x_var = (q - b2) / w2  # the first pre-activations then have variance q*
                jacs[ci, si, k] = _prefix_jacobians(
                    *net,
                    w2,
                    b2,
                    x_var,
                    names.index(case.activation),
                    case.bias_shift,
                    names=names,
                    record=depths,
                )
    # One BLAS thread: OpenBLAS's idle workers otherwise spin against XLA's on a small CPU
    # (interleaved, the two ran ten times slower here).
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        for (ci, si, k), jac in jacs.items():
            s = np.linalg.svd(np.asarray(jac, np.float64), compute_uv=False)
            sv2[ci, si, :, k * width : (k + 1) * width] = s**2
    tdepths = theory_depths(depths)
    shape = (len(cases), len(schemes), len(tdepths))
    lam, dens, ks = (
        np.full(shape + (THEORY_POINTS,), np.nan),
        np.full(shape + (THEORY_POINTS,), np.nan),
        np.full(shape, np.nan),
    )
    for ci, case in enumerate(cases):
        law = fp.d2_law(theory_activation(case), params[ci][2])
        for si, scheme in enumerate(schemes):
            for ti, d in enumerate(tdepths):
                sample = sv2[ci, si, depths.index(d)]
                lam[ci, si, ti], dens[ci, si, ti], ks[ci, si, ti] = predicted(
                    sample, law, params[ci][0], d, scheme
                )
    theory_var = np.array(
        [
            [theory_variance(theory_activation(c), params[ci][2], sch, depths) for sch in schemes]
            for ci, c in enumerate(cases)
        ]
    )
    tdims = ("case", "spec_scheme", "theory_depth")
    return xr.Dataset(
        {
            "sv2": (("case", "spec_scheme", "spec_depth", "sample"), sv2),
            "sv2_var_theory": (("case", "spec_scheme", "spec_depth"), theory_var),
            "sv2_theory_lam": ((*tdims, "theory_point"), lam),
            "sv2_theory_density": ((*tdims, "theory_point"), dens),
            "sv2_theory_ks": (tdims, ks),
            "case_sigma_w2": ("case", [p[0] for p in params]),
            "case_sigma_b2": ("case", [p[1] for p in params]),
            "case_q_star": ("case", [p[2] for p in params]),
            "case_activation": ("case", [c.activation for c in cases]),
            "case_bias_shift": ("case", [c.bias_shift for c in cases]),
        },
        coords={
            "case": [c.label for c in cases],
            "spec_scheme": list(schemes),
            "spec_depth": list(depths),
            "theory_depth": list(tdepths),
            "sample": np.arange(n),
        },
    )


# ----------------------------------------------------------------- training speed

TRAIN_Q_STAR = {"tanh": SMALL_Q}  # activations trained on their critical line at this q*
Q_METRIC = "preact_q"  # recorded per layer: the mean squared pre-activation


def preact_q(ctx: metrics.Context) -> jax.Array:
    """(n_layers,) mean of z_l² over the batch and units: the empirical q of every layer (at
    step 0, the initial net on its first batch)."""
    return jnp.stack([jnp.mean(z**2) for z in ctx.inter.pre])


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
        "train.log_every": 5,
        "train.loss_threshold": 1.75,
    },
)
GRID = {
    "model.activation": ("tanh", "relu"),
    "init.scheme": SPEC_SCHEMES,
    "model.depth": (2, 8, 32),
    "optim.lr": (0.01, 0.03, 0.1, 0.3),
    "seed": (0, 1, 2, 3, 4),
}
FULL = (
    {"model.width": 256, "train.steps": 5000, "train.log_every": 10},
    {
        "model.depth": (2, 4, 8, 16, 32, 64, 128, 256),
        "optim.lr": tuple(float(v) for v in np.logspace(-3, 0, 7)),
        "seed": tuple(range(8)),
    },
)
# Static keys a run's data scale depends on (with every data.* key): each combination trains
# through its own sweep, on its own scaled copy of the data.
PART_KEYS = ("model.activation", "init.scheme", "model.width")


def train_params(activation: str) -> tuple[float, float]:
    """(σ_w², σ_b²) for training: the critical line at TRAIN_Q_STAR, He init for ReLU."""
    w2, b2, _ = critical_params(activation, TRAIN_Q_STAR.get(activation))
    return w2, b2


def train_q_star(activation: str) -> float:
    """The q* a trained net of this activation starts at (1 for ReLU's He init)."""
    return critical_params(activation, TRAIN_Q_STAR.get(activation))[2]


def _group_cfg(cfg: Config) -> Config:
    """cfg with the activation's σ_w², σ_b² and the q metric (registered here) recorded."""
    metrics.register(Q_METRIC, preact_q, per_layer=True)
    w2, b2 = train_params(cfg.model.activation)
    listed = [n.strip() for n in cfg.train.metrics.split(",") if n.strip()]
    return config.replace(
        cfg,
        {
            "init.sigma_w2": w2,
            "init.sigma_b2": b2,
            "train.metrics": ",".join(dict.fromkeys([*listed, Q_METRIC])),
        },
    )


def input_scale(cfg: Config, x_train: np.ndarray) -> float:
    """The factor c for inputs c·x whose first pre-activations have mean variance q*.

    Layer 1 computes h = x W + b with Var W_ij = σ_w²·v (v = `initializers.kernel_variance` of
    the scheme: 1/n_in for Gaussian, 1/max(n_in, width) for a semi-orthogonal W, whose rows are
    orthonormal when n_in < width) and Var b = σ_b², so over the weights
    E[h_j²] = σ_w² v Σ_i x_i² + σ_b²; averaged over the training set that is q* when
    mean_x Σ_i x_i² = (q* − σ_b²)/(σ_w² v)."""
    w2, b2 = train_params(cfg.model.activation)
    q = train_q_star(cfg.model.activation)
    n_in = x_train.shape[1]
    v = initializers.kernel_variance(cfg.init.scheme, n_in, cfg.model.width)
    target = (q - b2) / (w2 * v)
    return float(np.sqrt(target / np.mean(np.sum(np.asarray(x_train, np.float64) ** 2, 1))))


def make_data(cfg: Config) -> data_lib.Data:
    """The training set scaled by `input_scale`, with its first TRAIN_EVAL examples in the
    "test" slot: every logged step then records the loss on those fixed training examples."""
    full = data_lib.load(cfg.data)
    c = input_scale(cfg, np.asarray(full.x_train))
    x = full.x_train * c
    n = min(TRAIN_EVAL, x.shape[0])
    return data_lib.from_arrays(
        x, full.y_train, x[:n], full.y_train[:n], task="classification", n_classes=full.n_classes
    )


def _part_axis(a: grid.Axis) -> bool:
    keys = (a.key, *(k for k, _ in a.zipped))
    return any(k in PART_KEYS or k.startswith("data.") for k in keys)


def _part_store(store: checkpoint.Store | None, i: int) -> checkpoint.Store | None:
    """Part i's own checkpoint in a subdirectory (same fingerprint); a fresh run's directory
    is new, so a part checkpoint found there belongs to the run being resumed."""
    if store is None:
        return None
    sub = checkpoint.Store(store.dir / f"part-{i}", store.fp)
    sub.open(resume=sub.manifest.exists())
    return sub


def train_sweep(cfg: Config, axes, progress: bool = False, store=None) -> xr.Dataset:
    """The training grid: one `sweep.run` per combination of the PART_KEYS / data axes (its
    own scaled data, σ_w², σ_b² and the q metric), the parts stacked along their dims.
    `loss` is the minibatch loss, `train_eval_loss` / `_accuracy` those on the fixed examples."""
    outer = [a for a in axes if _part_axis(a)]
    inner = [a for a in axes if not _part_axis(a)]
    parts = []
    for i, g in enumerate(grid.groups(cfg, outer)):
        gcfg = _group_cfg(g.cfg)
        ds = sweep.run(
            gcfg, inner, data=make_data(gcfg), progress=progress, store=_part_store(store, i)
        )
        ds = ds.expand_dims({a.dim: [a.values[j]] for a, j in zip(outer, g.index, strict=True)})
        parts.append(ds)
    shape = [len(a.values) for a in outer]

    def nest(items, shape):
        if not shape:
            return items[0]
        k = len(items) // shape[0]
        return [nest(items[j * k : (j + 1) * k], shape[1:]) for j in range(shape[0])]

    out = (
        xr.combine_nested(nest(parts, shape), concat_dim=[a.dim for a in outer])
        if outer
        else parts[0]
    )
    # the layout the report and earlier results use: (…, depth, scheme, dynamic dims…)
    first = [a.dim for a in outer if a.dim != "scheme"] + [a.dim for a in inner if not a.dynamic]
    first += ["scheme"] if "scheme" in out.dims else []
    out = out.transpose(*first, ...)
    out.attrs = {
        **parts[0].attrs,
        "config": config.to_json(cfg),
        "grid": json.dumps([[a.key, list(a.values)] for a in axes]),
        "wall_time_s": sum(float(p.attrs.get("wall_time_s", 0.0)) for p in parts),
    }
    return out.rename({"test_loss": "train_eval_loss", "test_accuracy": "train_eval_accuracy"})


def compute(cfg: Config, axes, progress: bool, store) -> xr.Dataset:
    """The spectra (seconds to a minute), then the training sweep (see the module docstring)."""
    if any(k.startswith("init.sigma") for a in axes for k in (a.key, *(z for z, _ in a.zipped))):
        raise UserError("dynamical_isometry sets init.sigma_w2 / init.sigma_b2 per activation")
    depth_axis = next((a for a in axes if a.key == "model.depth"), None)
    max_depth = max(depth_axis.values) if depth_axis else cfg.model.depth
    seed_axis = next((a for a in axes if a.key == "seed"), None)
    seeds = seed_axis.values if seed_axis else (cfg.seed,)
    spec = spectra(spectra_width(cfg.model.width), spectra_depths(max_depth), seeds[:3])
    ds = train_sweep(cfg, axes, progress, store)
    acts = ds.activation.values.tolist() if "activation" in ds.dims else [cfg.model.activation]
    w = [train_params(a) for a in acts]
    extra = xr.Dataset(
        {
            "train_sigma_w2": ("train_activation", [v[0] for v in w]),
            "train_sigma_b2": ("train_activation", [v[1] for v in w]),
            "train_q_star": ("train_activation", [train_q_star(a) for a in acts]),
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


BOOT = 2000  # bootstrap resamples of the seeds
LEVEL = 0.95  # the intervals' coverage


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
    view = _steps_view(ds)
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
    _fig_spectra(ds, out)
    _fig_density(ds, out)
    _fig_spread(ds, sp, out)
    _fig_training(ds, tt, thr, out, settings, note)
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


def _fig_density(ds, out):
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
        _log_ticks(ax, one.depth.values)
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


STUDY = Study(
    name="dynamical_isometry",
    description=(
        "Pennington et al. 2017: Jacobian singular-value spectra at init (Gaussian vs orthogonal, "
        "relu/tanh/erf/sigmoid on the critical line, depth 2-128) against the free-probability "
        "density, and steps to a training-loss threshold vs depth from q*; table.md, figures/"
    ),
    config=CONFIG,
    grid=GRID,
    report=report,
    compute=compute,
    presets={"quick": ({}, {}), "full": FULL},
)
