import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import sigmoid_convergence as study
from sigjax import analysis, config
from sigjax.engine import grid, sweep


def test_manual_gradient_equals_jax_grad():
    x, y, w, b = study.blog_problem(seed=3)
    dw, db = study.blog_manual_grad(x, y, w, b)
    with jax.default_device(jax.devices("cpu")[0]):
        gw, gb = jax.grad(study.blog_loss, argnums=(0, 1))(
            jnp.asarray(w, jnp.float32),
            jnp.asarray(b, jnp.float32),
            jnp.asarray(x, jnp.float32),
            jnp.asarray(y, jnp.float32),
        )
    np.testing.assert_allclose(dw, gw, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(db, gb, rtol=1e-5, atol=1e-8)
    # and against central finite differences of the loss in float64
    h = 1e-6
    e = np.zeros_like(w)
    e[4, 0] = h
    fd = (
        np.mean((study._sigmoid(x @ (w + e) + b) - y) ** 2)
        - np.mean((study._sigmoid(x @ (w - e) + b) - y) ** 2)
    ) / (2 * h)
    assert dw[4, 0] == pytest.approx(fd, rel=1e-6)


def test_the_blog_backward_pass_does_not_even_run():
    x, y, w, b = study.blog_problem()
    y_pred = study._sigmoid(x @ w + b)
    with pytest.raises(ValueError, match="broadcast"):
        np.dot(x.T, (y_pred - y)) * (y_pred * (1 - y_pred))  # (10, 1) * (100, 1)


def test_sigjax_reproduces_the_corrected_blog_descent():
    manual = study.blog_descent(steps=200)
    engine = study.blog_engine(steps=200)
    np.testing.assert_allclose(engine, manual, rtol=1e-5)
    assert manual[-1] < manual[0]


def test_sigmoid_needs_more_steps_than_tanh_and_relu():
    cfg = config.replace(
        study.CONFIG, {"train.steps": 300, "train.log_every": 10, "train.loss_threshold": 0.078}
    )
    axes = grid.make_axes(
        {
            "model.activation": ["sigmoid", "tanh", "relu"],
            "model.depth": [3],
            "optim.lr": [0.03, 0.1, 0.3, 1.0],
            "seed": range(4),
        }
    )
    ds = sweep.run(cfg, axes)
    best = analysis.best_lr(ds, 0.078)
    steps = analysis.at_best_lr(analysis.steps_to_threshold(ds, 0.078), best)
    med = steps.fillna(np.inf).median("seed").sel(depth=3)
    assert np.isfinite(med.sel(activation="tanh")) and np.isfinite(med.sel(activation="relu"))
    assert med.sel(activation="sigmoid") > med.sel(activation="tanh")
    assert med.sel(activation="sigmoid") > med.sel(activation="relu")
    # and why: at init the sigmoid net's first-layer gradient is far smaller than tanh's
    ratio = analysis.grad_ratio(ds).isel(step=0).median(["seed", "lr"]).sel(depth=3)
    assert ratio.sel(activation="sigmoid") < 0.1 * ratio.sel(activation="tanh")


def test_python_entry_point_equals_a_direct_sweep():
    import sigjax

    over = {"train.steps": 20, "train.log_every": 10, "model.width": 8}
    g = {"model.activation": ["tanh"], "model.depth": [1], "optim.lr": [0.1, 0.3], "seed": [0, 1]}
    ds = sigjax.run("sigmoid_convergence", overrides=over, grid=g)
    direct = sweep.run(config.replace(study.CONFIG, over), grid.make_axes(g))
    np.testing.assert_array_equal(ds.loss.values, direct.loss.values)
    assert ds.loss.dims == ("activation", "depth", "lr", "seed", "step")
