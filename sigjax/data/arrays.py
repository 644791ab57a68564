"""A user's arrays checked and converted before they become a task: shapes, dtypes, NaN and
inf, class labels, and the arrays of an .npz file (`data.name=npz`). Every mistake is a
one-line UserError naming the argument or file at fault."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from sigjax.config import DataConfig
from sigjax.errors import UserError, first_line

TASKS = ("regression", "classification")


def checked(x_train, y_train, x_test=None, y_test=None, *, task: str, n_classes) -> dict:
    """The arrays validated and converted (x float32; y float32 (n, k) or int32 (n,)), with
    "n_classes" (0: regression); an empty test split is dropped."""
    if task not in TASKS:
        raise UserError(f"task must be 'regression' or 'classification', got {task!r}")
    classify = task == "classification"
    if n_classes is not None:
        if not classify:
            raise UserError(
                "n_classes applies to task='classification'; a regression task's targets are "
                "the columns of y_train"
            )
        if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
            raise UserError(f"n_classes must be a positive integer, got {n_classes!r}")
        if n_classes < 1:
            raise UserError(f"n_classes must be a positive integer, got {n_classes}")
    if (x_test is None) != (y_test is None):
        given, lacking = ("x_test", "y_test") if y_test is None else ("y_test", "x_test")
        raise UserError(f"{given} is given without {lacking}; give both or neither")
    out = {"x_train": _features("x_train", x_train)}
    n, dim = out["x_train"].shape
    if n == 0:
        raise UserError("x_train has no rows")
    targets = _labels if classify else _targets
    out["y_train"] = targets("y_train", y_train, n)
    if x_test is not None:
        xt = _features("x_test", x_test)
        if xt.shape[1] != dim:
            raise UserError(f"x_test has {xt.shape[1]} columns but x_train has {dim}")
        yt = targets("y_test", y_test, xt.shape[0])
        if not classify and yt.shape[1] != out["y_train"].shape[1]:
            raise UserError(
                f"y_test has {yt.shape[1]} target columns but y_train has {out['y_train'].shape[1]}"
            )
        if len(xt):
            out |= {"x_test": xt, "y_test": yt}
    classes = 0
    if classify:
        ys = [out[k] for k in ("y_train", "y_test") if k in out]
        top = max(int(y.max()) for y in ys)
        classes = top + 1 if n_classes is None else int(n_classes)
        for k, y in zip(("y_train", "y_test"), ys, strict=False):
            if int(y.max()) >= classes:
                r = int(np.argmax(y >= classes))
                raise UserError(
                    f"{k} holds label {int(y[r])} at row {r}, but n_classes={classes} allows "
                    f"labels 0..{classes - 1}"
                )
    return out | {"n_classes": classes}


def _numbers(name: str, a) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as e:
        raise UserError(f"{name} cannot be read as an array: {first_line(e)}") from None
    if arr.dtype.kind not in "biuf":
        raise UserError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return arr


def _at(shape: tuple, idx) -> str:
    where = f"row {idx[0]}"
    return where + (f", column {idx[1]}" if len(shape) > 1 else "")


def _as_float32(name: str, arr: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # a value beyond float32's range is reported below
        out = arr.astype(np.float32)
    bad = ~np.isfinite(out)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        v = arr[idx]
        why = "beyond float32's range" if np.isfinite(v) else "remove or replace it"
        raise UserError(f"{name} holds {v} at {_at(arr.shape, idx)}; {why}")
    return out


def _features(name: str, a) -> np.ndarray:
    arr = _numbers(name, a)
    if arr.ndim != 2:
        raise UserError(f"{name} must be 2-D (n, dim), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise UserError(f"{name} has no columns (shape {arr.shape})")
    return _as_float32(name, arr)


def _rows(name: str, arr: np.ndarray, n: int, x: str) -> None:
    if arr.shape[0] != n:
        raise UserError(f"{name} has {arr.shape[0]} rows but {x} has {n}")


def _targets(name: str, a, n: int) -> np.ndarray:
    arr = _numbers(name, a)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise UserError(
            f"{name} must be (n,) or (n, k) real targets for task='regression', got shape "
            f"{np.shape(a)}"
        )
    _rows(name, arr, n, "x" + name[1:])
    return _as_float32(name, arr)


def _labels(name: str, a, n: int) -> np.ndarray:
    arr = _numbers(name, a)
    if arr.ndim != 1:
        raise UserError(
            f"{name} must be (n,) integer labels for task='classification', got shape "
            f"{arr.shape} (one-hot rows: pass y.argmax(1))"
        )
    _rows(name, arr, n, "x" + name[1:])
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.floor(arr))
        if bad.any():
            r = int(np.argmax(bad))
            raise UserError(
                f"{name} holds the non-integer label {arr[r]} at row {r}; class labels are "
                "integers 0, 1, ..."
            )
    if arr.size and arr.min() < 0:
        r = int(np.argmin(arr))
        raise UserError(
            f"{name} holds the negative label {arr[r]:g} at row {r}; class labels are "
            "integers 0, 1, ..."
        )
    if arr.size and arr.max() > np.iinfo(np.int32).max:
        raise UserError(f"{name} holds the label {arr.max():g}, too large for a class index")
    return arr.astype(np.int32)


def read_npz(cfg: DataConfig, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `keys` (those present) of cfg's npz file; UserError naming data.path for a
    missing or unreadable file, or one without x_train and y_train."""
    where = f"data.path={cfg.path}"
    if not cfg.path:
        raise UserError(
            "data.name=npz needs data.path=FILE.npz (arrays x_train, y_train and optionally "
            "x_test, y_test)"
        )
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise UserError(f"{where}: {'not a file' if path.exists() else 'no such file'}")
    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{where} is not an .npz archive (np.savez): {first_line(e)}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise UserError(
            f"{where} holds a single array, not an .npz archive; write it with "
            "np.savez(path, x_train=..., y_train=...)"
        )
    with f:
        missing = [k for k in ("x_train", "y_train") if k not in f.files]
        if missing:
            held = ", ".join(f.files) or "no arrays"
            raise UserError(f"{where} lacks {' and '.join(missing)} (it holds {held})")
        test = [k for k in ("x_test", "y_test") if k in f.files]
        if len(test) == 1:
            other = "y_test" if test[0] == "x_test" else "x_test"
            raise UserError(f"{where} holds {test[0]} without {other}; give both or neither")
        out = {}
        for k in keys:
            if k in f.files:
                try:
                    out[k] = f[k]
                except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
                    raise UserError(f"{where}: cannot read {k}: {first_line(e)}") from None
    return out
