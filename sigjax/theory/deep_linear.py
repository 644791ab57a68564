"""Deep linear networks and the exact learning curves of Saxe, McClelland & Ganguli (2014).

Task (`task`): N inputs in d dimensions, whitened (XᵀX/N = I) with every column of zero mean,
and targets y = M x with M = U diag(s) Vᵀ (k × d, singular values s chosen, r = len(s) ≤
min(d, k) modes). A network with one hidden layer of h ≥ r linear units (`identity`
activation), W = W₂W₁, trained by full-batch gradient descent at rate η on the MSE of
`sigjax.nn.losses`, sees

    L = |f − y|²/(N k) = ‖W − M‖²_F / k,     ∂L/∂W₁ = (2/k) W₂ᵀ(W − M),  ∂L/∂W₂ = (2/k)(W − M)W₁ᵀ;

the biases get no gradient (zero-mean inputs and residuals), so they stay at zero. From the
decoupled, balanced start W₁ = √a₀ Q Vᵀ, W₂ = √a₀ U Qᵀ (Q: h × r orthonormal columns) every
step keeps that form: mode α's strength a_α = u_αᵀ W v_α = b_α² with b ← b + (2η/k)(s_α − b²) b
(`discrete_modes`, exact for gradient descent), whose small-step limit is Saxe et al.'s
sigmoidal solution (their eq. 8 with 1/τ = 2η/k)

    a_α(t) = s_α / (1 + (s_α/a₀ − 1) e^{−4η s_α t / k})          (`exact_modes`),

each mode learned around t_α = k ln(s_α/a₀ − 1) / (4η s_α) (`learning_time`): the stronger a
mode, the earlier and more abruptly it is learned. The loss is Σ_α (a_α − s_α)²/k.
From a small random start (e.g. init.scheme=orthogonal with a small init.sigma_w2) the modes
are only approximately decoupled; the exact curves then hold with a₀ the start's mode strength.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from sigjax import config as config_lib
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.errors import UserError


def task(
    n: int, d: int, k: int, singular_values: Sequence[float], seed: int = 0
) -> tuple[data_lib.Data, np.ndarray, np.ndarray]:
    """(data, U (k, r), V (d, r)): whitened zero-mean inputs X (n, d) and targets Y = X Mᵀ with
    M = U diag(s) Vᵀ (float64 U, V; the data float32). Needs r ≤ min(d, k) and n > d."""
    s = np.asarray(singular_values, np.float64)
    r = s.size
    if not (1 <= r <= min(d, k)) or n <= d or np.any(s <= 0):
        raise UserError(
            f"a deep-linear task needs 1 <= len(s) <= min(d, k), n > d and s > 0; got "
            f"len(s)={r}, n={n}, d={d}, k={k}"
        )
    rng = np.random.default_rng(seed)
    # orthonormal columns orthogonal to the ones vector: zero-mean, whitened inputs
    a = np.concatenate([np.ones((n, 1)), rng.standard_normal((n, d))], axis=1)
    q = np.linalg.qr(a)[0][:, 1:]
    x = np.sqrt(n) * q  # XᵀX/n = I
    u = np.linalg.qr(rng.standard_normal((k, r)))[0]
    v = np.linalg.qr(rng.standard_normal((d, r)))[0]
    m = u @ np.diag(s) @ v.T
    data = data_lib.from_arrays(x.astype(np.float32), (x @ m.T).astype(np.float32))
    return data, u, v


def config(
    data: data_lib.Data,
    width: int,
    lr: float,
    steps: int,
    log_every: int = 1,
    sets: dict[str, Any] | None = None,
) -> Config:
    """The run of `task`'s data: one hidden layer of `width` identity units, full-batch
    gradient descent at `lr` on the MSE, the loss recorded every `log_every` steps; `sets`:
    further dotted keys (e.g. {"init.scheme": "orthogonal"})."""
    cfg = dataclasses.replace(Config(), data=data_lib.config_of(data))
    base = {
        "model.depth": 1,
        "model.width": width,
        "model.activation": "identity",
        "optim.name": "sgd",
        "optim.lr": lr,
        "train.loss": "mse",
        "train.batch_size": 0,
        "train.record": "loss",
        "train.steps": steps,
        "train.log_every": log_every,
    }
    return config_lib.replace(cfg, base | dict(sets or {}))


def decoupled_params(u: np.ndarray, v: np.ndarray, width: int, a0: float, seed: int = 0) -> dict:
    """The MLP's parameters (depth 1, `width` hidden units) of the decoupled balanced start
    W₁ = √a₀ Q Vᵀ, W₂ = √a₀ U Qᵀ, zero biases (kernels as Flax stores them: (in, out))."""
    r = u.shape[1]
    if width < r:
        raise UserError(f"the hidden width ({width}) must hold the {r} modes")
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((width, r)))[0]
    w1, w2 = np.sqrt(a0) * q @ v.T, np.sqrt(a0) * u @ q.T
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    return {
        "layer_1": {"kernel": f32(w1.T), "bias": np.zeros(width, np.float32)},
        "layer_2": {"kernel": f32(w2.T), "bias": np.zeros(u.shape[0], np.float32)},
    }


def mode_strengths(params: dict, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """a_α = u_αᵀ W v_α of the depth-1 MLP's end-to-end map W = W₂W₁ (r,)."""
    w = (np.asarray(params["layer_1"]["kernel"]) @ np.asarray(params["layer_2"]["kernel"])).T
    return np.einsum("kr,kd,dr->r", u, w.astype(np.float64), v)


def exact_modes(s, a0, lr: float, steps, k: int) -> np.ndarray:
    """Saxe et al.'s a_α(t) at each step, (len(steps), r); a0 a number or one per mode."""
    s, a0 = np.asarray(s, np.float64), np.broadcast_to(np.asarray(a0, np.float64), np.shape(s))
    t = np.asarray(steps, np.float64)[:, None]
    return s / (1.0 + (s / a0 - 1.0) * np.exp(-4.0 * lr * s * t / k))


def discrete_modes(s, a0, lr: float, steps: int, k: int) -> np.ndarray:
    """The exact gradient-descent recursion of the decoupled start, (steps + 1, r):
    b ← b + (2η/k)(s − b²) b, a = b²."""
    s = np.asarray(s, np.float64)
    b = np.sqrt(np.broadcast_to(np.asarray(a0, np.float64), s.shape)).copy()
    out = [b**2]
    for _ in range(steps):
        b = b + (2.0 * lr / k) * (s - b**2) * b
        out.append(b**2)
    return np.array(out)


def exact_loss(modes: np.ndarray, s, k: int) -> np.ndarray:
    """The MSE Σ_α (a_α − s_α)²/k of mode strengths (T, r)."""
    return ((np.asarray(modes) - np.asarray(s)) ** 2).sum(axis=-1) / k


def learning_time(s, a0, lr: float, k: int) -> np.ndarray:
    """The step at which a_α reaches s_α/2: k ln(s_α/a₀ − 1)/(4η s_α)."""
    s = np.asarray(s, np.float64)
    return k * np.log(s / np.asarray(a0, np.float64) - 1.0) / (4.0 * lr * s)
