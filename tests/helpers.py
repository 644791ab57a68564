"""Tiny configs shared by tests."""

from sigjax import config
from sigjax.config import Config


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
