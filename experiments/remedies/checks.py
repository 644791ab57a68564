"""The remedies study's literature checks: Yang et al. 2019 (gradient growth at init with and
without batch norm, against the large-batch and mean-field predictions) and He et al. 2015 (a
30-layer ReLU net, He vs Xavier init)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from experiments.remedies.training import train_members
from sigjax import config, theory
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import train
from sigjax.theory import numerics as theory_numerics

YANG_DEPTHS = (5, 10, 15, 20)
YANG_ACTIVATIONS = ("sigmoid", "relu")
YANG_NORMS = ("none", "batch")
YANG_BATCH = 256  # examples per gradient at init (the prediction is the large-batch limit)
YANG_SEEDS = 8
YANG_SIGMA_W2 = {"sigmoid": 1.0, "relu": 2.0}  # plain sigmoid; ReLU at its own critical point


def bn_growth_prediction(activation: str) -> float:
    """Per-layer growth of ‖∂L/∂W_l‖ toward the input at init under batch norm, in the limit of
    wide layers and large batches: sqrt(E[φ'(z)²] / Var[φ(z)]), z ~ N(0, 1).

    Why: batch norm makes every pre-activation N(0, 1) over the batch and divides the backward
    signal by the batch std of W a, σ_w·std φ(z), while W's transpose multiplies it by σ_w, so
    the squared gradient grows by E[φ'(z)²] / Var[φ(z)] per layer whatever σ_w² is (the centring
    projections remove 2 of B directions). For ReLU this is π/(π − 1), Yang et al.'s
    large-batch gradient-explosion rate for ReLU.
    """
    p = theory_numerics.phi(activation)  # float64 quadrature that splits at the kinks
    e = lambda f: float(theory_numerics.gauss_expect(f, 1.0, p.kinks))  # noqa: E731
    var = e(lambda x: p.f(x) ** 2) - e(p.f) ** 2
    return math.sqrt(e(lambda x: p.d1(x) ** 2) / var)


def growth_factor(grad_norm: np.ndarray, depth: int) -> np.ndarray:
    """Per-layer growth of ‖∂L/∂W_l‖ toward the input over the hidden layers 2..depth (the
    first sees the data, the output layer its own loss): (‖∇W_2‖ / ‖∇W_depth‖)^(1/(depth-2)).
    grad_norm (..., layer) with layer 1..depth+1."""
    return (grad_norm[..., 1] / grad_norm[..., depth - 1]) ** (1.0 / (depth - 2))


def chi_prediction(activation: str, sigma_w2: float, depth: int, q_start: float) -> float:
    """The mean-field growth factor of ‖∂L/∂W_l‖ over hidden layers 2..depth without batch norm
    (sigjax.theory.gradient_profile of the weight gradients, biases 0)."""
    prof = theory.gradient_profile(activation, sigma_w2, 0.0, depth, q_start, weights=True)
    return float((prof[1] / prof[depth - 1]) ** (0.5 / (depth - 2)))


def yang_check(cfg: Config, depths=YANG_DEPTHS) -> dict[str, np.ndarray]:
    """‖∂L/∂W_l‖ at init on one batch of YANG_BATCH training examples: (act, norm, depth, seed,
    layer) NaN-padded, for every activation, norm and depth."""
    full = data_lib.load(cfg.data)
    x, y = full.x_train[:YANG_BATCH], full.y_train[:YANG_BATCH]
    data = data_lib.Data(x_train=x, y_train=y, n_classes=full.n_classes)
    out = np.full(
        (len(YANG_ACTIVATIONS), len(YANG_NORMS), len(depths), YANG_SEEDS, max(depths) + 1), np.nan
    )
    for i, act in enumerate(YANG_ACTIVATIONS):
        for j, norm in enumerate(YANG_NORMS):
            for k, depth in enumerate(depths):
                c = config.replace(
                    cfg,
                    {
                        "model.activation": act,
                        "model.norm": norm,
                        "model.depth": depth,
                        "model.arch": "mlp",
                        "init.scheme": "gaussian",
                        "init.sigma_w2": YANG_SIGMA_W2[act],
                        "init.sigma_b2": 0.0,
                        "train.record": "gradients",
                    },
                )
                out[i, j, k, :, : depth + 1] = _init_grads(train.program(c, data), data)
    return {"yang_grad_norm": out, "yang_q_input": np.asarray(jnp.mean(x**2), np.float64)}


def _init_grads(prog: train.Program, data: data_lib.Data) -> np.ndarray:
    hp = train.hparams_of(prog.cfg)

    def one(seed):
        st = prog.init(hp, jax.random.key(seed))
        _, rec, _ = prog.measure(data, st.params, data.x_train, data.y_train, st.model_state)
        return rec["grad_norm"]

    return np.asarray(jax.jit(jax.vmap(one))(jnp.arange(YANG_SEEDS)))


HE_DEPTH = 30
HE_INITS = {"xavier": 1.0, "he": 2.0}  # σ_w² of N(0, σ_w²/n_in): their Xavier, their own
HE_RATES = (0.003, 0.01, 0.03, 0.1)
HE_SEEDS = 4


def he_check(cfg: Config, data, test, bar=None) -> dict[str, np.ndarray]:
    """A HE_DEPTH-layer ReLU net, "xavier" vs "he" init, every rate × HE_SEEDS seeds: the
    records (init, rate, seed, step[, layer]) and the final test accuracy (init, rate, seed)."""
    c = config.replace(
        cfg,
        {
            "model.activation": "relu",
            "model.depth": HE_DEPTH,
            "model.arch": "mlp",
            "model.norm": "none",
            "init.scheme": "gaussian",
        },
    )
    cfgs, lrs, seeds = [], [], []
    for w in HE_INITS.values():
        for r in HE_RATES:
            for s in range(HE_SEEDS):
                cfgs.append(config.replace(c, {"init.sigma_w2": w})), lrs.append(r), seeds.append(s)
    res = train_members(cfgs, data, test, np.array(lrs), np.array(seeds), bar)
    shape = (len(HE_INITS), len(HE_RATES), HE_SEEDS)
    keep = ("loss", "test_accuracy", "grad_norm", "test_accuracy_final", "diverged_at")
    return {f"he_{k}": res[k].reshape(shape + res[k].shape[1:]) for k in keep}


# ----------------------------------------------------------------------------- the study
