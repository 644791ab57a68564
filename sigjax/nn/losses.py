"""Losses, each mean over the batch: (outputs (B, out), targets) -> scalar."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from sigjax.errors import UserError


def mse(out: jax.Array, y: jax.Array) -> jax.Array:
    """Mean over batch and outputs of (out - y)²: the seed blog's loss."""
    return jnp.mean((out - y) ** 2)


def softmax_ce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy (negative log-likelihood) with integer labels (B,)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def sigmoid_bce(logits: jax.Array, y: jax.Array) -> jax.Array:
    """Binary cross-entropy on logits; y in [0, 1] of the same shape (or (B,) labels)."""
    y = y.reshape(logits.shape).astype(logits.dtype)
    return optax.sigmoid_binary_cross_entropy(logits, y).mean()


def accuracy(out: jax.Array, y: jax.Array, loss: str) -> jax.Array:
    """Share of correct predictions (classification losses only)."""
    if loss == "softmax_ce":
        return jnp.mean(out.argmax(axis=-1) == y)
    return jnp.mean((out > 0) == (y.reshape(out.shape) > 0.5))


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "mse": mse,
    "softmax_ce": softmax_ce,
    "sigmoid_bce": sigmoid_bce,
}
CLASSIFICATION = ("softmax_ce", "sigmoid_bce")


def get(name: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    if name not in LOSSES:
        raise UserError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    return LOSSES[name]
