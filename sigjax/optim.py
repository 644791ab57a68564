"""Optimizers from optax, built from traced hyperparameters.

`make(name, hp)` is called *inside* the traced training function with `hp` a dict of traced
scalars, so the learning rate (and momentum, betas, ...) are runtime values: one compiled
program serves every value, and vmap gives every member its own.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import optax

from sigjax.errors import UserError

NAMES = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad")


def make(name: str, hp: Mapping[str, jax.Array]) -> optax.GradientTransformation:
    """The optax transformation `name` with hyperparameters from hp (keys: DYNAMIC optim.*)."""
    lr = hp["lr"]
    if name == "sgd":
        tx = optax.sgd(lr)
    elif name == "momentum":
        tx = optax.sgd(lr, momentum=hp["momentum"])
    elif name == "nesterov":
        tx = optax.sgd(lr, momentum=hp["momentum"], nesterov=True)
    elif name == "adam":
        tx = optax.adam(lr, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])
    elif name == "rmsprop":
        tx = optax.rmsprop(lr, decay=hp["decay"], eps=hp["eps"])
    elif name == "adagrad":
        tx = optax.adagrad(lr, eps=hp["eps"])
    else:
        raise UserError(f"unknown optimizer {name!r}; choose from {', '.join(NAMES)}")
    # Decoupled weight decay, applied after the optimizer's own scaling: p -= lr * wd * p.
    return optax.chain(tx, optax.add_decayed_weights(-lr * hp["weight_decay"]))
