"""The linearized (lazy-regime) prediction of full-batch gradient descent on the MSE.

For the MSE of `sigjax.nn.losses`, L = |f − y|²/(N k) over N training examples and k outputs,
gradient descent at rate η on the model linearized at its initial parameters θ₀,
f_lin(θ) = f₀ + J (θ − θ₀), moves the residual r = f − y (flattened example-major, N·k
entries) exactly by

    r_{t+1} = (I − c Θ) r_t,   c = 2η/(N k),   Θ = J Jᵀ,

so r_t = (I − cΘ)ᵗ r₀, and in Θ's eigenbasis (λ_i, v_i)

    L_t = Σ_i (1 − cλ_i)^{2t} (v_i·r₀)² / (N k).

Mode i's share of the loss falls by (1 − cλ_i)² per step: the per-step rate −2 log|1 − cλ_i|
(≈ 4ηλ_i/(N k) for small steps); descent is stable while cλ_max < 2, i.e. η < N k/λ_max, the
"2/λ_max" of the normalised kernel 2Θ/(N k) (which is also the Gauss–Newton part of the loss
Hessian: sharpness ≈ 2λ_max/(N k)). Θ is the standard-parameterization kernel the models train
with: the empirical one at a member's initial parameters (`member_kernels`, the same as the
`ntk_*` metrics measure) or the infinite-width one (`sigjax.theory.infinite_width`,
parameterization="standard").
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import curvature, train
from sigjax.errors import UserError


def predicted_loss(
    theta: np.ndarray, residual0: np.ndarray, lr: float, steps: Sequence[int] | np.ndarray
) -> np.ndarray:
    """The linearized MSE L_t at each of `steps` (float64, len(steps)), from the kernel
    theta (N k, N k) on the training set, the initial residual f₀ − y (N, k) or (N k,) in the
    same order, and the learning rate."""
    r0 = np.asarray(residual0, np.float64).reshape(-1)
    lam, vec = np.linalg.eigh(np.asarray(theta, np.float64))
    coeff2 = (vec.T @ r0) ** 2
    factor = 1.0 - (2.0 * lr / r0.size) * lam
    t = np.asarray(steps, np.float64)[:, None]
    with np.errstate(over="ignore"):  # an unstable mode grows without bound: inf is the answer
        return (np.abs(factor)[None, :] ** (2.0 * t) * coeff2).sum(axis=1) / r0.size


def mode_rates(lam, lr, n_targets: int):
    """Per-step decay rate of each mode's share of the loss, −2 log|1 − 2ηλ/(N k)| (negative:
    the mode grows); n_targets = N k. lam and lr: numbers or arrays (NumPy or xarray, which
    keep their dims)."""
    lam = lam if hasattr(lam, "dims") else np.asarray(lam, np.float64)
    with np.errstate(divide="ignore"):
        return -2.0 * np.log(np.abs(1.0 - 2.0 * lr * lam / n_targets))


def stable_lr(lam_max: float | np.ndarray, n_targets: int) -> float | np.ndarray:
    """The largest stable learning rate of the linearized descent, N k / λ_max."""
    return n_targets / np.asarray(lam_max, np.float64)


def member_kernels(
    cfg: Config, data: data_lib.Data, seeds: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(Θ (S, N k, N k), residual f₀ − y (S, N, k)) of the members with `seeds` at their initial
    parameters (those `train.make_train(cfg)(hparams, jax.random.key(seed))` starts from), on
    the whole training set, float64; one compiled program for all seeds. UserError unless the
    run is full-batch gradient descent on the MSE."""
    check(cfg)
    prog = train.program(cfg, data)
    hp = train.hparams_of(cfg)

    def one(seed):
        state = prog.init(hp, jax.random.key(seed))

        def apply(p, x):
            return prog.family.apply(prog.model, p, state.model_state, x, train=False)[0]

        theta = curvature.empirical_ntk(apply, state.params, data.x_train)
        return theta, apply(state.params, data.x_train) - data.y_train

    theta, res = jax.jit(jax.vmap(one))(jnp.asarray(seeds, jnp.int32))
    return np.asarray(theta, np.float64), np.asarray(res, np.float64)


def check(cfg: Config) -> None:
    """UserError unless the linearized prediction applies: MSE, full batch, plain SGD."""
    t = cfg.train
    if t.loss != "mse" or t.batch_size != 0 or cfg.optim.name != "sgd":
        raise UserError(
            "the linearized prediction is for full-batch gradient descent on the MSE: set "
            "train.loss=mse, train.batch_size=0 and optim.name=sgd "
            f"(got {t.loss}, {t.batch_size}, {cfg.optim.name})"
        )
    if cfg.optim.schedule != "constant" or cfg.optim.weight_decay or cfg.optim.clip:
        raise UserError(
            "the linearized prediction assumes a constant rate without weight decay or clipping"
        )
