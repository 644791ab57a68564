"""`sigjax show` on good and damaged run directories: numbers right, one line for each fault."""

import dataclasses
import errno
import json
import os

import numpy as np
import pytest

import experiments
from sigjax import analysis
from sigjax.analysis import plotting, report
from sigjax.cli import main
from sigjax.engine import results
from sigjax.study import run_study


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    sets = {"train.steps": 20, "train.log_every": 10, "model.width": 8}
    grids = {"model.activation": ["tanh"], "model.depth": [1], "optim.lr": [0.1, 0.3]}
    study = experiments.get("sigmoid_convergence").with_overrides(sets, grids | {"seed": [0, 1]})
    path = tmp_path_factory.mktemp("show") / "r"
    run_study(dataclasses.replace(study, report=None), path)
    return path


def _one_line(err: str, *mentions: str) -> None:
    assert err.count("\n") == 1 and err.startswith("sigjax: error: "), err
    assert "Traceback" not in err
    for m in mentions:
        assert m in err, (m, err)


def test_show_reports_the_best_lr_once_and_right(run, capsys):
    assert main(["show", str(run)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "best_lr" in line)
    assert header.split().count("lr") == 0  # no second column repeating best_lr
    ds = results.load(run / "results.nc")
    thr = json.loads((run / "config.json").read_text())["config"]["train"]["loss_threshold"]
    by_hand = ds.lr.values[np.argmin(analysis.final_loss(ds).median("seed").values.ravel())]
    assert float(analysis.best_lr(ds, thr).squeeze()) == pytest.approx(by_hand)
    assert f"{by_hand:.4g}" in out.split("best_lr")[-1]


def _copy(run, tmp_path):
    target = tmp_path / "r"
    target.mkdir()
    for name in ("results.nc", "config.json"):
        (target / name).write_bytes((run / name).read_bytes())
    return target


def test_show_a_corrupt_config_is_one_line(run, tmp_path, capsys):
    target = _copy(run, tmp_path)
    (target / "config.json").write_text('{"config": {"train": ')
    assert main(["show", str(target)]) == 2
    _one_line(capsys.readouterr().err, "config.json")


def test_show_results_lacking_a_variable_is_one_line(run, tmp_path, capsys):
    target = _copy(run, tmp_path)
    ds = results.load(target / "results.nc").drop_vars("diverged_at")
    ds.to_netcdf(target / "results.nc")
    assert main(["show", str(target)]) == 2
    _one_line(capsys.readouterr().err, "results.nc", "diverged_at")


def test_show_plot_into_a_read_only_directory_is_one_line(run, tmp_path, monkeypatch, capsys):
    target = _copy(run, tmp_path)

    def refuse(fig, out, name, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out))

    monkeypatch.setattr(plotting, "save", refuse)
    monkeypatch.setattr(report.plotting, "save", refuse)
    before = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
    assert main(["show", str(target), "--plot"]) == 1
    _one_line(capsys.readouterr().err, "Read-only file system")
    assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == before


def test_show_a_file_not_a_run_is_one_line(tmp_path, capsys):
    (tmp_path / "results.nc").write_text("not netcdf")
    assert main(["show", str(tmp_path)]) == 2
    _one_line(capsys.readouterr().err, "results.nc")
    assert main(["show", str(tmp_path / "nowhere")]) == 2
    _one_line(capsys.readouterr().err, "nowhere")
