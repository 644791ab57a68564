"""Numerical helpers of `sigjax.theory`: float64 activations, Gaussian quadrature, root brackets.

`phi(name)` derives everything the theory needs from the registered jnp function itself: φ, φ'
and φ'' (JAX autodiff, traced in float64 under a local `jax.enable_x64` context), the kinks the
activation declares (where φ' or φ'' jumps), and the slopes (a₋, a₊) of its linear asymptotes,
read off φ' far out, so that φ = a(x) + (a bounded or slowly growing rest) with a(x) = a₊x for
x > 0 and a₋x for x < 0. Subtracting a(x)² before integrating keeps the length map free of
cancellation when q is huge (relu, softplus, silu, ...). The three float64 programs run as numpy
code (each jaxpr equation mapped to its numpy/scipy ufunc: fast on scalars and large arrays
alike, nothing to compile); a program with an equation outside those tables runs through XLA
(jit, float64) instead. Results are cached per activation token, so a re-registered name
derives anew.

Gaussian expectations use composite Gauss–Legendre in t = (x - μ)/s on [-10, 10] (tail mass
1.5e-23): unit panels in t, plus panel edges at φ's own features mapped into t (the origin, ±2^k
for k = -1..40, every kink). The rule therefore resolves the Gaussian at any scale s and φ at its
own scale one, and never straddles a kink; agreement with adaptive quadrature is ~1e-14.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal
from scipy import special

from sigjax.nn import activations

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


def gauss_pdf(x: np.ndarray) -> np.ndarray:
    """Standard normal density."""
    return np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def phi(activation: str) -> Phi:
    """The float64 φ, φ', φ'' of a registered name or alias; UserError for an unknown name."""
    act = activations.get(activation)
    p = _PHIS.get(act.token)
    if p is None:
        p = _PHIS[act.token] = derive(act)
    return p


_PHIS: dict[str, Phi] = {}  # activation token -> its derived Phi


def derive(act: activations.Activation) -> Phi:
    """φ, φ', φ'' (float64 programs from JAX autodiff), kinks and asymptotic slopes of act."""
    f, d1, d2 = _float64_programs(act.fn)
    return Phi(f, d1, d2, act.kinks, _slopes(f, d1))


def _slopes(f: Fn, d1: Fn) -> tuple[float, float]:
    """(a₋, a₊) = φ'(∓2⁴⁰) when φ' has settled there (it agrees with φ'(∓2³⁰)); else φ(x)/x at
    ∓2⁴⁰ when that has settled; else 0 (φ has no linear asymptote on that side). |a| < 1e-12
    counts as 0 (softsign's φ'(2⁴⁰) ≈ 1e-24)."""
    out = []
    for s in (-1.0, 1.0):
        x = s * np.array([2.0**30, 2.0**40])
        a, r = d1(x), f(x) / x
        if np.all(np.isfinite(a)) and abs(a[1] - a[0]) <= 1e-9 * max(1.0, abs(a[1])):
            v = a[1]
        elif np.all(np.isfinite(r)) and abs(r[1] - r[0]) <= 1e-6 * max(1.0, abs(r[1])):
            v = r[1]
        else:
            v = 0.0
        out.append(0.0 if abs(v) < 1e-12 else float(v))
    return out[0], out[1]


# ----------------------------------------------------------------------------- float64 programs


def _float64_programs(fn: Callable) -> tuple[Fn, Fn, Fn]:
    """numpy callables for φ, φ', φ'' in float64 (any input shape, output of that shape).

    One trace of the doubly differentiated φ at a float64 scalar (φ is elementwise, checked at
    registration, so its scalar program serves every shape), split into three programs.
    """

    def with_slope(u):
        return jax.jvp(fn, (u,), (jnp.ones_like(u),))  # (φ, φ')

    def all3(z):
        (f, d1), (_, d2) = jax.jvp(with_slope, (z,), (jnp.ones_like(z),))
        return f, d1, d2

    with jax.enable_x64(True):
        closed = jax.make_jaxpr(all3)(jax.ShapeDtypeStruct((), jnp.float64))
    try:
        steps, outs, init = _flatten(closed)
    except _NotInNumpy:
        return tuple(_xla_program(all3, k) for k in range(3))
    return tuple(_numpy_program(steps, o, init) for o in outs)


_UNARY = {
    "neg": np.negative, "abs": np.abs, "sign": np.sign, "floor": np.floor, "ceil": np.ceil,
    "exp": np.exp, "exp2": np.exp2, "log": np.log, "log1p": np.log1p, "expm1": np.expm1,
    "sqrt": np.sqrt, "rsqrt": lambda x: 1.0 / np.sqrt(x), "cbrt": np.cbrt, "square": np.square,
    "tanh": np.tanh, "logistic": special.expit, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "erf": special.erf,
    "erfc": special.erfc, "erf_inv": special.erfinv, "lgamma": special.gammaln,
    "digamma": special.digamma, "is_finite": np.isfinite, "not": np.invert,
    # on scalars (every value here is one) these only pass their operand on
    "copy": None, "copy_p": None, "broadcast_in_dim": None, "reshape": None, "squeeze": None,
}  # fmt: skip
_BINARY = {
    "add": np.add, "add_any": np.add, "sub": np.subtract, "mul": np.multiply,
    "div": np.divide, "rem": np.fmod, "pow": np.power, "max": np.maximum, "min": np.minimum,
    "atan2": np.arctan2, "nextafter": np.nextafter, "eq": np.equal, "ne": np.not_equal,
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
}  # fmt: skip
_CALLS = ("jaxpr", "call_jaxpr", "fun_jaxpr")  # params holding the body of a call primitive


class _NotInNumpy(Exception):
    """An equation the numpy tables do not cover (the program then runs through XLA)."""


def _op(eqn) -> Callable:
    """The numpy function of one (non-call) equation on scalars of float or bool dtype."""
    name, prm = eqn.primitive.name, eqn.params
    for v in eqn.outvars:
        dt = getattr(v.aval, "dtype", None)
        floaty = dt is not None and (jnp.issubdtype(dt, jnp.floating) or dt == jnp.bool_)
        if getattr(v.aval, "shape", None) != () or not floaty:
            raise _NotInNumpy(name)
    if name in _UNARY:
        return _UNARY[name] or np.array  # a pass-on still gives a fresh array
    if name in _BINARY:
        return _BINARY[name]
    if name == "integer_pow":
        y = int(prm["y"])
        return lambda a: np.power(a, y)
    if name == "convert_element_type":
        dt = np.dtype(prm["new_dtype"])
        return lambda a: np.asarray(a).astype(dt)
    if name == "select_n":  # select_n(which, *cases) = cases[which]
        return lambda w, *c: np.where(w, c[1], c[0]) if len(c) == 2 else np.choose(w, c)
    if name == "clamp":  # clamp(lo, x, hi)
        return lambda lo, a, hi: np.minimum(np.maximum(a, lo), hi)
    raise _NotInNumpy(name)


def _flatten(closed: ClosedJaxpr) -> tuple[list, list[int], list]:
    """(steps, output slots, initial slot values) of the jaxpr with every call inlined.

    A step is (numpy function, input slots, output slot); slot 0 holds the input x.
    """
    init: list = [None]
    steps: list = []

    def const(v) -> int:
        init.append(np.asarray(v, dtype=getattr(v, "dtype", None)))
        return len(init) - 1

    def emit(jaxpr: Jaxpr, consts, ins: list[int]) -> list[int]:
        env = {v: const(c) for v, c in zip(jaxpr.constvars, consts, strict=True)}
        env.update(zip(jaxpr.invars, ins, strict=True))

        def read(v) -> int:
            return const(np.asarray(v.val, v.aval.dtype)) if isinstance(v, Literal) else env[v]

        for e in jaxpr.eqns:
            args = [read(v) for v in e.invars]
            body = next((e.params[k] for k in _CALLS if k in e.params), None)
            if isinstance(body, ClosedJaxpr):
                outs = emit(body.jaxpr, body.consts, args)
            elif isinstance(body, Jaxpr):
                outs = emit(body, [], args)
            else:
                init.append(None)
                steps.append((_op(e), args, len(init) - 1))
                outs = [len(init) - 1]
            env.update(zip(e.outvars, outs, strict=True))
        return [read(v) for v in jaxpr.outvars]

    outs = emit(closed.jaxpr, closed.consts, [0])
    return steps, outs, init


def _numpy_program(steps: list, out: int, init: list) -> Fn:
    """The steps that slot `out` depends on, as one straight-line numpy function of x.

    The function is generated as source (one line per step), so that a call on a scalar costs
    little more than its ufuncs. Floating-point warnings are silenced (XLA's semantics: overflow
    to inf, nan, silently) only where a probe over the whole float64 range raises one: the
    context that silences them costs more than a short program itself.
    """
    need, kept = {out}, []
    for step in reversed(steps):
        if step[2] in need:
            kept.append(step)
            need.update(step[1])
    kept.reverse()
    on_x = {0}  # slots that depend on x, hence have x's shape
    for _, args, dst in kept:
        if on_x.intersection(args):
            on_x.add(dst)
    ns: dict = {"asarray": np.asarray, "array": np.array, "broadcast_to": np.broadcast_to}
    ns.update({f"c{i}": v for i, v in enumerate(init) if i and v is not None})

    def var(i: int) -> str:
        return "x" if i == 0 else f"c{i}" if init[i] is not None else f"v{i}"

    body = []
    for k, (fn, args, dst) in enumerate(kept):
        ns[f"f{k}"] = fn
        body.append(f"v{dst} = f{k}({', '.join(var(i) for i in args)})")
    y = var(out)
    if out in on_x and out != 0:
        ret = f"return asarray({y}, float)"
    else:  # x itself or a constant: a fresh array of x's shape
        ret = f"return array(broadcast_to({y}, x.shape), dtype=float)"

    def build(quiet: bool) -> Fn:
        lines = ["def run(x):", "    x = asarray(x, float)"]
        if quiet:
            lines.append("    with errstate(all='ignore'):")
        lines += [("        " if quiet else "    ") + b for b in body or ["pass"]]
        space: dict = {}
        exec("\n".join([*lines, f"    {ret}"]), {**ns, "errstate": np.errstate}, space)
        return space["run"]

    loud = build(False)
    try:
        with np.errstate(all="raise"):
            loud(_PROBE)
    except FloatingPointError:
        return build(True)
    return loud


_PROBE = np.concatenate(
    [np.linspace(-50.0, 50.0, 2001), *(s * np.geomspace(1e-300, 1e300, 601) for s in (-1, 1))]
)


_CHUNK = 2**16  # XLA runs inputs padded to a power of two up to this many elements, then chunks


def _xla_program(all3: Callable, k: int) -> Fn:
    """Output k of all3 run by XLA in float64, on inputs padded to a few fixed sizes."""
    with jax.enable_x64(True):
        jg = jax.jit(lambda z: all3(z)[k])

    def run(x):
        x = np.asarray(x, float)
        flat, n = x.ravel(), x.size
        size = min(_CHUNK, max(256, 1 << max(n - 1, 0).bit_length()))
        out = np.empty(n)
        with jax.enable_x64(True):
            for i in range(0, n, size):
                part = np.zeros(size)
                m = min(size, n - i)
                part[:m] = flat[i : i + m]
                out[i : i + m] = np.asarray(jg(part), float)[:m]
        return out.reshape(x.shape)

    return run


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
