"""Datasets as arrays, and minibatches drawn inside the compiled loop.

A task is made on the host once, from `DataConfig` alone (its own seed, a NumPy Generator:
no global RNG), and passed to the compiled program as an argument, so every member of a sweep
sees the same task. Minibatch order comes from each member's own key.

Tasks:
- `seed_regression`: the seed blog's X ~ U[0,1]^{n×dim}, y ~ U[0,1]^{n×out_dim}.
- `teacher`: x ~ N(0, I_dim), labels = argmax of a random tanh teacher MLP (out_dim classes).
- `teacher_regression`: the same inputs, y = the teacher's outputs (out_dim values).
- `mnist1d`, `digits`, `mnist`, `fashion_mnist`, `cifar10`: real data (sigjax.data_sources).
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from sigjax.config import DataConfig
from sigjax.errors import UserError


@flax.struct.dataclass
class Data:
    """x: (n, dim) float32; y: (n, out) float32 targets or (n,) int32 class labels."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array | None = None
    y_test: jax.Array | None = None
    n_classes: int = flax.struct.field(pytree_node=False, default=0)  # 0: regression

    @property
    def in_dim(self) -> int:
        return self.x_train.shape[1]

    @property
    def out_dim(self) -> int:
        return self.n_classes or self.y_train.shape[1]

    @property
    def has_test(self) -> bool:
        return self.x_test is not None


def _seed_regression(cfg: DataConfig) -> dict:
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_train + cfg.n_test
    x = rng.uniform(size=(n, cfg.dim)).astype(np.float32)
    y = rng.uniform(size=(n, cfg.out_dim)).astype(np.float32)
    return _split(x, y, cfg.n_train)


def _teacher_outputs(cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(cfg.seed)
    n = cfg.n_train + cfg.n_test
    x = rng.standard_normal((n, cfg.dim)).astype(np.float32)
    h = x
    for fan_out in (64, 64):  # a 2-hidden-layer tanh teacher at σ_w² = 2, just past the edge
        w = rng.standard_normal((h.shape[1], fan_out)) * np.sqrt(2.0 / h.shape[1])
        h = np.tanh(h @ w)
    w_out = rng.standard_normal((h.shape[1], cfg.out_dim)) / np.sqrt(h.shape[1])
    return x, (h @ w_out).astype(np.float32)


def _teacher(cfg: DataConfig) -> dict:
    x, out = _teacher_outputs(cfg)
    return _split(x, out.argmax(axis=1).astype(np.int32), cfg.n_train) | {"n_classes": cfg.out_dim}


def _teacher_regression(cfg: DataConfig) -> dict:
    x, out = _teacher_outputs(cfg)
    return _split(x, out, cfg.n_train)


def _split(x: np.ndarray, y: np.ndarray, n_train: int) -> dict:
    arrays = {"x_train": x[:n_train], "y_train": y[:n_train]}
    if len(x) > n_train:
        arrays |= {"x_test": x[n_train:], "y_test": y[n_train:]}
    return arrays


def _real(name: str):
    def load(cfg: DataConfig) -> dict:
        from sigjax import data_sources

        if name == "mnist1d":
            arrays = data_sources.mnist1d(seed=cfg.seed)
        elif name == "digits":
            arrays = data_sources.digits(seed=cfg.seed)
        else:
            arrays = data_sources.local(name)
        return arrays | {"n_classes": int(arrays["y_train"].max()) + 1}

    return load


DATASETS = {
    "seed_regression": _seed_regression,
    "teacher": _teacher,
    "teacher_regression": _teacher_regression,
    **{n: _real(n) for n in ("mnist1d", "digits", "mnist", "fashion_mnist", "cifar10")},
}


def load(cfg: DataConfig) -> Data:
    """The task named by cfg.name, as device arrays (standardised if cfg.standardize)."""
    if cfg.name not in DATASETS:
        raise UserError(f"unknown dataset {cfg.name!r}; choose from {', '.join(DATASETS)}")
    arrays = DATASETS[cfg.name](cfg)
    n_classes = arrays.pop("n_classes", 0)
    if cfg.standardize:
        mean = arrays["x_train"].mean(axis=0)
        std = arrays["x_train"].std(axis=0) + 1e-6
        for k in ("x_train", "x_test"):
            if k in arrays:
                arrays[k] = ((arrays[k] - mean) / std).astype(np.float32)
    return Data(**{k: jnp.asarray(v) for k, v in arrays.items()}, n_classes=n_classes)


def batch(data: Data, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """A minibatch drawn uniformly with replacement (the whole set when batch_size is 0)."""
    n = data.x_train.shape[0]
    if batch_size == 0 or batch_size >= n:
        return data.x_train, data.y_train
    idx = batch_indices(key, n, batch_size)
    return data.x_train[idx], data.y_train[idx]


def batch_indices(key: jax.Array, n: int, batch_size: int) -> jax.Array:
    """The (batch_size,) training-set rows of a minibatch drawn with key (with replacement)."""
    return jax.random.randint(key, (batch_size,), 0, n)
