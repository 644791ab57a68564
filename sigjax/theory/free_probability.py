"""Free-probability prediction of the input–output Jacobian spectrum of a deep random net.

For J = W_1 D_1 ⋯ W_L D_L at a fixed point q* of the length map (every layer's pre-activations
h ~ N(0, q*), D_l = diag φ'(h^l)), with N × N weights W_l either σ_w·(Haar orthogonal) or
Gaussian N(0, σ_w²/N), the factors are asymptotically free as N → ∞ and the S-transform of
the squared singular values (the eigenvalues λ of JJᵀ) multiplies over layers (Pennington,
Schoenholz & Ganguli 2017, 2018):

    S_{JJᵀ}(m) = [S_{WᵀW}(m) · S_{D²}(m)]^L,
    S_{WᵀW} = σ_w⁻² (orthogonal) or σ_w⁻²/(1 + m) (Gaussian).

Conventions: M_ρ(z) = ∫ zλ/(1 − zλ) dρ(λ) (the moment generating function Σ_k m_k z^k),
S(m) = M⁻¹(m)·(1 + m)/m, and the Stieltjes transform G(ξ) = (1 + M(1/ξ))/ξ, whose imaginary
part gives the density, ρ(x) = −Im G(x + iε)/π.

The density is computed without a closed form for S_{D²}: at each ξ = x + iε two unknowns,
m = M_{JJᵀ}(1/ξ) and w = M_{D²}⁻¹(m), solve

    M_{D²}(w) = m,      u(m, w)^L · m/(1 + m) = 1/ξ,   u = S_W(m)·w(1 + m)/m,

(the second is M⁻¹_{JJᵀ}(m) = 1/ξ written with S_{D²}(m) = w(1 + m)/m), by complex Newton
steps, continued from ξ far above the spectrum (where m ≈ m₁/ξ is small and the root is
unique) down the line x + iε, ε = eps·x, with ε > 0 throughout: G is analytic off the real
axis, so the continued root stays on the physical branch. M_{D²} is a quadrature sum over the
law of φ'(h)², h ~ N(0, q*) (`sigjax.theory.numerics`' Gauss–Legendre nodes, float64).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sigjax.errors import UserError
from sigjax.theory import numerics as nm

WEIGHTS = ("orthogonal", "gaussian")


class Law(NamedTuple):
    """A discrete law: values (n,) with probabilities (n,) summing to one."""

    values: np.ndarray
    probs: np.ndarray


def d2_law(activation: str, q: float) -> Law:
    """The law of φ'(h)², h ~ N(0, q), as the quadrature rule's atoms (float64); equal values
    merged (an even φ' gives each twice, ReLU's are 0 and 1), which halves the solver's work."""
    p = nm.phi(activation)
    x, w = nm.nodes(np.zeros(()), np.sqrt(max(float(q), nm.Q_FLOOR)), p.kinks)
    values, which = np.unique(np.round(np.asarray(p.d1(x), float) ** 2, 14), return_inverse=True)
    probs = np.bincount(which.ravel(), weights=w.ravel())
    return Law(values, probs / probs.sum())


def moments(law: Law, sigma_w2: float, depth: int, weights: str) -> tuple[float, float]:
    """(mean, variance) of λ(JJᵀ) from the S-transform's series (exact for the law given):
    mean (σ_w² μ₁)^L, variance mean² · L (μ₂/μ₁² − 1 + s), μ_k = E[(φ'²)^k], s = 1 for
    Gaussian weights and 0 for orthogonal ones (S = 1/m₁ − (m₂ − m₁²)/m₁³ · m + …)."""
    _check(weights)
    mu1 = float(np.sum(law.probs * law.values))
    mu2 = float(np.sum(law.probs * law.values**2))
    s = 1.0 if weights == "gaussian" else 0.0
    mean = (sigma_w2 * mu1) ** depth
    return mean, mean**2 * depth * (mu2 / mu1**2 - 1.0 + s)


def _check(weights: str) -> None:
    if weights not in WEIGHTS:
        raise UserError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")


def _solve(m, w, xi, law: Law, sigma_w2: float, depth: int, s: float, iters: int = 12):
    """Newton steps on the two equations at every ξ at once (arrays of one shape): (m, w,
    residual). Each step's size is capped at half of |m| and |w| (no jump to another root)."""
    lam, p = law.values, law.probs
    r = np.full(m.shape, np.inf)
    for _ in range(iters):
        with np.errstate(all="ignore"):
            den = 1.0 - w[..., None] * lam
            md = np.sum(p * w[..., None] * lam / den, -1)
            dmd = np.sum(p * lam / den**2, -1)
            log_u = np.log(w) + (1.0 - s) * np.log1p(m) - np.log(sigma_w2) - np.log(m)
            f = np.exp(depth * log_u + np.log(m) - np.log1p(m) + np.log(xi))  # 1 at the root
            r1, r2 = md - m, f - 1.0
            r = np.maximum(np.abs(r1), np.abs(r2))
            if np.all(r < 1e-13):
                break
            a = f * (depth * ((1.0 - s) / (1.0 + m) - 1.0 / m) + 1.0 / m - 1.0 / (1.0 + m))
            b = f * depth / w
            det = -b - dmd * a  # of [[-1, dmd], [a, b]]
            dm = (dmd * r2 - r1 * b) / det  # [[-1, dmd], [a, b]] (dm, dw) = (-r1, -r2)
            dw = (r2 + a * r1) / det
            cap = np.minimum(1.0, 0.5 * np.minimum(np.abs(m) / np.abs(dm), np.abs(w) / np.abs(dw)))
            cap = np.where(np.isfinite(cap), cap, 0.0)
        m, w = m + cap * dm, w + cap * dw
    return m, w, r


def density(
    x: np.ndarray,
    law: Law,
    sigma_w2: float,
    depth: int,
    weights: str = "orthogonal",
    *,
    eps: float = 1e-4,
    tol: float = 1e-10,
) -> np.ndarray:
    """The predicted density ρ(x) of the eigenvalues λ of JJᵀ (squared singular values of J)
    at the points x (> 0, any shape), smoothed by a Cauchy kernel of relative width `eps`
    (ρ(x) = −Im G(x + i·eps·x)/π). NaN where the continuation failed.

    law: the law of D² (`d2_law`); sigma_w2: the weights' variance scale; depth L ≥ 1;
    weights: "orthogonal" or "gaussian". Every x is reached from x + iY, Y far above the
    spectrum, down a vertical path whose height shrinks geometrically with a stride adapted
    per point (all points at once, vectorised)."""
    _check(weights)
    if depth < 1:
        raise UserError(f"depth must be at least 1, got {depth}")
    x = np.asarray(x, float)
    if np.any(x <= 0) or not np.all(np.isfinite(x)):
        raise UserError("density: every x must be positive and finite")
    s = 1.0 if weights == "gaussian" else 0.0
    args = (law, float(sigma_w2), int(depth), s)
    mu1 = float(np.sum(law.probs * law.values))
    mean, _ = moments(law, sigma_w2, depth, weights)
    # above the spectrum: ‖J‖² ≤ (σ_w² max φ'²)^L ‖Π W‖², ‖Π W‖² ≤ e (L + 1) (Gaussian)
    top = (float(sigma_w2) * float(law.values.max())) ** depth * np.e * (depth + 1)
    flat = x.ravel()
    level = np.full(flat.shape, np.log(4.0 * max(top, flat.max())))  # log Im ξ
    final = np.log(eps * flat)
    stride = np.full(flat.shape, 1.0)
    xi = flat + 1j * np.exp(level)
    m = mean / xi
    m, w, r = _solve(m, m / mu1, xi, *args, iters=30)
    alive = r < tol
    done = np.zeros(flat.shape, bool)
    while np.any(alive & ~done):
        go = alive & ~done
        new = np.maximum(level[go] - stride[go], final[go])
        xi = flat[go] + 1j * np.exp(new)
        m1, w1, r = _solve(m[go], w[go], xi, *args)
        ok = (r < tol) & (m1.imag <= 1e-12 * np.abs(m1))  # converged, density ≥ 0
        idx = np.flatnonzero(go)
        acc, rej = idx[ok], idx[~ok]
        m[acc], w[acc], level[acc] = m1[ok], w1[ok], new[ok]
        stride[acc] = np.minimum(stride[acc] * 1.5, 2.0)
        stride[rej] /= 3.0
        alive[rej[stride[rej] < 1e-3]] = False  # far outside the spectrum (m → −1)
        done[acc[level[acc] <= final[acc]]] = True
    g = (1.0 + m) / (flat + 1j * eps * flat)
    out = np.where(done, np.maximum(0.0, -g.imag / np.pi), np.nan)
    return out.reshape(x.shape)


def cdf(x: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """The distribution function P(λ ≤ x) at sorted points x of a density sampled there, as one
    minus the mass above x (trapezoid in log x): x[-1] must lie above the spectrum. Mass below
    x[0], an atom at 0 included, is what the density leaves of one."""
    x, rho = np.asarray(x, float), np.nan_to_num(np.asarray(rho, float))
    y = rho * x  # density per unit log x
    above = np.concatenate(
        [np.cumsum((0.5 * (y[1:] + y[:-1]) * np.diff(np.log(x)))[::-1])[::-1], [0.0]]
    )
    return np.clip(1.0 - above, 0.0, 1.0)
