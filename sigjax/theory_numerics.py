"""Numerical helpers of `sigjax.theory`: float64 activations, Gaussian quadrature, root brackets.

Each registry activation has numpy versions of φ, φ', φ'' here (a test checks them against the
registry's jnp functions), the points where φ' or φ'' jumps (kinks), and the slopes (a₋, a₊) of
its linear asymptotes, so that φ = a(x) + (a bounded or slowly growing rest) with a(x) = a₊x for
x > 0 and a₋x for x < 0. Subtracting a(x)² before integrating keeps the length map free of
cancellation when q is huge (relu, softplus, silu, ...).

Gaussian expectations use composite Gauss–Legendre in t = (x - μ)/s on [-10, 10] (tail mass
1.5e-23): unit panels in t, plus panel edges at φ's own features mapped into t (the origin, ±2^k
for k = -1..40, every kink). The rule therefore resolves the Gaussian at any scale s and φ at its
own scale one, and never straddles a kink; agreement with adaptive quadrature is ~1e-14.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import erf, expit, ndtr

from sigjax.activations import ALIASES
from sigjax.errors import UserError

Fn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Phi:
    """float64 φ, φ', φ'' of one activation, its kinks and asymptotic slopes (a₋, a₊)."""

    f: Fn
    d1: Fn
    d2: Fn
    kinks: tuple[float, ...] = ()
    slopes: tuple[float, float] = (0.0, 0.0)

    def jump(self, k: float) -> float:
        """φ'(k+) - φ'(k-): the weight of the delta function that φ'' carries at a kink k."""
        eps = 1e-9 * max(1.0, abs(k))
        return float(self.d1(np.array(k + eps)) - self.d1(np.array(k - eps)))

    @property
    def s_inf(self) -> float:
        """(a₋² + a₊²)/2 = lim_{q→∞} E[φ'(√q z)²]; also E[a(√q z)²]/q for every q."""
        return 0.5 * (self.slopes[0] ** 2 + self.slopes[1] ** 2)

    def asym(self, x: np.ndarray) -> np.ndarray:
        """The linear asymptote a(x)."""
        return np.where(x > 0, self.slopes[1], self.slopes[0]) * x

    def asym_d1(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, self.slopes[1], self.slopes[0]) * np.ones_like(x)


def _ds(x):
    return expit(x) * expit(-x)


def _dds(x):
    return -_ds(x) * np.tanh(x / 2)


def _sech2(x):
    e = np.exp(-2.0 * np.abs(x))
    return 4.0 * e / (1.0 + e) ** 2


def gauss_pdf(x: np.ndarray) -> np.ndarray:
    """Standard normal density."""
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def _zero(x):
    return np.zeros_like(x, dtype=float)


def _one(x):
    return np.ones_like(x, dtype=float)


_RS = 2.0 / np.sqrt(np.pi)
_LEAK = 0.01  # jax.nn.leaky_relu's default negative slope
_RELU_LIKE = (0.0, 1.0)

PHIS: dict[str, Phi] = {
    "sigmoid": Phi(expit, _ds, _dds),
    "centred_sigmoid": Phi(lambda x: 0.5 * np.tanh(x / 2), _ds, _dds),
    "tanh": Phi(np.tanh, _sech2, lambda x: -2.0 * np.tanh(x) * _sech2(x)),
    "relu": Phi(lambda x: np.maximum(x, 0.0), lambda x: (x > 0) * 1.0, _zero, (0.0,), _RELU_LIKE),
    "leaky_relu": Phi(
        lambda x: np.where(x >= 0, x, _LEAK * x),
        lambda x: np.where(x >= 0, 1.0, _LEAK),
        _zero,
        (0.0,),
        (_LEAK, 1.0),
    ),
    "elu": Phi(
        lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
        lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0.0))),
        lambda x: np.where(x > 0, 0.0, np.exp(np.minimum(x, 0.0))),
        (0.0,),
        _RELU_LIKE,
    ),
    "softplus": Phi(lambda x: np.logaddexp(0.0, x), expit, _ds, (), _RELU_LIKE),
    "softsign": Phi(
        lambda x: x / (1 + np.abs(x)),
        lambda x: 1 / (1 + np.abs(x)) ** 2,
        lambda x: -2 * np.sign(x) / (1 + np.abs(x)) ** 3,
        (0.0,),
    ),
    "erf": Phi(erf, lambda x: _RS * np.exp(-x * x), lambda x: -2 * x * _RS * np.exp(-x * x)),
    "hard_sigmoid": Phi(
        lambda x: np.clip((x + 3) / 6, 0.0, 1.0),
        lambda x: (np.abs(x) < 3) / 6.0,
        _zero,
        (-3.0, 3.0),
    ),
    "hard_tanh": Phi(
        lambda x: np.clip(x, -1.0, 1.0), lambda x: (np.abs(x) < 1) * 1.0, _zero, (-1.0, 1.0)
    ),
    "silu": Phi(
        lambda x: x * expit(x),
        lambda x: expit(x) + x * _ds(x),
        lambda x: _ds(x) * (2 - x * np.tanh(x / 2)),
        (),
        _RELU_LIKE,
    ),
    "gelu": Phi(
        lambda x: x * ndtr(x),
        lambda x: ndtr(x) + x * gauss_pdf(x),
        lambda x: gauss_pdf(x) * (2 - x * x),
        (),
        _RELU_LIKE,
    ),
    "identity": Phi(lambda x: x * 1.0, _one, _zero, (), (1.0, 1.0)),
}


def phi(activation: str) -> Phi:
    """The float64 φ, φ', φ'' of a registry name or alias; UserError for an unknown name."""
    key = ALIASES.get(activation, activation)
    if key not in PHIS:
        raise UserError(f"unknown activation {activation!r}; choose from {', '.join(sorted(PHIS))}")
    return PHIS[key]


# ----------------------------------------------------------------------------- quadrature

ORDER = 16  # Gauss–Legendre nodes per panel (tests raise it to check convergence)
T_MAX = 10.0
Q_FLOOR = 1e-200  # stands in for q = 0 so that φ' is sampled on both sides of a kink at 0
_T_EDGES = np.linspace(-T_MAX, T_MAX, 21)
_X_EDGES = np.array([0.0] + [s * 2.0**k for k in range(-1, 41) for s in (-1.0, 1.0)])


def nodes(
    mu: np.ndarray, sd: np.ndarray, kinks: tuple[float, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x and weights w, shape broadcast(mu, sd) + (M,): Σ w·f(x) ≈ E f(X), X ~ N(mu, sd²)."""
    mu, sd = np.broadcast_arrays(np.asarray(mu, float), np.asarray(sd, float))
    xg, wg = np.polynomial.legendre.leggauss(ORDER)
    feats = np.concatenate([_X_EDGES, np.asarray(kinks, float)])
    if mu.size:
        reach = T_MAX * sd
        feats = feats[(feats > np.min(mu - reach)) & (feats < np.max(mu + reach))]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (feats - mu[..., None]) / sd[..., None]
    t = np.clip(np.nan_to_num(t, nan=-T_MAX), -T_MAX, T_MAX)  # features out of reach fold away
    fixed = np.broadcast_to(_T_EDGES, mu.shape + _T_EDGES.shape)
    edges = np.sort(np.concatenate([fixed, t], axis=-1), axis=-1)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    tn = 0.5 * (a + b) + 0.5 * (b - a) * xg
    w = 0.5 * (b - a) * wg * gauss_pdf(tn)
    x = mu[..., None, None] + sd[..., None, None] * tn
    shape = mu.shape + (tn.shape[-2] * ORDER,)
    return x.reshape(shape), w.reshape(shape)


def gauss_expect(f: Fn, q: float | np.ndarray, kinks: tuple[float, ...] = ()) -> np.ndarray:
    """E_z[f(√q z)], z ~ N(0, 1), for every q of an array (q = 0 is read as a tiny q > 0)."""
    q = np.asarray(q, float)
    x, w = nodes(np.zeros_like(q), np.sqrt(np.maximum(q, Q_FLOOR)), kinks)
    return np.sum(w * f(x), axis=-1)


def pair_expect(
    f: Fn, g: Fn, q: float | np.ndarray, c: float | np.ndarray, kinks: tuple[float, ...] = ()
) -> np.ndarray:
    """E[f(u1) g(u2)] with u1, u2 ~ N(0, q), correlation c, elementwise over broadcast(q, c).

    Nested rule: u1 on the outer nodes, then u2 | u1 ~ N(c u1, q(1 - c²)) on inner nodes.
    """
    q, c = np.broadcast_arrays(np.asarray(q, float), np.clip(np.asarray(c, float), -1.0, 1.0))
    out = np.empty(q.shape)
    for i in np.ndindex(q.shape):  # one element at a time keeps the M×M node grid small
        sd = np.sqrt(max(q[i], Q_FLOOR))
        x1, w1 = nodes(np.zeros(()), np.array(sd), kinks)
        x2, w2 = nodes(c[i] * x1, np.full_like(x1, sd * np.sqrt(1.0 - c[i] ** 2)), kinks)
        out[i] = np.sum(w1 * f(x1) * np.sum(w2 * g(x2), axis=-1))
    return out


# ----------------------------------------------------------------------------- root finding


def solve(f: Fn, a, b, fa, fb, rtol: float = 1e-15, atol: float = 0.0) -> np.ndarray:
    """Elementwise root of f in brackets [a, b] with fa·fb ≤ 0 (Illinois; every third step bisects).

    f maps an array of abscissae (one per bracket) to the array of values.
    """
    a, b, fa, fb = (np.array(v, float, copy=True) for v in np.broadcast_arrays(a, b, fa, fb))
    side = np.zeros(a.shape)  # which end the previous step replaced: -1 a, +1 b
    for it in range(300):
        done = (fa == 0) | (fb == 0) | (np.abs(b - a) <= rtol * np.abs(a + b) / 2 + atol)
        if done.all():
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (a * fb - b * fa) / (fb - fa)
        bis = ~np.isfinite(x) | (x <= np.minimum(a, b)) | (x >= np.maximum(a, b)) | (it % 3 == 2)
        x = np.where(bis | done, 0.5 * (a + b), x)
        fx = f(x)
        on_a = (np.sign(fx) == np.sign(fa)) & ~done  # x replaces a: the root lies in [x, b]
        on_b = ~on_a & ~done
        fb = np.where(on_a & (side == -1) & ~bis, 0.5 * fb, fb)
        fa = np.where(on_b & (side == 1) & ~bis, 0.5 * fa, fa)
        a, fa = np.where(on_a, x, a), np.where(on_a, fx, fa)
        b, fb = np.where(on_b, x, b), np.where(on_b, fx, fb)
        side = np.where(on_a, -1.0, np.where(on_b, 1.0, side))
    return np.where(fa == 0, a, np.where(fb == 0, b, 0.5 * (a + b)))
