"""The two classic reproductions: Glorot & Bengio 2010 and Pennington et al. 2017.

Checks of the mechanisms on tiny nets (Jacobians against `jax.jacfwd`, back-propagated gradient
variances under the two Glorot initialisations, Jacobian spectra for orthogonal vs Gaussian
weights), and one tiny end-to-end run of each study through the command line.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import dynamical_isometry as di
from experiments import glorot2010 as g10
from sigjax import config, theory
from sigjax import data as data_lib
from sigjax.cli import main
from sigjax.engine import train
from sigjax.nn import models


@pytest.mark.parametrize(
    ("activation", "scheme", "sigma_w2", "sigma_b2"),
    [
        ("tanh", "orthogonal", 1.5, 0.1),
        ("sigmoid", "gaussian", 4.0, 0.2),
        ("relu", "gaussian", 2.0, 0.0),
    ],
)
def test_study_jacobian_equals_jacfwd_of_the_model(activation, scheme, sigma_w2, sigma_b2):
    width, depth = 6, 4
    model = models.MLP(
        widths=(width,) * (depth - 1),
        out_dim=width,
        activation=activation,
        head_activation=activation,
        kernel_init=scheme,
    )
    params = models.init_params(model, jax.random.key(3), width, sigma_w2, sigma_b2)
    x0 = jax.random.normal(jax.random.key(4), (width,))
    ref = jax.jacfwd(lambda x: models.apply(model, params, x[None])[0][0])(x0)
    np.testing.assert_allclose(
        di.jacobians.jacobian(params, x0, activation), ref.T, rtol=1e-5, atol=1e-6
    )
    # every prefix too: layer l's entry is the Jacobian of the first l layers
    prefix = di.jacobians.layer_jacobians(*di.jacobians.stack_params(params), x0, activation)
    sub = {n: params[n] for n in ("layer_1", "layer_2")}
    small = models.MLP(
        widths=(width,), out_dim=width, activation=activation, head_activation=activation
    )
    ref2 = jax.jacfwd(lambda x: models.apply(small, sub, x[None])[0][0])(x0)
    np.testing.assert_allclose(prefix[1], ref2.T, rtol=1e-5, atol=1e-6)


def test_backprop_variance_shrinks_toward_the_input_with_standard_init_only():
    """Var ∂ℓ/∂z_l at init on a sigmoid net of 5 hidden layers of width 32, two seeds."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(64, 32)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 64), jnp.int32)
    data = data_lib.Data(x_train=x, y_train=y, n_classes=10)
    progs = [
        train.program(
            config.replace(
                g10.training.CONFIG, {"model.width": 32, "model.depth": 5, "init.scheme": s}
            ),
            data,
        )
        for s in ("standard", "normalized")
    ]
    hp = train.hparams_of(progs[0].cfg)

    def one(seed):
        out, gap = [], []
        for prog in progs:
            params = prog.init(hp, jax.random.key(seed)).params
            out.append(g10.training.distributions(prog, params, x, y)["var_backprop"])
            # the study's hand-written forward pass is the model's
            mine = g10.training.forward(params, x, "sigmoid")[0]
            gap.append(jnp.abs(mine - models.apply(prog.model, params, x)[0]).max())
        return jnp.stack(out), jnp.stack(gap)

    var, gap = jax.jit(lambda s: jax.lax.map(one, s))(jnp.arange(2))
    assert float(gap.max()) < 1e-5
    v_std, v_norm = np.asarray(var.mean(0))[:, :-1]  # hidden layers 1..5 (last: the output)
    assert np.all(np.diff(v_std) > 0), v_std  # shrinking layer by layer toward the input
    r_std, r_norm = v_std[0] / v_std[-1], v_norm[0] / v_norm[-1]
    # standard init: a factor ≲ (1/3)(1/16) per layer; normalized: (1/16) (φ' ≤ 1/4 still)
    assert r_std < 1e-3
    assert r_norm > 20 * r_std


def test_critical_parameters_sit_on_the_critical_line_at_small_q():
    for act in ("tanh", "erf", "centred_sigmoid"):
        w2, b2, q = di.jacobians.critical_params(act, di.jacobians.SMALL_Q)
        assert q == pytest.approx(di.jacobians.SMALL_Q, rel=1e-6)
        # q_start just off q*: theory.q_star from q_start = 1 can stop at 2^-7 when q* = 2^-6
        assert float(theory.chi_1(act, w2, b2, q_start=0.9)) == pytest.approx(1.0, abs=1e-6)
        assert float(theory.q_star(act, w2, b2, q_start=0.9)) == pytest.approx(q, rel=1e-4)
    w2, b2, q = di.jacobians.critical_params(
        "sigmoid", di.jacobians.SMALL_Q
    )  # no small q*: σ_b² = 0, q* ≈ 46
    assert b2 == 0.0 and q > 40


def test_orthogonal_spectrum_is_narrower_than_gaussian_for_tanh_at_small_q():
    cases = (("tanh", "tanh", di.jacobians.SMALL_Q),)
    ds = di.jacobians.spectra(32, (4, 16), (0, 1), cases=cases)
    var = ds.sv2.var("sample").sel(case="tanh")
    gauss, orth = var.sel(spec_scheme="gaussian"), var.sel(spec_scheme="orthogonal")
    assert np.all(orth < 0.05 * gauss)
    assert float(gauss.sel(spec_depth=16)) > float(gauss.sel(spec_depth=4))  # grows with depth
    # the mean squared singular value stays near χ₁^L = 1 on the critical line
    np.testing.assert_allclose(ds.sv2.mean("sample").sel(spec_scheme="orthogonal"), 1.0, atol=0.1)
    # and the orthogonal spread is what free probability predicts, L (μ₂/μ₁² − 1)
    np.testing.assert_allclose(
        var.sel(spec_scheme="orthogonal"),
        ds.sv2_var_theory.sel(case="tanh", spec_scheme="orthogonal"),
        rtol=0.5,
    )


def _run(tmp_path, name, *args):
    out = tmp_path / name
    rc = main(["run", name, "--out", str(out), "--quiet", *args])
    assert rc == 0
    return out, json.loads((out / "config.json").read_text())


@pytest.mark.slow  # the whole study, shrunk; test_glorot2010.py tests its parts
def test_glorot2010_runs_end_to_end(tmp_path):
    out, meta = _run(
        tmp_path,
        "glorot2010",
        "--set=model.width=12",
        "--set=model.depth=2",
        "--set=train.steps=20",
        "--set=train.log_every=10",
        "--grid=data.name=digits",
        "--grid=model.activation=tanh",
        "--grid=optim.lr=0.1,0.3",
        "--grid=seed=0,1",
    )
    for f in ("activations", "distributions", "variances", "val_error"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 0
    table = (out / "table.md").read_text()
    assert "| tanh |" in table and "| tanh-N |" in table
    head = meta["headline"]
    assert set(head["table"]) == {"digits/tanh", "digits/tanh-N"}
    ratios = head["first_over_top_hidden_variance_at_init"]
    assert ratios["digits/tanh"]["var_backprop"] < ratios["digits/tanh-N"]["var_backprop"]


@pytest.mark.slow  # the whole study, shrunk; test_dynamical_isometry.py tests its parts
def test_dynamical_isometry_runs_end_to_end(tmp_path):
    out, meta = _run(
        tmp_path,
        "dynamical_isometry",
        "--set=model.width=8",
        "--set=train.steps=20",
        "--set=train.log_every=10",
        "--grid=model.activation=tanh",
        "--grid=model.depth=2",
        "--grid=optim.lr=0.1",
        "--grid=seed=0",
    )
    for f in ("spectra", "spread", "training"):
        assert (out / "figures" / f"{f}.png").stat().st_size > 0
    table = (out / "table.md").read_text()
    assert "tanh q*=1/64" in table and "median steps" in table
    head = meta["headline"]
    assert head["spectra_depth"] == 128
    assert "tanh/orthogonal/depth2" in head["median_steps_to_threshold"]
