"""A user's own data: `data.from_arrays`, `sweep.run(..., data=...)` and `data.name=npz`.

A user's arrays are the same task as the named dataset they came from (the same numbers when
trained), every mistake in them is one line naming the argument, and the data is keyed on its
content: other arrays give other numbers, and a changed npz file never resumes a checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

from sigjax import config
from sigjax import data as data_lib
from sigjax.cli import main
from sigjax.config import Config, DataConfig
from sigjax.engine import checkpoint, grid, results, sweep, train
from sigjax.errors import UserError

TINY = {
    "model.width": 8,
    "train.steps": 10,
    "train.log_every": 5,
    "train.record": "gradients",
    "data.n_train": 40,
    "data.n_test": 12,
    "data.dim": 5,
}
AXES = grid.make_axes({"seed": (0, 1)})
TEACHER = {"data.name": "teacher", "data.out_dim": 3, "train.loss": "softmax_ce"}


def _cfg(**updates) -> Config:
    return config.replace(Config(), TINY | updates)


def _arrays(d: data_lib.Data) -> tuple:
    return d.x_train, d.y_train, d.x_test, d.y_test


def _same_data(a: data_lib.Data, b: data_lib.Data) -> None:
    assert a.n_classes == b.n_classes
    for u, v in zip(_arrays(a), _arrays(b), strict=True):
        assert u.dtype == v.dtype and u.shape == v.shape
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


def _same_results(a, b) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


# ----------------------------------------------------------------------- from_arrays


@pytest.mark.parametrize("name", ["seed_regression", "teacher", "teacher_regression"])
def test_from_arrays_equals_the_named_dataset(name):
    cfg = _cfg(**{"data.name": name, "data.out_dim": 3})
    named = data_lib.load(cfg.data)
    task = "classification" if named.n_classes else "regression"
    given = data_lib.from_arrays(
        *(np.asarray(a) for a in _arrays(named)),
        task=task,
        n_classes=named.n_classes or None,
    )
    _same_data(given, named)
    assert data_lib.fingerprint(given) == data_lib.fingerprint(named)


@pytest.fixture(scope="module")
def teacher_runs():
    """The named teacher task (data.seed 0) trained, and its arrays (and data.seed 1's, of the
    same shapes) given by hand; every run compiles its own program (seconds each)."""
    runs = {}
    for seed in (0, 1):
        cfg = _cfg(**TEACHER, **{"data.seed": seed})
        given = data_lib.from_arrays(
            *_arrays(data_lib.load(cfg.data)), task="classification", n_classes=3
        )
        runs[seed] = SimpleNamespace(cfg=cfg, data=given, given=sweep.run(cfg, AXES, data=given))
    runs[0].named = sweep.run(runs[0].cfg, AXES)
    return runs


def test_sweep_on_from_arrays_equals_the_named_dataset_bit_for_bit(teacher_runs):
    r = teacher_runs[0]
    _same_results(r.given, r.named)
    assert "test_accuracy" in r.given and "grad_norm" in r.given  # the test split came along


def test_other_arrays_of_the_same_shapes_give_their_own_numbers(teacher_runs):
    a, b = teacher_runs[0], teacher_runs[1]
    assert a.data.x_train.shape == b.data.x_train.shape
    # run one after the other in one process: the second did not reuse the first's program
    assert not np.array_equal(a.given.loss.values, b.given.loss.values)
    pa, pb = train.program(a.cfg, a.data), train.program(a.cfg, b.data)
    assert pa.data_token != pb.data_token and pa != pb


def test_the_results_config_describes_the_given_data(teacher_runs):
    import json

    r = teacher_runs[0]
    cfg = json.loads(r.given.attrs["config"])["data"]
    want = {"name": "arrays", "n_train": 40, "n_test": 12, "dim": 5, "out_dim": 3, "n_classes": 3}
    assert {k: cfg[k] for k in want} == want
    assert cfg["path"] == "sha256:" + data_lib.fingerprint(r.data)


def test_regression_targets_of_one_column_become_n_by_1():
    x = np.arange(12.0).reshape(6, 2)
    y = np.linspace(0, 1, 6)
    d = data_lib.from_arrays(x, y)
    assert d.y_train.shape == (6, 1) and d.y_train.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(d.y_train)[:, 0], y.astype(np.float32))
    assert d.x_train.dtype == jnp.float32 and not d.has_test and d.n_classes == 0


def test_classes_default_to_one_more_than_the_largest_label_of_either_split():
    x = np.zeros((4, 2))
    d = data_lib.from_arrays(x, [0, 1, 2, 1], x, [0, 4, 1, 1], task="classification")
    assert d.n_classes == 5 and d.out_dim == 5 and d.y_train.dtype == jnp.int32
    d = data_lib.from_arrays(x, np.array([0.0, 1.0, 2.0, 1.0]), task="classification")
    np.testing.assert_array_equal(np.asarray(d.y_train), [0, 1, 2, 1])


X = np.arange(20.0).reshape(10, 2)
Y = np.arange(10.0)
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
C = {"task": "classification"}


def _nan_at(a, idx):
    a = np.array(a, dtype=float)
    a[idx] = np.nan
    return a


BAD = {
    "x 1-D": ((Y, Y), {}, ["x_train", "2-D", "(10,)"]),
    "rows differ": ((X, Y[:7]), {}, ["y_train", "7 rows", "x_train has 10"]),
    "nan in x": ((_nan_at(X, (2, 1)), Y), {}, ["x_train", "nan", "row 2, column 1"]),
    "inf in y_test": ((X, Y, X, np.where(Y == 3, np.inf, Y)), {}, ["y_test", "inf", "row 3"]),
    "beyond float32": ((X, Y, np.full((2, 2), 1e300), Y[:2]), {}, ["x_test", "float32"]),
    "strings": ((X.astype(str), Y), {}, ["x_train", "real numbers"]),
    "complex": ((X, Y + 1j), {}, ["y_train", "real numbers"]),
    "ragged": (([[1.0, 2.0], [3.0]], [1.0, 2.0]), {}, ["x_train", "cannot be read"]),
    "negative label": ((X, np.where(LABELS == 2, -1, LABELS)), C, ["y_train", "-1", "row 2"]),
    "label above n_classes": (
        (X, LABELS, X, np.where(Y == 5, 3, LABELS)),
        C | {"n_classes": 3},
        ["y_test", "label 3", "row 5", "n_classes=3"],
    ),
    "non-integer label": ((X, np.where(Y == 4, 1.5, LABELS)), C, ["y_train", "1.5", "row 4"]),
    "one-hot labels": ((X, np.eye(3)[LABELS]), C, ["y_train", "(n,)", "argmax"]),
    "x_test alone": ((X, Y, X), {}, ["x_test", "y_test", "both"]),
    "y_test alone": ((X, Y, None, Y), {}, ["y_test", "x_test", "both"]),
    "x_test columns": ((X, Y, X[:, :1], Y), {}, ["x_test", "1 columns", "x_train has 2"]),
    "y_test columns": ((X, Y, X, np.ones((10, 2))), {}, ["y_test", "2 target columns"]),
    "unknown task": ((X, Y), {"task": "ranking"}, ["task", "ranking"]),
    "n_classes on regression": ((X, Y), {"n_classes": 3}, ["n_classes", "classification"]),
    "n_classes zero": ((X, LABELS), C | {"n_classes": 0}, ["n_classes", "positive"]),
    "no rows": ((X[:0], Y[:0]), {}, ["x_train", "no rows"]),
}


@pytest.mark.parametrize("args, kwargs, mentions", BAD.values(), ids=BAD.keys())
def test_a_mistake_in_the_arrays_is_one_line_naming_the_argument(args, kwargs, mentions):
    with pytest.raises(UserError) as e:
        data_lib.from_arrays(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    for m in mentions:
        assert m in msg, (m, msg)


def test_fingerprint_is_a_sha256_of_the_content_alone():
    d = data_lib.from_arrays(X, Y, X[:3], Y[:3])
    fp = data_lib.fingerprint(d)
    assert len(fp) == 64 and int(fp, 16) >= 0
    assert data_lib.fingerprint(data_lib.from_arrays(X.copy(), list(Y), X[:3], Y[:3])) == fp
    x2 = X.copy()
    x2[7, 1] += 1
    assert data_lib.fingerprint(data_lib.from_arrays(x2, Y, X[:3], Y[:3])) != fp
    assert data_lib.fingerprint(data_lib.from_arrays(X, Y)) != fp  # the test split counts
    labels = data_lib.from_arrays(X, LABELS, task="classification")
    more = data_lib.from_arrays(X, LABELS, task="classification", n_classes=4)
    assert data_lib.fingerprint(labels) != data_lib.fingerprint(more)


def test_sweep_run_refuses_what_data_would_ignore():
    d = data_lib.from_arrays(X, Y)
    with pytest.raises(UserError, match="data.n_train"):
        sweep.run(_cfg(), grid.make_axes({"data.n_train": (10, 20)}), data=d)
    with pytest.raises(UserError, match="sigjax.data.Data"):
        sweep.run(_cfg(), AXES, data={"x_train": X})
    with pytest.raises(UserError, match="data.name=npz"):
        data_lib.load(DataConfig(name="arrays"))


def test_make_plan_sizes_the_given_data():
    d = data_lib.from_arrays(np.zeros((30, 7)), np.zeros((30, 2)))
    named = _cfg(**{"data.n_train": 30, "data.n_test": 0, "data.dim": 7, "data.out_dim": 2})
    assert sweep.make_plan(_cfg(), AXES, 1 << 30, data=d) == sweep.make_plan(named, AXES, 1 << 30)


# ------------------------------------------------------------------------------- npz

STUDY_FILE = """
from sigjax import config
from sigjax.config import Config
from sigjax.study import Study

STUDY = Study(
    name="npz_study",
    description="a user's tiny study",
    config=config.replace(Config(), {cfg!r}),
    grid={{"seed": (0, 1)}},
)
"""


def _call(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return SimpleNamespace(rc=rc, out=out.getvalue(), err=err.getvalue())


def _one_error_line(r: SimpleNamespace, *mentions: str) -> None:
    assert r.rc == 2, r
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sigjax: error: "), r.err
    for m in mentions:
        assert m in lines[0], (m, lines[0])


@pytest.fixture
def npz_study(tmp_path):
    study = tmp_path / "npz_study.py"
    study.write_text(textwrap.dedent(STUDY_FILE.format(cfg=TINY | TEACHER)))
    named = data_lib.load(_cfg(**TEACHER).data)
    f = tmp_path / "task.npz"
    arrays = zip(data_lib.NPZ_KEYS, _arrays(named), strict=True)
    np.savez(f, **{k: np.asarray(v) for k, v in arrays})
    return SimpleNamespace(study=str(study), npz=f, dir=tmp_path)


def _npz_argv(s, *extra: str) -> list[str]:
    sets = ["--set", "data.name=npz", "--set", f"data.path={s.npz}", "--set", "data.n_classes=3"]
    return ["run", s.study, *sets, "--out", str(s.dir / "run"), "--quiet", *extra]


def test_npz_run_resumes_only_on_unchanged_data(npz_study, monkeypatch, teacher_runs):
    s = npz_study
    original = checkpoint.Store.save_state

    def interrupt(self, *args):  # the first segment is saved, then Ctrl-C arrives
        original(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Store, "save_state", interrupt)
    r = _call(_npz_argv(s))
    assert r.rc == 130 and "--resume" in r.err
    monkeypatch.setattr(checkpoint.Store, "save_state", original)

    arrays = dict(np.load(s.npz))
    changed = dict(arrays, x_train=arrays["x_train"].copy())
    changed["x_train"][3, 2] += 0.5  # one value of the same shapes
    np.savez(s.npz, **changed)
    _one_error_line(_call(_npz_argv(s, "--resume")), "checkpoint", "data", "--overwrite")

    np.savez(s.npz, **arrays)  # the same content again (a new file): resumable
    r = _call(_npz_argv(s, "--resume"))
    assert r.rc == 0, r.err
    ds = results.load(s.dir / "run" / "results.nc")
    _same_results(ds, teacher_runs[0].named)  # the npz file's task is the named one


def test_npz_classification_reads_labels_and_their_classes(tmp_path):
    f = tmp_path / "labels.npz"
    np.savez(f, x_train=X, y_train=LABELS, x_test=X[:4], y_test=np.array([0, 5, 1, 1]))
    cfg = DataConfig(name="npz", path=str(f))
    assert data_lib.n_classes(cfg) == 6
    _same_data(data_lib.load(cfg), data_lib.from_arrays(X, LABELS, X[:4], [0, 5, 1, 1], **C))
    np.savez(f, x_train=X, y_train=Y)  # float targets: regression
    assert data_lib.n_classes(cfg) == 0 and data_lib.load(cfg).y_train.shape == (10, 1)


NPZ_BAD = {
    "missing file": (None, ["data.path=", "no such file"]),
    "missing arrays": ({"x_train": X, "labels": LABELS}, ["lacks y_train", "labels"]),
    "x_test alone": ({"x_train": X, "y_train": LABELS, "x_test": X}, ["x_test without y_test"]),
    "bad shapes": ({"x_train": Y, "y_train": LABELS}, ["x_train must be 2-D"]),
    "nan": ({"x_train": _nan_at(X, (4, 0)), "y_train": LABELS}, ["x_train", "nan", "row 4"]),
    "bad label": ({"x_train": X, "y_train": LABELS - 1}, ["y_train", "negative label -1"]),
    "labels of more classes": ({"x_train": X, "y_train": Y}, ["label 3", "n_classes=3"]),
}


@pytest.mark.parametrize("arrays, mentions", NPZ_BAD.values(), ids=NPZ_BAD.keys())
def test_a_bad_npz_file_is_one_line_and_nothing_is_written(npz_study, arrays, mentions):
    s = npz_study
    s.npz.unlink()
    if arrays is not None:
        np.savez(s.npz, **arrays)
    r = _call(_npz_argv(s))
    _one_error_line(r, *mentions)
    assert sorted(p.name for p in s.dir.iterdir()) == sorted(
        ["npz_study.py"] + (["task.npz"] if arrays is not None else [])
    )


def test_npz_needs_a_path_and_path_needs_npz(npz_study):
    s = npz_study
    base = ["run", s.study, "--quiet", "--out", str(s.dir / "run")]
    _one_error_line(_call([*base, "--set", "data.name=npz"]), "data.path=FILE.npz")
    _one_error_line(_call([*base, "--set", f"data.path={s.npz}"]), "data.path", "data.name=npz")
    _one_error_line(_call([*base, "--set", "data.name=arrays"]), "data.name=arrays", "npz")
