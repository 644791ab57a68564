"""Offline dataset loaders: MNIST-1D (generated + cached), sklearn digits, local IDX / npz."""

from __future__ import annotations

import gzip
import random
import shutil
import socket
import struct
import sys

import numpy as np
import pytest

from sigjax.data import sources as ds
from sigjax.errors import UserError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def assert_same(a: dict, b: dict) -> None:
    assert set(a) == set(b) == set(KEYS)
    for k in KEYS:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def assert_one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------------------------
# MNIST-1D
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def m1d_cache(tmp_path_factory):
    """One generated MNIST-1D (seed 42) cache shared by the tests that only read it."""
    pytest.importorskip("mnist1d")
    root = tmp_path_factory.mktemp("m1d_cache")
    return root, ds.mnist1d(seed=42, cache_dir=root)


@pytest.fixture
def no_generation(monkeypatch):
    pytest.importorskip("mnist1d")
    import mnist1d.data

    def boom(*args, **kwargs):
        raise AssertionError("make_dataset called although a valid cache exists")

    monkeypatch.setattr(mnist1d.data, "make_dataset", boom)


def test_mnist1d_shapes_dtypes_labels(m1d_cache):
    _, d = m1d_cache
    assert d["x_train"].shape == (4000, 40) and d["x_test"].shape == (1000, 40)
    assert d["y_train"].shape == (4000,) and d["y_test"].shape == (1000,)
    assert d["x_train"].dtype == d["x_test"].dtype == np.float32
    assert d["y_train"].dtype == d["y_test"].dtype == np.int32
    for y in (d["y_train"], d["y_test"]):
        assert set(np.unique(y)) == set(range(10))
    assert np.isfinite(d["x_train"]).all() and np.isfinite(d["x_test"]).all()
    # roughly balanced classes (the package makes 500 per class, then shuffles and splits)
    assert np.bincount(d["y_train"]).min() > 300
    assert not np.array_equal(d["x_train"][:1000], d["x_test"])


def test_mnist1d_cache_file_written_where_expected(m1d_cache):
    root, _ = m1d_cache
    files = sorted(p.name for p in (root / ds.MNIST1D_CACHE_VERSION).iterdir())
    assert files == ["seed42.npz"]  # no temp files left behind


def test_mnist1d_second_call_uses_cache(m1d_cache, no_generation):
    root, first = m1d_cache
    assert_same(ds.mnist1d(seed=42, cache_dir=root), first)


def test_mnist1d_deterministic_and_restores_global_rngs(m1d_cache, tmp_path):
    _, first = m1d_cache
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    np_before, py_before = np.random.get_state(), random.getstate()  # noqa: NPY002
    again = ds.mnist1d(seed=42, cache_dir=tmp_path)  # fresh cache: really generates
    np_after = np.random.get_state()  # noqa: NPY002
    assert (tmp_path / ds.MNIST1D_CACHE_VERSION / "seed42.npz").is_file()
    assert_same(again, first)
    assert np_after[0] == np_before[0] and np_after[2:] == np_before[2:]
    np.testing.assert_array_equal(np_after[1], np_before[1])
    assert random.getstate() == py_before


def test_mnist1d_matches_package_defaults(m1d_cache):
    import mnist1d.data

    _, d = m1d_cache
    state = np.random.get_state()  # noqa: NPY002
    try:
        ref = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    finally:
        np.random.set_state(state)  # noqa: NPY002
    np.testing.assert_array_equal(d["x_train"], ref["x"].astype(np.float32))
    np.testing.assert_array_equal(d["y_test"], ref["y_test"])


def test_mnist1d_different_seed_differs(m1d_cache, tmp_path):
    _, first = m1d_cache
    other = ds.mnist1d(seed=7, cache_dir=tmp_path)
    assert other["x_train"].shape == first["x_train"].shape
    assert not np.array_equal(other["x_train"], first["x_train"])
    assert (tmp_path / ds.MNIST1D_CACHE_VERSION / "seed7.npz").is_file()


def _truncate_half(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(b"not an npz at all"), id="garbage"),
        pytest.param(_truncate_half, id="truncated"),
        pytest.param(
            lambda p: np.savez(p, x_train=np.zeros((3, 40), np.float32)),
            id="incomplete",
            marks=pytest.mark.slow,
        ),
        pytest.param(lambda p: p.write_bytes(b""), id="empty", marks=pytest.mark.slow),
    ],
)
def test_mnist1d_corrupt_cache_regenerated(m1d_cache, tmp_path, damage):
    root, first = m1d_cache
    cache = tmp_path / ds.MNIST1D_CACHE_VERSION / "seed42.npz"
    cache.parent.mkdir()
    shutil.copy(root / ds.MNIST1D_CACHE_VERSION / "seed42.npz", cache)
    damage(cache)
    with pytest.warns(UserWarning, match="regenerating"):
        again = ds.mnist1d(seed=42, cache_dir=tmp_path)
    assert_same(again, first)
    # ...and the repaired cache is valid again
    with np.load(cache) as f:
        np.testing.assert_array_equal(f["x_test"], first["x_test"])


def test_mnist1d_cache_for_other_seed_not_used(m1d_cache, tmp_path, no_generation):
    root, _ = m1d_cache
    (tmp_path / ds.MNIST1D_CACHE_VERSION).mkdir()
    # a seed-42 file renamed to seed 5 must be rejected (it records its seed)
    shutil.copy(
        root / ds.MNIST1D_CACHE_VERSION / "seed42.npz",
        tmp_path / ds.MNIST1D_CACHE_VERSION / "seed5.npz",
    )
    with pytest.warns(UserWarning, match="seed 42"), pytest.raises(AssertionError):
        ds.mnist1d(seed=5, cache_dir=tmp_path)


def test_mnist1d_no_network(tmp_path, monkeypatch):
    pytest.importorskip("mnist1d")

    attempts = []

    def no_net(*args, **kwargs):
        # recorded, not just raised: mnist1d.get_dataset swallows any download error
        attempts.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket, "socket", no_net)
    monkeypatch.setattr(socket, "create_connection", no_net)
    monkeypatch.setattr(socket, "getaddrinfo", no_net)
    monkeypatch.chdir(tmp_path)  # get_dataset would also drop a pickle in the cwd
    d = ds.mnist1d(seed=3, cache_dir=tmp_path / "cache")
    assert d["x_train"].shape == (4000, 40)
    assert attempts == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]


def test_cache_root_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("SIGJAX_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ds.cache_root() == tmp_path / "home" / ".cache" / "sigjax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.cache_root() == tmp_path / "xdg" / "sigjax"
    monkeypatch.setenv("SIGJAX_CACHE", str(tmp_path / "sc"))
    assert ds.cache_root() == tmp_path / "sc"
    assert ds.cache_root(tmp_path / "arg") == tmp_path / "arg"


def test_mnist1d_default_cache_from_env(m1d_cache, monkeypatch, tmp_path, no_generation):
    root, first = m1d_cache
    monkeypatch.setenv("SIGJAX_CACHE", str(tmp_path))
    shutil.copytree(root / ds.MNIST1D_CACHE_VERSION, tmp_path / ds.MNIST1D_CACHE_VERSION)
    assert_same(ds.mnist1d(), first)


def test_mnist1d_unwritable_cache_still_returns_data(m1d_cache, tmp_path):
    _, first = m1d_cache
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should go")
    with pytest.warns(UserWarning, match="could not cache"):
        assert_same(ds.mnist1d(seed=42, cache_dir=blocker), first)


def test_mnist1d_not_installed(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(UserError) as err:
        ds.mnist1d(cache_dir=tmp_path)
    assert "pip install mnist1d" in assert_one_line(err)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, "42", True])
def test_mnist1d_bad_seed(seed, tmp_path):
    with pytest.raises(UserError) as err:
        ds.mnist1d(seed=seed, cache_dir=tmp_path)
    assert "seed" in assert_one_line(err)


# --------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_full():
    sk = pytest.importorskip("sklearn.datasets")
    b = sk.load_digits()
    return b.data / 16.0, b.target


def test_digits_shapes_and_range():
    d = ds.digits()
    assert d["x_train"].shape == (1397, 64) and d["x_test"].shape == (400, 64)
    assert d["y_train"].shape == (1397,) and d["y_test"].shape == (400,)
    assert d["x_train"].dtype == np.float32 and d["y_train"].dtype == np.int32
    for x in (d["x_train"], d["x_test"]):
        assert x.min() == 0.0 and x.max() == 1.0
    assert set(np.unique(d["y_test"])) == set(range(10))


def test_digits_stratified(digits_full):
    _, y = digits_full
    d = ds.digits(seed=5)
    share = np.bincount(y) * 400 / len(y)
    test_counts = np.bincount(d["y_test"], minlength=10)
    assert np.all(np.abs(test_counts - share) < 1)
    np.testing.assert_array_equal(test_counts + np.bincount(d["y_train"]), np.bincount(y))


def test_digits_partition_is_disjoint_and_complete(digits_full):
    x, y = digits_full
    d = ds.digits(seed=1)

    def rows(xs, ys):
        return sorted(map(tuple, np.column_stack([xs.astype(np.float64), ys]).tolist()))

    train, test = rows(d["x_train"], d["y_train"]), rows(d["x_test"], d["y_test"])
    assert not set(train) & set(test)
    assert sorted(train + test) == rows(x, y)


def test_digits_deterministic_and_seed_dependent():
    state = np.random.get_state()  # noqa: NPY002
    assert_same(ds.digits(seed=3), ds.digits(seed=3))
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])  # noqa: NPY002
    a, b = ds.digits(seed=3), ds.digits(seed=4)
    assert not np.array_equal(a["x_test"], b["x_test"])
    # the order within the split is shuffled, not grouped by class
    assert np.any(np.diff(a["y_train"]) < 0)


# --------------------------------------------------------------------------------------------
# Local IDX / npz files
# --------------------------------------------------------------------------------------------

IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def idx_bytes(a: np.ndarray) -> bytes:
    code = {"u1": 0x08, "i1": 0x09, "i2": 0x0B}[a.dtype.str[1:]]
    header = struct.pack(">BBBB", 0, 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def raw_mnist(seed: int = 0, n_train: int = 12, n_test: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_idx_dir(directory, raw: dict, gz: bool) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, stem in IDX_NAMES.items():
        data = idx_bytes(raw[key])
        path = directory / (stem + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        paths[key] = path
    return paths


def expected_from_raw(raw: dict) -> dict:
    return {
        "x_train": raw["x_train"].reshape(len(raw["x_train"]), -1).astype(np.float32) / 255,
        "y_train": raw["y_train"].astype(np.int32),
        "x_test": raw["x_test"].reshape(len(raw["x_test"]), -1).astype(np.float32) / 255,
        "y_test": raw["y_test"].astype(np.int32),
    }


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_round_trip(tmp_path, gz):
    raw = raw_mnist()
    raw["x_train"][0, 0, 0], raw["x_train"][0, 0, 1] = 0, 255
    write_idx_dir(tmp_path / "mnist", raw, gz)
    d = ds.local("mnist", tmp_path / "mnist")
    assert_same(d, expected_from_raw(raw))
    assert d["x_train"][0, 0] == 0.0 and d["x_train"][0, 1] == 1.0
    assert d["x_train"].shape == (12, 784)


def test_idx_via_env_var_and_mixed_compression(tmp_path, monkeypatch):
    raw = raw_mnist(seed=1)
    paths = write_idx_dir(tmp_path / "fashion_mnist", raw, gz=True)
    # one of the four decompressed, the others left as .gz
    plain = paths["y_test"].with_suffix("")
    plain.write_bytes(gzip.decompress(paths["y_test"].read_bytes()))
    paths["y_test"].unlink()
    monkeypatch.setenv("SIGJAX_DATA_DIR", str(tmp_path))
    assert_same(ds.local("fashion_mnist"), expected_from_raw(raw))


def test_read_idx_other_dtypes(tmp_path):
    a = np.arange(-6, 6, dtype=">i2").reshape(3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    out = ds.read_idx(tmp_path / "a.idx")
    np.testing.assert_array_equal(out, a)
    assert out.dtype == np.int16 and out.dtype.isnative


def corrupt_cases():
    def truncate(p):
        p.write_bytes(p.read_bytes()[:-7])

    def trailing(p):
        p.write_bytes(p.read_bytes() + b"\x00\x00")

    def magic(p):
        b = bytearray(p.read_bytes())
        b[0:4] = b"\x08\x03\x00\x00"
        p.write_bytes(bytes(b))

    def dtype_code(p):
        b = bytearray(p.read_bytes())
        b[2] = 0x42
        p.write_bytes(bytes(b))

    def tiny(p):
        p.write_bytes(b"\x00\x00")

    def header_cut(p):
        p.write_bytes(p.read_bytes()[:9])

    return [
        pytest.param(truncate, "truncated", id="truncated"),
        pytest.param(trailing, "unexpected bytes", id="trailing"),
        pytest.param(magic, "magic number", id="magic"),
        pytest.param(dtype_code, "magic number", id="dtype-code"),
        pytest.param(tiny, "too short", id="tiny"),
        pytest.param(header_cut, "truncated header", id="header"),
    ]


@pytest.mark.parametrize(("damage", "phrase"), corrupt_cases())
def test_idx_corrupt_files_give_user_error(tmp_path, damage, phrase):
    paths = write_idx_dir(tmp_path, raw_mnist(), gz=False)
    damage(paths["x_test"])
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    msg = assert_one_line(err)
    assert str(paths["x_test"]) in msg and phrase in msg


def test_idx_truncated_gzip(tmp_path):
    paths = write_idx_dir(tmp_path, raw_mnist(), gz=True)
    paths["x_train"].write_bytes(paths["x_train"].read_bytes()[:-30])
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    msg = assert_one_line(err)
    assert str(paths["x_train"]) in msg and "damaged" in msg


def test_idx_not_gzip_despite_name(tmp_path):
    paths = write_idx_dir(tmp_path, raw_mnist(), gz=True)
    paths["y_train"].write_bytes(b"plain text, not gzip")
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    assert str(paths["y_train"]) in assert_one_line(err)


def test_idx_count_mismatch(tmp_path):
    raw = raw_mnist()
    raw["y_test"] = raw["y_test"][:-1]
    paths = write_idx_dir(tmp_path, raw, gz=False)
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    msg = assert_one_line(err)
    assert str(paths["y_test"]) in msg and "4 labels" in msg and "5 images" in msg


def test_idx_wrong_file_kind(tmp_path):
    raw = raw_mnist()
    paths = write_idx_dir(tmp_path, raw, gz=False)
    paths["x_train"].write_bytes(idx_bytes(raw["y_train"]))  # a label file in the image slot
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    assert "idx3-ubyte" in assert_one_line(err)


def test_idx_label_out_of_range(tmp_path):
    raw = raw_mnist()
    raw["y_train"][3] = 10
    write_idx_dir(tmp_path, raw, gz=False)
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    assert "0..9" in assert_one_line(err)


@pytest.mark.parametrize("part", ["x_train", "x_test"])
def test_idx_zero_images(tmp_path, part):
    raw = raw_mnist()
    labels = "y" + part[1:]
    raw[part], raw[labels] = raw[part][:0], raw[labels][:0]  # a valid IDX file of 0 images
    paths = write_idx_dir(tmp_path, raw, gz=True)
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    msg = assert_one_line(err)
    assert msg.startswith(f"{paths[part]} holds no images (shape (0, 28, 28))")


def test_idx_directory_in_place_of_a_file(tmp_path):
    paths = write_idx_dir(tmp_path, raw_mnist(), gz=False)
    paths["x_test"].unlink()
    paths["x_test"].mkdir()
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    assert assert_one_line(err) == f"IDX file {paths['x_test']} is a directory, not a file"


def test_data_location_is_a_file(tmp_path, monkeypatch):
    (tmp_path / "mnist").write_text("not a directory")
    monkeypatch.setenv("SIGJAX_DATA_DIR", str(tmp_path))
    with pytest.raises(UserError) as err:
        ds.local("mnist")
    msg = assert_one_line(err)
    assert str(tmp_path / "mnist") in msg and "is a file, not a directory" in msg


def test_npz_path_is_a_directory(tmp_path):
    (tmp_path / "cifar10.npz").mkdir()
    with pytest.raises(UserError) as err:
        ds.local("cifar10", tmp_path / "cifar10.npz")
    assert "is not a file" in assert_one_line(err)


def test_idx_some_files_missing(tmp_path):
    paths = write_idx_dir(tmp_path, raw_mnist(), gz=True)
    paths["y_test"].unlink()
    with pytest.raises(UserError) as err:
        ds.local("mnist", tmp_path)
    msg = assert_one_line(err)
    assert "t10k-labels-idx1-ubyte" in msg and str(tmp_path) in msg
    assert "train-images" not in msg.split("missing", 1)[1]


def test_missing_directory_names_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("SIGJAX_DATA_DIR", str(tmp_path))
    with pytest.raises(UserError) as err:
        ds.local("mnist")
    msg = assert_one_line(err)
    assert str(tmp_path / "mnist") in msg and "SIGJAX_DATA_DIR" in msg
    assert "train-images-idx3-ubyte" in msg and "mnist.npz" in msg


def test_empty_directory_lists_expected_files(tmp_path):
    with pytest.raises(UserError) as err:
        ds.local("fashion_mnist", tmp_path)
    msg = assert_one_line(err)
    assert str(tmp_path) in msg and "path argument" in msg
    assert all(stem in msg for stem in IDX_NAMES.values()) and "fashion_mnist.npz" in msg


def test_no_location_at_all(monkeypatch):
    monkeypatch.delenv("SIGJAX_DATA_DIR", raising=False)
    with pytest.raises(UserError) as err:
        ds.local("cifar10")
    assert "SIGJAX_DATA_DIR" in assert_one_line(err)


def test_unknown_name(tmp_path):
    with pytest.raises(UserError) as err:
        ds.local("svhn", tmp_path)
    msg = assert_one_line(err)
    assert "svhn" in msg and "fashion_mnist" in msg


def test_npz_mnist_keras_layout(tmp_path, monkeypatch):
    raw = raw_mnist(seed=2)
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "mnist.npz", **raw)
    monkeypatch.setenv("SIGJAX_DATA_DIR", str(tmp_path))
    assert_same(ds.local("mnist"), expected_from_raw(raw))
    assert_same(ds.local("mnist", tmp_path / "mnist" / "mnist.npz"), expected_from_raw(raw))


def test_npz_cifar10(tmp_path):
    rng = np.random.default_rng(0)
    raw = {
        "x_train": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, (6, 1), dtype=np.uint8),  # keras: (n, 1)
        "x_test": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, (4, 1), dtype=np.int64),
    }
    np.savez_compressed(tmp_path / "cifar10.npz", **raw)
    d = ds.local("cifar10", tmp_path)
    assert d["x_train"].shape == (6, 3072) and d["y_train"].shape == (6,)
    # channels-last flattening: pixel (0, 0) is features 0..2, one RGB triple
    np.testing.assert_array_equal(d["x_train"][:, :3] * 255, raw["x_train"][:, 0, 0, :])
    np.testing.assert_array_equal(d["x_test"], raw["x_test"].reshape(4, -1) / np.float32(255))
    np.testing.assert_array_equal(d["y_test"], raw["y_test"][:, 0])
    assert d["y_test"].dtype == np.int32


@pytest.mark.parametrize(
    ("edit", "phrase"),
    [
        (lambda r: r.pop("y_test"), "lacks the arrays y_test"),
        (lambda r: r.update(x_train=r["x_train"][..., 0]), "(n, 32, 32, 3)"),
        (lambda r: r.update(y_train=r["y_train"][:-1]), "5 labels"),
        (lambda r: r.update(x_test=r["x_test"].astype(np.int32)), "uint8"),
        (lambda r: r.update(x_test=r["x_test"].astype(np.float32)), "[0, 1]"),
        (lambda r: r.update(y_test=r["y_test"].astype(np.float32)), "integers"),
        (lambda r: r.update(x_train=r["x_train"][:0], y_train=r["y_train"][:0]), "no images"),
    ],
    ids=["missing-key", "shape", "count", "int32-pixels", "float-255", "float-labels", "empty"],
)
def test_npz_invalid(tmp_path, edit, phrase):
    rng = np.random.default_rng(0)
    raw = {
        "x_train": rng.integers(1, 256, (6, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 6, dtype=np.uint8),
        "x_test": rng.integers(2, 256, (4, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 4, dtype=np.uint8),
    }
    edit(raw)
    np.savez(tmp_path / "cifar10.npz", **raw)
    with pytest.raises(UserError) as err:
        ds.local("cifar10", tmp_path)
    msg = assert_one_line(err)
    assert phrase in msg and "cifar10.npz" in msg


@pytest.mark.parametrize(
    "content",
    [b"garbage", b"PK\x03\x04truncated zip", None],
    ids=["garbage", "bad-zip", "single-npy"],
)
def test_npz_unreadable(tmp_path, content):
    path = tmp_path / "cifar10.npz"
    if content is None:
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    else:
        path.write_bytes(content)
    with pytest.raises(UserError) as err:
        ds.local("cifar10", tmp_path)
    assert str(path) in assert_one_line(err)


def test_npz_path_missing(tmp_path):
    with pytest.raises(UserError) as err:
        ds.local("cifar10", tmp_path / "nowhere" / "cifar10.npz")
    assert "does not exist" in assert_one_line(err)
