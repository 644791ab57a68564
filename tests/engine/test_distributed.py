"""Two JAX processes on localhost (jax.distributed over gloo) equal one process."""

import dataclasses
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import cli_args, subprocess_env

import experiments
from sigjax.engine import results
from sigjax.study import run_study

SETS = {"train.steps": 20, "train.log_every": 10, "model.width": 8}
GRIDS = {
    "model.activation": ["tanh", "relu"],
    "model.depth": [1],
    "optim.lr": [0.1, 0.3, 0.5],
    "seed": [0, 1, 2],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two processes, each compiling its programs: about a minute
def test_two_processes_equal_one(tmp_path):
    out = tmp_path / "run"
    args = cli_args("sigmoid_convergence", out, SETS, GRIDS)
    args += ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    env = subprocess_env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sigjax.cli", *args, "--process-id", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (0, 1)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    assert "process 1: done" in outs[1][0]
    two = results.load(out / "results.nc")
    assert two.attrs["process_count"] == "2"
    study = dataclasses.replace(
        experiments.get("sigmoid_convergence").with_overrides(SETS, GRIDS), report=None
    )
    one, _, _ = run_study(study, tmp_path / "one")
    # vmap widths differ (5 vs 9 members): equal up to float reassociation
    for name in one.data_vars:
        np.testing.assert_allclose(
            two[name].values, one[name].values, rtol=1e-4, atol=1e-6, err_msg=name
        )
    assert not list(tmp_path.glob(".run.partial*"))
