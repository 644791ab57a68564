"""Mean-field quantities on whole (σ_w², σ_b²) grids at once: a fast chaotic c* and χ_c.

`sigjax.theory.mean_field` solves c* one point at a time with a nested adaptive quadrature
(0.1-0.5 s per chaotic point). Studies that need ξ_c on hundreds of grid points (phase diagrams,
the trainability heat maps and their theory curves) use `mean_field_grid` instead: q* and χ₁
come from `sigjax.theory` on the whole grid, and in the chaotic phase c* and χ_c are solved for
all points at once by Newton's method on the convex c-map with a lower-order rule
(`chaotic_corr`). Tests check it against `theory.mean_field` to ~1e-8.
"""

from __future__ import annotations

import numpy as np

from sigjax import theory
from sigjax.theory import numerics as nm

_FEATURES = np.array([0.0] + [s * 2.0**k for k in range(-2, 5) for s in (-1.0, 1.0)])


def _nodes(mu: np.ndarray, sd: np.ndarray, order: int, t_max: float = 8.0, panels: int = 8):
    """Gauss-Legendre nodes/weights for E f(X), X ~ N(mu, sd²), shape broadcast + (M,).

    Panels: `panels` equal ones in t = (x - mu)/sd on [-t_max, t_max], split further at φ's own
    scale (x = 0, ±¼ … ±16) so that a narrow φ' (the sigmoid at q* ~ 100) is resolved.
    """
    mu, sd = np.broadcast_arrays(np.asarray(mu, float), np.asarray(sd, float))
    xg, wg = np.polynomial.legendre.leggauss(order)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (_FEATURES - mu[..., None]) / sd[..., None]
    t = np.clip(np.nan_to_num(t, nan=-t_max), -t_max, t_max)
    fixed = np.broadcast_to(np.linspace(-t_max, t_max, panels + 1), mu.shape + (panels + 1,))
    edges = np.sort(np.concatenate([fixed, t], axis=-1), axis=-1)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    tn = 0.5 * (a + b) + 0.5 * (b - a) * xg
    w = 0.5 * (b - a) * wg * nm.gauss_pdf(tn)
    x = mu[..., None, None] + sd[..., None, None] * tn
    shape = mu.shape + (tn.shape[-2] * order,)
    return x.reshape(shape), w.reshape(shape)


def _pair(p: nm.Phi, q: np.ndarray, c: np.ndarray, order: int):
    """(E[φ(u1)φ(u2)], E[φ'(u1)φ'(u2)]) for u1, u2 ~ N(0, q) with correlation c (1-D arrays)."""
    sd = np.sqrt(q)
    x1, w1 = _nodes(np.zeros_like(q), sd, order)
    s2 = (sd * np.sqrt(np.maximum(1.0 - c**2, 0.0)))[:, None]
    x2, w2 = _nodes(c[:, None] * x1, np.broadcast_to(s2, x1.shape), order)
    ff = np.sum(w1 * p.f(x1) * np.sum(w2 * p.f(x2), -1), -1)
    dd = np.sum(w1 * p.d1(x1) * np.sum(w2 * p.d1(x2), -1), -1)
    return ff, dd


def chaotic_corr(
    activation: str,
    sigma_w2: np.ndarray,
    sigma_b2: np.ndarray,
    q_star: np.ndarray,
    order: int = 8,
    chunk: int = 64,
    tol: float = 1e-12,
) -> tuple[np.ndarray, np.ndarray]:
    """(c*, χ_c) at chaotic points (χ₁ > 1, finite q* > 0), 1-D arrays of equal length.

    g(c) = cmap(c) - c is convex on [0, 1] (the c-map's Hermite expansion has nonnegative
    coefficients), g(1) = 0 and g'(1) = χ₁ - 1 > 0, so Newton's method started at c = 0 climbs
    monotonically to the stable root c* in [0, 1) (c* = 0 when g(0) = 0, e.g. odd φ, σ_b² = 0).
    Each step needs E[φφ] (the map) and E[φ'φ'] (its slope, σ_w² E[φ'φ'] = χ_c at c*).
    """
    p = nm.phi(activation)
    w, b, q = (np.asarray(v, float).ravel() for v in (sigma_w2, sigma_b2, q_star))
    c_out, chi_out = np.zeros(w.size), np.zeros(w.size)
    for s in range(0, w.size, chunk):
        sl = slice(s, s + chunk)
        ww, bb, qq = w[sl], b[sl], q[sl]
        c = np.zeros(ww.size)
        todo = np.arange(ww.size)
        for _ in range(80):
            ff, dd = _pair(p, qq[todo], c[todo], order)
            g = (ww[todo] * ff + bb[todo]) / qq[todo] - c[todo]
            slope = ww[todo] * dd - 1.0
            step = np.where(slope < 0, -g / np.where(slope < 0, slope, -1.0), 0.0)
            new = np.clip(c[todo] + np.maximum(step, 0.0), 0.0, 1.0 - 1e-15)
            moved = np.abs(new - c[todo]) > tol
            c[todo] = new
            todo = todo[moved]
            if todo.size == 0:
                break
        _, dd = _pair(p, qq, c, order)
        c_out[sl], chi_out[sl] = c, ww * dd
    return c_out, chi_out


def mean_field_grid(activation: str, sigma_w2, sigma_b2) -> dict[str, np.ndarray]:
    """q*, χ₁, c*, χ_c, ξ_c, ξ_q on broadcast(σ_w², σ_b²) (the fast chaotic solver inside)."""
    w, b = np.broadcast_arrays(np.asarray(sigma_w2, float), np.asarray(sigma_b2, float))
    shape, w, b = w.shape, w.ravel(), b.ravel()
    p = nm.phi(activation)
    q = theory.q_star(activation, w, b)
    # χ₁ = σ_w² E[φ'(√q* z)²], as theory.chi_1 computes it, without solving for q* twice
    chi1 = w * nm.gauss_expect(lambda x: p.d1(x) ** 2, np.maximum(q, nm.Q_FLOOR), p.kinks)
    c = np.ones_like(w)
    chi_c = chi1.copy()
    hot = (chi1 > 1) & np.isfinite(q) & (q > 0)
    if hot.any():
        c[hot], chi_c[hot] = chaotic_corr(activation, w[hot], b[hot], q[hot])
    with np.errstate(divide="ignore", invalid="ignore"):
        xi_c = np.where(chi_c >= 1 - 1e-15, np.inf, -1.0 / np.log(chi_c))
        slope = theory.length_map_slope(activation, q, w)
        xi_q = np.where(slope >= 1 - 1e-15, np.inf, -1.0 / np.log(slope))
    out = {"q_star": q, "chi_1": chi1, "c_star": c, "chi_c": chi_c, "xi_c": xi_c, "xi_q": xi_q}
    return {k: np.reshape(v, shape) for k, v in out.items()}
