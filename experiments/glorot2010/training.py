"""The glorot2010 study's data split, the network written by hand for its probes
(activation statistics, per-layer histograms, layer Jacobians), its config and grid, and the
sweep that trains every variant (init schemes as members of one program)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from sigjax import config
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import probed_sweep, probes, train
from sigjax.nn import activations, losses, models

ACTIVATIONS = ("sigmoid", "tanh", "softsign")
SCHEMES = ("standard", "normalized")
N_PROBE = 300  # fixed test examples for activation trajectories and distributions (as theirs)
# examples for the layer-Jacobian spectra: each gives min(n_in, n_out) singular values, so a few
# suffice, and one SVD per example and layer stays cheap at width 1000
N_JAC = 20
VAL_FRACTION = 8  # the last 1/8 of the training set is the validation split
ACT_BINS = np.linspace(-1.0, 1.0, 61)
GRAD_RANGE = 4.0  # gradient histograms span ±4 std of the top hidden layer's values
GRAD_BINS = np.linspace(-GRAD_RANGE, GRAD_RANGE, 61)
WHEN = ("init", "final")

# ----------------------------------------------------------------- data: train / validation


def split_data(full: data_lib.Data) -> tuple[data_lib.Data, jax.Array, jax.Array, dict]:
    """(training data whose "test" slot is the validation split, probe x, probe y, test set).

    The validation split is the last 1/VAL_FRACTION of the training set; the probe batch is the
    first N_PROBE test examples (Glorot & Bengio used 300 fixed test examples).
    """
    train_data = full.hold_out(max(1, full.x_train.shape[0] // VAL_FRACTION))
    test = {"x": full.x_test, "y": full.y_test}
    return train_data, full.x_test[:N_PROBE], full.y_test[:N_PROBE], test


# ----------------------------------------------------------------- the network, by hand


def forward(params, x, activation: str, head_activation: str = "identity", shifts=None):
    """The MLP of sigjax.nn.models as plain jnp: (outputs, pre-activations, activations).

    `shifts` (one array per layer, shaped like z_l) are added to the pre-activations, so that
    the gradient of a loss with respect to them is the back-propagated gradient ∂L/∂z_l.
    """
    names = models.layer_names(params)
    pre, post = [], []
    for i, name in enumerate(names):
        z = x @ params[name]["kernel"] + params[name]["bias"]
        if shifts is not None:
            z = z + shifts[i]
        x = activations.get(activation if i < len(names) - 1 else head_activation)(z)
        pre.append(z)
        post.append(x)
    return x, pre, post


def probe_stats(prog: train.Program, params, x) -> dict[str, jax.Array]:
    """Mean, std, 2nd and 98th percentiles of each layer's activations on x: (n_layers,) each."""
    _, _, post = forward(params, x, prog.cfg.model.activation, prog.cfg.model.head_activation)
    return {f"probe_{k}": v for k, v in probes.quantile_stats(post).items()}


def distributions(prog: train.Program, params, x, y) -> dict[str, jax.Array]:
    """Per-layer variances and histograms of activations, back-propagated gradients ∂ℓ_i/∂z_l
    (of each example's own loss) and weight gradients ∂L/∂W_l (L the mean loss over x).

    Gradient histograms are in units of the top hidden layer's std (the output layer's for a
    net without hidden layers), so that the layers share one axis as in the paper's figures.
    "jac_sv" is each layer's average singular value of ∂h_l/∂h_{l-1} (their Sec. 4.2.2) over
    the first N_JAC examples of x.
    """
    act, head = prog.cfg.model.activation, prog.cfg.model.head_activation
    loss_fn = losses.get(prog.cfg.train.loss)
    _, pre, post = forward(params, x, act, head)

    def summed(shifts):
        out, _, _ = forward(params, x, act, head, shifts)
        return loss_fn(out, y) * x.shape[0]

    gz = jax.grad(summed)([jnp.zeros_like(z) for z in pre])
    gw_tree = jax.grad(lambda p: loss_fn(forward(p, x, act, head)[0], y))(params)
    names = models.layer_names(params)
    gw = [gw_tree[n]["kernel"] for n in names]
    kernels = [params[n]["kernel"] for n in names]
    acts = [act] * (len(names) - 1) + [head]
    top = max(len(pre) - 2, 0)
    sz, sw = gz[top].std() + 1e-30, gw[top].std() + 1e-30
    return {
        "var_act": jnp.stack([a.var() for a in post]),
        "var_backprop": jnp.stack([g.var() for g in gz]),
        "var_wgrad": jnp.stack([g.var() for g in gw]),
        "hist_act": jnp.stack([probes.density(a, ACT_BINS) for a in post]),
        "hist_backprop": jnp.stack([probes.density(g / sz, GRAD_BINS) for g in gz]),
        "hist_wgrad": jnp.stack([probes.density(g / sw, GRAD_BINS) for g in gw]),
        "jac_sv": probes.mean_jacobian_svs(kernels, [z[:N_JAC] for z in pre], acts),
    }


# ----------------------------------------------------------------- the study


def local_mnist_available() -> bool:
    """True when $SIGJAX_DATA_DIR/mnist/ exists (then the full setting adds MNIST)."""
    import os

    from sigjax.data.sources import DATA_DIR_ENV

    root = os.environ.get(DATA_DIR_ENV)
    return bool(root) and (Path(root).expanduser() / "mnist").is_dir()


CONFIG = config.replace(
    Config(),
    {
        "data.name": "mnist1d",
        "data.seed": 42,  # the canonical MNIST-1D; the digits split with the same seed
        # 4 hidden layers: the depth of their Fig. 2 sigmoid network, which desaturates (their
        # 5-layer sigmoid network never does)
        "model.depth": 4,
        "model.width": 64,
        "model.activation": "sigmoid",
        "model.head_activation": "identity",
        "init.scheme": "standard",
        "init.sigma_w2": 1.0,  # the schemes exactly as defined, biases 0
        "init.sigma_b2": 0.0,
        "optim.name": "sgd",
        "train.loss": "softmax_ce",
        "train.batch_size": 10,
        # long enough for the depth-4 sigmoid to leave its plateau on digits (it does between
        # steps 3000 and 15000, seed by seed, at lr 1)
        "train.steps": 15000,
        "train.log_every": 500,
        "train.loss_threshold": 1.0,
    },
)
GRID = {
    "data.name": ("mnist1d", "digits"),
    "model.activation": ACTIVATIONS,
    "init.scheme": SCHEMES,
    "optim.lr": (0.1, 0.3, 1.0),
    "seed": tuple(range(6)),
}
FULL = (  # their width; still 1/50 of their ~5 million updates
    {"model.width": 1000, "train.steps": 100000, "train.log_every": 2000},
    {
        "data.name": ("mnist1d", "digits", *(("mnist",) if local_mnist_available() else ())),
        "model.depth": (4, 5),
        "optim.lr": (0.01, 0.03, 0.1, 0.3, 1.0),
        "seed": tuple(range(10)),
    },
)

TAILS = {
    "probe_mean": ("step", "layer"),
    "probe_std": ("step", "layer"),
    "probe_p02": ("step", "layer"),
    "probe_p98": ("step", "layer"),
    "var_act": ("when", "layer"),
    "var_backprop": ("when", "layer"),
    "var_wgrad": ("when", "layer"),
    "hist_act": ("when", "layer", "abin"),
    "hist_backprop": ("when", "layer", "gbin"),
    "hist_wgrad": ("when", "layer", "gbin"),
    "jac_sv": ("when", "layer"),
    "final_test_error": (),
    "final_test_loss": (),
}
COORDS = {
    "when": WHEN,
    "abin": 0.5 * (ACT_BINS[1:] + ACT_BINS[:-1]),
    "gbin": 0.5 * (GRAD_BINS[1:] + GRAD_BINS[:-1]),
}


def make_data(cfg: Config):
    train_data, x, y, test = split_data(data_lib.load(cfg.data))
    return train_data, {"x": x, "y": y, "test": test}


def _probe(prog, params, *, x, y, test):
    return probe_stats(prog, params, x)


def _final(prog, p0, p1, *, x, y, test):
    d0, d1 = distributions(prog, p0, x, y), distributions(prog, p1, x, y)
    out = {k: jnp.stack([d0[k], d1[k]]) for k in d0}
    logits = forward(p1, test["x"], prog.cfg.model.activation, prog.cfg.model.head_activation)[0]
    loss = prog.cfg.train.loss
    out["final_test_error"] = 1.0 - losses.accuracy(logits, test["y"], loss)
    out["final_test_loss"] = losses.get(loss)(logits, test["y"])
    return out


def compute(cfg: Config, axes, progress: bool, store) -> xr.Dataset:
    ds = probed_sweep.run_merged(
        cfg,
        axes,
        make_data=make_data,
        probe=_probe,
        final=_final,
        progress=progress,
        store=store,
        tails=TAILS,
        coords=COORDS,
    )
    return ds.rename({"test_loss": "val_loss", "test_accuracy": "val_accuracy"})
