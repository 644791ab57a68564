"""Tiny configs and subprocess environments shared by tests."""

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from sigjax import config
from sigjax.config import Config

DEVICE_FLAG = "--xla_force_host_platform_device_count"


def subprocess_env(devices: int = 1, **extra: str) -> dict[str, str]:
    """os.environ for a child process with `devices` CPU host devices: any device count in
    XLA_FLAGS is replaced (a test may have left its own there), other XLA flags are kept (the
    child compiles as the tests do, see conftest.py), plus `extra`."""
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_FLAG)]
    flags.append(f"{DEVICE_FLAG}={devices}")
    env = os.environ | {"XLA_FLAGS": " ".join(flags), "JAX_PLATFORMS": "cpu"}
    return env | {"SIGJAX_HOST_DEVICES": str(devices), **extra}


def tiny(**updates) -> Config:
    base = {
        "data.name": "teacher",
        "data.n_train": 64,
        "data.n_test": 32,
        "data.dim": 8,
        "data.out_dim": 3,
        "model.depth": 2,
        "model.width": 16,
        "model.activation": "tanh",
        "train.loss": "softmax_ce",
        "train.batch_size": 16,
        "train.steps": 30,
        "train.log_every": 5,
        "optim.lr": 0.1,
    }
    return config.replace(Config(), base | updates)


def cli_args(study: str, out: Path, sets: Mapping, grids: Mapping) -> list[str]:
    """`sigjax run STUDY --out OUT --quiet --set k=v ... --grid k=a,b ...` (without `sigjax`)."""
    args = ["run", study, "--out", str(out), "--quiet"]
    args += [f"--set={k}={v}" for k, v in sets.items()]
    return args + [f"--grid={k}={','.join(map(str, v))}" for k, v in grids.items()]


def sigkill_after(argv: Sequence[str], env: dict, where: Path, pattern: str) -> None:
    """Start argv and SIGKILL it as soon as a file matching `pattern` appears in `where` (a
    checkpoint the run wrote), or after 120 s if none does; fails if the child exits first.
    Callers check that the run did not finish before the kill."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list(where.glob(pattern)):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def assert_same_results(a, b) -> None:
    """Every variable of results Dataset a equals b's, bit for bit."""
    import numpy as np

    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
