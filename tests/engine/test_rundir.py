"""A run never loses, mixes or silently misreads results: locks, markers, checkpoints, faults."""

import dataclasses
import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from helpers import subprocess_env

import experiments
from sigjax.cli import main
from sigjax.engine import checkpoint, results, rundir, sweep, train
from sigjax.errors import Fault, UserError
from sigjax.study import Interrupted, run_study

SETS = {"train.steps": 20, "train.log_every": 5, "model.width": 8}
GRIDS = {
    "model.activation": ["tanh"],
    "model.depth": [1],
    "optim.lr": [0.1, 0.5],
    "seed": [0, 1],
}


def _study(**grids):
    s = experiments.get("sigmoid_convergence").with_overrides(SETS, GRIDS | grids)
    return dataclasses.replace(s, report=None)


def _same(a, b):
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    for dim in a.dims:
        np.testing.assert_array_equal(a[dim].values, b[dim].values, err_msg=dim)


def _snapshot(root):
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_study(_study(), tmp_path_factory.mktemp("ref") / "run")[0]


def _interrupt_after(monkeypatch, n, exc=KeyboardInterrupt):
    """Make the n-th checkpoint save raise exc (after the save is written)."""
    original = checkpoint.Store.save_state
    calls = []

    def save(self, *args):
        original(self, *args)
        calls.append(1)
        if len(calls) == n:
            raise exc

    monkeypatch.setattr(checkpoint.Store, "save_state", save)
    return lambda: monkeypatch.setattr(checkpoint.Store, "save_state", original)


# ------------------------------------------------------------------------------- locks


def test_a_second_run_on_a_locked_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    with rundir.locked(out.resolve()):
        for kw in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(UserError, match=f"in use by a running sigjax \\(pid {os.getpid()}"):
                run_study(_study(), out, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, lock removed


def test_the_lock_dies_with_its_process(tmp_path):
    out = (tmp_path / "run").resolve()
    holder = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from sigjax.engine import rundir\n"
        "with rundir.locked(Path(sys.argv[1])):\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", holder, str(out)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"locked"
    with pytest.raises(UserError, match=f"pid {proc.pid}"), rundir.locked(out):
        pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with rundir.locked(out):  # free again after SIGKILL; the stale lock file is taken over
        assert (tmp_path / ".run.lock").exists()
    assert not (tmp_path / ".run.lock").exists()


# ------------------------------------------------------------------- checkpoint contents


def test_a_fresh_run_never_reads_another_runs_checkpoint(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    restore = _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):  # another grid, interrupted: its files stay in .partial
        run_study(_study(**{"optim.lr": [0.3, 0.7]}), out)
    restore()
    ds = run_study(_study(), out, overwrite=True)[0]
    _same(ds, reference)


def test_files_the_manifest_does_not_list_are_never_read(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    restore = _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        run_study(_study(), out)
    restore()
    ckpt = tmp_path / ".run.partial" / "checkpoint"
    bogus = {k: np.zeros_like(v) for k, v in dict(np.load(next(ckpt.glob("state-*.npz")))).items()}
    np.savez(ckpt / "group-0.99.npz", **bogus)  # a stray file with a plausible name
    _same(run_study(_study(), out, resume=True)[0], reference)


def test_an_altered_checkpoint_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "run"
    restore = _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        run_study(_study(), out)
    restore()
    state = next((tmp_path / ".run.partial" / "checkpoint").glob("state-*.npz"))
    arrays = dict(np.load(state))
    arrays["leaf0"] = arrays["leaf0"] + 1  # same structure, other numbers
    with open(state, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(UserError, match="altered since this run wrote it"):
        run_study(_study(), out, resume=True)


@pytest.mark.parametrize("what", ["leaf", "record"])
def test_a_checkpoint_with_arrays_of_the_wrong_length_is_refused(tmp_path, monkeypatch, what):
    out = tmp_path / "run"
    restore = _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        run_study(_study(), out)
    restore()
    ckpt = tmp_path / ".run.partial" / "checkpoint"
    state = next(ckpt.glob("state-*.npz"))
    arrays = dict(np.load(state))
    key = "leaf0" if what == "leaf" else "rec_loss"
    arrays[key] = arrays[key][:1]
    with open(state, "wb") as f:
        np.savez(f, **arrays)
    manifest = json.loads((ckpt / "manifest.json").read_text())  # consistent, checksum and all
    entry = next(e for e in manifest["entries"].values() if e["file"] == state.name)
    entry["sha256"] = checkpoint._sha256(state)
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="shape"):
        run_study(_study(), out, resume=True)


# ------------------------------------------------------------------ what --overwrite may do


def test_overwrite_never_replaces_a_directory_sigjax_did_not_write(tmp_path):
    out = tmp_path / "project"
    (out / "src").mkdir(parents=True)
    (out / "config.json").write_text('{"mine": true}\n')
    (out / "src" / "main.py").write_text("print('precious')\n")
    before = _snapshot(tmp_path)
    for kw in ({"overwrite": True}, {"overwrite": True, "resume": True}, {}):
        with pytest.raises(UserError, match="did not write"):
            run_study(_study(), out, **kw)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("again", [{"resume": True}, {"resume": True, "overwrite": True}])
def test_resume_continues_an_interrupted_overwrite(tmp_path, monkeypatch, reference, again):
    out = tmp_path / "run"
    run_study(_study(**{"optim.lr": [0.3, 0.7]}), out)  # an earlier, finished run
    restore = _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted, match="--resume"):
        run_study(_study(), out, overwrite=True)
    restore()
    assert results.load(out / "results.nc").lr.values.tolist() == [0.3, 0.7]  # still there
    _same(run_study(_study(), out, **again)[0], reference)
    _same(results.load(out / "results.nc"), reference)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


# ---------------------------------------------------------------- crashes and faults


def test_a_crash_is_reported_as_a_crash(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    restore = _interrupt_after(monkeypatch, 2, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        run_study(_study(), out)
    restore()
    with pytest.raises(UserError, match=r"failed at .* \(RuntimeError: boom\).*--resume"):
        run_study(_study(), out)
    _same(run_study(_study(), out, resume=True)[0], reference)


def test_a_killed_run_is_reported_as_killed(tmp_path, monkeypatch):
    out = tmp_path / "run"
    restore = _interrupt_after(monkeypatch, 2)
    with pytest.raises(Interrupted):
        run_study(_study(), out)
    restore()
    rundir.write_status(tmp_path / ".run.partial", "running")  # what SIGKILL leaves
    with pytest.raises(UserError, match="stopped without finishing"):
        run_study(_study(), out)


def _disk_full_on(monkeypatch, module, name, n):
    original = getattr(module, name)
    calls = []

    def full(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, full)
    return lambda: monkeypatch.setattr(module, name, original)


def test_disk_full_during_a_checkpoint_keeps_the_last_one(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    restore = _disk_full_on(monkeypatch, checkpoint.np, "savez", 3)
    with pytest.raises(Fault, match="No space left on device.*kept in .*--resume"):
        run_study(_study(), out)
    restore()
    ckpt = tmp_path / ".run.partial" / "checkpoint"
    assert not list(ckpt.glob("*.tmp"))  # no half-written file
    _same(run_study(_study(), out, resume=True)[0], reference)


def test_disk_full_while_writing_results_keeps_the_training(tmp_path, monkeypatch, reference):
    out = tmp_path / "run"
    restore = _disk_full_on(monkeypatch, results, "save", 1)
    with pytest.raises(Fault, match="No space left on device while writing .*training is saved"):
        run_study(_study(), out)
    restore()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.partial"]  # no temp directory
    inits = []
    original = train.Program.init
    monkeypatch.setattr(train.Program, "init", lambda s, *a: inits.append(1) or original(s, *a))
    ds = run_study(_study(), out, resume=True)[0]
    assert inits == []  # nothing was trained again
    _same(ds, reference)


def test_a_failing_report_keeps_the_results(tmp_path, reference):
    def report(ds, out):
        raise ValueError("only 0-dimensional arrays can be converted to Python scalars")

    out = tmp_path / "run"
    with pytest.raises(Fault, match="report failed .*ValueError.* saved in"):
        run_study(dataclasses.replace(_study(), report=report), out)
    _same(results.load(out / "results.nc"), reference)
    assert (out / "summary.csv").is_file() and (out / "config.json").is_file()
    assert "Traceback" in (out / "report_error.txt").read_text()
    assert rundir.is_run_dir(out)


def test_a_read_only_out_is_one_line(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".run.lock"))

    monkeypatch.setattr(rundir.os, "open", refuse)
    argv = ["run", "sigmoid_convergence", "--out", str(tmp_path / "run"), "--quiet"]
    argv += ["--set", "train.steps=20", "--grid", "model.activation=tanh"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("sigjax: error: cannot write beside") and "Read-only file system" in err


# ------------------------------------------------------------------------------- seeds


def test_seeds_above_32_bits_are_refused_and_below_are_distinct(capsys):
    argv = ["run", "--plan", "--grid", "seed=0,4294967296"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "seed must be an integer below 2**32" in err
    cfg = _study().config
    axes = _study(seed=[0, 2**31, 2**32 - 1], **{"optim.lr": [0.1]}).axes()
    ds = sweep.run(dataclasses.replace(cfg), axes)
    first = ds.loss.isel(step=0).values.ravel()
    assert len(set(first.tolist())) == 3  # three distinct initial networks


def test_two_runs_on_one_out_never_mix(tmp_path, reference):
    """The issue's case: a second run with --overwrite starts while the first one runs."""
    out = tmp_path / "run"
    args = ["run", "sigmoid_convergence", "--out", str(out), "--quiet"]
    args += [f"--set={k}={v}" for k, v in SETS.items()]
    first = [f"--grid={k}={','.join(map(str, v))}" for k, v in GRIDS.items()]
    slow = (  # each checkpoint takes a while, so the second run arrives mid-run
        "import sys, time\n"
        "from sigjax.engine import checkpoint\n"
        "from sigjax.cli import main\n"
        "save = checkpoint.Store.save_state\n"
        "checkpoint.Store.save_state = lambda *a: (save(*a), time.sleep(0.3))[0]\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    env = subprocess_env()
    proc = subprocess.Popen(
        [sys.executable, "-c", slow, *args, *first],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    manifest = tmp_path / ".run.partial" / "checkpoint" / "manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline and not manifest.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    second = [*args, "--overwrite", "--grid=model.activation=tanh", "--grid=model.depth=1"]
    second += ["--grid=optim.lr=0.3,0.7", "--grid=seed=0,1"]
    done = subprocess.run(
        [sys.executable, "-m", "sigjax.cli", *second], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    assert f"in use by a running sigjax (pid {proc.pid}" in done.stderr
    assert done.stderr.count("\n") == 1
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    _same(results.load(out / "results.nc"), reference)  # the first run's numbers and labels


def test_a_run_recording_the_loss_alone_writes_its_summary(tmp_path):
    study = _study().with_overrides({"train.record": "loss"})
    ds, path, _ = run_study(study, tmp_path / "run")
    table = pd.read_csv(path / "summary.csv")
    assert "grad_norm" not in ds and "grad_ratio_init" not in table
    np.testing.assert_allclose(table.final_loss, ds.loss.isel(step=-1).values.ravel(), rtol=1e-6)
