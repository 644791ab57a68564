"""A user's own dataset and metric: a noisy sine task and each layer's largest |pre-activation|.

    python scripts/example_data_metric.py [--steps 500]

The arrays go in through `sigjax.data.from_arrays`; the metric is registered once and recorded
inside the compiled loop at every logged step, then read back from the results like any other.
"""

import argparse

import jax.numpy as jnp
import numpy as np

import sigjax
from sigjax import data


def sine_task(n: int = 200, seed: int = 0):
    """x ~ U[-3, 3]^(n×1), y = sin(x) + 0.1·noise, split 3:1 into train and test."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, (n, 1)).astype(np.float32)
    y = np.sin(x) + 0.1 * rng.standard_normal((n, 1)).astype(np.float32)
    cut = 3 * n // 4
    return data.from_arrays(x[:cut], y[:cut], x[cut:], y[cut:], task="regression")


def max_preact(ctx):
    """Each layer's largest |z| on the step's batch: (n_layers,)."""
    return jnp.stack([jnp.abs(z).max() for z in ctx.inter.pre])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500)
    args = p.parse_args(argv)
    sigjax.register_metric("max_preact", max_preact, per_layer=True)
    ds = sigjax.run(
        "sigmoid_convergence",
        overrides={"model.depth": 3, "train.steps": args.steps, "train.metrics": "max_preact"},
        grid={"model.activation": "sigmoid,tanh", "optim.lr": [0.1], "seed": "range(4)"},
        data=sine_task(),
    )
    for act in ds.activation.values:
        one = ds.sel(activation=act).squeeze()
        first, last = (one.max_preact.isel(step=s).median("seed").values for s in (0, -1))
        print(
            f"{act:8s} max |z| per layer, step 0: {np.round(first, 2)}  final: {np.round(last, 2)}"
        )
        print(f"{act:8s} median test MSE: {float(one.test_loss.isel(step=-1).median()):.4f}")
    return ds


if __name__ == "__main__":
    main()
