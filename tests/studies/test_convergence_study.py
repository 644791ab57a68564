"""The convergence_rates study on a tiny grid: every part runs, the prediction starts where the
measurement does, the learning rates are the stated multiples of N k/λ_max, the wider net
follows its linearized prediction more closely, and the report writes its tables and figures."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from experiments import convergence_rates as cr
from sigjax import study as study_lib


@pytest.fixture
def tiny_study(monkeypatch):
    monkeypatch.setattr(cr.training, "DEFAULT_ACTIVATIONS", ("tanh",))
    monkeypatch.setattr(cr.training, "DEFAULT_LRS", (0.3, 3.0))
    monkeypatch.setattr(cr.training, "DEFAULT_STEPS", 40)
    monkeypatch.setattr(cr.training, "DEFAULT_SEEDS", (0,))
    monkeypatch.setattr(cr.training, "SAXE_STEPS", 600)
    monkeypatch.setattr(cr.training, "FACTORS", (0.5, 3.0))
    return cr.STUDY.with_overrides(
        {"train.steps": 40, "data.n_train": 24},
        {
            "data.name": ["teacher_regression"],
            "model.activation": ["tanh"],
            "model.width": [32, 1024],
            "seed": [0, 1],
        },
    )


@pytest.mark.slow
def test_the_study_on_a_tiny_grid(tiny_study, tmp_path):
    ds, path, head = study_lib.run_study(tiny_study, tmp_path / "run")
    assert ds.loss.dims == ("task", "activation", "width", "lr_factor", "seed", "step")
    # the prediction starts from the member's own initial loss
    np.testing.assert_allclose(ds.pred_loss.isel(step=0), ds.loss.isel(step=0), rtol=1e-4)
    # learning rates are multiples of η* = N k / median λ_max
    eta = ds.n_targets / ds.lam_max0.median("seed")
    np.testing.assert_allclose(ds.eta_star, eta, rtol=1e-6)
    np.testing.assert_allclose(ds.lr, ds.lr_factor * ds.eta_star, rtol=1e-6)
    gap = cr.tables.gap(ds).sel(lr_factor=0.5).median("seed").squeeze()
    assert float(gap.sel(width=1024)) < float(gap.sel(width=32))
    assert float(gap.sel(width=1024)) < 0.05
    # the kernel at init approaches the infinite-width one
    kg = ds.kernel_gap.median("seed").squeeze()
    assert float(kg.sel(width=1024)) < min(0.1, float(kg.sel(width=32)))
    # at 3 η* the linearized descent diverges; the engine marks the member or its sharpness
    # sits at the edge (eos_at set)
    hot = ds.sel(lr_factor=3.0, width=1024)
    assert bool((hot.diverged_at.notnull() | (hot.eos_at >= 0)).all())
    cold = ds.sel(lr_factor=0.5, width=1024)
    assert bool((cold.eos_at == -1).all()) and bool(cold.diverged_at.isnull().all())
    # parts 2 and 3
    assert ds.default_sharpness.dims == (
        "default_activation",
        "default_lr",
        "default_seed",
        "default_step",
    )
    assert head["saxe_max_mode_error"]["decoupled_vs_discrete"] < 1e-3
    assert head["saxe_max_mode_error"]["decoupled_vs_exact"] < 0.05
    summary = pd.read_csv(path / "summary.csv")
    assert "eos_at" in summary and len(summary) == ds.loss.isel(step=0).size
    table = (path / "table.md").read_text()
    assert "Width trend" in table and "| teacher_regression | tanh | 1024 |" in table
    for name in ("curves", "width", "stability", "deep_linear"):
        assert (path / "figures" / f"convergence_rates_{name}.png").exists()


def test_the_width_slope_stable_factor_and_gap_by_hand():
    widths = [64, 256, 1024]
    da = xr.DataArray(3.0 / np.sqrt(widths), dims="width", coords={"width": widths})
    assert float(cr.tables.width_slope(da)) == pytest.approx(-0.5)
    steps = [0, 5, 10]
    loss = np.array([[[1.0, 0.5, 0.2]], [[1.0, 0.6, 0.3]]])  # (lr_factor, seed, step)
    ds = xr.Dataset(
        {
            "loss": (("lr_factor", "seed", "step"), loss),
            "pred_loss": (("lr_factor", "seed", "step"), loss - [0.0, 0.1, 0.05]),
            "diverged_at": (("lr_factor", "seed"), [[np.nan], [5.0]]),
        },
        coords={"lr_factor": [0.5, 2.0], "seed": [0], "step": steps},
    )
    assert float(cr.tables.stable_factor(ds)) == 0.5  # 2.0 η* diverged
    np.testing.assert_allclose(cr.tables.gap(ds).values.ravel(), [0.1, 0.1])  # max |ΔL| / L_0
