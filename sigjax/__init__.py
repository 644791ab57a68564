"""sigjax: how activation functions shape gradient flow and convergence, many models at once."""

from __future__ import annotations

# first: gives JAX one host device per core before anything imports JAX (_devices)
from sigjax import _devices  # noqa: F401
from sigjax.engine.metrics import register as register_metric
from sigjax.errors import UserError
from sigjax.nn.activations import register as register_activation
from sigjax.nn.models import register as register_model
from sigjax.nn.optim import register as register_optimizer

__version__ = "0.1.0"
__all__ = [
    "UserError",
    "__version__",
    "register_activation",
    "register_metric",
    "register_model",
    "register_optimizer",
    "run",
]


def run(
    study,
    overrides: dict | None = None,
    grid: dict | None = None,
    *,
    out: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    preset: str | None = None,
    progress: bool = False,
    max_memory: int | str | None = None,
    data=None,
):
    """Run a study from Python and return its results as an `xarray.Dataset`: what
    `sigjax run` does, on the same devices.

    `study` is a registered study's name, the path of a study file (a module-level
    `STUDY = sigjax.study.Study(...)`) or a `Study`. `overrides` fix config keys
    ({"train.steps": 500}), `grid` adds or replaces axes ({"optim.lr": [0.01, 0.1]}; a tuple of
    keys zips them; a value may be an expression string as on the command line, "0.1,0.3",
    "logspace(-3,0,4)"). `preset` is "quick" or "full" (`--quick`, `--full`).

    With `out`, the run directory is written exactly as `sigjax run` writes it (`overwrite`,
    `resume` as `--overwrite`, `--resume`); without, nothing is written. `progress` shows the
    progress bar, `max_memory` bounds a chunk of members (bytes, or a size like "4G").
    `data` (`sigjax.data.from_arrays(...)`) trains a sweep study on a user's arrays in place of
    its config's data.

    Every mistake in what is asked raises `sigjax.UserError` (the message `sigjax run` prints)
    before anything is computed.
    """
    import dataclasses
    import os

    import experiments
    from sigjax.data import Data
    from sigjax.engine import plan, sweep
    from sigjax.study import Study, run_study, uses_sweep

    size = isinstance(max_memory, int) and not isinstance(max_memory, bool) and max_memory > 0
    for name, value, ok, what in (
        (
            "study",
            study,
            isinstance(study, str | os.PathLike | Study),
            "a study name, a study file's path or a sigjax.study.Study",
        ),
        ("preset", preset, preset is None or isinstance(preset, str), "a preset name or None"),
        ("out", out, out is None or isinstance(out, str | os.PathLike), "a path (str or Path)"),
        ("overwrite", overwrite, isinstance(overwrite, bool), "True or False"),
        ("resume", resume, isinstance(resume, bool), "True or False"),
        ("progress", progress, isinstance(progress, bool), "True or False"),
        (
            "max_memory",
            max_memory,
            max_memory is None or size or isinstance(max_memory, str),
            "a positive byte count, a size like '4G' or None",
        ),
        (
            "data",
            data,
            data is None or isinstance(data, Data),
            "a sigjax.data.Data (sigjax.data.from_arrays(...)) or None",
        ),
    ):
        if not ok:
            raise UserError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    if resume and out is None:
        raise UserError("resume=True continues the run in a directory: pass out= as well")
    budget = plan.parse_bytes(max_memory) if isinstance(max_memory, str) else max_memory
    s = study if isinstance(study, Study) else experiments.get(os.fspath(study))
    s = s.preset(preset).with_overrides(overrides, grid)
    if data is not None:
        if not uses_sweep(s):
            raise UserError(
                f"data=: study {s.name} runs its own computation, which reads its data from the "
                "config (data.name=npz, data.path=FILE.npz), not from data="
            )
        fixed = [k for k in overrides or {} if isinstance(k, str) and k.startswith("data.")]
        if fixed:
            raise UserError(f"overrides {fixed[0]}: data= replaces the config's data; drop it")
        cfg, _ = sweep.with_data(s.config, s.axes(), data)
        sweep.check(cfg, s.axes())  # as run_study checks a sweep study, before anything runs
        s = dataclasses.replace(s, config=cfg, compute=_sweep_on(data, budget))
    if out is not None:
        return run_study(
            s, out, overwrite=overwrite, resume=resume, progress=progress, max_memory=budget
        )[0]
    axes = s.axes()
    if uses_sweep(s):
        return sweep.run(s.config, axes, progress=progress, max_memory=budget)
    return s.compute(s.config, axes, progress, None)


def _sweep_on(data, max_memory: int | None):
    """A study's compute that runs the standard sweep on a user's Data."""

    def compute(cfg, axes, progress, store):
        from sigjax.engine import sweep

        return sweep.run(
            cfg, axes, progress=progress, store=store, max_memory=max_memory, data=data
        )

    return compute
