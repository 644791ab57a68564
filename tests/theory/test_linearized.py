"""The linearized prediction (closed form of the discrete-time descent, and against the loss
measured on a wide network) and deep linear networks against Saxe et al.'s exact curves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sigjax import config
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import train
from sigjax.errors import UserError
from sigjax.theory import deep_linear, linearized


def test_the_prediction_is_gradient_descent_on_a_model_linear_in_its_parameters():
    rng = np.random.default_rng(0)
    n, k, p = 6, 2, 9
    a = rng.standard_normal((n * k, p))  # f(θ) = A θ, rows example-major
    y = rng.standard_normal((n, k))
    lr = 0.05
    # plain gradient descent on mean((Aθ − y)²), gradient by hand, against the closed
    # form from Θ = A Aᵀ
    start = rng.standard_normal(p)
    theta, measured = start.copy(), []
    for _ in range(31):
        r = a @ theta - y.reshape(-1)
        measured.append(np.mean(r**2))
        theta = theta - lr * (2.0 / r.size) * a.T @ r
    res0 = (a @ start).reshape(n, k) - y
    pred = linearized.predicted_loss(a @ a.T, res0, lr, np.arange(31))
    np.testing.assert_allclose(pred, measured, rtol=1e-10)
    # and as the matrix power (I − cΘ)^t r₀ directly
    c = 2 * lr / (n * k)
    r10 = np.linalg.matrix_power(np.eye(n * k) - c * a @ a.T, 10) @ res0.reshape(-1)
    assert pred[10] == pytest.approx(np.mean(r10**2), rel=1e-10)


def test_mode_rates_and_the_stable_rate():
    lam, n_targets = np.array([0.5, 2.0, 8.0]), 4
    lr = 0.5 * linearized.stable_lr(lam.max(), n_targets)  # c λ_max = 1: that mode is solved
    assert lr == pytest.approx(0.25)
    rates = linearized.mode_rates(lam, lr, n_targets)
    np.testing.assert_allclose(rates[:2], -2 * np.log(1 - 2 * lr * lam[:2] / n_targets))
    assert rates[2] == np.inf
    over = linearized.mode_rates(lam, 1.01 * linearized.stable_lr(8.0, 4), n_targets)
    assert over[2] < 0 < over[0]  # past N k / λ_max the top mode grows
    pred = linearized.predicted_loss(np.diag(lam), np.ones(3), 1.01, np.array([0, 50]))
    assert pred[1] > pred[0]


WIDE = {
    "data.name": "teacher_regression",
    "data.n_train": 16,
    "data.dim": 4,
    "data.out_dim": 1,
    "model.depth": 1,
    "model.width": 2048,
    "model.activation": "tanh",
    "train.loss": "mse",
    "train.batch_size": 0,
    "train.record": "loss",
    "train.steps": 20,
    "train.log_every": 1,
}


def test_the_linearized_prediction_matches_the_measured_loss_of_a_wide_network():
    cfg = config.replace(Config(), WIDE)
    data = data_lib.load(cfg.data)
    thetas, res = linearized.member_kernels(cfg, data, seeds=[0])
    theta, res0 = thetas[0], res[0]
    lr = 0.5 * linearized.stable_lr(np.linalg.eigvalsh(theta)[-1], res0.size)
    cfg = config.replace(cfg, {"optim.lr": lr})
    _, traj = jax.jit(train.make_train(cfg, data))(train.hparams_of(cfg), jax.random.key(0))
    measured = np.asarray(traj.records["loss"], np.float64)
    pred = linearized.predicted_loss(theta, res0, lr, np.arange(cfg.train.steps + 1))
    assert pred[0] == pytest.approx(measured[0], rel=1e-5)
    assert measured[-1] < 0.5 * measured[0]  # it trained
    np.testing.assert_allclose(measured, pred, rtol=0.03)


def test_the_prediction_refuses_what_it_does_not_describe():
    with pytest.raises(UserError, match="full-batch gradient descent on the MSE"):
        linearized.check(config.replace(Config(), {"train.batch_size": 8}))


# ----------------------------------------------------------------------------- deep linear


def test_saxe_exact_curves():
    s, a0, lr, k = np.array([3.0, 1.0]), 1e-3, 0.01, 2
    steps = np.arange(0, 3001, 50)
    exact = deep_linear.exact_modes(s, a0, lr, steps, k)
    # the logistic solves da/dt = (4η/k)(s − a) a: check by central differences
    h = 1e-3
    da = (
        deep_linear.exact_modes(s, a0, lr, steps + h, k)
        - deep_linear.exact_modes(s, a0, lr, steps - h, k)
    ) / (2 * h)
    np.testing.assert_allclose(da, (4 * lr / k) * (s - exact) * exact, rtol=1e-5, atol=1e-12)
    t_half = deep_linear.learning_time(s, a0, lr, k)
    np.testing.assert_allclose(deep_linear.exact_modes(s, a0, lr, [t_half[0]], k)[0, 0], 1.5)
    assert t_half[0] < t_half[1]  # the stronger mode is learned first
    # the discrete recursion tends to the continuous solution as η → 0 at fixed ηt, at first
    # order: ten times smaller steps, about ten times smaller error
    errors = []
    for eta in (0.01, 0.001):
        n = int(30 / eta)
        disc = deep_linear.discrete_modes(s, a0, eta, n, k)
        cont = deep_linear.exact_modes(s, a0, eta, np.arange(n + 1), k)
        errors.append(np.max(np.abs(disc - cont)))
    assert errors[1] < 0.01 and 0.07 < errors[1] / errors[0] < 0.14


def test_a_deep_linear_network_follows_the_exact_mode_curves():
    s, a0, lr, width, steps = (2.0, 1.0, 0.5), 1e-3, 0.05, 16, 400
    data, u, v = deep_linear.task(n=64, d=5, k=3, singular_values=s, seed=1)
    x = np.asarray(data.x_train, np.float64)
    np.testing.assert_allclose(x.T @ x / 64, np.eye(5), atol=1e-5)
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-6)
    cfg = deep_linear.config(data, width, lr, steps)
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(0)
    params = jax.tree.map(jnp.asarray, deep_linear.decoupled_params(u, v, width, a0))
    state = prog.init(hp, key)
    state = state.replace(params=params, opt_state=prog.optimizer(hp).init(params))
    state, recs = jax.jit(prog.advance, static_argnums=4)(data, hp, key, state, steps)
    disc = deep_linear.discrete_modes(s, a0, lr, steps, k=3)
    measured = np.asarray(recs["loss"], np.float64)
    np.testing.assert_allclose(measured, deep_linear.exact_loss(disc[:-1], s, 3), rtol=2e-3)
    np.testing.assert_allclose(deep_linear.mode_strengths(state.params, u, v), disc[-1], atol=2e-3)
    # and Saxe's continuous-time curve: within the O(η) discretisation error
    cont = deep_linear.exact_loss(deep_linear.exact_modes(s, a0, lr, np.arange(steps), 3), s, 3)
    assert np.max(np.abs(measured - cont)) < 0.06 * measured[0]
