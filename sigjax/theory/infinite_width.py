"""Infinite-width NNGP and neural tangent kernels of MLPs (Neal 1996; Lee et al. 2018; Jacot et
al. 2018; Arora et al. 2019), for every activation in the registry.

Network (NTK parameterization, the convention of neural-tangents' `stax.Dense(W_std, b_std,
parameterization='ntk')`, W_std² = σ_w², b_std² = σ_b²): `depth` hidden layers of φ and a
linear readout; layer l = 0..depth has fan-in m_l (m_0 = d, the input's features) and computes

    z⁰ = (σ_w/√m_0) W⁰ x + σ_b b⁰,   zˡ = (σ_w/√m_l) Wˡ φ(zˡ⁻¹) + σ_b bˡ,   f = z^depth,

every entry of W, b ~ N(0, 1) and trained as it is. As the widths m_l (l ≥ 1) → ∞,

    Σ⁰ = σ_w² x·x′/d + σ_b²,                        Θ⁰ = Σ⁰,
    Σˡ = σ_w² E[φ(u)φ(v)] + σ_b²,                   Θˡ = Σˡ + σ_w² E[φ′(u)φ′(v)] Θˡ⁻¹,

with (u, v) ~ N(0, [[Σˡ⁻¹(x,x), Σˡ⁻¹(x,x′)], [Σˡ⁻¹(x,x′), Σˡ⁻¹(x′,x′)]]); the NNGP is Σ^depth
(the covariance of f(x), f(x′) over random networks) and the NTK Θ^depth (the limit of
Σ_θ ∂f(x)/∂θ ∂f(x′)/∂θ, constant during training in the lazy regime). Both are float64.

Standard parameterization (the sigjax models: zˡ = Vˡ φ(zˡ⁻¹) + cˡ, V ~ N(0, σ_w²/m_l),
c ~ N(0, σ_b²), ordinary gradients on V and c). With V = (σ_w/√m_l) W and c = σ_b b the two
networks are the same function at initialization, so they have the same Σˡ at every layer and
the same NNGP. Their tangent kernels differ: ∂f/∂V = (√m_l/σ_w) ∂f/∂W and ∂f/∂c = (1/σ_b)
∂f/∂b. Write Kˡ for the kernel of layer l's input (K⁰ = x·x′/d, Kˡ = E[φ(u)φ(v)] under Σˡ⁻¹,
so Σˡ = σ_w² Kˡ + σ_b²) and Bˡ = Π_{k=l+1}^{depth} σ_w² E[φ′(u)φ′(v)] under Σᵏ⁻¹ for the
backward factor from layer l to the readout. Then, summing over l = 0..depth,

    Θ_ntk = Σ_l (σ_w² Kˡ + σ_b²) Bˡ,        Θ_std = Σ_l (m_l Kˡ + 1) Bˡ :

each layer's weight term is multiplied by m_l/σ_w² and its bias term by 1/σ_b². Θ_std grows
linearly with the width; `parameterization="standard"` gives it at given hidden widths, to
leading order (neural-tangents' `parameterization='standard'` rule). Gradient descent on (V, c)
at rate η is gradient descent on (W, b) at per-layer rates η m_l/σ_w² (weights) and η/σ_b²
(biases): the same trajectory. So an NTK-parameterized network trained at rate η_ntk is a
standard one whose weights of fan-in m train at η_ntk σ_w²/m and whose biases train at
η_ntk σ_b². With one rate η for every layer, as sigjax trains, the linearized dynamics are those
of Θ_std at rate η; Θ_std = (n/σ_w²) Θ_ntk holds only where every layer has fan-in n and the
bias terms vanish. At hidden width n ≫ d the first layer's and the biases' terms are O(d/n) and
O(1/n) of the rest, so Θ_std ≈ (n/σ_w²)(Θ_ntk − Σ⁰B⁰ − σ_b² Σ_{l≥1} Bˡ): a standard network at
rate η behaves like an NTK-parameterized one at η n/σ_w² whose first layer and biases are frozen.

Rates. For the MSE as sigjax defines it, L = mean over N examples and k outputs of (f − y)²,
linearized gradient descent gives f_{t+1} − y = (I − (2η/(N k)) Θ_std)(f_t − y) on the training
set: the residual's component along Θ's eigenvector i shrinks by (1 − 2ηλ_i/(N k)) per step
(rate ≈ 2ηλ_i/(N k) for small steps; that mode's share of the loss decays at twice the rate),
and descent is stable while η < N k / λ_max.

Quadrature: `theory_numerics.nodes` (composite Gauss–Legendre with panel edges at φ's kinks and
features) on the nested form u ~ N(0, Σ₁₁), v | u ~ N(Σ₁₂ u/Σ₁₁, Σ₂₂ − Σ₁₂²/Σ₁₁), all pairs
(i, j) at once in chunks; the diagonal Σ(x, x) by the one-dimensional rule. A pair costs some
10⁵–10⁶ node evaluations per layer (tens of ms), so n inputs cost ~n²/2 of them per layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sigjax.errors import UserError
from sigjax.theory import numerics as nm
from sigjax.theory.numerics import Phi, phi

PARAMETERIZATIONS = ("ntk", "standard")
_CHUNK_POINTS = 2**21  # node-grid points per chunk of pairs (bounds the memory of one chunk)


def kernels(
    activation: str,
    depth: int,
    sigma_w2: float,
    sigma_b2: float,
    x1: np.ndarray,
    x2: np.ndarray | None = None,
    *,
    parameterization: str = "ntk",
    width: int | Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(NNGP, NTK) of `depth` hidden layers of `activation` plus a linear readout, (n1, n2) each.

    x1 (n1, d), x2 (n2, d) (None: x1 against itself; the result is then exactly symmetric).
    parameterization "ntk" (default): the NTK parameterization's kernels (module docstring).
    "standard": the same NNGP and the standard-parameterization tangent kernel Θ_std at hidden
    widths `width` (one int for every hidden layer, or `depth` ints), to leading order in 1/width.
    """
    p = phi(activation)
    w, b = _scalar_variance("sigma_w2", sigma_w2), _scalar_variance("sigma_b2", sigma_b2)
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise UserError(f"depth must be an integer >= 0, got {depth!r}")
    widths = _widths(parameterization, width, int(depth))
    a = _inputs("x1", x1)
    same = x2 is None
    c = a if same else _inputs("x2", x2)
    if c.shape[1] != a.shape[1]:
        raise UserError(f"x2 has {c.shape[1]} features per row but x1 has {a.shape[1]}")
    d = a.shape[1]
    q1 = w * np.sum(a * a, axis=1) / d + b  # Σ(x, x), (n1,)
    q2 = q1 if same else w * np.sum(c * c, axis=1) / d + b
    dot = a @ c.T  # x·x′, (n1, n2)
    s = w * dot / d + b  # Σ⁰
    ntk = s.copy() if widths is None else dot + 1.0  # Θ⁰ (standard: d·K⁰ + 1 = x·x′ + 1)
    if same:
        s[np.diag_indices_from(s)] = q1  # the same numbers the diagonal recursion carries
    for layer in range(depth):
        k, kd = _pair_kernels(p, q1, q2, s, same)  # E[φφ], E[φ′φ′] under Σ^layer
        s = w * k + b
        ntk = (s if widths is None else widths[layer] * k + 1.0) + w * kd * ntk
        q1 = w * nm.gauss_expect(lambda x: p.f(x) ** 2, q1, p.kinks) + b
        q2 = q1 if same else w * nm.gauss_expect(lambda x: p.f(x) ** 2, q2, p.kinks) + b
    return s, ntk


def _scalar_variance(name: str, v) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number (a variance), got {v!r}") from None
    if not np.isfinite(x) or x < 0:
        raise UserError(f"{name} must be a finite variance >= 0, got {x:g}")
    return x


def _inputs(name: str, x) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a numeric (n, d) array") from None
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise UserError(f"{name} must be an (n, d) array with n, d >= 1, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise UserError(f"{name} holds a non-finite value")
    return a


def _widths(parameterization: str, width, depth: int) -> list[int] | None:
    """None for the NTK parameterization; the `depth` hidden widths for the standard one."""
    if parameterization not in PARAMETERIZATIONS:
        raise UserError(
            f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
            f"got {parameterization!r}"
        )
    if parameterization == "ntk":
        if width is not None:
            raise UserError("width applies to parameterization='standard' only")
        return None
    if width is None:
        raise UserError("parameterization='standard' needs the hidden width(s): width=...")
    ws = [width] * depth if np.ndim(width) == 0 else list(width)
    if len(ws) != depth or not all(
        isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in ws
    ):
        raise UserError(f"width must be an int >= 1 or {depth} of them, got {width!r}")
    return [int(n) for n in ws]


def _pair_kernels(
    p: Phi, q1: np.ndarray, q2: np.ndarray, s: np.ndarray, same: bool
) -> tuple[np.ndarray, np.ndarray]:
    """E[φ(u)φ(v)] and E[φ′(u)φ′(v)], (n1, n2) each, (u, v) ~ N(0, [[q1_i, s_ij], [s_ij, q2_j]]).

    same: q1 = q2 and s symmetric; the upper triangle is integrated and mirrored, the diagonal
    (v = u) by the one-dimensional rule.
    """
    n1, n2 = s.shape
    if same:
        i, j = np.triu_indices(n1, k=1)
    else:
        i, j = (m.ravel() for m in np.indices((n1, n2)))
    k, kd = _bivariate(p, q1[i], q2[j], s[i, j])
    out, outd = np.empty((n1, n2)), np.empty((n1, n2))
    out[i, j], outd[i, j] = k, kd
    if same:
        out[j, i], outd[j, i] = k, kd
        diag = np.diag_indices(n1)
        out[diag] = nm.gauss_expect(lambda x: p.f(x) ** 2, q1, p.kinks)
        outd[diag] = nm.gauss_expect(lambda x: p.d1(x) ** 2, q1, p.kinks)
    return out, outd


def _bivariate(
    p: Phi, q1: np.ndarray, q2: np.ndarray, s: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """E[φ(u)φ(v)], E[φ′(u)φ′(v)] for P pairs (arrays (P,)): the nested rule of `pair_expect`,
    with unequal variances and every pair of a chunk integrated at once."""
    n = q1.size
    out, outd = np.empty(n), np.empty(n)
    if n == 0:
        return out, outd
    m = nm.nodes(np.zeros(()), np.ones(()), p.kinks)[0].size  # nodes per rule, roughly
    chunk = max(1, _CHUNK_POINTS // (2 * m * m))
    for lo in range(0, n, chunk):
        sl = slice(lo, lo + chunk)
        a = np.maximum(q1[sl], nm.Q_FLOOR)
        x1, w1 = nm.nodes(np.zeros_like(a), np.sqrt(a), p.kinks)  # u: (C, M)
        beta = s[sl] / a
        sd = np.sqrt(np.maximum(q2[sl] - beta * s[sl], 0.0))  # sd of v | u (0 when v = ±u)
        x2, w2 = nm.nodes(beta[:, None] * x1, np.broadcast_to(sd[:, None], x1.shape), p.kinks)
        inner = np.sum(w2 * p.f(x2), axis=-1)  # E[φ(v) | u] at each outer node, (C, M)
        inner_d = np.sum(w2 * p.d1(x2), axis=-1)
        out[sl] = np.sum(w1 * p.f(x1) * inner, axis=-1)
        outd[sl] = np.sum(w1 * p.d1(x1) * inner_d, axis=-1)
    return out, outd
