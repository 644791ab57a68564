"""The dynamical_isometry study's spectra: the critical points of each case, the layer
Jacobians of random nets, their squared singular values against the free-probability
density (`sigjax.theory.free_probability`), compiled once for every case."""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import threadpoolctl
import xarray as xr

from sigjax import theory
from sigjax.nn import activations, initializers, models
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
