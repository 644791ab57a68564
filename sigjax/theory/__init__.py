"""Mean-field signal propagation in wide random MLPs (Poole et al. 2016; Schoenholz et al. 2017).

Network: W_ij ~ N(0, σ_w²/N) (fan-in scaling), b_i ~ N(0, σ_b²), z^l = W^l φ(z^{l-1}) + b^l.
Arguments `sigma_w2`, `sigma_b2` are the variances σ_w², σ_b², never standard deviations. Every
public function broadcasts its array arguments with numpy rules and returns float64 arrays of the
broadcast shape (with a trailing layer axis for the depth profiles). φ is integrated as it is (the
sigmoid's mean ½ is not removed: it acts like extra bias variance). See docs/theory.md.

    length map     q ↦ σ_w² E_z[φ(√q z)²] + σ_b²; q* its fixed point reached from q_start
    corr. map      c ↦ (σ_w² E[φ(u1)φ(u2)] + σ_b²)/q*,  u1, u2 ~ N(0, q*) with correlation c
    χ₁             σ_w² E[φ'(√q* z)²]  (= the c-map's slope at c = 1)
    χ_c            σ_w² E[φ'(u1)φ'(u2)] at c* (the c-map's slope there; χ_c = χ₁ when c* = 1)
    ξ_q, ξ_c       -1/log(q-map slope at q*), -1/log χ_c
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sigjax.errors import UserError
from sigjax.theory import numerics as nm
from sigjax.theory.infinite_width import kernels  # noqa: F401  (sigjax.theory.kernels)
from sigjax.theory.numerics import Phi, phi

ArrayLike = float | np.ndarray


def _variances(sigma_w2: ArrayLike, sigma_b2: ArrayLike, *more: ArrayLike):
    arrs = np.broadcast_arrays(*(np.asarray(v, float) for v in (sigma_w2, sigma_b2, *more)))
    for name, v in zip(("sigma_w2", "sigma_b2"), arrs[:2], strict=True):
        if not np.all(np.isfinite(v)) or np.any(v < 0):
            raise UserError(f"{name} must be a finite variance >= 0, got {np.min(v):g}")
    return [np.array(v) for v in arrs]


def _excess(p: Phi, q: np.ndarray) -> np.ndarray:
    """E[φ(√q z)² - a(√q z)²]: the second moment minus its linear-asymptote part (s_inf·q)."""
    return nm.gauss_expect(lambda x: p.f(x) ** 2 - p.asym(x) ** 2, q, p.kinks)


def _gap(p: Phi, q: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """length_map(q) - q, without cancellation at large q: w·excess + q(w·s_inf - 1) + b."""
    return w * _excess(p, q) + q * (w * p.s_inf - 1.0) + b


def length_map(
    activation: str, q: ArrayLike, sigma_w2: ArrayLike, sigma_b2: ArrayLike
) -> np.ndarray:
    """q ↦ σ_w² E_z[φ(√q z)²] + σ_b², elementwise over broadcast(q, σ_w², σ_b²)."""
    p = phi(activation)
    w, b, q = _variances(sigma_w2, sigma_b2, q)
    return w * (_excess(p, q) + p.s_inf * q) + b


def length_map_slope(activation: str, q: ArrayLike, sigma_w2: ArrayLike) -> np.ndarray:
    """d/dq of the length map: σ_w² E[φ'(√q z)² + φ(√q z) φ''(√q z)] (broadcast shape).

    φ'' includes the delta functions at kinks where φ' jumps (hard_tanh, hard_sigmoid): each adds
    φ(k)·(φ'(k+) - φ'(k-))·p_q(k) with p_q the N(0, q) density. σ_b² does not enter.
    """
    p = phi(activation)
    w, _, q = _variances(sigma_w2, 0.0, q)
    q = np.maximum(q, nm.Q_FLOOR)
    e = nm.gauss_expect(lambda x: p.d1(x) ** 2 + p.f(x) * p.d2(x), q, p.kinks)
    for k in p.kinks:
        e = e + float(p.f(np.array(k))) * p.jump(k) * nm.gauss_pdf(k / np.sqrt(q)) / np.sqrt(q)
    return w * e


def _q_star(p: Phi, w: np.ndarray, b: np.ndarray, q0: np.ndarray) -> np.ndarray:
    shape, (w, b, q0) = w.shape, (v.ravel() for v in (w, b, np.maximum(q0, nm.Q_FLOOR)))
    out = np.full(w.shape, np.nan)
    f0 = _gap(p, q0, w, b)
    out[f0 == 0] = q0[f0 == 0]
    lo, hi, flo, fhi = q0.copy(), q0.copy(), f0.copy(), f0.copy()
    # One iteration q ↦ length_map(q) never jumps over the nearest fixed point (the map is
    # monotone), so each step takes it or a factor of 2, whichever goes further. Up: until q
    # exceeds 1e18·max(q_start, 1) (then inf); down: 61 steps, then the floor (then 0).
    for up in (True, False):
        todo = np.flatnonzero(f0 > 0 if up else f0 < 0)
        cur, fcur = q0[todo], f0[todo]
        # the bracket's far end: the last point whose gap had the starting sign for sure (a step
        # can land on the fixed point itself, where the gap is rounding noise of either sign)
        end, fend = cur.copy(), fcur.copy()
        cap = 1e18 * np.maximum(q0[todo], 1.0)
        for step in range(1200):
            if todo.size == 0:
                break
            if up:
                nxt = np.maximum(2.0 * cur, cur + fcur)
            else:
                nxt = np.minimum(0.5 * cur, cur + fcur) if step < 61 else nm.Q_FLOOR + 0 * cur
            fn = _gap(p, nxt, w[todo], b[todo])
            hit = fn <= 0 if up else fn > 1e-14 * nxt  # down: ignore rounding-level gaps
            i = todo[hit]
            lo[i], flo[i], hi[i], fhi[i] = end[hit], fend[hit], nxt[hit], fn[hit]
            go = ~hit & (nxt <= cap if up else nxt > nm.Q_FLOOR)
            out[todo[~hit & ~go]] = np.inf if up else 0.0
            sure = fn > 0 if up else fn < 0
            end, fend = np.where(sure, nxt, end), np.where(sure, fn, fend)
            todo, cur, fcur, cap, end, fend = (v[go] for v in (todo, nxt, fn, cap, end, fend))
    i = np.flatnonzero(np.isnan(out))
    if i.size:

        def f(s):
            return _gap(p, np.exp(s), w[i], b[i])

        out[i] = np.exp(nm.solve(f, np.log(lo[i]), np.log(hi[i]), flo[i], fhi[i], 0.0, 1e-15))
    out[out <= nm.Q_FLOOR] = 0.0
    return out.reshape(shape)


def q_star(
    activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q_start: ArrayLike = 1.0
) -> np.ndarray:
    """Fixed point q* of the length map, reached by iterating it from q^1 = q_start (broadcast).

    The length map is nondecreasing in q for every registry activation, so the iteration is
    monotone and ends at the nearest fixed point in the direction it moves; that point is
    bracketed by doubling/halving steps and solved to ~1e-15 relative. inf where the iteration
    diverges (φ unbounded and σ_w²(a₋² + a₊²)/2 ≥ 1, e.g. relu with σ_w² > 2), 0 where it dies out.
    The answer depends on q_start only where the map has several stable fixed points (silu, gelu);
    q_start = 0 is read as 0⁺ (a tiny positive q).
    """
    p = phi(activation)
    w, b, q0 = _variances(sigma_w2, sigma_b2, q_start)
    return _q_star(p, w, b, q0)


def _chi(p: Phi, q: np.ndarray, w: np.ndarray) -> np.ndarray:
    """σ_w² E[φ'(√q z)²] at q (its q → ∞ limit σ_w² s_inf where q is inf)."""
    fin = np.isfinite(q)
    e = nm.gauss_expect(lambda x: p.d1(x) ** 2, np.where(fin, q, 1.0), p.kinks)
    return w * np.where(fin, e, p.s_inf)


def chi_1(
    activation: str, sigma_w2: ArrayLike, sigma_b2: ArrayLike, q_start: ArrayLike = 1.0
) -> np.ndarray:
    """χ₁ = σ_w² E_z[φ'(√q* z)²]: the per-layer factor of squared gradient norms (broadcast)."""
    p = phi(activation)
    w, b, q0 = _variances(sigma_w2, sigma_b2, q_start)
    return _chi(p, _q_star(p, w, b, q0), w)


def _cmap(p: Phi, c, q, w, b) -> np.ndarray:
    return (w * nm.pair_expect(p.f, p.f, q, c, p.kinks) + b) / q


def correlation_map(
    activation: str,
    c: ArrayLike,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    q_start: ArrayLike = 1.0,
) -> np.ndarray:
    """c ↦ (σ_w² E[φ(u1)φ(u2)] + σ_b²)/q*, u1, u2 ~ N(0, q*) with correlation c (broadcast).

    nan where q* is 0 or inf (no finite nonzero fixed point to normalise by).
    """
    p = phi(activation)
    w, b, q0, c = _variances(sigma_w2, sigma_b2, q_start, c)
    q = _q_star(p, w, b, q0)
    ok = np.isfinite(q) & (q > 0)
    out = np.full(q.shape, np.nan)
    out[ok] = _cmap(p, c[ok], q[ok], w[ok], b[ok])
    return out


def _c_star(p: Phi, q, w, b, chi1) -> np.ndarray:
    """Stable fixed point of the c-map: 1 unless χ₁ > 1, else the root of cmap(c) = c in [0, 1).

    cmap(0) = (σ_w² E[φ]² + σ_b²)/q* ≥ 0 and cmap - c < 0 just below 1 when χ₁ > 1, so [0, 1 - δ]
    brackets the root; δ runs down to 1e-12, and a c* closer to 1 than that is reported as 1.
    """
    out = np.where(np.isfinite(q), 1.0, np.nan)
    i = np.flatnonzero((chi1 > 1) & np.isfinite(q) & (q > 0))
    if i.size == 0:
        return out
    q, w, b = q[i], w[i], b[i]
    g0 = _cmap(p, np.zeros(i.size), q, w, b)
    hi, ghi, todo = np.ones(i.size), np.zeros(i.size), np.arange(i.size)
    for k in range(1, 13):
        c = np.full(todo.size, 1.0 - 10.0**-k)
        gc = _cmap(p, c, q[todo], w[todo], b[todo]) - c
        hit = gc < 0
        hi[todo[hit]], ghi[todo[hit]] = c[hit], gc[hit]
        todo = todo[~hit]
        if todo.size == 0:
            break
    res = np.where(hi < 1, 0.0, 1.0)
    j = np.flatnonzero((hi < 1) & (g0 > 0))
    if j.size:

        def f(c):
            return _cmap(p, c, q[j], w[j], b[j]) - c

        res[j] = nm.solve(f, 0.0, hi[j], g0[j], ghi[j], 0.0, 1e-14)
    out[i] = res
    return out


@dataclass(frozen=True)
class MeanField:
    """Mean-field quantities at each (σ_w², σ_b²); every field has the broadcast shape."""

    q_star: np.ndarray
    c_star: np.ndarray  # nan where q* is inf
    chi_1: np.ndarray
    chi_c: np.ndarray
    xi_q: np.ndarray  # inf where the slope is 1, nan where q* is inf
    xi_c: np.ndarray
    phase: np.ndarray  # "ordered" (χ₁ < 1), "critical" (|χ₁ - 1| ≤ tol), "chaotic" (χ₁ > 1)

    def as_dict(self) -> dict[str, float | str]:
        """Scalar results as plain floats (and the phase string)."""
        d: dict[str, float | str] = {k: float(getattr(self, k)) for k in _FIELDS[:-1]}
        d["phase"] = str(self.phase)
        return d


_FIELDS = ("q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c", "phase")


def _depth_scale(slope: np.ndarray) -> np.ndarray:
    """-1/log(slope); inf for a slope within rounding of 1 or above (a marginal fixed point)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(slope >= 1 - 1e-15, np.inf, -1.0 / np.log(slope))


def mean_field(
    activation: str,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    q_start: ArrayLike = 1.0,
    tol: float = 1e-6,
) -> MeanField:
    """q*, c*, χ₁, χ_c, ξ_q, ξ_c and the phase at each (σ_w², σ_b²) (see the module docstring).

    c* = 1 when χ₁ ≤ 1, then χ_c = χ₁; c* is computed (nested quadrature) only where χ₁ > 1.
    """
    p = phi(activation)
    w, b, q0 = _variances(sigma_w2, sigma_b2, q_start)
    shape, (w, b, q0) = w.shape, (v.ravel() for v in (w, b, q0))
    q = _q_star(p, w, b, q0)
    chi1 = _chi(p, q, w)
    c = _c_star(p, q, w, b, chi1)
    chi_c = chi1.copy()
    i = np.flatnonzero(c < 1)
    if i.size:
        chi_c[i] = w[i] * nm.pair_expect(p.d1, p.d1, q[i], c[i], p.kinks)
    chi_c[np.isnan(c)] = np.nan
    fin = np.isfinite(q)
    slope = np.full(q.shape, np.nan)
    slope[fin] = length_map_slope(activation, q[fin], w[fin])
    phase = np.where(np.abs(chi1 - 1) <= tol, "critical", np.where(chi1 < 1, "ordered", "chaotic"))
    vals = (q, c, chi1, chi_c, _depth_scale(slope), _depth_scale(chi_c), phase)
    return MeanField(*(v.reshape(shape) for v in vals))


# ----------------------------------------------------------------------------- critical line

_Q_GRID = np.logspace(-12, 14, 105)


def _crit_gap(p: Phi, q: np.ndarray, b: np.ndarray) -> np.ndarray:
    """q - E[φ²]/E[φ'²] - σ_b², zero when q is a fixed point with χ₁ = 1 (at σ_w² = 1/E[φ'²]).

    Values within rounding of zero are set to 0, so that the flat start of this function at
    q → 0 (O(q³) for tanh) does not produce spurious roots.
    """
    d = nm.gauss_expect(lambda x: p.d1(x) ** 2 - p.asym_d1(x) ** 2, q, p.kinks)
    e = _excess(p, q)
    gap = (q * d - e) / (d + p.s_inf) - b
    noise = 1e-14 * ((q * np.abs(d) + np.abs(e)) / (d + p.s_inf) + b)
    return np.where(np.abs(gap) <= noise, 0.0, gap)


def _critical_roots(p: Phi, b: np.ndarray, q_start: np.ndarray):
    """(σ_w², q*, marginal) at each σ_b² in the 1-D b, before the attracting check.

    marginal: the critical gap is zero on the whole q grid (relu, leaky_relu, identity at
    σ_b² = 0, where the critical length map is the identity): every q is a fixed point, and
    q* = q_start, as `q_star` returns there.
    """
    gap = _crit_gap(p, _Q_GRID[None, :], b[:, None])
    marginal = np.all(gap == 0, axis=1)
    cross = (gap[:, :-1] < 0) & (gap[:, 1:] >= 0)
    q = np.where(gap[:, 0] >= 0, 0.0, np.inf)  # no crossing: a root below the grid, or none
    i = np.flatnonzero(cross.any(axis=1))
    if i.size:
        k = np.argmax(cross[i], axis=1)

        def f(s):
            return _crit_gap(p, np.exp(s), b[i])

        lo, hi = np.log(_Q_GRID[k]), np.log(_Q_GRID[k + 1])
        q[i] = np.exp(nm.solve(f, lo, hi, gap[i, k], gap[i, k + 1], 0.0, 1e-15))
    j = np.flatnonzero(q == 0.0)
    g0 = _crit_gap(p, np.full(j.size, nm.Q_FLOOR), b[j])
    j, g0 = j[g0 < 0], g0[g0 < 0]
    if j.size:  # a root between the floor and the grid's first point

        def f0(s):
            return _crit_gap(p, np.exp(s), b[j])

        lo, hi = np.log(nm.Q_FLOOR), np.log(_Q_GRID[0])
        q[j] = np.exp(nm.solve(f0, lo, hi, g0, gap[j, 0], 0.0, 1e-15))
    q[marginal] = np.maximum(q_start[marginal], 0.0)
    with np.errstate(divide="ignore"):
        w = 1.0 / _chi(p, np.where(marginal, 1.0, q), np.ones_like(q))
    w[~np.isfinite(w)] = np.nan
    return w, q, marginal


def _attracting(p: Phi, w: np.ndarray, b: np.ndarray, q: np.ndarray) -> np.ndarray:
    """True where iterating the length map from just above q* comes back to χ₁ = 1."""
    out = np.zeros(w.shape, bool)
    k = np.flatnonzero(np.isfinite(q) & np.isfinite(w))
    back = _chi(p, _q_star(p, w[k], b[k], q[k] * 1.01 + 1e-6), w[k])
    out[k] = np.abs(back - 1) <= 1e-6
    out[np.isinf(q) & np.isfinite(w)] = True  # χ₁ → 1 as q* → ∞ (relu with σ_b² > 0, softplus)
    return out


def critical_point(
    activation: str, sigma_b2: ArrayLike, q_start: ArrayLike = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """(σ_w², q*) on the critical line χ₁ = 1 at each σ_b² ≥ 0 (arrays of σ_b²'s shape).

    At a critical point q* = σ_w² E[φ²] + σ_b² and σ_w² E[φ'²] = 1, so q* solves
    q - E[φ(√q z)²]/E[φ'(√q z)²] = σ_b² (first root on a log grid, refined) and σ_w² = 1/E[φ'²].
    Without a finite root χ₁ reaches 1 only as q* → ∞: σ_w² = 2/(a₋² + a₊²), q* = inf (relu or
    identity with σ_b² > 0, softplus). Where every q is a fixed point (relu, leaky_relu,
    identity at σ_b² = 0: the critical length map is the identity) q* = q_start, the value
    `q_star` and `mean_field` return there. nan where no stable critical point exists: the root
    is a repelling fixed point of the length map (silu, gelu at small σ_b²; `edge_of_chaos`
    gives it anyway), or σ_b² is beyond 1e14 for a bounded φ.
    """
    p = phi(activation)
    _, b, q0 = _variances(0.0, sigma_b2, q_start)
    shape, b, q0 = b.shape, b.ravel(), q0.ravel()
    w, q, _ = _critical_roots(p, b, q0)
    # Keep only attracting critical points: iterating from just above q* must come back to χ₁ = 1.
    w[~_attracting(p, w, b, q)] = np.nan
    return w.reshape(shape), q.reshape(shape)


@dataclass(frozen=True)
class EdgeOfChaos:
    """The χ₁ = 1 fixed point at each σ_b², attracting or not (arrays of σ_b²'s shape)."""

    sigma_w2: np.ndarray  # 1/E[φ'(√q* z)²]; nan where no fixed point has χ₁ = 1
    q_star: np.ndarray
    slope: np.ndarray  # the length map's slope at q* (> 1: repelling; nan at q* = inf)
    attracting: np.ndarray  # bool: iterating the length map from near q* returns to it
    marginal: np.ndarray  # bool: every q is a fixed point (q* = q_start; relu at σ_b² = 0)


def edge_of_chaos(activation: str, sigma_b2: ArrayLike, q_start: ArrayLike = 1.0) -> EdgeOfChaos:
    """The edge-of-chaos curve as Hayou et al. (2019) draw it: (σ_w², q*) with χ₁ = 1 at a
    fixed point q* of the length map, whether or not that fixed point attracts.

    `critical_point` keeps only the attracting ones. For silu and gelu the curve exists for
    every σ_b² > 0 but its fixed point repels (slope > 1) below `attracting_from`: a network
    started near it moves away, and χ₁ jumps across 1 as q* escapes to ∞ instead.
    """
    p = phi(activation)
    _, b, q0 = _variances(0.0, sigma_b2, q_start)
    shape, b, q0 = b.shape, b.ravel(), q0.ravel()
    w, q, marginal = _critical_roots(p, b, q0)
    slope = np.full(w.shape, np.nan)
    k = np.flatnonzero(np.isfinite(q) & np.isfinite(w))
    slope[k] = length_map_slope(activation, q[k], w[k])
    att = _attracting(p, w, b, q)
    return EdgeOfChaos(*(v.reshape(shape) for v in (w, q, slope, att, marginal)))


def attracting_from(activation: str, sigma_b2_max: float = 100.0, tol: float = 1e-6) -> float:
    """The smallest σ_b² in [0, sigma_b2_max] from which the edge of chaos attracts (bisection
    to `tol`, assuming one switch from repelling to attracting): 0 when it attracts already at
    σ_b² = 0, nan when it never does up to sigma_b2_max."""
    p = phi(activation)

    def ok(b: float) -> bool:
        w, q, _ = _critical_roots(p, np.array([b]), np.array([1.0]))
        return bool(_attracting(p, w, np.array([b]), q)[0])

    if ok(0.0):
        return 0.0
    if not ok(sigma_b2_max):
        return float("nan")
    lo, hi = 0.0, sigma_b2_max
    while hi - lo > tol * max(hi, 1e-3):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def critical_sigma_w2(activation: str, sigma_b2: ArrayLike) -> np.ndarray:
    """σ_w² with χ₁ = 1 at each σ_b² ≥ 0, nan where there is none (see `critical_point`)."""
    return critical_point(activation, sigma_b2)[0]


def critical_line(
    activation: str, sigma_b2_max: float = 1.0, points: int = 21
) -> tuple[np.ndarray, np.ndarray]:
    """(σ_b², σ_w²) of the critical line at `points` equally spaced σ_b² in [0, sigma_b2_max]."""
    if points < 2 or not np.isfinite(sigma_b2_max) or sigma_b2_max <= 0:
        raise UserError("the critical line needs --points >= 2 and --sigma-b2-max > 0")
    b = np.linspace(0.0, sigma_b2_max, points)
    return b, critical_sigma_w2(activation, b)


# ----------------------------------------------------------------------------- depth profiles


def q_profile(
    activation: str,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    depth: int,
    q_start: ArrayLike | None = None,
) -> np.ndarray:
    """q^1..q^depth, shape broadcast + (depth,): q^1 = q_start, q^{l+1} = length_map(q^l).

    q_start = σ_w²·mean(x²) + σ_b² for an input x; None puts every layer at q* (from q_start 1).
    """
    p = phi(activation)
    if depth < 1:
        raise UserError(f"depth must be >= 1, got {depth}")
    w, b, q0 = _variances(sigma_w2, sigma_b2, 1.0 if q_start is None else q_start)
    if q_start is None:
        return np.repeat(_q_star(p, w, b, q0)[..., None], depth, axis=-1)
    qs = [q0]
    for _ in range(depth - 1):
        qs.append(w * (_excess(p, qs[-1]) + p.s_inf * qs[-1]) + b)
    return np.stack(qs, axis=-1)


def gradient_profile(
    activation: str,
    sigma_w2: ArrayLike,
    sigma_b2: ArrayLike,
    depth: int,
    q_start: ArrayLike | None = None,
    weights: bool = False,
) -> np.ndarray:
    """Predicted squared gradient norms per layer at init, relative to the last layer's.

    Back-propagation δ^l = φ'(z^l) ⊙ (W^{l+1})ᵀ δ^{l+1} gives E‖δ^l‖² = χ(q^l) E‖δ^{l+1}‖² with
    χ(q) = σ_w² E[φ'(√q z)²] (equal widths), so the result is Π_{k=l}^{depth-1} χ(q^k) for
    l = 1..depth, shape broadcast + (depth,); = χ₁^(depth-l) once q^l = q*. weights=True gives
    ‖∂L/∂W^l‖² = ‖δ^l‖²·‖φ(z^{l-1})‖² instead, using E[φ(z^{l-1})²] = (q^l - σ_b²)/σ_w².
    q^l as in `q_profile`.
    """
    p = phi(activation)
    w, b = _variances(sigma_w2, sigma_b2)
    q = q_profile(activation, w, b, depth, q_start)
    chi = _chi(p, q, np.broadcast_to(w[..., None], q.shape))
    tail = np.cumprod(chi[..., -2::-1], axis=-1)[..., ::-1]  # Π over k = l..depth-1
    out = np.concatenate([tail, np.ones_like(chi[..., :1])], axis=-1)
    if weights:
        act = q - b[..., None]
        out = out * act / act[..., -1:]
    return out
