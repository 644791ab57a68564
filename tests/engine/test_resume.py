"""Interrupted then resumed equals uninterrupted: in process, and after a SIGKILL."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_same_results, cli_args, sigkill_after, subprocess_env

import experiments
from sigjax.engine import checkpoint, results, train
from sigjax.errors import UserError
from sigjax.study import Interrupted, run_study

SETS = {"train.steps": 40, "train.log_every": 5, "model.width": 8}
GRIDS = {
    "model.activation": ["sigmoid", "tanh"],
    "model.depth": [1],
    "optim.lr": [0.1, 0.5],
    "seed": [0, 1],
}


def _study():
    s = experiments.get("sigmoid_convergence").with_overrides(SETS, GRIDS)
    return dataclasses.replace(s, report=None)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ds, _, _ = run_study(_study(), tmp_path_factory.mktemp("ref") / "run")
    return ds


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    saves = []
    original = checkpoint.Store.save_state

    def interrupt_on_the_tenth(self, *args):
        original(self, *args)  # the checkpoint is written, then Ctrl-C arrives
        saves.append(1)
        if len(saves) == 10:  # 8 segments per group: inside the second static group
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Store, "save_state", interrupt_on_the_tenth)
    with pytest.raises(Interrupted, match="--resume"):
        run_study(_study(), out)
    assert not out.exists()
    partial = tmp_path / ".run.partial" / "checkpoint"
    assert "group-0" in json.loads((partial / "manifest.json").read_text())["entries"]
    monkeypatch.setattr(checkpoint.Store, "save_state", original)

    with pytest.raises(UserError, match="was interrupted"):
        run_study(_study(), out)  # a plain rerun neither clobbers nor ignores the checkpoint

    inits = []
    original_init = train.Program.init
    monkeypatch.setattr(
        train.Program,
        "init",
        lambda self, *a: (
            inits.append((self.cfg.model.activation, self.cfg.model.depth))
            or original_init(self, *a)
        ),
    )
    ds, path, _ = run_study(_study(), out, resume=True)
    assert ("sigmoid", 1) not in inits  # the finished group was not recomputed
    assert_same_results(ds, reference)
    assert_same_results(results.load(path / "results.nc"), reference)
    assert not (tmp_path / ".run.partial").exists()


def test_resume_with_a_different_config_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(
        checkpoint.Store, "save_state", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt)
    )
    with pytest.raises(Interrupted):
        run_study(_study(), out)
    other = _study().with_overrides({"model.width": 9})
    with pytest.raises(UserError, match="different config"):
        run_study(other, out, resume=True)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    out = tmp_path / "run"
    calls = []
    original = checkpoint.Store.save_state

    def stop_after_two(self, *args):
        original(self, *args)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Store, "save_state", stop_after_two)
    with pytest.raises(Interrupted):
        run_study(_study(), out)
    state = next((tmp_path / ".run.partial" / "checkpoint").glob("state-*.npz"))
    state.write_bytes(state.read_bytes()[:100])  # truncated
    with pytest.raises(UserError, match="altered since this run wrote it"):
        run_study(_study(), out, resume=True)


def test_sigkill_after_a_checkpoint_then_resume(tmp_path, reference):
    out = tmp_path / "run"
    args = cli_args("sigmoid_convergence", out, SETS, GRIDS)
    # The child slows each checkpoint down so that the kill lands mid-run, after a checkpoint.
    slow = (
        "import sys, time\n"
        "from sigjax.engine import checkpoint\n"
        "from sigjax.cli import main\n"
        "save = checkpoint.Store.save_state\n"
        "checkpoint.Store.save_state = lambda *a: (save(*a), time.sleep(0.5 * (a[1] > 0)))[0]\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [sys.executable, "-c", slow, *args]
    env = subprocess_env()
    sigkill_after(argv, env, tmp_path / ".run.partial" / "checkpoint", "group-0.*.npz")
    assert not out.exists(), "the run finished before it could be killed"
    resume = [sys.executable, "-m", "sigjax.cli", *args, "--resume"]
    done = subprocess.run(resume, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert_same_results(results.load(Path(out) / "results.nc"), reference)
