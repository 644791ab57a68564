"""Tiny configs and subprocess environments shared by tests."""

import os

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
