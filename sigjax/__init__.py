"""sigjax: how activation functions shape gradient flow and convergence, many models at once."""

from __future__ import annotations

__version__ = "0.1.0"


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
    written exactly as `sigjax run` writes it; without, nothing is written.
    """
    import experiments
    from sigjax.study import run_study

    s = experiments.get(study).preset(preset).with_overrides(overrides, grid)
    if out is not None:
        return run_study(s, out, overwrite=overwrite)[0]
    axes = s.axes()
    return s.compute(s.config, axes, False, None)
