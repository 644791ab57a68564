"""Real classification datasets, available offline, as plain NumPy arrays.

Every loader returns the same dict::

    {"x_train": float32 (n_train, d), "y_train": int32 (n_train,),
     "x_test": float32 (n_test, d), "y_test": int32 (n_test,)}

Images are flattened to vectors (row-major, channels last) and pixel values are scaled to
[0, 1]; nothing is standardised here. Nothing is ever downloaded:

* :func:`mnist1d` generates MNIST-1D (Greydanus, "Scaling down deep learning") with the
  ``mnist1d`` package and caches the arrays on disk;
* :func:`digits` splits scikit-learn's bundled 8x8 digits (1797 images);
* :func:`local` reads MNIST / Fashion-MNIST IDX files or ``.npz`` archives (MNIST,
  Fashion-MNIST, CIFAR-10) that the user has put on disk.
"""

from __future__ import annotations

import gzip
import math
import os
import random
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sigjax.errors import UserError

__all__ = [
    "DATA_DIR_ENV",
    "CACHE_ENV",
    "LOCAL_NAMES",
    "N_CLASSES",
    "MNIST1D_CACHE_VERSION",
    "cache_root",
    "mnist1d",
    "digits",
    "local",
    "read_idx",
]

DATA_DIR_ENV = "SIGJAX_DATA_DIR"
CACHE_ENV = "SIGJAX_CACHE"
MNIST1D_CACHE_VERSION = "mnist1d-v1"
_MNIST1D_SHAPES = {
    "x_train": (4000, 40),
    "y_train": (4000,),
    "x_test": (1000, 40),
    "y_test": (1000,),
}
_SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
N_CLASSES = 10  # every dataset here has ten classes, whichever labels a split happens to hold
_DIGITS_N_TEST = 400


def _as_seed(seed, what: str, upper: int | None = None) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise UserError(f"{what}: seed must be an integer, got {seed!r}")
    seed = int(seed)
    if seed < 0 or (upper is not None and seed >= upper):
        bound = f"between 0 and {upper - 1}" if upper is not None else "non-negative"
        raise UserError(f"{what}: seed must be {bound}, got {seed}")
    return seed


def _split(x_train, y_train, x_test, y_test) -> dict:
    return {
        "x_train": np.ascontiguousarray(x_train, dtype=np.float32),
        "y_train": np.ascontiguousarray(y_train, dtype=np.int32),
        "x_test": np.ascontiguousarray(x_test, dtype=np.float32),
        "y_test": np.ascontiguousarray(y_test, dtype=np.int32),
    }


# --------------------------------------------------------------------------------------------
# MNIST-1D
# --------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Root of sigjax's on-disk cache; each dataset keeps a versioned folder under it.

    Order: the ``cache_dir`` argument, then ``$SIGJAX_CACHE``, then
    ``$XDG_CACHE_HOME/sigjax``, then ``~/.cache/sigjax``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "sigjax"
    return Path.home() / ".cache" / "sigjax"


def _mnist1d_cache_file(seed: int, cache_dir) -> Path:
    return cache_root(cache_dir) / MNIST1D_CACHE_VERSION / f"seed{seed}.npz"


def _read_mnist1d_cache(path: Path, seed: int) -> dict | None:
    """The cached split, or None if it is missing; a warning and None if it is unusable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            out = {k: f[k] for k in _SPLIT_KEYS}
            stored_seed = int(f["seed"])
    except Exception as e:  # any failure to read a cache file just means regenerating it
        problem = f"it could not be read ({type(e).__name__})"
    else:
        problem = None
        if stored_seed != seed:
            problem = f"it holds seed {stored_seed}, not {seed}"
        for k, shape in _MNIST1D_SHAPES.items():
            want = np.float32 if k.startswith("x") else np.int32
            if out[k].shape != shape or out[k].dtype != want:
                problem = f"{k} has shape {out[k].shape} and dtype {out[k].dtype}"
        if problem is None and not all(np.isfinite(out[k]).all() for k in ("x_train", "x_test")):
            problem = "it contains non-finite values"
        if problem is None and not all(
            ((out[k] >= 0) & (out[k] < N_CLASSES)).all() for k in ("y_train", "y_test")
        ):
            problem = "it contains labels outside 0..9"
    if problem is None:
        return out
    warnings.warn(f"ignoring MNIST-1D cache file {path}: {problem}; regenerating it", stacklevel=3)
    return None


def _write_atomically(path: Path, arrays: dict) -> None:
    """Write an .npz next to its destination and move it into place in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _generate_mnist1d(seed: int) -> dict:
    try:
        import mnist1d.data as m1d_data
    except ImportError as e:
        raise UserError(
            f"MNIST-1D needs the mnist1d package, which could not be imported ({e}); "
            "install it with: pip install mnist1d"
        ) from None

    # make_dataset reads attributes (args.seed), so keep the package's own args object.
    args = m1d_data.get_dataset_args()
    args.seed = seed
    args.url = None  # only get_dataset downloads, and it is not called; keep it that way
    templates = m1d_data.get_templates()

    # The package calls np.random.seed and random.seed; leave the caller's RNGs untouched.
    # The global legacy RNG is exactly what it mutates, hence the legacy calls here.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        ds = m1d_data.make_dataset(args=args, template=templates)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return _split(ds["x"], ds["y"], ds["x_test"], ds["y_test"])


def mnist1d(seed: int = 42, cache_dir: str | os.PathLike | None = None) -> dict:
    """MNIST-1D: 4000 train / 1000 test sequences of 40 features, 10 classes.

    Generated offline with the ``mnist1d`` package's default settings (``seed=42`` gives
    the package's default dataset) and cached in ``<cache root>/mnist1d-v1/seed<seed>.npz``
    (see :func:`cache_root`). A missing or unreadable cache file is regenerated. The
    package already centres the whole dataset and scales it to unit standard deviation;
    that is kept as is. NumPy's and Python's global RNG states are left unchanged.
    """
    seed = _as_seed(seed, "MNIST-1D", upper=2**32)
    path = _mnist1d_cache_file(seed, cache_dir)
    cached = _read_mnist1d_cache(path, seed)
    if cached is not None:
        return cached
    out = _generate_mnist1d(seed)
    try:
        _write_atomically(path, {**out, "seed": np.int64(seed)})
    except OSError as e:
        warnings.warn(
            f"could not cache MNIST-1D in {path.parent} ({e}); it will be regenerated next "
            f"time (set ${CACHE_ENV} to a writable directory to cache it)",
            stacklevel=2,
        )
    return out


# --------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------


def digits(seed: int = 0) -> dict:
    """scikit-learn's 1797 8x8 digits, a stratified 1397 train / 400 test split.

    The split and the order within each part depend only on ``seed`` (a NumPy Generator;
    the global RNG is not touched). Pixels are divided by 16, so they lie in [0, 1].
    """
    seed = _as_seed(seed, "digits")
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise UserError(
            f"the digits dataset needs scikit-learn, which could not be imported ({e}); "
            "install it with: pip install scikit-learn"
        ) from None
    bunch = load_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target)

    # Test count per class: proportional, rounded by largest remainder so they sum to 400.
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * _DIGITS_N_TEST / len(y)
    n_test = np.floor(exact).astype(int)
    short = _DIGITS_N_TEST - n_test.sum()
    n_test[np.argsort(-(exact - n_test), kind="stable")[:short]] += 1

    rng = np.random.default_rng(seed)
    train_idx, test_idx = [], []
    for c, k in zip(classes, n_test, strict=True):
        idx = rng.permutation(np.flatnonzero(y == c))
        test_idx.append(idx[:k])
        train_idx.append(idx[k:])
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return _split(x[train_idx], y[train_idx], x[test_idx], y[test_idx])


# --------------------------------------------------------------------------------------------
# Local files: IDX (MNIST, Fashion-MNIST) and .npz (MNIST, Fashion-MNIST, CIFAR-10)
# --------------------------------------------------------------------------------------------

LOCAL_NAMES = ("mnist", "fashion_mnist", "cifar10")
_IMAGE_SHAPES = {"mnist": (28, 28), "fashion_mnist": (28, 28), "cifar10": (32, 32, 3)}
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type codes (third magic byte); all multi-byte values are big-endian.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain, or gzip-compressed if the name ends in ``.gz``).

    Raises UserError naming the file if it is unreadable, truncated, has trailing bytes,
    or does not start with a valid IDX magic number.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"IDX file {path} does not exist") from None
    except IsADirectoryError:
        raise UserError(f"IDX file {path} is a directory, not a file") from None
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(
            f"cannot read IDX file {path} ({type(e).__name__}: {e}); "
            "the file is damaged, so download it again"
        ) from None

    def bad(what: str) -> UserError:
        return UserError(f"{path} is not a valid IDX file: {what}; download it again")

    if len(raw) < 4:
        raise bad(f"it is only {len(raw)} bytes long, too short for the 4-byte magic number")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise bad(
            f"wrong magic number 0x{raw[:4].hex()} (expected 0x0000TTDD: "
            "type code TT in 08/09/0B/0C/0D/0E and DD >= 1 dimensions)"
        )
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise bad(f"truncated header: {len(raw)} bytes, but {ndim} dimensions need {header}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims) * dtype.itemsize
    if len(raw) < expected:
        raise bad(f"truncated: dimensions {dims} need {expected} bytes but the file has {len(raw)}")
    if len(raw) > expected:
        raise bad(f"{len(raw) - expected} unexpected bytes after the data for dimensions {dims}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _find_idx(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.exists():  # a directory of that name is refused by read_idx, by name
            return candidate
    return None


def _images(x: np.ndarray, name: str, source: str) -> np.ndarray:
    """Validate image array shape and dtype, flatten, and scale to [0, 1]."""
    shape = _IMAGE_SHAPES[name]
    flat = math.prod(shape)
    ok_shapes = [shape] + ([(flat,)] if len(shape) == 2 else [])
    if x.ndim < 1 or x.shape[1:] not in ok_shapes:
        want = " or ".join(str(("n",) + s).replace("'", "") for s in ok_shapes)
        raise UserError(f"{source}: {name} images must have shape {want}, got {x.shape}")
    if len(x) == 0:
        # An empty split trains on nothing, or tests to a NaN loss: refuse it here.
        raise UserError(f"{source} holds no images (shape {x.shape}); it must hold at least one")
    if x.dtype == np.uint8:
        x = x.reshape(len(x), flat).astype(np.float32) / np.float32(255)
    elif np.issubdtype(x.dtype, np.floating):
        x = x.reshape(len(x), flat).astype(np.float32)
        if x.size and not (np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1):
            raise UserError(
                f"{source}: floating-point {name} images must lie in [0, 1]; "
                "store raw pixels as uint8 instead"
            )
    else:
        raise UserError(
            f"{source}: {name} images must be uint8 pixels (0..255), got dtype {x.dtype}"
        )
    return x


def _labels(y: np.ndarray, n: int, source: str, images_source: str) -> np.ndarray:
    if y.ndim == 2 and y.shape[1] == 1:  # keras' CIFAR-10 stores labels as (n, 1)
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"{source}: labels must have shape (n,) or (n, 1), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{source}: labels must be integers, got dtype {y.dtype}")
    if len(y) != n:
        raise UserError(
            f"{source} has {len(y)} labels but {images_source} has {n} images; "
            "the two must come from the same release"
        )
    if len(y) and (y.min() < 0 or y.max() >= N_CLASSES):
        raise UserError(
            f"{source}: labels must be in 0..{N_CLASSES - 1}, found {y.min()}..{y.max()}"
        )
    return y.astype(np.int32)


def _load_idx_dir(name: str, directory: Path, files: dict) -> dict:
    out = {}
    for part, (img_path, lab_path) in files.items():
        images = read_idx(img_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise UserError(
                f"{img_path}: expected a uint8 image file with 3 dimensions (idx3-ubyte), "
                f"got {images.dtype} with shape {images.shape}"
            )
        labels = read_idx(lab_path)
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise UserError(
                f"{lab_path}: expected a uint8 label file with 1 dimension (idx1-ubyte), "
                f"got {labels.dtype} with shape {labels.shape}"
            )
        out[f"x_{part}"] = _images(images, name, str(img_path))
        out[f"y_{part}"] = _labels(labels, len(images), str(lab_path), str(img_path))
    return _split(out["x_train"], out["y_train"], out["x_test"], out["y_test"])


def _load_npz(name: str, path: Path) -> dict:
    def unreadable(e: BaseException) -> UserError:
        return UserError(
            f"cannot read {path} as an .npz archive ({type(e).__name__}: {e}); "
            "the file is damaged or not an .npz, so recreate it"
        )

    try:
        f = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise unreadable(e) from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise UserError(
            f"{path} holds a single array, not an .npz archive with "
            "x_train, y_train, x_test, y_test; recreate it with numpy.savez"
        )
    with f:
        missing = [k for k in _SPLIT_KEYS if k not in f.files]
        if missing:
            raise UserError(
                f"{path} lacks the arrays {', '.join(missing)}; it must hold "
                "x_train, y_train, x_test, y_test (as in keras' mnist.npz)"
            )
        try:
            arrays = {k: f[k] for k in _SPLIT_KEYS}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise unreadable(e) from None
    out = {}
    for part in ("train", "test"):
        src = f"{path} [x_{part}]"
        out[f"x_{part}"] = _images(arrays[f"x_{part}"], name, src)
        out[f"y_{part}"] = _labels(
            arrays[f"y_{part}"], len(out[f"x_{part}"]), f"{path} [y_{part}]", src
        )
    return _split(out["x_train"], out["y_train"], out["x_test"], out["y_test"])


def local(name: str, path: str | os.PathLike | None = None) -> dict:
    """Load MNIST, Fashion-MNIST or CIFAR-10 from files already on disk.

    ``path`` is a directory holding the data, or an ``.npz`` file. Without it the directory
    is ``$SIGJAX_DATA_DIR/<name>/``. In the directory, MNIST and Fashion-MNIST are read from
    the four standard IDX files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``), or,
    when those are absent, from ``<name>.npz``; CIFAR-10 is read from ``cifar10.npz``.
    An ``.npz`` holds ``x_train, y_train, x_test, y_test`` (keras layout: uint8 images of
    shape (n, 28, 28) or (n, 32, 32, 3), labels (n,) or (n, 1)).
    """
    if name not in LOCAL_NAMES:
        raise UserError(f"unknown local dataset {name!r}; choose one of {', '.join(LOCAL_NAMES)}")
    if path is not None:
        where = Path(path).expanduser()
        how = "given by the path argument"
    elif os.environ.get(DATA_DIR_ENV):
        where = Path(os.environ[DATA_DIR_ENV]).expanduser() / name
        how = f"${DATA_DIR_ENV}/{name}, with ${DATA_DIR_ENV}={os.environ[DATA_DIR_ENV]}"
    else:
        raise UserError(
            f"no data location for {name}: set ${DATA_DIR_ENV} to a directory that contains "
            f"{name}/ with the dataset files, or pass a path"
        )

    if where.suffix == ".npz":
        if not where.is_file():
            what = "is not a file" if where.exists() else "does not exist"
            raise UserError(f"{name}: expected the .npz file {where} ({how}), but it {what}")
        return _load_npz(name, where)
    if where.exists() and not where.is_dir():
        raise UserError(
            f"{name}: {where} ({how}) is a file, not a directory or an .npz file; point at "
            f"the directory holding {_expected(name)}"
        )
    if not where.is_dir():
        raise UserError(
            f"{name}: expected a directory {where} ({how}) holding {_expected(name)}, "
            "but it does not exist; put the files there or point elsewhere with "
            f"${DATA_DIR_ENV} or the path argument"
        )

    npz = where / f"{name}.npz"
    if name != "cifar10":
        files = {
            part: tuple(_find_idx(where, stem) for stem in stems)
            for part, stems in _IDX_FILES.items()
        }
        found = [p for pair in files.values() for p in pair if p is not None]
        if len(found) == 4:
            return _load_idx_dir(name, where, files)
        if found and not npz.is_file():
            missing = [
                stem
                for part, stems in _IDX_FILES.items()
                for stem, p in zip(stems, files[part], strict=True)
                if p is None
            ]
            raise UserError(
                f"{name}: {where} ({how}) has only some of the IDX files; missing "
                f"{', '.join(s + '[.gz]' for s in missing)}; put them in that directory"
            )
    if npz.is_file():
        return _load_npz(name, npz)
    raise UserError(
        f"{name}: no data in {where} ({how}); expected {_expected(name)} there; put the "
        f"files there or point elsewhere with ${DATA_DIR_ENV} or the path argument"
    )


def _expected(name: str) -> str:
    if name == "cifar10":
        return "cifar10.npz (x_train, y_train, x_test, y_test)"
    stems = [s for pair in _IDX_FILES.values() for s in pair]
    return f"the IDX files {', '.join(s + '[.gz]' for s in stems)}, or {name}.npz"
