"""sigjax: how activation functions shape gradient flow and convergence, many models at once."""

from __future__ import annotations

from sigjax.activations import register as register_activation
from sigjax.errors import UserError
from sigjax.optim import register as register_optimizer

__version__ = "0.1.0"
__all__ = ["UserError", "__version__", "register_activation", "register_optimizer", "run"]


def run(
    study: str,
    overrides: dict | None = None,
    grid: dict | None = None,
    *,
    out: str | None = None,
    overwrite: bool = False,
    preset: str | None = None,
):
    """Run a study from Python and return its results as an `xarray.Dataset`.

    `overrides` fix config keys ({"train.steps": 500}), `grid` adds or replaces axes
    ({"optim.lr": [0.01, 0.1]}; a tuple of keys zips them). With `out`, the run directory is
    written exactly as `sigjax run` writes it; without, nothing is written. A grid value may
    also be an expression string as on the command line ("0.1,0.3", "logspace(-3,0,4)").

    Every mistake in what is asked raises `sigjax.UserError` (the message `sigjax run` prints)
    before anything is computed.
    """
    import os

    import experiments
    from sigjax.study import run_study

    for name, value, ok, what in (
        ("study", study, isinstance(study, str), "a study name like 'sigmoid_convergence'"),
        ("preset", preset, preset is None or isinstance(preset, str), "a preset name or None"),
        ("out", out, out is None or isinstance(out, str | os.PathLike), "a path (str or Path)"),
        ("overwrite", overwrite, isinstance(overwrite, bool), "True or False"),
    ):
        if not ok:
            raise UserError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    s = experiments.get(study).preset(preset).with_overrides(overrides, grid)
    if out is not None:
        return run_study(s, out, overwrite=overwrite)[0]
    axes = s.axes()
    return s.compute(s.config, axes, False, None)
