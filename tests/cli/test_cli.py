"""The `sigjax` command line: `run` and `list`, and its contract for user mistakes.

A mistake gets exactly one `sigjax: error: ...` line on stderr and exit code 2, no traceback,
and nothing is written or lost: an existing run directory stays byte for byte as it was, no new
directory appears and no temporary `.partial` directory is left next to `--out`.

The successful runs are kept tiny (20 steps, a handful of members) and few: one module-scoped
run is shared by every assertion about a run directory's contents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import experiments.sigmoid_convergence as study_module
from sigjax.cli import main
from sigjax.engine import results, rundir

STUDY = "sigmoid_convergence"
TINY = ["--quiet", "--set", "train.steps=20", "--set", "train.log_every=10"]
# The tiny grid from the command-line contract.
TINY_GRID = [
    "--grid",
    "model.activation=sigmoid,tanh",
    "--grid",
    "model.depth=1",
    "--grid",
    "optim.lr=0.1,0.3",
    "--grid",
    "seed=range(2)",
]
# In 20 steps no member gets below the study's loss threshold (0.075); a loose one keeps the
# study's report (its steps-to-threshold panel) away from an all-NaN log axis, see
# test_tiny_run_where_no_member_reaches_the_threshold.
LOOSE_THRESHOLD = ["--set", "train.loss_threshold=0.5"]
RUN_FILES = ("results.nc", "summary.csv", "config.json", "table.md", "figures/convergence.png")


def _call(argv: list[str]) -> SimpleNamespace:
    """main(argv) with stdout/stderr captured; usable from module-scoped fixtures."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return SimpleNamespace(rc=rc, out=out.getvalue(), err=err.getvalue())


def _snapshot(root: Path) -> dict[str, bytes | None]:
    """Every entry under root (hidden ones included): file bytes, None for directories."""
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def _assert_one_error_line(err: str, *mentions: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {err!r}"
    assert err.endswith("\n")
    line = lines[0]
    assert line.startswith("sigjax: error: "), line
    assert "Traceback" not in err
    for m in mentions:
        assert m in line, f"{m!r} not in {line!r}"
    return line


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if "partial" in p.name or ".old-" in p.name)


# ---------------------------------------------------------------- a successful run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    parent = tmp_path_factory.mktemp("tiny")
    path = parent / "r"
    res = _call(["run", STUDY, "--out", str(path), *TINY, *LOOSE_THRESHOLD, *TINY_GRID])
    res.path, res.parent = path, parent
    return res


def test_run_succeeds_and_writes_the_run_directory(tiny_run):
    assert tiny_run.rc == 0, tiny_run.err
    for name in RUN_FILES:
        assert (tiny_run.path / name).is_file(), name
    assert (tiny_run.path / "figures/convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tiny_run.path / "table.md").read_text().strip()
    assert _leftovers(tiny_run.parent) == []
    assert sorted(p.name for p in tiny_run.parent.iterdir()) == ["r"]
    assert f"wrote {tiny_run.path}/" in tiny_run.out
    assert "%|" not in tiny_run.err  # --quiet: no progress bar
    assert "Traceback" not in tiny_run.err


def test_results_nc_has_one_dim_per_axis(tiny_run):
    ds = results.load(tiny_run.path / "results.nc")
    assert "loss" in ds.data_vars
    assert {d: ds.sizes[d] for d in ("activation", "depth", "lr", "seed", "step")} == {
        "activation": 2,
        "depth": 1,
        "lr": 2,
        "seed": 2,
        "step": 3,
    }
    assert list(ds.activation.values) == ["sigmoid", "tanh"]
    assert list(ds.depth.values) == [1]
    np.testing.assert_allclose(ds.lr.values, [0.1, 0.3])
    assert list(ds.seed.values) == [0, 1]
    assert list(ds.step.values) == [0, 10, 20]
    assert set(ds.loss.dims) >= {"activation", "depth", "lr", "seed", "step"}
    assert np.isfinite(ds.loss.isel(step=0).values).all()


def test_summary_csv_has_a_row_per_member(tiny_run):
    table = pd.read_csv(tiny_run.path / "summary.csv")
    assert len(table) == 8
    for col in ("activation", "lr", "seed", "final_loss", "steps_to_threshold", "diverged_at"):
        assert col in table.columns, col
    members = set(zip(table.activation, table.lr.round(6), table.seed, strict=True))
    assert members == {(a, lr, s) for a in ("sigmoid", "tanh") for lr in (0.1, 0.3) for s in (0, 1)}


def test_config_json_reflects_set_and_grid(tiny_run):
    meta = json.loads((tiny_run.path / "config.json").read_text())
    assert meta["study"] == STUDY
    train = meta["config"]["train"]
    assert train["steps"] == 20
    assert train["log_every"] == 10
    assert train["loss_threshold"] == 0.5
    assert meta["grid"]["model.activation"] == ["sigmoid", "tanh"]
    assert meta["grid"]["model.depth"] == [1]
    assert meta["grid"]["optim.lr"] == [0.1, 0.3]
    assert meta["grid"]["seed"] == [0, 1]


def test_tiny_run_where_no_member_reaches_the_threshold(tmp_path):
    """A tiny run with the study's own threshold (0.075), which no member reaches in 20 steps.

    The contract's example run (TINY + TINY_GRID) fails the same way; one group keeps it short.
    """
    path = tmp_path / "r"
    argv = ["run", STUDY, "--out", str(path), *TINY, "--grid", "model.activation=sigmoid"]
    argv += ["--grid", "model.depth=1", "--grid", "optim.lr=0.1", "--grid", "seed=range(2)"]
    res = _call(argv)
    assert res.rc == 0
    for name in RUN_FILES:
        assert (path / name).is_file(), name


@pytest.fixture
def no_report(monkeypatch):
    """The study without its report (figures, tables, the blog reference): faster runs for tests
    about the run directory itself; the module-scoped run covers the report."""
    monkeypatch.setattr(study_module, "STUDY", dataclasses.replace(study_module.STUDY, report=None))


def test_overwrite_replaces_and_set_on_a_swept_key_fixes_it(tmp_path, no_report):
    path = tmp_path / "r"
    path.mkdir()
    rundir.write_marker(path, STUDY)  # an older run of sigjax's own
    (path / "config.json").write_text("{}\n")
    (path / "stale.txt").write_text("from an older run\n")
    (path / "results.nc").write_bytes(b"old")
    argv = ["run", STUDY, "--out", str(path), *TINY, *LOOSE_THRESHOLD, "--overwrite"]
    argv += ["--set", "optim.lr=0.2", "--grid", "model.activation=sigmoid"]
    argv += ["--grid", "model.depth=1", "--grid", "seed=range(2)"]
    res = _call(argv)
    assert res.rc == 0, res.err
    assert not (path / "stale.txt").exists()
    for name in ("results.nc", "summary.csv", "config.json"):
        assert (path / name).is_file(), name
    ds = results.load(path / "results.nc")  # the new one, not b"old"
    assert ds.sizes["lr"] == 1
    np.testing.assert_allclose(ds.lr.values, [0.2])
    assert ds.sizes["activation"] == 1 and ds.sizes["seed"] == 2
    table = pd.read_csv(path / "summary.csv")
    assert len(table) == 2
    np.testing.assert_allclose(table.lr, 0.2)
    meta = json.loads((path / "config.json").read_text())
    assert meta["grid"]["optim.lr"] == [0.2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no .partial / .old- left


def test_out_dot_with_overwrite_is_refused(tmp_path, monkeypatch, no_report):
    here = tmp_path / "here"
    here.mkdir()
    (here / "keep.txt").write_text("keep\n")
    monkeypatch.chdir(here)
    before = _snapshot(here)
    argv = ["run", STUDY, "--out", ".", "--overwrite", *TINY, "--set", "model.width=4"]
    argv += ["--grid", "model.activation=sigmoid"]
    argv += ["--grid", "model.depth=1", "--grid", "optim.lr=0.1", "--grid", "seed=range(1)"]
    try:
        res = _call(argv)
    finally:
        assert _leftovers(here) == [] and _leftovers(tmp_path) == []
    assert res.rc == 2  # the working directory is never a run directory
    _assert_one_error_line(res.err)
    assert _snapshot(here) == before


# ---------------------------------------------------------------- list


def test_list_names_the_study_and_what_it_makes(capsys):
    assert main(["list"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = [ln for ln in out.splitlines() if ln.split()[:1] == [STUDY]]
    assert len(lines) == 1
    assert "convergence.png" in lines[0]


# ---------------------------------------------------------------- user mistakes

BAD_RUNS = {
    "unknown study": (["run", "no_such_study"], ["no_such_study"]),
    "unknown activation": (
        ["run", STUDY, "--set", "model.activation=sigmoidd"],
        ["sigmoidd", "activation"],
    ),
    "unknown activation in grid": (
        ["run", STUDY, "--grid", "model.activation=sigmoid,sigmoidd"],
        ["sigmoidd", "activation"],
    ),
    "unknown key": (["run", STUDY, "--set", "model.widht=8"], ["model.widht"]),
    "unknown key in grid": (["run", STUDY, "--grid", "optim.learning_rate=0.1"], ["learning_rate"]),
    "wrong type": (["run", STUDY, "--set", "model.width=abc"], ["model.width", "abc"]),
    "wrong type in grid": (["run", STUDY, "--grid", "model.depth=1,x"], ["model.depth", "'x'"]),
    "float for int": (["run", STUDY, "--set", "model.depth=1.5"], ["model.depth", "1.5"]),
    "negative lr": (["run", STUDY, "--set", "optim.lr=-0.1"], ["lr", "-0.1"]),
    "negative lr in grid": (["run", STUDY, "--grid", "optim.lr=0.1,-0.3"], ["lr", "-0.3"]),
    "zero lr": (["run", STUDY, "--set", "optim.lr=0"], ["lr"]),
    "nan lr": (["run", STUDY, "--grid", "optim.lr=0.1,nan"], ["lr", "nan"]),
    "linspace with two args": (
        ["run", STUDY, "--grid", "optim.lr=linspace(1,2)"],
        ["linspace(1,2)"],
    ),
    "range of a name": (["run", STUDY, "--grid", "seed=range(a)"], ["range(a)"]),
    "grid without =": (["run", STUDY, "--grid", "optim.lr"], ["optim.lr"]),
    "set without =": (["run", STUDY, "--set", "model.width"], ["model.width"]),
    "empty grid axis": (["run", STUDY, "--grid", "optim.lr="], ["optim.lr", "empty"]),
    "empty range": (["run", STUDY, "--grid", "seed=range(0)"], ["seed", "empty"]),
    "repeated grid value": (["run", STUDY, "--grid", "optim.lr=0.1,0.1"], ["optim.lr"]),
    "steps not a multiple of log_every": (
        ["run", STUDY, "--set", "train.steps=15"],
        ["train.steps", "train.log_every"],
    ),
}


@pytest.mark.parametrize("argv, mentions", BAD_RUNS.values(), ids=BAD_RUNS.keys())
def test_user_mistake_is_one_line_exit_2_nothing_written(argv, mentions, tmp_path, capsys):
    out = tmp_path / "nested" / "r"  # parents do not exist: they must not be created either
    rc = main([*argv, "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert rc == 2
    _assert_one_error_line(err, *mentions)
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_mistake_without_out_writes_no_default_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", STUDY, "--set", "optim.lr=-1"]) == 2
    _assert_one_error_line(capsys.readouterr().err, "lr")
    assert list(tmp_path.iterdir()) == []  # no runs/ or runs/sigmoid_convergence


@pytest.fixture
def existing(tmp_path):
    """A previous run directory (hidden file and subdirectory included) and its snapshot."""
    path = tmp_path / "r"
    (path / "figures").mkdir(parents=True)
    (path / "results.nc").write_bytes(b"\x89HDF\r\n\x1a\n previous results")
    (path / "summary.csv").write_text("lr,seed\n0.1,0\n")
    (path / "config.json").write_text('{"study": "sigmoid_convergence"}\n')
    (path / "figures" / "convergence.png").write_bytes(b"\x89PNG previous figure")
    (path / ".notes").write_text("mine\n")
    rundir.write_marker(path, STUDY)
    return SimpleNamespace(path=path, root=tmp_path, before=_snapshot(tmp_path))


def test_existing_out_without_overwrite_is_refused(existing, capsys):
    argv = ["run", STUDY, "--out", str(existing.path), *TINY, *TINY_GRID]
    assert main(argv) == 2
    stdout, err = capsys.readouterr()
    _assert_one_error_line(err, str(existing.path), "--overwrite")
    assert stdout == ""
    assert _snapshot(existing.root) == existing.before


@pytest.mark.parametrize(
    "bad, mention",
    [
        (["--set", "model.width=abc"], "abc"),
        (["--grid", "optim.lr=0.1,-0.3"], "-0.3"),
        (["--grid", "optim.lr=linspace(1,2)"], "linspace(1,2)"),
    ],
    ids=["wrong type", "negative lr", "malformed grid"],
)
def test_mistake_with_overwrite_keeps_the_existing_dir(existing, bad, mention, capsys):
    argv = ["run", STUDY, "--out", str(existing.path), "--overwrite", *TINY, *bad]
    assert main(argv) == 2
    _assert_one_error_line(capsys.readouterr().err, mention)
    assert _snapshot(existing.root) == existing.before


def test_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "r"
    target.write_text("not a directory\n")
    before = _snapshot(tmp_path)
    assert main(["run", STUDY, "--out", str(target), *TINY]) == 2
    _assert_one_error_line(capsys.readouterr().err, str(target))
    assert main(["run", STUDY, "--out", str(target), "--overwrite", *TINY]) == 2
    _assert_one_error_line(capsys.readouterr().err, str(target))
    assert _snapshot(tmp_path) == before


def test_out_below_a_file_is_a_user_error(tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("a file, not a directory\n")
    before = _snapshot(tmp_path)
    assert main(["run", STUDY, "--out", str(blocker / "r"), *TINY]) == 2
    _assert_one_error_line(capsys.readouterr().err, "afile")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "argv, mention",
    [
        (["run", STUDY, "--bogus"], "--bogus"),
        (["no_such_command"], "no_such_command"),
        ([], "command"),
        (["run", STUDY, "--out"], "--out"),
    ],
    ids=["unknown option", "unknown command", "no command", "option without value"],
)
def test_argument_errors_exit_2_with_one_line(argv, mention, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    stdout, err = capsys.readouterr()
    _assert_one_error_line(err, mention)
    assert "usage:" not in err
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_real_entry_point_exits_2_without_traceback(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, "-m", "sigjax.cli", "run", STUDY, "--out", str(out)]
        + ["--grid", "optim.lr=0.1,-0.3"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    _assert_one_error_line(proc.stderr, "lr", "-0.3")
    assert proc.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_overwrite_refuses_a_directory_that_is_not_a_run(tmp_path, capsys):
    path = tmp_path / "thesis"
    path.mkdir()
    (path / "chapter1.tex").write_text("precious\n")
    argv = ["run", STUDY, "--out", str(path), "--overwrite", *TINY, *TINY_GRID]
    assert main(argv) == 2
    _assert_one_error_line(capsys.readouterr().err, "sigjax did not write", str(path))
    assert (path / "chapter1.tex").read_text() == "precious\n"
