"""Bad data and numeric options get one clear line: class counts from both splits, empty IDX
files, a memory guard before a task is drawn, data.seed / model.out_dim ranges, loss and target
agreement, --max-memory sizes, and the numeric options of `sigjax theory`.

Every command-line case goes through `sigjax.cli.main` in-process: exit code 2 and one
`sigjax: error:` line on stderr naming the key, option or path at fault. Runs use `--plan`
(nothing trains) unless a test needs the real path.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
from test_data_sources import raw_mnist, write_idx_dir

from sigjax import config, data
from sigjax.cli import main
from sigjax.cli import theory_command as theory_cli
from sigjax.config import Config
from sigjax.engine import plan, train
from sigjax.errors import UserError

STUDY = "sigmoid_convergence"
# One member, one group, a few steps: a --plan that loads the data and exits.
TINY = [
    "--quiet",
    "--set=train.steps=2",
    "--set=train.log_every=1",
    "--grid=model.activation=tanh",
    "--grid=model.depth=1",
    "--grid=optim.lr=0.1",
    "--grid=seed=0",
]
MNIST = ["--set=data.name=mnist", "--set=train.loss=softmax_ce"]


def refused(capsys, argv: list[str], *mentions: str) -> str:
    """main(argv) must exit 2 with exactly one `sigjax: error:` line holding every mention."""
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse refuses a malformed option by exiting
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sigjax: error: "), err
    assert "Traceback" not in err
    for m in mentions:
        assert m in lines[0], (m, lines[0])
    return lines[0]


def plan_argv(*extra: str) -> list[str]:
    return ["run", STUDY, *TINY, *extra, "--plan"]


# ------------------------------------------------------------------ 1. classes from both splits


def test_test_labels_beyond_the_training_labels_get_a_logit(tmp_path, monkeypatch):
    raw = raw_mnist(seed=3)
    raw["y_train"] = raw["y_train"] % 5  # training labels 0..4 only
    raw["y_test"][:] = [7, 9, 0, 7, 2]
    write_idx_dir(tmp_path / "mnist", raw, gz=False)
    monkeypatch.setenv("SIGJAX_DATA_DIR", str(tmp_path))
    cfg = config.replace(
        Config(),
        {"data.name": "mnist", "train.loss": "softmax_ce", "model.width": 4, "model.depth": 1},
    )
    d = data.load(cfg.data)
    assert d.n_classes == 10 and d.out_dim == 10  # declared, not 1 + max(y_train) = 5
    prog = train.program(cfg, d)
    assert prog.out_dim == 10

    # The step-0 test loss is finite and equals softmax cross-entropy done by hand in NumPy.
    import jax

    from sigjax.nn import models

    hp = train.hparams_of(cfg)
    state = prog.init(hp, jax.random.key(0))
    rec = prog.finish(d, hp, jax.random.key(0), state)
    logits = np.asarray(models.apply(prog.model, state.params, d.x_test)[0], dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    want = np.mean(lse - logits[np.arange(5), raw["y_test"]])
    assert np.isfinite(float(rec.test_loss))
    np.testing.assert_allclose(float(rec.test_loss), want, rtol=1e-5)


def _fake_task(monkeypatch, arrays: dict) -> Config:
    monkeypatch.setitem(data.DATASETS, "teacher", lambda cfg: dict(arrays))
    return config.replace(Config(), {"data.name": "teacher"})


def test_classes_without_a_declared_count_come_from_both_splits(monkeypatch):
    x = np.zeros((3, 2), np.float32)
    y_train, y_test = np.array([0, 1, 1], np.int32), np.array([3, 0, 1], np.int32)
    cfg = _fake_task(monkeypatch, {"x_train": x, "y_train": y_train, "x_test": x, "y_test": y_test})
    assert data.load(cfg.data).n_classes == 4  # 1 + max over both splits, not 2


def test_labels_outside_the_declared_classes_are_refused(monkeypatch):
    x = np.zeros((3, 2), np.float32)
    arrays = {
        "x_train": x,
        "y_train": np.array([0, 1, 2], np.int32),
        "x_test": x,
        "y_test": np.array([0, 5, 1], np.int32),
        "n_classes": 3,
    }
    cfg = _fake_task(monkeypatch, arrays)
    with pytest.raises(UserError, match=r"y_test holds labels 0\.\.5, outside the task's 3 "):
        data.load(cfg.data)


# ------------------------------------------------------------------ 2. and 8. bad local files


@pytest.mark.parametrize("part", ["x_train", "x_test"])
def test_idx_file_with_zero_images(tmp_path, monkeypatch, capsys, part):
    raw = raw_mnist()
    raw[part], raw["y" + part[1:]] = raw[part][:0], raw["y" + part[1:]][:0]
    paths = write_idx_dir(tmp_path / "mnist", raw, gz=False)
    monkeypatch.setenv("SIGJAX_DATA_DIR", str(tmp_path))
    refused(capsys, plan_argv(*MNIST), str(paths[part]), "no images")


def _not_a_directory(root: Path) -> Path:
    (root / "mnist").write_text("not a directory\n")
    return root / "mnist"


def _directory_for_a_file(root: Path) -> Path:
    paths = write_idx_dir(root / "mnist", raw_mnist(), gz=False)
    paths["y_train"].unlink()
    paths["y_train"].mkdir()
    return paths["y_train"]


def _wrong_magic(root: Path) -> Path:
    paths = write_idx_dir(root / "mnist", raw_mnist(), gz=False)
    paths["x_test"].write_bytes(b"\x08\x03\x00\x00" + paths["x_test"].read_bytes()[4:])
    return paths["x_test"]


def _truncated(root: Path) -> Path:
    paths = write_idx_dir(root / "mnist", raw_mnist(), gz=False)
    paths["x_train"].write_bytes(paths["x_train"].read_bytes()[:-1])
    return paths["x_train"]


def _count_mismatch(root: Path) -> Path:
    raw = raw_mnist()
    raw["y_train"] = raw["y_train"][:-2]
    return write_idx_dir(root / "mnist", raw, gz=False)["y_train"]


@pytest.mark.parametrize(
    ("make", "phrase"),
    [
        (lambda root: root / "mnist", "does not exist"),
        (_not_a_directory, "is a file, not a directory"),
        (_directory_for_a_file, "is a directory, not a file"),
        (_wrong_magic, "wrong magic number"),
        (_truncated, "truncated"),
        (_count_mismatch, "10 labels"),
    ],
    ids=["missing", "file-not-dir", "dir-not-file", "magic", "truncated", "count-mismatch"],
)
def test_bad_local_data_through_the_cli(tmp_path, monkeypatch, capsys, make, phrase):
    path = make(tmp_path)
    monkeypatch.setenv("SIGJAX_DATA_DIR", str(tmp_path))
    refused(capsys, plan_argv(*MNIST), str(path), phrase)


# ------------------------------------------------------------------ 3. the memory guard


def test_task_bytes_by_hand():
    cfg = config.replace(Config(), {"data.n_train": 10, "data.n_test": 5, "data.dim": 3}).data
    # 15 rows x 12 bytes x (3 inputs + 1 target)
    assert data.task_bytes(cfg) == 15 * 12 * 4
    teacher = dataclasses.replace(cfg, name="teacher", out_dim=4)
    # one int32 label column, and the teacher's three float64 (n, 64) arrays and (n, 4) outputs
    assert data.task_bytes(teacher) == 15 * (12 * 4 + 8 * (3 * 64 + 4))
    assert data.task_bytes(dataclasses.replace(cfg, name="digits")) is None


def test_available_memory_is_plausible():
    free = data.available_memory()
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert free is not None and 0 < free <= total


@pytest.mark.parametrize(
    "key", ["data.n_train=1000000000000", "data.n_test=1000000000000", "data.dim=1000000000000"]
)
def test_a_task_larger_than_any_memory_is_refused(capsys, key):
    line = refused(capsys, plan_argv(f"--set={key}"), key, "GiB of host memory available")
    assert "lower data.n_train" in line


@pytest.fixture
def small_machine(monkeypatch):
    """1 MiB of memory, and a task that must not be drawn at all."""

    def drawn(cfg):
        raise AssertionError("the task was drawn before its size was checked")

    monkeypatch.setattr(data, "available_memory", lambda: 1 << 20)
    monkeypatch.setitem(data.DATASETS, "seed_regression", drawn)


def test_guard_runs_before_drawing_in_a_plan(capsys, small_machine):
    # 10**5 rows x 12 bytes x (10 inputs + 1 target) = 12.6 MiB > 1 MiB
    line = refused(capsys, plan_argv("--set=data.n_train=100000"), "data.n_train=100000")
    assert "about 12.6 MiB, more than the 1.0 MiB of host memory available" in line


def test_guard_runs_before_drawing_in_a_real_run(capsys, small_machine, tmp_path):
    out = tmp_path / "run"
    argv = ["run", STUDY, *TINY, "--set=data.n_train=100000", "--out", str(out)]
    refused(capsys, argv, "data.n_train=100000")
    assert not out.exists()


def test_guard_leaves_a_task_that_fits(monkeypatch):
    monkeypatch.setattr(data, "available_memory", lambda: 15 * 12 * 4)
    cfg = config.replace(Config(), {"data.n_train": 10, "data.n_test": 5, "data.dim": 3}).data
    assert data.load(cfg).x_train.shape == (10, 3)  # exactly the estimate fits
    with pytest.raises(UserError, match="data.n_train=11"):
        data.load(dataclasses.replace(cfg, n_train=11))


# ------------------------------------------------------------------ 4. 5. 8. config checks


@pytest.mark.parametrize(
    ("setting", "mentions"),
    [
        ("data.seed=-1", ["data.seed", "-1"]),
        ("data.seed=4294967296", ["data.seed", "2**32"]),
        ("model.out_dim=-3", ["model.out_dim", "-3"]),
        ("model.out_dim=0", ["model.out_dim"]),
        ("model.out_dim=3", ["model.out_dim=3", "data.out_dim=1"]),
        ("train.loss=softmax_ce", ["train.loss=softmax_ce", "seed_regression"]),
    ],
)
def test_bad_settings(capsys, setting, mentions):
    refused(capsys, plan_argv(f"--set={setting}"), *mentions)


@pytest.mark.parametrize(
    ("settings", "mentions"),
    [
        (["data.name=digits", "train.loss=mse"], ["train.loss=mse", "data.name=digits", "10"]),
        (
            ["data.name=teacher", "data.out_dim=3", "train.loss=softmax_ce", "model.out_dim=2"],
            ["model.out_dim=2", "3 classes"],
        ),
        (
            ["data.name=teacher", "data.out_dim=3", "train.loss=sigmoid_bce"],
            ["train.loss=sigmoid_bce", "model.out_dim=none"],
        ),
    ],
)
def test_loss_targets_and_outputs_must_agree(capsys, settings, mentions):
    refused(capsys, plan_argv(*(f"--set={s}" for s in settings)), *mentions)


def test_edge_values_are_accepted():
    base = {"data.name": "teacher", "data.out_dim": 2, "train.loss": "sigmoid_bce"}
    for extra in (
        {"data.seed": 2**32 - 1, "model.out_dim": 1},
        {"data.seed": 0, "model.out_dim": 1},
    ):
        train.check_config(config.replace(Config(), base | extra))
    ok = {"data.name": "teacher", "data.out_dim": 3, "train.loss": "softmax_ce"}
    for out in (None, 3, 5):
        train.check_config(config.replace(Config(), ok | {"model.out_dim": out}))
    train.check_config(config.replace(Config(), {"model.out_dim": 1}))  # = data.out_dim


# ------------------------------------------------------------------ 6. --max-memory


@pytest.mark.parametrize("text", ["inf", "nan", "1e400", "-inf", "-1", "0", "0.5", "abc", "1e400T"])
def test_parse_bytes_refuses(text):
    with pytest.raises(UserError) as err:
        plan.parse_bytes(text)
    msg = str(err.value)
    assert "\n" not in msg and "--max-memory" in msg and repr(text) in msg


def test_parse_bytes_sizes():
    assert plan.parse_bytes("1.5GiB") == 3 << 29
    assert plan.parse_bytes("512m") == 512 << 20
    assert plan.parse_bytes("1") == 1


@pytest.mark.parametrize("text", ["inf", "nan", "1e400"])
def test_max_memory_through_the_cli(capsys, text):
    refused(capsys, plan_argv("--max-memory", text), "--max-memory", repr(text))


# ------------------------------------------------------------------ 7. theory options


@pytest.mark.parametrize("points", ["100000000", "10001", "1", "0", "-2"])
def test_theory_line_points_range(capsys, points):
    argv = ["theory", "line", "--activation", "tanh", "--points", points]
    refused(capsys, argv, "--points", f"2..{theory_cli.MAX_POINTS}", points)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_theory_line_sigma_b2_max(capsys, value):
    argv = ["theory", "line", "--activation", "tanh", "--sigma-b2-max", value, "--points", "3"]
    refused(capsys, argv, "--sigma-b2-max", value)


def test_theory_line_accepts_the_range_ends(capsys, monkeypatch):
    seen = []

    def line(activation, b_max, points):
        seen.append(points)
        return np.linspace(0, b_max, points), np.ones(points)

    monkeypatch.setattr(theory_cli.theory, "critical_line", line)
    for points in (2, theory_cli.MAX_POINTS):
        assert main(["theory", "line", "--activation", "tanh", "--points", str(points)]) == 0
    assert seen == [2, theory_cli.MAX_POINTS]
    # a title and a header line, then one row a point, for each call
    assert len(capsys.readouterr().out.splitlines()) == (2 + 2) + (2 + theory_cli.MAX_POINTS)


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [
        (["critical", "--activation", "tanh", "--sigma-b2", "nan"], ["sigma_b2", "nan"]),
        (["point", "--activation", "tanh", "--sigma-w2", "-1"], ["sigma_w2", "-1"]),
        (["point", "--activation", "tanh", "--sigma-w2", "inf"], ["sigma_w2", "inf"]),
        (["point", "--activation", "tanh", "--sigma-w2", "1", "--q-start", "nan"], ["--q-start"]),
        (["line", "--activation", "tanh", "--points", "1e8"], ["--points", "1e8"]),
    ],
)
def test_other_theory_numbers(capsys, argv, mentions):
    refused(capsys, ["theory", *argv], *mentions)
