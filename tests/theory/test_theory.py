"""Mean-field theory: closed forms, adaptive quadrature, exact identities, Monte Carlo, CLI."""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, optimize

from sigjax import theory
from sigjax.cli import theory_command as theory_cli
from sigjax.errors import UserError
from sigjax.nn import activations
from sigjax.theory import numerics as nm

BOUNDED = ["tanh", "sigmoid", "erf", "softsign", "hard_tanh", "hard_sigmoid", "centred_sigmoid"]


# ----------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", activations.names())
def test_numpy_activations_match_registry(name):
    act, p = activations.get(name), nm.phi(name)
    x = np.linspace(-9.0, 9.0, 1201) + 0.0037  # misses every kink
    x32 = jnp.asarray(x, jnp.float32)

    def d1(z):
        return act.derivative(z)

    def d2(z):
        return jax.jvp(d1, (z,), (jnp.ones_like(z),))[1]

    for ours, ref in ((p.f, act.fn), (p.d1, d1), (p.d2, d2)):
        np.testing.assert_allclose(ours(x), np.asarray(ref(x32), float), rtol=2e-5, atol=2e-6)
    a_minus, a_plus = p.slopes
    assert p.d1(np.array(1e6)) == pytest.approx(a_plus, abs=1e-9)
    assert p.d1(np.array(-1e6)) == pytest.approx(a_minus, abs=1e-9)


def test_aliases_and_unknown_names():
    assert nm.phi("swish") is nm.phi("silu") and nm.phi("linear") is nm.phi("identity")
    with pytest.raises(UserError, match="unknown activation"):
        theory.q_star("nope", 1.0, 0.0)


# ----------------------------------------------------------------------------- quadrature


def _ref_expect(f, q, kinks=()):
    """E f(x), x ~ N(0, q), by adaptive quadrature split at the origin and the kinks."""
    pts = sorted({0.0, *kinks})
    edges = [-np.inf, *pts, np.inf]

    def g(x):
        return float(f(np.array(x))) * np.exp(-x * x / (2 * q)) / np.sqrt(2 * np.pi * q)

    opts = dict(epsabs=0.0, epsrel=1e-13, limit=400)
    return sum(
        integrate.quad(g, a, b, **opts)[0] for a, b in zip(edges[:-1], edges[1:], strict=True)
    )


def _ref_q_star(name, w, b):
    p = nm.phi(name)

    def gap(q):
        return w * _ref_expect(lambda x: p.f(x) ** 2, q, p.kinks) + b - q

    return optimize.brentq(gap, 1e-3, 1e4, xtol=1e-14, rtol=1e-14)


@pytest.mark.parametrize(
    "name, w, b",
    [("sigmoid", 10.0, 0.0), ("sigmoid", 30.0, 0.1), ("sigmoid", 100.0, 0.05),
     ("sigmoid", 400.0, 0.0), ("tanh", 2.0, 0.1), ("softsign", 3.0, 0.2),
     ("hard_tanh", 1.5, 0.1), ("hard_sigmoid", 60.0, 0.3), ("elu", 1.2, 0.3),
     ("gelu", 1.5, 0.2)],
)  # fmt: skip
def test_q_star_and_chi_1_match_adaptive_quadrature(name, w, b):
    p = nm.phi(name)
    q_ref = _ref_q_star(name, w, b)
    chi_ref = w * _ref_expect(lambda x: p.d1(x) ** 2, q_ref, p.kinks)
    assert theory.q_star(name, w, b) == pytest.approx(q_ref, rel=1e-9)
    assert theory.chi_1(name, w, b) == pytest.approx(chi_ref, rel=1e-9)


def test_pair_expectation_matches_nested_adaptive_quadrature():
    p, q, c = nm.phi("sigmoid"), 40.0, 0.7
    s = np.sqrt(q * (1 - c * c))

    def inner(x1):
        return _ref_expect(lambda y: p.f(y + c * x1), s * s)

    ref = _ref_expect(lambda x1: p.f(x1) * inner(float(x1)), q)
    assert nm.pair_expect(p.f, p.f, q, c) == pytest.approx(ref, rel=1e-9)


def test_results_do_not_move_when_the_quadrature_is_refined(monkeypatch):
    b = np.array([0.0, 0.05, 0.5])
    base = {n: theory.critical_sigma_w2(n, b) for n in ("sigmoid", "tanh", "hard_tanh")}
    q_base = theory.q_star("sigmoid", np.array([10.0, 100.0, 1000.0]), 0.1)
    monkeypatch.setattr(nm, "ORDER", 28)
    for n, w in base.items():
        np.testing.assert_allclose(theory.critical_sigma_w2(n, b), w, rtol=1e-11)
    q_fine = theory.q_star("sigmoid", np.array([10.0, 100.0, 1000.0]), 0.1)
    np.testing.assert_allclose(q_fine, q_base, rtol=1e-11)


# ----------------------------------------------------------------------------- closed forms


def test_erf_closed_forms():
    w, b = np.array([0.5, 1.0, 2.0, 5.0]), np.array([0.02, 0.1, 0.5, 1.0])
    q = np.array([0.01, 0.3, 2.0, 50.0])
    arc = (2 / np.pi) * np.arcsin(2 * q / (1 + 2 * q))
    np.testing.assert_allclose(theory.length_map("erf", q, w, b), w * arc + b, rtol=1e-12)
    qs = theory.q_star("erf", w, b)
    np.testing.assert_allclose(qs, w * (2 / np.pi) * np.arcsin(2 * qs / (1 + 2 * qs)) + b)
    chi = w * (4 / np.pi) / np.sqrt(1 + 4 * qs)
    np.testing.assert_allclose(theory.chi_1("erf", w, b), chi, rtol=1e-12)
    c = np.array([0.0, 0.3, 0.9, 0.999])
    want = (w * (2 / np.pi) * np.arcsin(2 * qs * c / (1 + 2 * qs)) + b) / qs
    np.testing.assert_allclose(theory.correlation_map("erf", c, w, b), want, rtol=1e-11, atol=1e-14)


def test_erf_critical_line_closed_form():
    # Critical: σ_w² = (π/4)√(1 + 4q), σ_b² = q - σ_w²(2/π) arcsin(2q/(1 + 2q)).
    q = np.array([0.05, 0.4, 1.0, 3.0, 20.0])
    w = (np.pi / 4) * np.sqrt(1 + 4 * q)
    b = q - w * (2 / np.pi) * np.arcsin(2 * q / (1 + 2 * q))
    np.testing.assert_allclose(theory.critical_sigma_w2("erf", b), w, rtol=1e-11)
    assert theory.critical_sigma_w2("erf", 0.0) == pytest.approx(np.pi / 4, rel=1e-12)


def test_relu_arc_cosine_maps():
    w, b = np.array([0.5, 1.0, 1.9]), np.array([0.3, 0.2, 0.1])
    q = np.array([0.2, 1.0, 7.0])
    np.testing.assert_allclose(theory.length_map("relu", q, w, b), w * q / 2 + b, rtol=1e-13)
    qs = theory.q_star("relu", w, b)
    np.testing.assert_allclose(qs, b / (1 - w / 2), rtol=1e-12)
    np.testing.assert_allclose(theory.chi_1("relu", w, b), w / 2, rtol=1e-13)
    assert theory.q_star("relu", 1.0, 0.0) == 0.0 and theory.chi_1("relu", 1.0, 0.0) == 0.5
    c = np.array([0.1, 0.5, 0.95])
    k = qs / (2 * np.pi) * (np.sqrt(1 - c * c) + (np.pi - np.arccos(c)) * c)
    got = theory.correlation_map("relu", c, w, b)
    np.testing.assert_allclose(got, (w * k + b) / qs, rtol=1e-11)
    # χ₁ = σ_w²/2 on both sides of 2; beyond it the length map diverges (q* = inf).
    assert theory.chi_1("relu", 3.0, 0.1) == pytest.approx(1.5)
    assert theory.q_star("relu", 3.0, 0.1) == np.inf
    np.testing.assert_allclose(theory.critical_sigma_w2("relu", [0.0, 0.2, 1.0]), 2.0)


@pytest.mark.parametrize("name, want", [("tanh", 1.0), ("softsign", 1.0), ("hard_tanh", 1.0),
                                        ("erf", np.pi / 4), ("identity", 1.0)])  # fmt: skip
def test_critical_sigma_w2_at_zero_bias(name, want):
    assert theory.critical_sigma_w2(name, 0.0) == pytest.approx(want, rel=1e-12)


def test_unbounded_critical_points_at_infinite_q():
    w, q = theory.critical_point("softplus", [0.0, 0.5])
    np.testing.assert_allclose(w, 2.0)
    assert np.all(np.isinf(q))
    assert theory.chi_1("softplus", 1.99, 0.5) < 1 < theory.chi_1("softplus", 2.01, 0.5)
    assert theory.critical_sigma_w2("leaky_relu", 0.3) == pytest.approx(2 / (1 + 0.01**2))


def test_silu_has_no_stable_critical_point_at_small_bias():
    w, q = theory.critical_point("silu", [0.0, 0.1, 1.0])
    assert np.isnan(w[0]) and np.isnan(w[1]) and np.isfinite(w[2])
    assert theory.chi_1("silu", w[2], 1.0, q_start=q[2]) == pytest.approx(1.0, abs=1e-9)


# ----------------------------------------------------------------------------- identities


def test_sigmoid_is_a_rescaled_tanh():
    # σ(x) = ½ + ½tanh(x/2): y = z/2 follows a tanh net with σ_w²/16 and σ_b²/4 + σ_w²/16.
    w, b = np.array([5.0, 30.0, 103.0, 250.0]), np.array([0.0, 0.1, 0.05, 1.0])
    wt, bt = w / 16, b / 4 + w / 16
    q = np.array([0.5, 3.0, 45.0, 200.0])
    np.testing.assert_allclose(
        theory.length_map("sigmoid", q, w, b), 4 * theory.length_map("tanh", q / 4, wt, bt)
    )
    np.testing.assert_allclose(theory.q_star("sigmoid", w, b), 4 * theory.q_star("tanh", wt, bt))
    np.testing.assert_allclose(theory.chi_1("sigmoid", w, b), theory.chi_1("tanh", wt, bt))
    np.testing.assert_allclose(
        theory.length_map_slope("sigmoid", q, w), theory.length_map_slope("tanh", q / 4, wt)
    )
    sig, tanh = (
        theory.mean_field("sigmoid", 150.0, 0.2),
        theory.mean_field("tanh", 150 / 16, 0.05 + 150 / 16),
    )
    assert sig.phase == tanh.phase == "chaotic"
    for k in ("c_star", "chi_c", "xi_q", "xi_c"):
        assert getattr(sig, k) == pytest.approx(getattr(tanh, k), rel=1e-9), k
    bs = np.array([0.0, 0.05, 0.5, 3.0])
    ws = theory.critical_sigma_w2("sigmoid", bs)
    np.testing.assert_allclose(theory.critical_sigma_w2("tanh", bs / 4 + ws / 16), ws / 16)


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "erf", "softsign", "hard_tanh",
                                  "hard_sigmoid", "elu", "relu", "softplus", "gelu"])  # fmt: skip
def test_critical_line_has_chi_1_equal_one(name):
    b = np.array([0.0, 0.01, 0.05, 0.3, 0.5, 2.0])
    if name == "gelu":
        b = b[b >= 0.3]
    w = theory.critical_sigma_w2(name, b)
    assert np.all(np.isfinite(w))
    np.testing.assert_allclose(theory.chi_1(name, w, b), 1.0, rtol=0, atol=1e-9)
    assert np.all(theory.chi_1(name, w * 0.999, b) < 1) and np.all(
        theory.chi_1(name, w * 1.001, b) > 1
    )


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "hard_tanh", "hard_sigmoid", "relu", "silu"])
def test_length_map_slope_is_its_derivative(name):
    q = np.array([0.3, 2.0, 40.0])
    h = 1e-4 * q
    fd = (theory.length_map(name, q + h, 2.0, 0.1) - theory.length_map(name, q - h, 2.0, 0.1)) / (
        2 * h
    )
    np.testing.assert_allclose(theory.length_map_slope(name, q, 2.0), fd, rtol=1e-6)


def test_chaotic_fixed_point_and_slope():
    w, b = 2.5, 0.05
    mf = theory.mean_field("tanh", w, b)
    assert mf.phase == "chaotic" and 0 < mf.c_star < 1 and mf.chi_c < 1 < mf.chi_1
    c = float(mf.c_star)
    assert theory.correlation_map("tanh", c, w, b) == pytest.approx(c, abs=1e-11)
    h = 1e-5
    cm = theory.correlation_map("tanh", np.array([c - h, c + h]), w, b)
    assert (cm[1] - cm[0]) / (2 * h) == pytest.approx(float(mf.chi_c), rel=1e-6)
    assert mf.xi_c == pytest.approx(-1 / np.log(mf.chi_c))
    # no bias and an odd φ: the chaotic fixed point is c* = 0
    assert theory.mean_field("tanh", 1.5, 0.0).c_star == pytest.approx(0.0, abs=1e-9)


def test_ordered_phase_conventions():
    mf = theory.mean_field("tanh", np.array([0.5, 1.2]), 0.1)
    np.testing.assert_array_equal(mf.c_star, 1.0)
    np.testing.assert_array_equal(mf.chi_c, mf.chi_1)
    assert list(mf.phase) == ["ordered", "ordered"]
    slope = theory.length_map_slope("tanh", mf.q_star, np.array([0.5, 1.2]))
    np.testing.assert_allclose(mf.xi_q, -1 / np.log(slope))
    w = theory.critical_sigma_w2("tanh", 0.1)
    assert theory.mean_field("tanh", w, 0.1).phase == "critical"
    assert theory.mean_field("tanh", 1.0, 0.0).q_star == 0.0  # the signal dies at σ_b² = 0
    # a unique fixed point is reached from any start, however far
    starts = np.array([0.0, 1e-9, 1e6])
    np.testing.assert_allclose(
        theory.q_star("tanh", 2.0, 0.1, starts), theory.q_star("tanh", 2.0, 0.1)
    )


def test_broadcasting_matches_scalar_calls():
    w, b = np.array([[1.0], [2.0], [30.0]]), np.array([0.0, 0.2])
    q = theory.q_star("sigmoid", w, b)
    assert q.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert q[i, j] == pytest.approx(theory.q_star("sigmoid", w[i, 0], b[j]), rel=1e-13)
    assert theory.gradient_profile("tanh", w, b, 4).shape == (3, 2, 4)
    with pytest.raises(UserError, match="sigma_b2"):
        theory.q_star("tanh", 1.0, -0.1)


def test_gradient_profile():
    w, b, depth = 1.7, 0.1, 6
    chi = theory.chi_1("tanh", w, b)
    np.testing.assert_allclose(
        theory.gradient_profile("tanh", w, b, depth), chi ** np.arange(depth - 1, -1, -1)
    )
    q = theory.q_profile("tanh", w, b, depth, q_start=0.05)
    assert q[0] == 0.05 and q[1] == pytest.approx(float(theory.length_map("tanh", 0.05, w, b)))
    chis = w * np.array([nm.gauss_expect(lambda x: nm.phi("tanh").d1(x) ** 2, qi) for qi in q])
    g = theory.gradient_profile("tanh", w, b, depth, q_start=0.05)
    np.testing.assert_allclose(g[:-1] / g[1:], chis[:-1])
    gw = theory.gradient_profile("tanh", w, b, depth, q_start=0.05, weights=True)
    np.testing.assert_allclose(gw, g * (q - b) / (q[-1] - b))


# ----------------------------------------------------------------------------- Monte Carlo


def _simulate(name, w, b, depth, width, seed, batch=4):
    """Random MLP from x ~ N(0, 1): per-layer mean z² and squared back-propagated norms."""
    p, rng, f32 = nm.phi(name), np.random.default_rng(seed), np.float32
    h = rng.standard_normal((width, batch), dtype=f32)
    h /= np.sqrt(np.mean(h**2, axis=0))  # every input has mean(x²) = 1 exactly: q^1 = σ_w² + σ_b²
    zs, ws = [], []
    for _ in range(depth):
        W = rng.standard_normal((width, width), dtype=f32) * f32(np.sqrt(w / width))
        z = W @ h + rng.standard_normal((width, 1), dtype=f32) * f32(np.sqrt(b))
        zs.append(z)
        ws.append(W)
        h = p.f(z).astype(f32)
    d = rng.standard_normal((width, batch), dtype=f32)
    norms = [np.sum(d**2, axis=0, dtype=float)]
    for layer in range(depth - 2, -1, -1):
        d = p.d1(zs[layer]).astype(f32) * (ws[layer + 1].T @ d)
        norms.append(np.sum(d**2, axis=0, dtype=float))
    return np.array([np.mean(z**2, dtype=float) for z in zs]), np.array(norms[::-1])


def _monte_carlo(name, w, b, width, seeds, depth=16, seed0=0):
    q_th = theory.q_profile(name, w, b, depth, q_start=w + b)
    grad_th = theory.gradient_profile(name, w, b, depth, q_start=w + b)
    log_chi_th = np.log(grad_th[:-1] / grad_th[1:])
    q_dev, log_err = [], []
    for seed in range(seeds):
        q, norms = _simulate(name, w, b, depth, width, seed0 + seed)
        q_dev.append(q / q_th - 1)
        log_err.append(np.mean(np.log(norms[:-1] / norms[1:]), axis=1) - log_chi_th)
    q_dev, log_err = np.mean(q_dev, axis=0), np.mean(log_err, axis=0)
    # Per-layer noise in mean(z²) and in log-ratios of norms is ~√(2/N) per seed (shared across
    # the batch); finite-width bias is O(1/N). A length map with slope near 1 at q* (relu) lets
    # the noise accumulate over layers: such cases would need a looser bound.
    tol = np.sqrt(2 / (width * seeds))
    assert np.max(np.abs(q_dev)) < 5 * tol, q_dev
    assert abs(np.mean(q_dev)) < 1.5 * tol, q_dev
    assert abs(np.mean(log_err[8:])) < np.sqrt(2 / width), log_err  # q ≈ q*: decay is log χ₁
    assert np.log(grad_th[-2] / grad_th[-1]) == pytest.approx(
        np.log(theory.chi_1(name, w, b)), abs=1e-4
    )


@pytest.mark.parametrize("w, b", [(0.8, 0.05), (3.0, 0.05)])  # ordered, chaotic
def test_monte_carlo_tanh(w, b):
    phase = theory.mean_field("tanh", w, b).phase
    assert phase == ("ordered" if w < 1 else "chaotic")
    _monte_carlo("tanh", w, b, width=1000, seeds=3)


def test_monte_carlo_sigmoid():
    _monte_carlo("sigmoid", 30.0, 0.1, width=1000, seeds=2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, w, b",
    [("tanh", 1.5, 0.3), ("sigmoid", 150.0, 0.0), ("hard_tanh", 2.0, 0.1), ("erf", 0.5, 0.5)],
)
def test_monte_carlo_wide(name, w, b):
    _monte_carlo(name, w, b, width=2000, seeds=4, depth=30)


# ----------------------------------------------------------------------------- command line


def _cli(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    theory_cli.add_parser(sub)
    args = p.parse_args(argv)
    return args.func(args)


def test_cli_critical(capsys):
    assert _cli(["theory", "critical", "--activation", "tanh", "--sigma-b2", "0.05"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(last) == pytest.approx(float(theory.critical_sigma_w2("tanh", 0.05)), rel=1e-11)


def test_cli_point_json_and_table(capsys):
    argv = ["theory", "point", "--activation", "sigmoid", "--sigma-w2", "20", "--sigma-b2", "0.1"]
    assert _cli(argv + ["--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == {"q_star", "c_star", "chi_1", "chi_c", "xi_q", "xi_c", "phase"}
    assert d["phase"] == "ordered" and d["c_star"] == 1.0
    assert d["q_star"] == pytest.approx(float(theory.q_star("sigmoid", 20.0, 0.1)))
    assert _cli(argv) == 0
    assert "chi_1" in capsys.readouterr().out
    _cli(
        [
            "theory",
            "point",
            "--activation",
            "relu",
            "--sigma-w2",
            "3",
            "--sigma-b2",
            "0.1",
            "--json",
        ]
    )
    d = json.loads(capsys.readouterr().out)
    assert float(d["q_star"]) == np.inf and d["chi_1"] == 1.5 and d["phase"] == "chaotic"


def test_cli_line(capsys):
    argv = ["theory", "line", "--activation", "erf", "--sigma-b2-max", "0.5", "--points", "3"]
    assert _cli(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [r.split() for r in lines if not r.startswith("#")]
    assert rows[0] == ["sigma_b2", "sigma_w2"]
    rows = [list(map(float, r)) for r in rows[1:]]
    assert [r[0] for r in rows] == [0.0, 0.25, 0.5]
    np.testing.assert_allclose(
        [r[1] for r in rows], theory.critical_sigma_w2("erf", [0, 0.25, 0.5])
    )


@pytest.mark.parametrize(
    "argv, match",
    [(["critical", "--activation", "bogus"], "unknown activation"),
     (["critical", "--activation", "tanh", "--sigma-b2", "-1"], "sigma_b2"),
     (["point", "--activation", "tanh", "--sigma-w2", "-2"], "sigma_w2"),
     (["critical", "--activation", "silu", "--sigma-b2", "0.1"], "no stable critical point"),
     (["line", "--activation", "gelu", "--sigma-b2-max", "0.1"], "no stable critical point"),
     (["line", "--activation", "tanh", "--points", "1"], "points")],
)  # fmt: skip
def test_cli_errors(argv, match):
    with pytest.raises(UserError, match=match):
        _cli(["theory", *argv])


def test_q_star_when_a_bracket_step_lands_on_the_fixed_point():
    # on the critical line with q* = 2⁻⁶ exactly: the halving steps from q_start = 1 land on
    # q*, where the gap is rounding noise and nearly flat (χ₁ = 1)
    q = 2.0**-6
    sigma_w2 = _crit_w(q)
    sigma_b2 = q - float(theory.length_map("centred_sigmoid", q, sigma_w2, 0.0))
    for q_start in (1.0, 0.9, 2.0**-3):
        got = float(theory.q_star("centred_sigmoid", sigma_w2, sigma_b2, q_start=q_start))
        assert got == pytest.approx(q, rel=1e-9), q_start
        chi = float(theory.chi_1("centred_sigmoid", sigma_w2, sigma_b2, q_start=q_start))
        assert chi == pytest.approx(1.0, abs=1e-6)


def _crit_w(q: float) -> float:
    """σ_w² with χ₁ = 1 at q: 1 / E[φ'(√q z)²] by adaptive quadrature."""
    from scipy import integrate, stats

    d = lambda x: 0.25 / np.cosh(x / 2) ** 2  # noqa: E731 - (σ(x) − ½)' = σ'(x)
    e = integrate.quad(
        lambda z: d(np.sqrt(q) * z) ** 2 * stats.norm.pdf(z), -12, 12, epsabs=0, epsrel=1e-13
    )[0]
    return 1.0 / e


# ----------------------------------------------------------------------------- issue 15


@pytest.mark.parametrize("name, w", [("relu", 2.0), ("identity", 1.0)])
def test_marginal_critical_point_is_q_start_in_critical_and_point(name, w, capsys):
    # at σ_b² = 0 the critical length map of a homogeneous φ is the identity (σ_w² E[φ²] = q)
    q = np.array([0.3, 1.0, 7.5])
    np.testing.assert_allclose(theory.length_map(name, q, w, 0.0), q, rtol=1e-13)
    for q0 in q:
        cw, cq = theory.critical_point(name, 0.0, q_start=q0)
        assert float(cw) == pytest.approx(w, rel=1e-12) and float(cq) == q0
        mf = theory.mean_field(name, float(cw), 0.0, q_start=q0)
        assert float(mf.q_star) == q0 and float(mf.chi_1) == pytest.approx(1.0, abs=1e-12)
    # σ_b² > 0 still has q* = ∞ (the critical map is q + σ_b²)
    assert np.isinf(theory.critical_point(name, 0.5)[1])
    assert _cli(["theory", "critical", "--activation", name, "--sigma-b2", "0"]) == 0
    head, _, last = capsys.readouterr().out.strip().splitlines()
    assert "q* = 1 " in head and "every q is a fixed point" in head
    assert float(last) == pytest.approx(w)
    argv = ["theory", "point", "--activation", name, "--sigma-w2", last, "--json"]
    assert _cli(argv) == 0
    assert json.loads(capsys.readouterr().out)["q_star"] == 1.0


def _iterate(name, q, w, b, n):
    for _ in range(n):
        q = theory.length_map(name, q, w, b)
    return q


@pytest.mark.parametrize("name", ["silu", "gelu"])
def test_edge_of_chaos_exists_for_silu_gelu_and_attracts_past_a_bias(name):
    b = np.array([0.05, 0.1, 0.3, 0.6, 1.0, 2.0])
    e = theory.edge_of_chaos(name, b)
    assert np.all(np.isfinite(e.sigma_w2)) and np.all(np.isfinite(e.q_star))
    # a fixed point of the length map with χ₁ = 1
    np.testing.assert_allclose(
        theory.length_map(name, e.q_star, e.sigma_w2, b), e.q_star, rtol=1e-9
    )
    chi = e.sigma_w2 * nm.gauss_expect(lambda x: nm.phi(name).d1(x) ** 2, e.q_star)
    np.testing.assert_allclose(chi, 1.0, rtol=1e-9)
    # the slope against a central difference of the length map
    h = 1e-5 * e.q_star
    fd = (
        theory.length_map(name, e.q_star + h, e.sigma_w2, b)
        - theory.length_map(name, e.q_star - h, e.sigma_w2, b)
    ) / (2 * h)
    np.testing.assert_allclose(e.slope, fd, rtol=1e-6)
    # attracting exactly where the slope is below 1, and critical_point keeps exactly those
    np.testing.assert_array_equal(e.attracting, e.slope < 1)
    cw = theory.critical_sigma_w2(name, b)
    np.testing.assert_array_equal(np.isfinite(cw), e.attracting)
    np.testing.assert_allclose(cw[e.attracting], e.sigma_w2[e.attracting], rtol=1e-12)
    # by iteration: 300 layers from 1 % above q* move towards it, or away
    q = _iterate(name, 1.01 * e.q_star, e.sigma_w2, b, 300)
    np.testing.assert_array_equal(np.abs(q / e.q_star - 1) < 0.005, e.attracting)
    # the switch: the slope crosses 1 at attracting_from
    b0 = theory.attracting_from(name)
    assert 0.05 < b0 < 1.0
    lo, hi = theory.edge_of_chaos(name, [b0 * 0.98, b0 * 1.02]).slope
    assert lo > 1 > hi
    assert np.isnan(theory.critical_sigma_w2(name, b0 * 0.98))
    assert np.isfinite(theory.critical_sigma_w2(name, b0 * 1.02))


def test_edge_of_chaos_of_tanh_is_its_critical_line():
    b = np.array([0.0, 0.05, 0.5])
    e = theory.edge_of_chaos("tanh", b)
    np.testing.assert_allclose(e.sigma_w2, theory.critical_sigma_w2("tanh", b), rtol=1e-12)
    assert np.all(e.attracting) and theory.attracting_from("tanh") == 0.0


def test_cli_says_where_the_silu_edge_of_chaos_is_and_where_it_attracts():
    e = theory.edge_of_chaos("silu", 0.1)
    b0 = theory.attracting_from("silu")
    argv = ["theory", "critical", "--activation", "silu", "--sigma-b2", "0.1"]
    with pytest.raises(UserError) as err:
        _cli(argv)
    msg = str(err.value)
    assert "no stable critical point" in msg and "\n" not in msg
    assert f"sigma_w2 = {float(e.sigma_w2):.6g}" in msg and "repels" in msg
    assert f"attracts for sigma_b2 >= {b0:.4g}" in msg
    with pytest.raises(UserError, match=f"attracts from sigma_b2 = {b0:.4g}"):
        _cli(["theory", "line", "--activation", "silu", "--sigma-b2-max", "0.3"])
