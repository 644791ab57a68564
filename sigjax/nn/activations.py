"""Activation functions by name, and the door for a user's own: `register(name, fn)`.

Each entry is an elementwise `jnp` function plus the supremum of |φ'| over the real line, which
defines saturation uniformly: a unit is *saturated* when |φ'(z)| < SATURATION_FRACTION · sup|φ'|.
For the sigmoid that is σ(z) outside about [0.0102, 0.9898]; for tanh |tanh z| > 0.9747; for
ReLU, a unit that is switched off (φ' = 0). An entry also lists its kinks (where φ' or φ''
jumps), which the theory's quadrature needs; everything else (float64 φ, φ', φ'', asymptotic
slopes) is derived from the function itself by `sigjax.theory.numerics`.

Every entry carries a `token`, a short hash of the function's identity and code (bytecode,
constants, closure values, defaults, the simple globals it reads) and of its max_slope and
kinks. Compiled programs and checkpoints are keyed on the tokens of the activations they use
(`fingerprint`), so a name re-registered with another function never reuses old results.
"""

from __future__ import annotations

import functools
import hashlib
import math
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from sigjax.errors import UserError, one_line

SATURATION_FRACTION = 0.04


@dataclass(frozen=True)
class Activation:
    name: str
    fn: Callable[[jax.Array], jax.Array]
    max_slope: float  # sup_z |φ'(z)|
    kinks: tuple[float, ...] = ()  # where φ' (or φ'') jumps
    token: str = field(default="", compare=False)  # content hash; filled in when left empty

    def __post_init__(self):
        if not self.token:
            object.__setattr__(self, "token", content_token(self.fn, self.max_slope, self.kinks))

    def __call__(self, z: jax.Array) -> jax.Array:
        return self.fn(z)

    def derivative(self, z: jax.Array) -> jax.Array:
        """Elementwise φ'(z) (a JVP with a tangent of ones: exact for elementwise φ)."""
        return jax.jvp(self.fn, (z,), (jnp.ones_like(z),))[1]

    def saturated(self, z: jax.Array) -> jax.Array:
        """Boolean mask of saturated units, same shape as z."""
        return jnp.abs(self.derivative(z)) < SATURATION_FRACTION * self.max_slope


# ----------------------------------------------------------------------------- content tokens

_SIMPLE = (type(None), bool, int, float, complex, str, bytes)
_DEPTH = 3  # how far functions reached through closures and globals are followed


def content_token(fn: Callable, max_slope: float = 0.0, kinks: tuple[float, ...] = ()) -> str:
    """Short content hash of an activation: fn's identity and code, max_slope and kinks.

    The same source gives the same token in every process (a checkpoint can be resumed); a
    callable without code that is not a named library object falls back to its id.
    """
    return _digest(f"{_ident(fn)}|{max_slope!r}|{kinks!r}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ident(obj, depth: int = 0) -> str:
    """A deterministic description of obj that changes whenever its behaviour may."""
    if isinstance(obj, _SIMPLE):
        return repr(obj)
    if isinstance(obj, tuple | list):
        return "(" + ",".join(_ident(v, depth) for v in obj) + ")"
    if isinstance(obj, set | frozenset):
        return "{" + ",".join(sorted(_ident(v, depth) for v in obj)) + "}"
    if isinstance(obj, dict):
        items = sorted(f"{_ident(k)}:{_ident(v, depth)}" for k, v in obj.items())
        return "{" + ",".join(items) + "}"
    if isinstance(obj, types.CodeType):
        return _code_ident(obj)
    if isinstance(obj, np.ndarray | np.generic | jax.Array):
        a = np.asarray(obj)
        return f"array:{a.dtype}{a.shape}:{hashlib.sha256(a.tobytes()).hexdigest()[:16]}"
    if isinstance(obj, types.ModuleType):
        return f"module:{obj.__name__}"
    if depth > _DEPTH:
        return f"ref:{_name(obj) or type(obj).__qualname__}"
    if isinstance(obj, functools.partial):
        parts = (obj.func, obj.args, obj.keywords)
        return "partial:" + ",".join(_ident(v, depth + 1) for v in parts)
    if isinstance(obj, types.MethodType):
        return f"method:{_ident(obj.__func__, depth + 1)}@{_ident(obj.__self__, depth + 1)}"
    if isinstance(obj, types.FunctionType):
        return _function_ident(obj, depth)
    wrapped = getattr(obj, "__wrapped__", None)  # jax.jit and functools.wraps wrappers
    if wrapped is not None and wrapped is not obj:
        return f"wrapped:{type(obj).__qualname__}:{_ident(wrapped, depth + 1)}"
    name = _name(obj)
    if name is not None:
        return f"named:{name}"
    return f"object:{type(obj).__module__}.{type(obj).__qualname__}@{id(obj)}"


def _function_ident(fn: types.FunctionType, depth: int) -> str:
    cells = []
    for c in fn.__closure__ or ():
        try:
            cells.append(c.cell_contents)
        except ValueError:  # an empty cell
            cells.append("<empty>")
    glob = fn.__globals__
    refs = [
        f"{n}={_global_ident(glob[n], depth + 1)}" for n in sorted(_names(fn.__code__)) if n in glob
    ]
    parts = (
        fn.__module__,
        fn.__qualname__,
        _code_ident(fn.__code__),
        _ident(fn.__defaults__, depth + 1),
        _ident(fn.__kwdefaults__, depth + 1),
        _ident(tuple(cells), depth + 1),
        ";".join(refs),
    )
    return "function:" + "|".join(str(p) for p in parts)


def _global_ident(v, depth: int) -> str:
    """Globals count by value when simple (numbers, arrays, functions), else by type alone."""
    if isinstance(v, (*_SIMPLE, np.ndarray, np.generic, types.ModuleType, types.FunctionType)):
        return _ident(v, depth)
    if isinstance(v, functools.partial) or getattr(v, "__wrapped__", None) is not None:
        return _ident(v, depth)
    return f"type:{type(v).__module__}.{type(v).__qualname__}"


def _code_ident(code: types.CodeType) -> str:
    consts = ",".join(
        _code_ident(c) if isinstance(c, types.CodeType) else _ident(c) for c in code.co_consts
    )
    return f"code:{code.co_name}:{code.co_code.hex()}:[{consts}]:{code.co_names}"


def _names(code: types.CodeType) -> set[str]:
    """Every global or attribute name the code (and the code nested in it) refers to."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _names(c)
    return out


def _name(obj) -> str | None:
    """'module.qualname' when importing that name gives obj back (a library object), else None."""
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    qual = qual or getattr(obj, "__name__", None)
    if not isinstance(module, str) or not isinstance(qual, str):
        return None
    import sys

    found = sys.modules.get(module)
    for part in qual.split("."):
        found = getattr(found, part, None)
    return f"{module}.{qual}" if found is obj else None


# ----------------------------------------------------------------------------- built-ins


def _hard_tanh(z):
    return jnp.clip(z, -1.0, 1.0)


def _centred_sigmoid(z):
    return jax.nn.sigmoid(z) - 0.5


def _erf(z):
    return jax.scipy.special.erf(z)


# sup|φ'| of silu and gelu are attained at finite z: silu at z≈2.3994, gelu (exact) at z=√2.
_SILU_MAX = 1.0998393201
_GELU_MAX = 1.1289041452

REGISTRY: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("sigmoid", jax.nn.sigmoid, 0.25),
        Activation("centred_sigmoid", _centred_sigmoid, 0.25),
        Activation("tanh", jnp.tanh, 1.0),
        Activation("relu", jax.nn.relu, 1.0, (0.0,)),
        Activation("leaky_relu", jax.nn.leaky_relu, 1.0, (0.0,)),  # negative slope 0.01
        Activation("elu", jax.nn.elu, 1.0, (0.0,)),
        Activation("softplus", jax.nn.softplus, 1.0),
        Activation("softsign", jax.nn.soft_sign, 1.0, (0.0,)),
        Activation("erf", _erf, 2.0 / math.sqrt(math.pi)),
        Activation("hard_sigmoid", jax.nn.hard_sigmoid, 1.0 / 6.0, (-3.0, 3.0)),  # relu6(x+3)/6
        Activation("hard_tanh", _hard_tanh, 1.0, (-1.0, 1.0)),
        Activation("silu", jax.nn.silu, _SILU_MAX),
        Activation("gelu", lambda z: jax.nn.gelu(z, approximate=False), _GELU_MAX),
        Activation("identity", lambda z: z, 1.0),
    ]
}
BUILTIN = tuple(REGISTRY)  # the names sigjax ships, before any user registers more
ALIASES = {"swish": "silu", "linear": "identity", "centered_sigmoid": "centred_sigmoid"}


def get(name: str) -> Activation:
    """The activation called `name` (or an alias); a UserError naming the choices otherwise."""
    key = ALIASES.get(name, name)
    if key not in REGISTRY:
        raise UserError(f"unknown activation {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def names() -> list[str]:
    return sorted(REGISTRY)


def fingerprint(names: Iterable[str]) -> str:
    """Short hash of the named activations' tokens (aliases resolved; order and repeats ignored).

    Anything compiled or saved for these activations is valid exactly while this is unchanged.
    """
    acts = sorted({get(n).name for n in names})
    return _digest(";".join(f"{n}={REGISTRY[n].token}" for n in acts))


# ----------------------------------------------------------------------------- registration


def register(
    name: str,
    fn: Callable[[jax.Array], jax.Array],
    *,
    max_slope: float | None = None,
    kinks: Iterable[float] | None = None,
    replace: bool = False,
) -> Activation:
    """Make the elementwise jnp function `fn` the activation `name` (training, saturation, theory).

    `max_slope` = sup|φ'| (found numerically when omitted: `find_max_slope`); `kinks` = the
    points where φ' (or φ'') jumps, which the theory's quadrature splits at. Refused with a
    UserError: a name that is not identifier-like or is an alias, a function that fails on a
    float32 array, is not elementwise, is not finite at 0 or has a non-finite derivative at a
    test point; a name already registered with another function unless replace=True.
    Registering the same function (same token) again returns the existing entry.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise UserError(f"activation name must be an identifier like 'my_tanh', got {name!r}")
    if name in ALIASES:
        raise UserError(f"activation name {name!r} is an alias of {ALIASES[name]!r}; pick another")
    if not callable(fn):
        raise UserError(f"activation {name!r}: fn must be an elementwise jnp function, got {fn!r}")
    ks = _check_kinks(name, kinks)
    if max_slope is not None:
        try:
            ok = math.isfinite(float(max_slope)) and float(max_slope) > 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"activation {name!r}: max_slope must be a finite number > 0")
    old = REGISTRY.get(name)
    if old is not None and not replace:
        same = old.fn is fn or _ident(fn) == _ident(old.fn)
        if same and max_slope in (None, old.max_slope) and (kinks is None or ks == old.kinks):
            return old
        raise UserError(
            f"activation {name!r} is already registered with another function; "
            "pass replace=True to replace it"
        )
    check_function(name, fn)
    slope = float(max_slope) if max_slope is not None else find_max_slope(fn, name)
    act = Activation(name, fn, slope, ks)
    REGISTRY[name] = act
    return act


def _check_kinks(name: str, kinks: Iterable[float] | None) -> tuple[float, ...]:
    try:
        ks = tuple(sorted({float(k) for k in (kinks or ())}))
    except (TypeError, ValueError):
        raise UserError(f"activation {name!r}: kinks must be numbers, got {kinks!r}") from None
    if not all(math.isfinite(k) for k in ks):
        raise UserError(f"activation {name!r}: kinks must be finite, got {kinks!r}")
    return ks


# unsorted, both signs, 0 included, no built-in kink (0 aside): a reduction or reordering shows
_TEST_Z = np.array(
    [0.37, -2.9, 5.3, 0.0, -0.61, 1.7, -7.9, 3.3, -1.2, 0.05, 9.7, -4.4, 2.2, -0.08, 12.5],
    np.float32,
)


def check_function(name: str, fn: Callable) -> None:
    """UserError unless fn is elementwise, finite at 0 and has finite derivatives at test points.

    Runs as training does: float32, under jit. "Elementwise" is checked by comparing fn on a
    vector with fn on each element alone (vmap over scalars) and on a 2-D reshaping.
    """
    z = jnp.asarray(_TEST_Z)
    try:
        out = jax.jit(fn)(z)
        alone = jax.jit(jax.vmap(fn))(z)
        out2 = jax.jit(fn)(z.reshape(3, 5))
    except Exception as e:  # the user's function failed: say how, in one line
        raise UserError(
            f"activation {name!r} must map a float32 array elementwise ({one_line(e)})"
        ) from None
    for o, shape in ((out, z.shape), (alone, z.shape), (out2, (3, 5))):
        o = jnp.asarray(o)
        if o.shape != shape or not jnp.issubdtype(o.dtype, jnp.floating):
            raise UserError(
                f"activation {name!r} must map a float array to a float array of the same shape, "
                f"got {o.dtype}{list(o.shape)} from float32{list(shape)}"
            )
    a, b, c = (np.asarray(v, np.float64).ravel() for v in (out, alone, out2))
    if not (np.allclose(a, b, 1e-5, 1e-6, equal_nan=True) and np.allclose(a, c, 1e-5, 1e-6, True)):
        raise UserError(
            f"activation {name!r} is not elementwise: fn on a vector differs from fn on each "
            "element alone"
        )
    if not np.isfinite(a[_TEST_Z == 0]).all():
        raise UserError(f"activation {name!r} is not finite at 0: fn(0) = {a[_TEST_Z == 0][0]}")
    try:
        d = np.asarray(jax.jit(lambda u: _d1(fn, u))(z), np.float64)
    except Exception as e:
        raise UserError(f"activation {name!r} cannot be differentiated ({one_line(e)})") from None
    bad = ~np.isfinite(d)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(
            f"activation {name!r} is not differentiable: its derivative at z = {_TEST_Z[i]:g} "
            f"is {d[i]}"
        )


def _d1(fn: Callable, z: jax.Array) -> jax.Array:
    """Elementwise φ'(z) by a JVP with a tangent of ones."""
    return jax.jvp(fn, (z,), (jnp.ones_like(z),))[1]


_DENSE = np.linspace(-64.0, 64.0, 2**20 + 1)  # spacing 1.2e-4
_FAR = np.geomspace(64.0, 2.0**40, 2000)  # ratio 1.0125 between neighbours


def find_max_slope(fn: Callable, name: str = "fn") -> float:
    """sup_z |φ'(z)| in float64: a dense grid on [-64, 64], a geometric one out to ±2⁴⁰, and a
    bounded Brent search around the best grid point. UserError when |φ'| still grows at ±2⁴⁰
    (no finite supremum: pass max_slope) or is 0 everywhere (a constant)."""
    from scipy.optimize import minimize_scalar

    with jax.enable_x64(True):
        d1 = jax.jit(lambda u: jnp.abs(_d1(fn, u)))
        grid = np.concatenate([-_FAR[::-1], _DENSE, _FAR])
        vals = np.asarray(d1(grid), np.float64)
        vals = np.where(np.isfinite(vals), vals, -np.inf)
        half = grid.size // 2
        for side in (vals[:half][::-1], vals[half:]):  # each side, outwards to ±2^40
            if side[-1] > (1 + 1e-6) * side[:-1].max():  # the far end beats everything else
                raise UserError(
                    f"activation {name!r}: |φ'| grows without bound (still rising at z = ±2^40); "
                    "pass max_slope explicitly"
                )
        i = int(np.argmax(vals))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        res = minimize_scalar(
            lambda u: -float(d1(np.float64(u))),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-12 * max(1.0, abs(grid[i]))},
        )
        best = max(float(vals[i]), -float(res.fun) if np.isfinite(res.fun) else 0.0)
    if not best > 0:
        raise UserError(f"activation {name!r}: φ' is 0 everywhere (a constant function)")
    return best
