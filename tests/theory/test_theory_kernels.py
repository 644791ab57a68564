"""Infinite-width NNGP and NTK: closed forms (ReLU arc-cosine, erf), Monte Carlo over wide random
networks (NTK and standard parameterization), symmetry, positive semi-definiteness, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sigjax import theory
from sigjax.errors import UserError
from sigjax.nn import activations, models
from sigjax.theory.infinite_width import kernels

# inputs with near-parallel, near-orthogonal and anti-correlated pairs and unequal norms
X = np.array(
    [
        [1.0, 0.5, -0.3, 0.8],
        [0.2, -1.0, 0.4, 0.1],
        [1.2, 0.6, -0.2, 0.9],
        [-0.7, 0.3, 1.1, -0.5],
        [-1.0, -0.5, 0.3, -0.8],
    ]
)
Y = np.array([[0.3, 0.3, 0.3, 0.3], [2.0, -0.1, 0.0, 0.5], [-0.2, 0.9, -1.3, 0.4]])


def _recursion(maps, depth, w, b, x1, x2):
    """The NTK-parameterization recursion with closed-form maps(q1, q2, s) -> (E φφ, E φ′φ′)."""
    d = x1.shape[1]
    q1, q2 = w * np.sum(x1**2, 1) / d + b, w * np.sum(x2**2, 1) / d + b
    s = w * x1 @ x2.T / d + b
    ntk = s.copy()
    for _ in range(depth):
        k, kd = maps(q1[:, None], q2[None, :], s)
        s = w * k + b
        ntk = s + w * kd * ntk
        q1 = w * maps(q1, q1, q1)[0] + b
        q2 = w * maps(q2, q2, q2)[0] + b
    return s, ntk


def _relu_maps(q1, q2, s):
    """Arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009)."""
    norm = np.sqrt(q1 * q2)
    theta = np.arctan2(np.sqrt(np.maximum(q1 * q2 - s * s, 0.0)), s)  # stable at θ = 0
    k1 = norm / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    return k1, (np.pi - theta) / (2 * np.pi)


def _erf_maps(q1, q2, s):
    """E[erf(u)erf(v)] (Williams 1997) and E[erf′(u)erf′(v)] = (4/π) det(I + 2Σ)^(-1/2)."""
    prod = (1 + 2 * q1) * (1 + 2 * q2)
    return 2 / np.pi * np.arcsin(2 * s / np.sqrt(prod)), 4 / np.pi / np.sqrt(prod - 4 * s * s)


@pytest.mark.parametrize(
    ("name", "maps"), [("relu", _relu_maps), ("erf", _erf_maps)], ids=["relu", "erf"]
)
@pytest.mark.parametrize(("depth", "w", "b"), [(1, 2.0, 0.0), (3, 1.3, 0.2)])
def test_closed_forms(name, maps, depth, w, b):
    for x2 in (None, Y):
        nngp, ntk = kernels(name, depth, w, b, X, x2)
        ref = _recursion(maps, depth, w, b, X, X if x2 is None else x2)
        assert nngp.shape == ntk.shape == ref[0].shape and nngp.dtype == np.float64
        # X[4] = -X[0]: the ReLU kernel of that pair is exactly 0 (held to 1e-12 absolute)
        np.testing.assert_allclose(nngp, ref[0], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(ntk, ref[1], rtol=1e-6, atol=1e-12)


def test_tangent_kernels_unrolled():
    """Θ_ntk = Σ_l (σ_w² Kˡ + σ_b²) Bˡ and Θ_std = Σ_l (m_l Kˡ + 1) Bˡ (the module docstring),
    with Kˡ, Bˡ from the erf closed forms, at unequal hidden widths."""
    w, b, depth, widths = 1.3, 0.2, 3, [7, 50, 300]
    d = X.shape[1]
    q1, q2 = w * np.sum(X**2, 1) / d + b, w * np.sum(Y**2, 1) / d + b
    ks, kds = [X @ Y.T / d], []  # Kˡ (layer l's input kernel); E[φ′φ′] under Σˡ⁻¹
    for _ in range(depth):
        k, kd = _erf_maps(q1[:, None], q2[None, :], w * ks[-1] + b)
        ks.append(k), kds.append(kd)
        q1, q2 = (w * _erf_maps(q, q, q)[0] + b for q in (q1, q2))
    back = [np.prod([w * kd for kd in kds[l:]], axis=0) for l in range(depth + 1)]  # Bˡ
    ntk = sum((w * k + b) * bl for k, bl in zip(ks, back, strict=True))
    std = sum((m * k + 1) * bl for m, k, bl in zip([d, *widths], ks, back, strict=True))
    np.testing.assert_allclose(kernels("erf", depth, w, b, X, Y)[1], ntk, rtol=1e-6)
    got = kernels("erf", depth, w, b, X, Y, parameterization="standard", width=widths)
    np.testing.assert_allclose(got[1], std, rtol=1e-6)


def test_depth_zero_is_the_first_layers_kernel():
    nngp, ntk = kernels("tanh", 0, 1.7, 0.3, X, Y)
    np.testing.assert_allclose(nngp, 1.7 * X @ Y.T / 4 + 0.3, rtol=1e-15)
    np.testing.assert_array_equal(nngp, ntk)


def test_exposed_as_theory_kernels():
    assert theory.kernels is kernels


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_symmetric_and_positive_semidefinite(name):
    nngp, ntk = kernels(name, 2, 1.8, 0.1, X)
    for k in (nngp, ntk):
        np.testing.assert_array_equal(k, k.T)
        eig = np.linalg.eigvalsh(k)
        assert eig.min() >= -1e-12 * eig.max()
    # swapping the two input sets conditions the nested rule on the other variable: the same
    # numbers back is a check of the quadrature, not only of bookkeeping
    a, b = kernels(name, 2, 1.8, 0.1, X, Y), kernels(name, 2, 1.8, 0.1, Y, X)
    np.testing.assert_allclose(a[0], b[0].T, rtol=1e-12)
    np.testing.assert_allclose(a[1], b[1].T, rtol=1e-12)
    same = kernels(name, 2, 1.8, 0.1, X, X)  # x2 given: diagonal by the 2-d rule at v = u
    np.testing.assert_allclose(same[0], nngp, rtol=1e-12)
    np.testing.assert_allclose(same[1], ntk, rtol=1e-12)


# ----------------------------------------------------------------------------- Monte Carlo

MC = [("tanh", 1.5, 0.1), ("sigmoid", 4.0, 0.1)]
WIDTH = 1024


def _ntk_init(seed, d, width, depth):
    """NTK-parameterized MLP: every weight and bias ~ N(0, 1) (numpy draws: nothing to compile)."""
    sizes, rng = [d] + [width] * depth + [1], np.random.default_rng(seed)
    return [
        (rng.standard_normal((m, n), np.float32), rng.standard_normal(n, np.float32))
        for m, n in zip(sizes[:-1], sizes[1:], strict=True)
    ]


def _ntk_init_jax(key, d, width, depth):
    """As `_ntk_init`, drawn by JAX (for vmap over many networks)."""
    sizes = [d] + [width] * depth + [1]
    keys = jax.random.split(key, 2 * (depth + 1))
    return [
        (jax.random.normal(keys[2 * i], (m, n)), jax.random.normal(keys[2 * i + 1], (n,)))
        for i, (m, n) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
    ]


def _ntk_forward(params, x, act, w, b, upto=None):
    """Pre-activations of layer `upto` (default: the scalar output), z = √(w/fan_in)·hW + √b·c."""
    h = x
    for i, (weight, bias) in enumerate(params[:upto]):
        h = act(h) if i else h
        h = jnp.sqrt(w / weight.shape[0]) * h @ weight + jnp.sqrt(b) * bias
    return h


def _scaled_error(emp, th):
    """|emp - th| in units of √(th_ii th_jj): small kernel entries are not held to a ratio."""
    scale = np.sqrt(np.diag(th))
    return np.max(np.abs(emp - th) / np.outer(scale, scale))


def _conditional_draws(name, w, b, x, width, depth, draws, seed):
    """Readout covariances w φ(h)·φ(h′)/n + b of `draws` random NTK-parameterized networks.

    Layer by layer, each unit's pre-activations over the inputs are drawn jointly: given the
    layer below, A (inputs × n), unit i of z = √(w/n) A Wᵢ + √b cᵢ is N(0, w A Aᵀ/n + b) and the
    units are independent, so this is the network's own distribution without the n × n weight
    matrices. The readout is integrated exactly: E[f f′ | h] = w φ(h)·φ(h′)/n + b.
    """
    act, rng = activations.get(name).fn, np.random.default_rng(seed)
    z = np.einsum("ad,rdn->ran", x, rng.standard_normal((draws, x.shape[1], width)))
    z = np.sqrt(w / x.shape[1]) * z + np.sqrt(b) * rng.standard_normal((draws, 1, width))
    for layer in range(depth):
        a = np.asarray(act(jnp.asarray(z)), float)
        cov = w * a @ a.transpose(0, 2, 1) / width + b  # (draws, inputs, inputs)
        if layer == depth - 1:
            return cov
        z = np.linalg.cholesky(cov) @ rng.standard_normal(a.shape)


@pytest.mark.parametrize(("name", "w", "b"), MC)
def test_nngp_monte_carlo(name, w, b):
    """The output covariance over 2000 random width-1024 networks of depth 2."""
    emp = _conditional_draws(name, w, b, X, WIDTH, 2, 2000, seed=0).mean(0)
    nngp, _ = kernels(name, 2, w, b, X)
    assert _scaled_error(emp, nngp) < 0.005


@pytest.mark.slow
@pytest.mark.parametrize(("name", "w", "b"), MC)
def test_nngp_monte_carlo_weight_matrices(name, w, b):
    """As above with every weight matrix drawn: 64 networks, the readout integrated exactly."""
    act, x = activations.get(name), jnp.asarray(X, jnp.float32)

    @jax.jit
    def readout_cov(keys):
        def one(key):
            a = act(_ntk_forward(_ntk_init_jax(key, 4, WIDTH, 2), x, act, w, b, upto=2))
            return w * a @ a.T / WIDTH + b

        return jax.vmap(one)(keys).mean(0)

    keys = jax.random.split(jax.random.key(0), 64)
    emp = np.mean([np.asarray(readout_cov(keys[i : i + 16])) for i in range(0, 64, 16)], axis=0)
    nngp, _ = kernels(name, 2, w, b, X)
    assert _scaled_error(emp, nngp) < 0.01


def _empirical_ntk(f, params):
    jac = jax.jacobian(f)(params)
    flat = jnp.concatenate([j.reshape(j.shape[0], -1) for j in jax.tree.leaves(jac)], axis=1)
    return flat @ flat.T


@pytest.mark.parametrize(("name", "w", "b"), MC)
def test_ntk_monte_carlo(name, w, b):
    """J Jᵀ of 8 random width-1024 NTK-parameterized networks (depth 2), averaged."""
    act, x = activations.get(name), jnp.asarray(X, jnp.float32)
    entk = jax.jit(lambda p: _empirical_ntk(lambda q: _ntk_forward(q, x, act, w, b)[:, 0], p))
    emp = np.mean([np.asarray(entk(_ntk_init(100 + i, 4, WIDTH, 2))) for i in range(8)], axis=0)
    _, ntk = kernels(name, 2, w, b, X)
    assert _scaled_error(emp, ntk) < 0.04


def test_standard_parameterization_matches_the_sigjax_mlp():
    """sigjax's own MLP (W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²), ordinary gradients): its
    empirical tangent kernel is Θ_std at its widths, and its forward kernel the same NNGP."""
    w, b, name = 1.5, 0.1, "tanh"
    mlp = models.MLP(widths=(WIDTH, WIDTH), out_dim=1, activation=name)
    x = jnp.asarray(X, jnp.float32)

    @jax.jit
    def entk(key):
        params = models.init_params(mlp, key, 4, jnp.float32(w), jnp.float32(b))
        return _empirical_ntk(lambda p: models.apply(mlp, p, x)[0][:, 0], params)

    emp = np.mean([np.asarray(entk(jax.random.key(7 + i))) for i in range(8)], axis=0)
    nngp, ntk_std = kernels(name, 2, w, b, X, parameterization="standard", width=WIDTH)
    assert _scaled_error(emp, ntk_std) < 0.04
    nngp_ntk, _ = kernels(name, 2, w, b, X)
    np.testing.assert_array_equal(nngp, nngp_ntk)  # the same forward kernel
    assert kernels(name, 2, w, b, X, parameterization="standard", width=[WIDTH, WIDTH])[1] == (
        pytest.approx(ntk_std, rel=1e-15)
    )


@pytest.mark.slow
@pytest.mark.parametrize(("name", "w", "b"), MC)
def test_nngp_monte_carlo_output_covariance(name, w, b):
    """The sample covariance of the outputs themselves over 16384 random width-2048 networks
    (depth 1: every weight drawn, nothing integrated), within five standard errors."""
    act, x = activations.get(name), jnp.asarray(X, jnp.float32)

    @jax.jit
    def outputs(keys):
        def one(key):
            return _ntk_forward(_ntk_init_jax(key, 4, 2048, 1), x, act, w, b)[:, 0]

        return jax.vmap(one)(keys)

    draws, chunk = 16384, 512
    keys = jax.random.split(jax.random.key(1), draws)
    f = np.concatenate(
        [np.asarray(outputs(keys[i : i + chunk]), float) for i in range(0, draws, chunk)]
    )
    prods = f[:, :, None] * f[:, None, :]  # mean zero: E[f f′] is the covariance
    emp, se = prods.mean(0), prods.std(0) / np.sqrt(draws)
    nngp, _ = kernels(name, 1, w, b, X)
    assert np.all(np.abs(emp - nngp) <= 5 * se)


# ----------------------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": -1}, "depth must be an integer >= 0"),
        ({"depth": 1.5}, "depth must be an integer >= 0"),
        ({"sigma_w2": -1.0}, "sigma_w2 must be a finite variance"),
        ({"sigma_b2": float("nan")}, "sigma_b2 must be a finite variance"),
        ({"x1": np.ones(4)}, "x1 must be an"),
        ({"x2": np.ones((2, 3))}, "x2 has 3 features per row but x1 has 4"),
        ({"x1": np.full((2, 4), np.inf)}, "x1 holds a non-finite value"),
        ({"activation": "nope"}, "unknown activation"),
        ({"parameterization": "mup"}, "parameterization must be one of ntk, standard"),
        ({"width": 8}, "width applies to parameterization='standard' only"),
        ({"parameterization": "standard"}, "needs the hidden width"),
        ({"parameterization": "standard", "width": [8]}, "width must be an int >= 1 or 2"),
        ({"parameterization": "standard", "width": 0}, "width must be an int >= 1 or 2"),
    ],
)
def test_user_errors(kwargs, match):
    args = {"activation": "tanh", "depth": 2, "sigma_w2": 1.0, "sigma_b2": 0.0, "x1": X}
    with pytest.raises(UserError, match=match):
        kernels(**{**args, **kwargs})
