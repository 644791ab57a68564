"""Training as a pure function: `make_train(cfg)(hparams, key) -> (state, trajectory)`.

The loop is a `lax.scan` over *log segments*: each segment measures the model (loss, per-layer
gradient norms, activation statistics) on the step's minibatch, applies that step's update, and
then takes `log_every - 1` plain steps in an inner scan. After the last segment the final model
is measured once more, so a trajectory has `steps // log_every + 1` records at steps
0, log_every, …, steps.

Keys: `fold_in(key, 0)` draws the initial weights and `fold_in(key, 1)` the minibatches
(`fold_in(data_key, step)` at each step), so a run split into segments draws exactly the same
numbers as one run straight through.

The model is the family `model.arch` names (`sigjax.nn.models`): its mutable state (e.g. BatchNorm
running averages, `TrainState.model_state`) is updated by each step's train-mode forward pass,
and the test metrics run it in eval mode. What a logged step records is a `Record` of named
arrays: the metrics `sigjax.engine.metrics.recorded` lists for the config (`train.record`, the test
split, `train.metrics`).

Divergence: when a step's loss is non-finite or above `train.diverge_factor` × the step-0 loss,
or its update makes a parameter (or the model state) non-finite, the member keeps its last good
parameters, records `diverged_at = step` and records NaN after that step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sigjax import data as data_lib
from sigjax.config import DYNAMIC_KEYS, Config, get
from sigjax.engine import metrics
from sigjax.errors import UserError
from sigjax.nn import activations, initializers, losses, models, optim

RECORDS = ("all", "gradients", "loss")  # train.record: everything / loss + grad norms / loss
PRECISIONS = ("float32", "bf16")
HPARAMS = tuple(k.split(".")[-1] for k in DYNAMIC_KEYS if k != "seed")
Hparams = dict  # name in HPARAMS -> float32 scalar (traced)
SEED_LIMIT = 2**32  # seeds are drawn into 32-bit keys


@flax.struct.dataclass
class Record:
    """What is measured at a logged step: metric name -> () or (n_layers,) array (with a
    leading time axis (T, …) in a trajectory, and a member axis in front of that in a sweep).

    Read as `rec["grad_norm"]` or `rec.grad_norm`; a known metric that was not recorded reads
    as None."""

    values: dict[str, jax.Array]

    def __getattr__(self, name: str):
        values = self.__dict__.get("values")  # absent while a copy is being built
        if values is not None and name in values:
            return values[name]
        if name in metrics.REGISTRY:
            return None
        raise AttributeError(f"Record has no metric {name!r}")

    def __getitem__(self, name: str) -> jax.Array:
        return self.values[name]

    def __contains__(self, name: str) -> bool:
        return name in self.values


@flax.struct.dataclass
class TrainState:
    params: Any
    model_state: Any  # the model's mutable collections (models.State), {} for the MLP
    opt_state: Any
    step: jax.Array  # int32: steps taken
    diverged_at: jax.Array  # int32: step that diverged, -1 if none
    loss0: jax.Array  # the loss measured at step 0 (the yardstick for blow-ups)


@flax.struct.dataclass
class Trajectory:
    records: Record  # each field with a leading (T,) axis
    diverged_at: jax.Array


def hparams_of(cfg: Config, scalar: Callable = jnp.float32) -> Hparams:
    """The config's dynamic values as float32 scalars (the seed excepted: it becomes the key).

    `scalar=np.float32` gives NumPy scalars: a planner sizing thousands of groups wants no
    device arrays (jax.jit caches NumPy and jax scalars as different signatures)."""
    return {k.split(".")[-1]: scalar(get(cfg, k)) for k in DYNAMIC_KEYS if k != "seed"}


def check_config(cfg: Config, hparams: bool = True) -> None:
    """UserError for any value the engine cannot run (checked before anything compiles)."""
    activations.get(cfg.model.activation)
    activations.get(cfg.model.head_activation)
    models.get(cfg.model.arch)
    metrics.requested(cfg)
    initializers.canonical(cfg.init.scheme)
    losses.get(cfg.train.loss)
    if cfg.optim.name not in optim.names():
        raise UserError(
            f"unknown optimizer {cfg.optim.name!r}; choose from {', '.join(optim.names())}"
        )
    if cfg.data.name not in data_lib.DATASETS:
        raise UserError(
            f"unknown dataset {cfg.data.name!r}; choose from {', '.join(data_lib.DATASETS)}"
        )
    for key, value, choices in (
        ("train.record", cfg.train.record, RECORDS),
        ("train.precision", cfg.train.precision, PRECISIONS),
        ("optim.schedule", cfg.optim.schedule, optim.SCHEDULES),
    ):
        if value not in choices:
            raise UserError(f"unknown {key} {value!r}; choose from {', '.join(choices)}")
    if cfg.optim.schedule == "constant" and cfg.optim.warmup > 0:
        # The constant schedule is the unscheduled program: it has no warmup to apply.
        raise UserError(
            f"optim.warmup={cfg.optim.warmup:g} needs a schedule; optim.schedule=constant has "
            f"no warmup (choose one of {', '.join(optim.SCHEDULES[1:])})"
        )
    if not cfg.train.diverge_factor > 1:
        raise UserError(f"train.diverge_factor must exceed 1, got {cfg.train.diverge_factor}")
    positive = {
        "model.width": cfg.model.width,
        "train.steps": cfg.train.steps,
        "train.log_every": cfg.train.log_every,
        "data.n_train": cfg.data.n_train,
        "data.dim": cfg.data.dim,
        "data.out_dim": cfg.data.out_dim,
    }
    nonneg = {
        "model.depth": cfg.model.depth,
        "train.batch_size": cfg.train.batch_size,
        "data.n_test": cfg.data.n_test,
    }
    for key, v in positive.items():
        if v <= 0:
            raise UserError(f"{key} must be positive, got {v}")
    for key, v in nonneg.items():
        if v < 0:
            raise UserError(f"{key} must be non-negative, got {v}")
    if cfg.model.out_dim is not None and cfg.model.out_dim <= 0:
        raise UserError(
            f"model.out_dim must be positive, or none to take it from the data; "
            f"got {cfg.model.out_dim}"
        )
    # Loss, targets and output width must agree: otherwise a loss broadcasts (B, k) against
    # (B,) or (B, m) silently, or a label without a logit makes every loss NaN.
    classes, loss, out = data_lib.n_classes(cfg.data), cfg.train.loss, cfg.model.out_dim
    task = f"data.name={cfg.data.name}"
    if classes and loss == "mse":
        raise UserError(
            f"train.loss=mse needs real-valued targets, but {task} has {classes} class labels; "
            "use train.loss=softmax_ce"
        )
    if not classes and loss == "softmax_ce":
        raise UserError(
            f"train.loss=softmax_ce needs class labels, but {task} has real-valued targets; "
            "use train.loss=mse or a classification task"
        )
    if classes and loss == "sigmoid_bce" and (classes != 2 or out != 1):
        raise UserError(
            f"train.loss=sigmoid_bce on class labels needs 2 classes and model.out_dim=1, but "
            f"{task} has {classes} classes and model.out_dim={out or 'none'}; use softmax_ce"
        )
    if classes and loss == "softmax_ce" and out is not None and out < classes:
        raise UserError(
            f"model.out_dim={out} gives fewer logits than the {classes} classes of {task}; "
            "set model.out_dim=none to take it from the data"
        )
    if not classes and out is not None and out != cfg.data.out_dim:
        raise UserError(
            f"model.out_dim={out} must equal data.out_dim={cfg.data.out_dim}, the targets of "
            f"{task}; set model.out_dim=none to take it from the data"
        )
    seed = cfg.data.seed
    integer = isinstance(seed, int | np.integer) and not isinstance(seed, bool)
    if not (integer and 0 <= seed < SEED_LIMIT):
        # NumPy's generators and MNIST-1D take a seed of 32 bits at most
        raise UserError(f"data.seed must be an integer in 0..2**32-1, got {seed!r}")
    if cfg.train.steps % cfg.train.log_every:
        raise UserError(
            f"train.steps ({cfg.train.steps}) must be a multiple of "
            f"train.log_every ({cfg.train.log_every})"
        )
    if hparams:  # a sweep checks its groups' shared dynamic values once (sweep.check)
        check_hparams({k.split(".")[-1]: get(cfg, k) for k in DYNAMIC_KEYS})


def check_hparams(values: dict[str, Any]) -> None:
    """UserError for a dynamic value out of range (values may be scalars or arrays)."""
    rules = {
        "lr": (0, False),
        "momentum": (0, True),
        "b1": (0, True),
        "b2": (0, True),
        "eps": (0, True),
        "decay": (0, True),
        "weight_decay": (0, True),
        "clip": (0, True),
        "warmup": (0, True),
        "sigma_w2": (0, True),
        "sigma_b2": (0, True),
        "residual_scale": (0, True),
        "seed": (0, True),
    }
    for name, v in values.items():
        arr = np.asarray(v, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise UserError(f"{name} must be finite, got {arr[~np.isfinite(arr)].flat[0]:g}")
        low, inclusive = rules[name]
        bad = arr < low if inclusive else arr <= low
        if np.any(bad):
            what = "non-negative" if inclusive else "positive"
            raise UserError(f"{name} must be {what}, got {arr[bad].flat[0]:g}")
        if name in ("momentum", "b1", "b2", "decay", "warmup") and np.any(arr >= 1):
            raise UserError(f"{name} must be below 1, got {arr[arr >= 1].flat[0]:g}")
        if name == "seed" and np.any((arr >= SEED_LIMIT) | (arr != np.floor(arr))):
            bad = arr[(arr >= SEED_LIMIT) | (arr != np.floor(arr))].flat[0]
            # a key holds 32 bits of seed: 2**32 would train exactly like 0
            raise UserError(f"seed must be an integer below 2**32 = {SEED_LIMIT}, got {bad:.0f}")


@dataclass(frozen=True)
class Program:
    """The static part of a run (config and model); its methods are pure functions of arrays.

    Usable piecewise (`init`, `advance`, `finish`) for segmented runs; `train` is the whole run.
    """

    cfg: Config
    in_dim: int
    out_dim: int
    # content hash of the config's activation functions (activations.fingerprint): the config
    # holds only their names, and a compiled program must not outlive a re-registered function
    fn_token: str = ""
    # content hashes of the model family's code and of the recorded metrics' functions
    # (models.token, metrics.fingerprint), for the same reason
    model_token: str = ""
    metric_token: str = ""
    # content hash of the data (data.fingerprint): a cached program is reused only on equal data
    data_token: str = ""

    @property
    def family(self) -> models.ModelFamily:
        return models.get(self.cfg.model.arch)

    @property
    def model(self) -> flax.linen.Module:
        """The module of the config's model family (`model.arch`)."""
        return self.family.build(self.cfg, self.in_dim, self.out_dim)

    @functools.cached_property
    def layers(self) -> tuple[models.Layer, ...]:
        """Each layer's weight and bias paths in network order (from the parameters' shapes)."""
        return tuple(self.family.layers(models.shapes(self.family, self.model, self.in_dim)[0]))

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_logs(self) -> int:
        """Logged records per run, including the final one."""
        return self.cfg.train.steps // self.cfg.train.log_every + 1

    def optimizer(self, hp: Hparams) -> optax.GradientTransformation:
        """clip → optimizer → schedule over train.steps (the step count lives in its state)."""
        o = self.cfg.optim
        return optim.make(o.name, hp, schedule=o.schedule, steps=self.cfg.train.steps)

    def init(self, hp: Hparams, key: jax.Array) -> TrainState:
        # the traced values a family names in `hparams` (resmlp: residual_scale) go to its init
        named = {k: hp[k] for k in getattr(self.family, "hparams", ())}
        params, model_state = self.family.init(
            self.model,
            jax.random.fold_in(key, 0),
            self.in_dim,
            hp["sigma_w2"],
            hp["sigma_b2"],
            **named,
        )
        return TrainState(
            params=params,
            model_state=model_state,
            opt_state=self.optimizer(hp).init(params),
            step=jnp.int32(0),
            diverged_at=jnp.int32(-1),
            loss0=jnp.float32(jnp.nan),
        )

    def loss_and_aux(self, params, x, y, model_state=None):
        """The loss on (x, y) in train mode and (output, intermediates, updated model state)."""
        state = {} if model_state is None else model_state
        out, inter, new_state = self.family.apply(self.model, params, state, x, train=True)
        return losses.get(self.cfg.train.loss)(out, y), (out, inter, new_state)

    def measure(
        self, data: data_lib.Data, params, x, y, model_state=None
    ) -> tuple[Any, Record, Any]:
        """Gradients at params on (x, y), the Record of this step (the recorded metrics), and
        the model state as the train-mode pass left it."""
        state = {} if model_state is None else model_state
        grad_fn = jax.value_and_grad(self.loss_and_aux, has_aux=True)
        (loss, (out, inter, new_state)), grads = grad_fn(params, x, y, state)
        ctx = metrics.Context(
            cfg=self.cfg,
            family=self.family,
            module=self.model,
            layers=self.layers,
            params=params,
            grads=grads,
            model_state=state,
            inter=inter,
            output=out,
            x=x,
            y=y,
            loss=loss,
            data=data,
        )
        rec = Record(metrics.compute(metrics.recorded(self.cfg, data.has_test), ctx))
        return grads, rec, new_state

    def _batch(self, data, key, step):
        return data_lib.batch(data, self.data_key(key, step), self.cfg.train.batch_size)

    @staticmethod
    def data_key(key: jax.Array, step: jax.Array) -> jax.Array:
        """The key of the minibatch a member with `key` trains on at `step`."""
        return jax.random.fold_in(jax.random.fold_in(key, 1), step)

    def step(self, data, hp, key, state: TrainState) -> tuple[TrainState, Record]:
        """One update (frozen if the member has diverged) and the Record measured before it."""
        x, y = self._batch(data, key, state.step)
        grads, rec, model_state = self.measure(data, state.params, x, y, state.model_state)
        updates, opt_state = self.optimizer(hp).update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        alive = state.diverged_at < 0
        loss0 = jnp.where(state.step == 0, rec["loss"], state.loss0)
        bounded = rec["loss"] <= self.cfg.train.diverge_factor * loss0  # False for NaN/inf too
        ok = alive & bounded & metrics.all_finite((params, model_state))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)  # noqa: E731
        new_state = TrainState(
            params=keep(params, state.params),
            model_state=keep(model_state, state.model_state),
            opt_state=keep(opt_state, state.opt_state),
            step=state.step + 1,
            diverged_at=jnp.where(alive & ~ok, state.step, state.diverged_at),
            loss0=loss0,
        )
        return new_state, mask(rec, alive)

    def advance(self, data, hp, key, state: TrainState, n_segments: int, unroll: int = 1):
        """n_segments log segments from state: (state, Record with leading (n_segments,)).

        `unroll` steps run per loop iteration (of the inner loop when log_every > 1, else of
        the scan over segments): same numbers, fewer loop trips for tiny models.
        """
        inner = self.cfg.train.log_every - 1

        def segment(st, _):
            st, rec = self.step(data, hp, key, st)
            st = jax.lax.fori_loop(
                0,
                inner,
                lambda _, s: self.step(data, hp, key, s)[0],
                st,
                unroll=max(1, min(unroll, inner)),
            )
            return st, rec

        outer = 1 if inner else max(1, min(unroll, n_segments))
        return jax.lax.scan(segment, state, None, length=n_segments, unroll=outer)

    def finish(self, data, hp, key, state: TrainState) -> Record:
        """The Record of the final model (no update)."""
        x, y = self._batch(data, key, state.step)
        _, rec, _ = self.measure(data, state.params, x, y, state.model_state)
        return mask(rec, state.diverged_at < 0)

    def train(self, data, hp: Hparams, key: jax.Array) -> tuple[TrainState, Trajectory]:
        state = self.init(hp, key)
        state, recs = self.advance(data, hp, key, state, self.n_logs - 1)
        last = self.finish(data, hp, key, state)
        recs = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), recs, last)
        return state, Trajectory(records=recs, diverged_at=state.diverged_at)


def mask(tree, alive: jax.Array):
    """Every leaf of tree where alive, NaN elsewhere."""
    return jax.tree.map(lambda v: jnp.where(alive, v, jnp.nan), tree)


def program(cfg: Config, data: data_lib.Data) -> Program:
    """The Program of cfg on data; UserError for a config, model or metric it cannot run."""
    check_config(cfg)
    out_dim = cfg.model.out_dim or data.out_dim
    fn_token = activations.fingerprint((cfg.model.activation, cfg.model.head_activation))
    family = models.get(cfg.model.arch)
    module = family.build(cfg, data.in_dim, out_dim)
    models.check(cfg.model.arch, family, module, data.in_dim, out_dim)
    return Program(
        cfg=cfg,
        in_dim=data.in_dim,
        out_dim=out_dim,
        fn_token=fn_token,
        data_token=data_lib.fingerprint(data),
        model_token=models.token(family, module),
        metric_token=metrics.fingerprint(m.name for m in metrics.recorded(cfg, data.has_test)),
    )


def make_train(
    cfg: Config, data: data_lib.Data | None = None
) -> Callable[[Hparams, jax.Array], tuple[TrainState, Trajectory]]:
    """`train(hparams, key)` for cfg: pure, jit- and vmap-able (hparams from `hparams_of`)."""
    data = data_lib.load(cfg.data) if data is None else data
    prog = program(cfg, data)
    return lambda hp, key: prog.train(data, hp, key)
