"""Datasets as arrays, and minibatches drawn inside the compiled loop.

A task is made on the host once, from `DataConfig` alone (its own seed, a NumPy Generator:
no global RNG), and passed to the compiled program as an argument, so every member of a sweep
sees the same task. Minibatch order comes from each member's own key.

Tasks:
- `seed_regression`: the seed blog's X ~ U[0,1]^{n×dim}, y ~ U[0,1]^{n×out_dim}.
- `teacher`: x ~ N(0, I_dim), labels = argmax of a random tanh teacher MLP (out_dim classes).
- `teacher_regression`: the same inputs, y = the teacher's outputs (out_dim values).
- `mnist1d`, `digits`, `mnist`, `fashion_mnist`, `cifar10`: real data (sigjax.data.sources),
  each with its own train/test split and ten classes; `n_train`, `n_test`, `dim` and `out_dim`
  size the synthetic tasks only.
- `npz`: a user's file `data.path` holding `x_train`, `y_train` and optionally `x_test`,
  `y_test` (integer labels make a classification task with `data.n_classes` classes, 0: one
  more than the largest label; float targets a regression task).
- `arrays`: a user's arrays given in Python (`from_arrays`, then `sweep.run(..., data=...)`);
  `config_of` describes them, their content hash in `data.path`.

A user's data is keyed on its content (`fingerprint`): compiled programs and checkpoints made
with other data are never reused.

`load` refuses, before it draws anything, a synthetic task too large for the memory available
(`task_bytes` against `available_memory`), and any class label outside the task's classes.
"""

from __future__ import annotations

import hashlib
import os
import weakref
from collections.abc import Iterable
from pathlib import Path

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from sigjax.config import DataConfig
from sigjax.data import arrays as user_arrays
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

    def hold_out(self, n_val: int) -> Data:
        """The training split without its last n_val examples, with those examples (a
        validation split, never trained on) in the test slot: what a study that selects on
        validation trains on. The test split is left to the caller."""
        n = int(self.x_train.shape[0])
        if not 0 < n_val < n:
            raise UserError(f"cannot hold out {n_val} of {n} training examples for validation")
        return Data(
            x_train=self.x_train[: n - n_val],
            y_train=self.y_train[: n - n_val],
            x_test=self.x_train[n - n_val :],
            y_test=self.y_train[n - n_val :],
            n_classes=self.n_classes,
        )


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
    # a 2-hidden-layer tanh teacher at σ_w² = 2, just past the edge
    for fan_out in (TEACHER_HIDDEN, TEACHER_HIDDEN):
        w = rng.standard_normal((h.shape[1], fan_out)) * np.sqrt(2.0 / h.shape[1])
        h = np.tanh(h @ w)
    w_out = rng.standard_normal((h.shape[1], cfg.out_dim)) / np.sqrt(h.shape[1])
    return x, (h @ w_out).astype(np.float32)


def _teacher(cfg: DataConfig) -> dict:
    x, out = _teacher_outputs(cfg)
    labels = out.argmax(axis=1).astype(np.int32)
    return _split(x, labels, cfg.n_train) | {"n_classes": n_classes(cfg)}


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
        from sigjax.data import sources as data_sources

        if name == "mnist1d":
            arrays = data_sources.mnist1d(seed=cfg.seed)
        elif name == "digits":
            arrays = data_sources.digits(seed=cfg.seed)
        else:
            arrays = data_sources.local(name)
        # The declared count, not the labels one split happens to hold: a test label that the
        # training split lacks must still have a logit.
        return arrays | {"n_classes": n_classes(cfg)}

    return load


def _npz(cfg: DataConfig) -> dict:
    arrays = user_arrays.read_npz(cfg, NPZ_KEYS)
    integer = np.issubdtype(arrays["y_train"].dtype, np.integer)
    task = "classification" if cfg.n_classes or integer else "regression"
    try:
        return user_arrays.checked(**arrays, task=task, n_classes=cfg.n_classes or None)
    except UserError as e:
        raise UserError(f"data.path={cfg.path}: {e}") from None


def _arrays(cfg: DataConfig) -> dict:
    raise UserError(_ARRAYS_ONLY)


DATASETS = {
    "seed_regression": _seed_regression,
    "teacher": _teacher,
    "teacher_regression": _teacher_regression,
    **{n: _real(n) for n in ("mnist1d", "digits", "mnist", "fashion_mnist", "cifar10")},
    "npz": _npz,
    "arrays": _arrays,
}


TEACHER_HIDDEN = 64  # width of the teacher's hidden layers (see _teacher_outputs)
SYNTHETIC = ("seed_regression", "teacher", "teacher_regression")
USER = ("npz", "arrays")  # a user's data: data.path and data.n_classes apply to these alone
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
HASH_PREFIX = "sha256:"  # data.path of arrays given in Python: their content hash
_ARRAYS_ONLY = (
    "data.name=arrays stands for arrays given in Python (sweep.run(..., data=from_arrays(...)) "
    "or sigjax.run(..., data=...)); to read arrays from a file use data.name=npz with "
    "data.path=FILE.npz"
)


def n_classes(cfg: DataConfig) -> int:
    """The classes of cfg's task, known from its config (an npz file's labels read): 0 for a
    regression task. UserError for data.path or data.n_classes on a task they do not apply to."""
    from sigjax.data import sources as data_sources

    if cfg.name not in USER and (cfg.path or cfg.n_classes):
        key = "data.path" if cfg.path else "data.n_classes"
        raise UserError(
            f"{key} applies to data.name=npz, not data.name={cfg.name}"
            + ("; the teacher task's classes are data.out_dim" if cfg.name == "teacher" else "")
        )
    if cfg.n_classes < 0:
        raise UserError(f"data.n_classes must be non-negative, got {cfg.n_classes}")
    if cfg.name == "teacher":
        return cfg.out_dim
    if cfg.name == "arrays":
        if not cfg.path.startswith(HASH_PREFIX):
            raise UserError(_ARRAYS_ONLY)
        return cfg.n_classes
    if cfg.name == "npz":
        if cfg.n_classes:
            return cfg.n_classes
        ys = user_arrays.read_npz(cfg, ("y_train", "y_test"))
        if not np.issubdtype(ys["y_train"].dtype, np.integer):
            return 0
        return 1 + max(int(y.max()) for y in ys.values() if y.size)
    return 0 if cfg.name in SYNTHETIC else data_sources.N_CLASSES


def _label_cols(cfg: DataConfig) -> int:
    return 1 if cfg.name == "teacher" else cfg.out_dim  # teacher: one int32 label a row


def task_bytes(cfg: DataConfig) -> int | None:
    """Estimated peak host bytes of making cfg's synthetic task; None for real data (sized by
    its files). Per row: the float64 draws, the float32 arrays kept, a standardised copy and the
    device copy (12 bytes a column), plus the teacher's float64 hidden layers."""
    if cfg.name not in SYNTHETIC:
        return None
    per_row = 12 * (cfg.dim + _label_cols(cfg))
    if cfg.name != "seed_regression":
        per_row += 8 * (3 * TEACHER_HIDDEN + cfg.out_dim)  # h, h @ w and tanh(h @ w) live at once
    return (cfg.n_train + cfg.n_test) * per_row


def available_memory() -> int | None:
    """Bytes of host memory available now (None if unknown): Linux's MemAvailable, else the
    free pages, capped by the limit of the process's cgroup where it has one."""
    free = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    cgroup = Path("/sys/fs/cgroup")
    for limit, usage in (
        ("memory.max", "memory.current"),  # cgroup v2
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),  # cgroup v1
    ):
        try:
            left = int((cgroup / limit).read_text()) - int((cgroup / usage).read_text())
        except (OSError, ValueError):  # absent, or "max": no limit
            continue
        free = min(free, max(left, 0))
    return free


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_size(cfg: DataConfig) -> None:
    """UserError, naming the keys, for a synthetic task larger than the host memory available
    or (on an accelerator) than the device memory free."""
    need = task_bytes(cfg)
    if need is None:
        return
    kept = 4 * (cfg.n_train + cfg.n_test) * (cfg.dim + _label_cols(cfg))  # on the device
    dev = jax.local_devices()[0]
    stats = (dev.memory_stats() if hasattr(dev, "memory_stats") else None) or {}
    limit = stats.get("bytes_limit")  # None on CPU: the host check covers it
    on_dev = limit - stats.get("bytes_in_use", 0) if limit else None
    for size, room, where in (
        (need, available_memory(), "of host memory available"),
        (kept, on_dev, f"free on the {dev.device_kind}"),
    ):
        if room is not None and size > room:
            raise UserError(
                f"data.n_train={cfg.n_train}, data.n_test={cfg.n_test}, data.dim={cfg.dim}, "
                f"data.out_dim={cfg.out_dim} make a {cfg.name} task of about "
                f"{_size(size)}, more than the {_size(room)} {where}; "
                "lower data.n_train, data.n_test, data.dim or data.out_dim"
            )


def _check_labels(arrays: dict, classes: int, name: str) -> None:
    for k in ("y_train", "y_test"):
        y = arrays.get(k)
        if y is None or not len(y):
            continue
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= classes:
            raise UserError(
                f"data.name={name}: {k} holds labels {lo}..{hi}, outside the task's "
                f"{classes} classes 0..{classes - 1}"
            )


def load(cfg: DataConfig) -> Data:
    """The task named by cfg.name, as device arrays (standardised if cfg.standardize).

    UserError before anything is drawn if the task would not fit in memory (`check_size`), and
    for class labels outside the task's classes (its declared count, or else both splits')."""
    if cfg.name not in DATASETS:
        raise UserError(f"unknown dataset {cfg.name!r}; choose from {', '.join(DATASETS)}")
    check_size(cfg)
    arrays = DATASETS[cfg.name](cfg)
    classes = arrays.pop("n_classes", None)
    if classes is None and np.issubdtype(arrays["y_train"].dtype, np.integer):
        ys = [arrays[k] for k in ("y_train", "y_test") if k in arrays and len(arrays[k])]
        classes = 1 + max(int(y.max()) for y in ys) if ys else 0
    if classes:
        _check_labels(arrays, classes, cfg.name)
    if cfg.standardize:
        mean = arrays["x_train"].mean(axis=0)
        std = arrays["x_train"].std(axis=0) + 1e-6
        for k in ("x_train", "x_test"):
            if k in arrays:
                arrays[k] = ((arrays[k] - mean) / std).astype(np.float32)
    return Data(**{k: jnp.asarray(v) for k, v in arrays.items()}, n_classes=classes or 0)


# ------------------------------------------------------------------------- a user's own data


def load_cached(cfg: DataConfig, cache: dict) -> Data:
    """`load(cfg)`, kept in `cache` (a dict keyed by DataConfig) for the groups that share it."""
    if cfg not in cache:
        cache[cfg] = load(cfg)
    return cache[cfg]


def from_arrays(
    x_train,
    y_train,
    x_test=None,
    y_test=None,
    *,
    task: str = "regression",
    n_classes: int | None = None,
) -> Data:
    """A user's arrays as a task: x (n, dim) real numbers (float32 on the device); for
    task="regression" y (n, k) or (n,) real targets ((n,) becomes (n, 1)); for
    task="classification" y (n,) integer labels 0..n_classes-1 (n_classes None: one more than
    the largest label of either split). A test split is x_test and y_test together.

    One-line UserError naming the argument at fault: shapes, dtypes, NaN or inf, labels that
    are negative, non-integer or not below n_classes. Equals `load` of a named task whose
    arrays these are (same arrays, same classes: the same numbers when trained)."""
    arrays = user_arrays.checked(x_train, y_train, x_test, y_test, task=task, n_classes=n_classes)
    classes = arrays.pop("n_classes")
    return Data(**{k: jnp.asarray(v) for k, v in arrays.items()}, n_classes=classes)


_MEMO: dict[tuple, tuple[tuple, str]] = {}  # ids of a Data's arrays -> (weak refs, hash)


def _digest(arrays: dict, classes: int) -> str:
    h = hashlib.sha256(f"n_classes={classes}".encode())
    for k in NPZ_KEYS:
        v = arrays.get(k)
        if v is not None:
            v = np.ascontiguousarray(v)
            h.update(f";{k} {v.dtype.str} {v.shape};".encode())
            h.update(memoryview(v).cast("B"))
    return h.hexdigest()


def fingerprint(data: Data) -> str:
    """SHA-256 (hex) over the arrays (name, dtype, shape, bytes) and n_classes: equal exactly
    when the content is, whatever objects hold it. Remembered per array object (JAX arrays
    are immutable), so a sweep of many groups hashes its data once."""
    leaves = (data.x_train, data.y_train, data.x_test, data.y_test)
    key = (*map(id, leaves), data.n_classes)
    hit = _MEMO.get(key)
    if hit is not None and all(
        (r() if r is not None else None) is a for r, a in zip(hit[0], leaves, strict=True)
    ):
        return hit[1]
    arrays = {k: np.asarray(v) for k, v in zip(NPZ_KEYS, leaves, strict=True) if v is not None}
    digest = _digest(arrays, data.n_classes)
    try:
        refs = tuple(weakref.ref(a) if a is not None else None for a in leaves)
    except TypeError:  # an array type that takes no weak reference: not remembered
        return digest
    if len(_MEMO) >= 64:
        _MEMO.clear()
    _MEMO[key] = (refs, digest)
    return digest


def config_of(data: Data) -> DataConfig:
    """The DataConfig that stands for a user's Data in a run's config: name "arrays", its
    sizes, classes and content hash (data.path)."""
    return DataConfig(
        name="arrays",
        n_train=int(data.x_train.shape[0]),
        n_test=int(data.x_test.shape[0]) if data.has_test else 0,
        dim=int(data.in_dim),
        out_dim=int(data.out_dim),
        n_classes=int(data.n_classes),
        path=HASH_PREFIX + fingerprint(data),
    )


def token(cfgs: Iterable[DataConfig]) -> str:
    """The content hash of every user dataset among cfgs ('' when there is none): an npz
    file's arrays are read and hashed, arrays given in Python carry theirs. A checkpoint made
    with other contents must not be resumed."""
    parts = []
    for c in dict.fromkeys(cfgs):
        if c.name == "npz":
            arrays = _npz(c)
            parts.append(f"{c.path}={_digest(arrays, arrays['n_classes'])}")
        elif c.name == "arrays":
            parts.append(c.path)
    return ";".join(parts)


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
