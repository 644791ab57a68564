"""Glorot & Bengio 2010: the probes (layer-Jacobian spectra, histograms, quantiles) against
independent computations, the mean Jacobian singular value at init against the quarter-circle
law, and the seed statistics behind the table's ordering claims against hand formulas."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from scipy import stats

from experiments import glorot2010 as g10
from sigjax import config
from sigjax import data as data_lib
from sigjax.engine import metrics, probes, train
from sigjax.nn import activations, models


def _net(activation: str, scheme: str, width: int, depth: int, in_dim: int, seed: int = 0):
    """(program, params) of the study's network (its init, biases 0) on dummy data."""
    x = jnp.zeros((4, in_dim), jnp.float32)
    data = data_lib.Data(x_train=x, y_train=jnp.zeros(4, jnp.int32), n_classes=10)
    cfg = config.replace(
        g10.training.CONFIG,
        {
            "model.width": width,
            "model.depth": depth,
            "model.activation": activation,
            "init.scheme": scheme,
        },
    )
    prog = train.program(cfg, data)
    return prog, prog.init(train.hparams_of(cfg), jax.random.key(seed)).params


@pytest.mark.slow  # jacfwd of every layer of every member (the quarter-circle test: at init)
def test_layer_jacobian_singular_values_are_those_of_jacfwd_of_each_layer():
    prog, params = _net("tanh", "normalized", width=7, depth=3, in_dim=5)
    names = models.layer_names(params)
    x = jax.random.normal(jax.random.key(1), (3, 5))
    _, pre, post = g10.training.forward(params, x, "tanh")
    acts = ["tanh"] * (len(names) - 1) + ["identity"]
    h_prev = [x, *post[:-1]]
    for name, z, h, act in zip(names, pre, h_prev, acts, strict=True):
        w, b = params[name]["kernel"], params[name]["bias"]
        got = probes.layer_jacobian_svs(w, z, act)
        for i in range(x.shape[0]):

            def layer(v, w=w, b=b, act=act):
                return activations.get(act)(v @ w + b)

            jac = jax.jacfwd(layer)(h[i])  # (n_l, n_{l-1}) = ∂h_l/∂h_{l-1}
            want = np.linalg.svd(np.asarray(jac), compute_uv=False)
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)
    # the study's per-layer summary is their mean, on the first N_JAC examples
    d = g10.training.distributions(prog, params, x, jnp.zeros(3, jnp.int32))
    means = [
        probes.layer_jacobian_svs(params[n]["kernel"], z, a).mean()
        for n, z, a in zip(names, pre, acts, strict=True)
    ]
    np.testing.assert_allclose(d["jac_sv"], means, rtol=1e-6)


@pytest.mark.parametrize(
    ("scheme", "n_var_w"),
    [("standard", 1.0 / 3.0), ("normalized", 1.0)],  # n·Var W for a square layer
)
def test_mean_jacobian_singular_value_at_init_follows_the_quarter_circle_law(scheme, n_var_w):
    """In the linear regime (tanh on tiny inputs) J ≈ Wᵀ: its mean singular value is
    8/(3π)·√(n Var W): 0.49 for standard init, 0.85 for normalized (their ≈ 0.5 and ≈ 0.8)."""
    width = 256
    prog, params = _net("tanh", scheme, width=width, depth=3, in_dim=width, seed=2)
    x = 1e-3 * jax.random.normal(jax.random.key(3), (4, width))
    _, pre, _ = g10.training.forward(params, x, "tanh")
    names = models.layer_names(params)
    sv = probes.mean_jacobian_svs([params[n]["kernel"] for n in names], pre, ["tanh"] * len(names))
    want = probes.QUARTER_CIRCLE_MEAN * np.sqrt(n_var_w)
    np.testing.assert_allclose(sv[1:3], want, rtol=0.02)  # hidden-to-hidden layers 2, 3
    # and by Monte Carlo of the quarter-circle mean itself: square Gaussian matrices
    g = np.random.default_rng(0).standard_normal((8, width, width)) / np.sqrt(width)
    assert np.linalg.svd(g, compute_uv=False).mean() == pytest.approx(
        probes.QUARTER_CIRCLE_MEAN, rel=0.01
    )


@pytest.fixture
def registry():
    """The metric registry as it was, whatever the test registers."""
    saved = dict(metrics.REGISTRY)
    yield
    metrics.REGISTRY.clear()
    metrics.REGISTRY.update(saved)


def test_jacobian_metric_of_a_training_step_equals_the_probe_on_its_batch(registry):
    probes.register(["jacobian_sv"])
    cfg = config.replace(
        g10.training.CONFIG,
        {"model.width": 6, "model.depth": 2, "train.steps": 2, "train.log_every": 1},
    )
    cfg = config.replace(cfg, {"train.metrics": "jacobian_sv", "data.name": "digits"})
    data = data_lib.load(cfg.data)
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(0)
    _, traj = jax.jit(train.make_train(cfg, data))(hp, key)
    params = prog.init(hp, key).params
    x, _ = data_lib.batch(data, train.Program.data_key(key, 0), cfg.train.batch_size)
    _, pre, _ = g10.training.forward(params, x, "sigmoid")
    names = models.layer_names(params)
    want = probes.mean_jacobian_svs(
        [params[n]["kernel"] for n in names], pre, ["sigmoid", "sigmoid", "identity"]
    )
    np.testing.assert_allclose(traj.records["jacobian_sv"][0], want, rtol=1e-5)
    assert "jacobian_sv" in metrics.REGISTRY


def test_density_and_quantiles_match_numpy():
    v = jax.random.normal(jax.random.key(0), (500, 3))
    edges = np.linspace(-1.0, 1.0, 21)
    inside = np.asarray(v)[np.abs(np.asarray(v)) <= 1.0]
    counts, _ = np.histogram(inside, edges)
    want = counts / (v.size * (edges[1] - edges[0]))  # a density over all values
    np.testing.assert_allclose(probes.density(v, edges), want, rtol=1e-6)
    posts = [v, 2.0 * v]
    q = probes.quantile_stats(posts)
    for i, a in enumerate(posts):
        a = np.asarray(a)
        assert float(q["p98"][i]) == pytest.approx(np.percentile(a, 98), rel=1e-5)
        assert float(q["p02"][i]) == pytest.approx(np.percentile(a, 2), rel=1e-5)
        assert float(q["std"][i]) == pytest.approx(a.std(), rel=1e-5)


def test_welch_p_value_is_the_hand_formula():
    a = np.array([3.1, 4.0, 2.5, 3.8, np.nan])  # a diverged seed is left out
    b = np.array([5.0, 6.5, 4.9, 7.2, 5.5, 6.1])
    x = a[np.isfinite(a)]
    va, vb = x.var(ddof=1) / len(x), b.var(ddof=1) / len(b)
    t = (x.mean() - b.mean()) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(b) - 1))
    assert g10.tables.welch_p(a, b) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert np.isnan(g10.tables.welch_p(np.full(4, 90.0), np.full(4, 90.0)))  # both stuck at chance


def test_gain_interval_is_centred_on_the_difference_of_gains_with_its_spread():
    rng = np.random.default_rng(1)
    groups = [rng.normal(m, 1.0, 40) for m in (10.0, 4.0, 8.0, 6.0)]  # gains 6 and 2
    est, lo, hi = g10.tables.gain_interval(*groups)
    want = (groups[0].mean() - groups[1].mean()) - (groups[2].mean() - groups[3].mean())
    assert est == pytest.approx(want, rel=1e-12)
    se = np.sqrt(sum(g.var() / len(g) for g in groups))  # the bootstrap's standard error
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert lo < want < hi


def _synthetic(depths=None, seeds=6):
    """A results Dataset of the study's shape, with chosen test errors and two rates (the
    second always better on validation)."""
    rng = np.random.default_rng(0)
    acts, schemes, lrs = ["tanh", "softsign"], ["standard", "normalized"], [0.1, 0.3]
    mean = {("tanh", "standard"): 0.20, ("tanh", "normalized"): 0.10}
    mean |= {("softsign", "standard"): 0.15, ("softsign", "normalized"): 0.13}
    lead = {"name": ["digits"]} | ({"depth": depths} if depths else {})
    shape = tuple(len(v) for v in lead.values())
    err = np.zeros(shape + (2, 2, 2, seeds))
    for i, a in enumerate(acts):
        for j, s in enumerate(schemes):
            err[..., i, j, :, :] = mean[a, s] + 0.01 * rng.standard_normal(seeds)
    dims = [*lead, "activation", "scheme", "lr", "seed"]
    val = np.stack([0.5 + 0 * err[..., 0, :], 0.1 + 0 * err[..., 1, :]], -2)
    coords = lead | {"activation": acts, "scheme": schemes, "lr": lrs, "seed": range(seeds)}
    ds = xr.Dataset(
        {
            "final_test_error": (dims, err),
            "val_accuracy": ([*dims, "step"], np.stack([1 - val, 1 - val], -1)),
            "val_loss": ([*dims, "step"], np.stack([val, val], -1)),
            "diverged_at": (dims, np.full(err.shape, np.nan)),
        },
        coords=coords | {"step": [0, 10]},
    )
    cfg = config.replace(g10.training.CONFIG, {"model.depth": 4})
    ds.attrs["config"] = config.to_json(cfg)
    return ds, err


def test_claims_give_each_ordering_its_difference_and_welch_p_value():
    ds, err = _synthetic()
    got = {c["claim"]: c for c in g10.tables.claims(ds)}
    e = 100 * err[0, :, :, 1, :]  # at the best rate (the second), in %
    tanh = got["tanh-N < tanh"]
    assert tanh["difference"] == pytest.approx(e[0, 0].mean() - e[0, 1].mean(), rel=1e-6)
    want = stats.ttest_ind(e[0, 0], e[0, 1], equal_var=False).pvalue
    assert tanh["p_value"] == pytest.approx(want, rel=1e-5)
    best = got["tanh-N best (vs softsign-N)"]  # 10 % against 13 %
    assert best["difference"] == pytest.approx(e[1, 1].mean() - e[0, 1].mean(), rel=1e-6)
    gain = got["gain(tanh) > gain(softsign)"]  # 10 points against 2
    assert gain["ci_low"] < gain["difference"] < gain["ci_high"] and gain["ci_low"] > 5


def test_table_caption_states_the_depths_that_ran():
    for depths, text in ((None, "; 4 hidden layers of width"), ([4, 5], "; 4 and 5 hidden layers")):
        ds, _ = _synthetic(depths)
        md = g10.tables.markdown(g10.tables.table(ds), ds, g10.tables.claims(ds))
        assert text in md and "over 6 seeds" in md
        assert "5 hidden layers of width" not in md
        assert ("| digits, depth 5 | tanh-N < tanh |" in md) == bool(depths)
