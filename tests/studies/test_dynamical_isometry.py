"""Pennington et al. 2017: the free-probability density of the Jacobian spectrum against closed
forms and Monte Carlo, the sigmoid net that is a centred-sigmoid net, and the training nets'
inputs scaled to start at q*."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import dynamical_isometry as di
from sigjax import config
from sigjax.engine import train
from sigjax.nn import models
from sigjax.theory import free_probability as fp


def _moments(x, rho, k):
    return [float(np.trapezoid(rho * x**j, x)) for j in range(k + 1)]


def test_density_of_one_gaussian_layer_is_marchenko_pastur():
    # D = 1 (identity), one Gaussian layer: JJᵀ = WWᵀ, ratio 1: ρ(x) = √((4 − x)x) / (2πx)
    law = fp.d2_law("identity", 1.0)
    assert law.values.tolist() == [1.0]
    x = np.linspace(0.05, 3.95, 40)
    rho = fp.density(x, law, 1.0, 1, "gaussian", eps=1e-6)
    np.testing.assert_allclose(rho, np.sqrt((4 - x) * x) / (2 * np.pi * x), rtol=1e-3)


def test_density_of_linear_gaussian_nets_has_fuss_catalan_moments():
    # a product of L Ginibre matrices: E λ^k = C((L+1)k, k) / (Lk + 1); L = 2: 1, 3, 12
    law = fp.d2_law("identity", 1.0)
    x = np.concatenate([np.geomspace(1e-9, 1e-2, 400), np.linspace(1e-2, 6.75, 4000)[1:]])
    rho = fp.density(x, law, 1.0, 2, "gaussian", eps=1e-6)
    m0, m1, m2, m3 = _moments(x, rho, 3)
    assert m0 == pytest.approx(1.0, abs=2e-3)
    assert (m1, m2, m3) == pytest.approx((1.0, 3.0, 12.0), rel=5e-3)


@pytest.mark.parametrize("weights", ["orthogonal", "gaussian"])
def test_density_moments_match_the_s_transform_series(weights):
    """Mean and variance of the predicted density of tanh at q* = 1 against the S-transform's
    series, and that series against the study's Gaussian-quadrature formula."""
    w2, b2, q = di.jacobians.critical_params("tanh", 1.0)
    law = fp.d2_law("tanh", q)
    mean, var = fp.moments(law, w2, 3, weights)
    assert mean == pytest.approx(1.0, abs=1e-8)  # χ₁^L on the critical line
    assert var == pytest.approx(
        float(di.jacobians.theory_variance("tanh", q, weights, 3)), rel=1e-8
    )
    x = np.concatenate([np.geomspace(1e-10, 1e-2, 300), np.linspace(1e-2, 40.0, 6000)[1:]])
    rho = fp.density(x, law, w2, 3, weights, eps=1e-5)
    m0, m1, m2 = _moments(x, rho, 2)
    # Gaussian weights leave ~2 % of the mass below 1e-10 (ρ ~ λ^(-L/(L+1)) near 0)
    assert m0 == pytest.approx(1.0, abs=5e-3 if weights == "orthogonal" else 3e-2)
    assert m1 == pytest.approx(mean, rel=1e-2)
    assert m2 - m1**2 == pytest.approx(var, rel=3e-2)


def test_density_matches_monte_carlo_jacobians():
    """KS distance between the sampled squared singular values of wide random nets and the
    prediction: small for the law at q*, larger with the wrong weights' law."""
    cases = (di.jacobians.Case("tanh q*=1", "tanh", 1.0),)
    ds = di.jacobians.spectra(128, (4,), (0, 1), cases=cases)
    ks = ds.sv2_theory_ks.sel(case="tanh q*=1", theory_depth=4)
    assert float(ks.max()) < 0.06, ks.values  # 256 values: the 1 % critical KS is ≈ 0.1
    # the Gaussian prediction against the orthogonal sample (the other weights' law) is off
    w2, _, q = di.jacobians.critical_params("tanh", 1.0)
    sample = ds.sv2.sel(case="tanh q*=1", spec_scheme="orthogonal", spec_depth=4).values
    _, _, wrong = di.jacobians.predicted(sample, fp.d2_law("tanh", q), w2, 4, "gaussian")
    assert wrong > 3 * float(ks.sel(spec_scheme="orthogonal"))


def test_sigmoid_net_with_shifted_biases_is_the_centred_sigmoid_net():
    width, depth = 6, 4
    kw = {"widths": (width,) * (depth - 1), "out_dim": width, "kernel_init": "orthogonal"}
    centred = models.MLP(activation="centred_sigmoid", head_activation="centred_sigmoid", **kw)
    sigmoid = models.MLP(activation="sigmoid", head_activation="sigmoid", **kw)
    params = models.init_params(centred, jax.random.key(0), width, 16.0, 0.3)
    w, c = di.jacobians.stack_params(params)
    b = di.jacobians.sigmoid_biases(w, c)
    shifted = {n: {"kernel": params[n]["kernel"], "bias": b[i]} for i, n in enumerate(params)}
    x = jax.random.normal(jax.random.key(1), (5, width)) * 0.2
    y_c = models.apply(centred, params, x)[0]
    y_s = models.apply(sigmoid, shifted, x)[0]
    np.testing.assert_allclose(y_s, y_c + 0.5, atol=1e-6)
    np.testing.assert_allclose(
        di.jacobians.jacobian(shifted, x[0], "sigmoid"),
        di.jacobians.jacobian(params, x[0], "centred_sigmoid"),
        atol=1e-6,
    )
    # i.i.d. biases instead: a different net
    assert float(jnp.abs(models.apply(sigmoid, params, x)[0] - y_c - 0.5).max()) > 0.1
    # and the spectra of the two cases are the same draws, equal to float precision
    cases = [
        c
        for c in di.jacobians.CASES
        if c.label in ("centred sigmoid q*=1/64", di.jacobians.SHIFTED)
    ]
    ds = di.jacobians.spectra(16, (2, 4), (0,), cases=cases)
    np.testing.assert_allclose(
        ds.sv2.sel(case=di.jacobians.SHIFTED), ds.sv2.sel(case=cases[0].label), rtol=1e-4, atol=1e-7
    )


def test_spectra_compile_one_program_for_every_case():
    before = di.jacobians._prefix_jacobians._cache_size()
    di.jacobians.spectra(12, (2, 3), (0,), cases=di.jacobians.CASES)
    assert di.jacobians._prefix_jacobians._cache_size() == before + 1  # one shape: one program


@pytest.mark.parametrize("scheme", ["gaussian", pytest.param("orthogonal", marks=pytest.mark.slow)])
def test_scaled_inputs_put_every_layer_of_the_training_nets_at_q_star(scheme):
    cfg = di.training._group_cfg(
        config.replace(
            di.training.CONFIG, {"model.depth": 6, "init.scheme": scheme, "model.width": 64}
        )
    )
    data = di.training.make_data(cfg)
    assert "preact_q" in cfg.train.metrics
    prog = train.program(cfg, data)
    hp = train.hparams_of(cfg)
    x = data.x_test  # 1000 training examples

    def q_layers(seed):
        params = prog.init(hp, jax.random.key(seed)).params
        return jnp.stack([jnp.mean(z**2) for z in models.apply(prog.model, params, x)[1].pre])

    q = np.asarray(jax.jit(lambda s: jax.lax.map(q_layers, s))(jnp.arange(8)))  # (seed, layer)
    q_star = di.training.train_q_star("tanh")
    mean, se = q.mean(0), q.std(0, ddof=1) / np.sqrt(len(q))
    # layer 1 by hand on these examples: σ_w² v mean Σx² + σ_b² (exact for orthogonal rows)
    w2, b2 = di.training.train_params("tanh")
    v = di.jacobians.initializers.kernel_variance(scheme, x.shape[1], 64)
    hand = w2 * v * float(jnp.mean(jnp.sum(x**2, 1))) + b2
    assert abs(mean[0] - hand) < 4 * se[0] + 1e-3 * hand
    # every layer within a few % of q* (1000 of the 4000 examples' norms, finite width)
    assert np.all(np.abs(mean - q_star) < 4 * se + 0.05 * q_star), (mean, se)
    # the unscaled data (mean x² ≈ 1 per input) would start the first layer far above q*
    raw = di.training.data_lib.load(cfg.data).x_train
    assert di.training.input_scale(cfg, np.asarray(raw)) < 0.3
