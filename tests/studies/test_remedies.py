import json
import math

import numpy as np
import pytest

from experiments import remedies as study
from sigjax import analysis, config, theory
from sigjax import data as data_lib
from sigjax.engine import results
from sigjax.errors import UserError
from sigjax.study import run_study


def test_critical_init_lies_on_the_chi1_line():
    w, b = study.training.critical_init()
    assert b == study.training.CRITICAL_SIGMA_B2
    assert theory.chi_1("sigmoid", w, b) == pytest.approx(1.0, abs=1e-6)
    # and off it on either side: χ₁ grows with σ_w² at fixed σ_b²
    assert theory.chi_1("sigmoid", 0.9 * w, b) < 1 < theory.chi_1("sigmoid", 1.1 * w, b)
    cfg = study.training.remedy_config("critical", study.CONFIG)
    assert (cfg.init.sigma_w2, cfg.init.sigma_b2) == (w, b)


def test_bn_growth_prediction_closed_forms():
    # ReLU: E[φ'²] = 1/2, Var φ = 1/2 - 1/(2π): ratio π/(π - 1); a linear φ: ratio 1
    assert study.checks.bn_growth_prediction("relu") == pytest.approx(
        math.sqrt(math.pi / (math.pi - 1))
    )
    assert study.checks.bn_growth_prediction("identity") == pytest.approx(1.0, abs=1e-6)
    # the sigmoid by Monte Carlo over z ~ N(0, 1)
    z = np.random.default_rng(0).standard_normal(2_000_000)
    s = 1 / (1 + np.exp(-z))
    mc = math.sqrt(np.mean((s * (1 - s)) ** 2) / np.var(s))
    assert study.checks.bn_growth_prediction("sigmoid") == pytest.approx(mc, rel=2e-3)


def test_growth_factor_of_a_geometric_profile():
    depth, g = 7, 1.3
    norms = g ** -np.arange(depth + 1.0)  # layer 1 .. depth+1, shrinking toward the output
    assert study.checks.growth_factor(norms, depth) == pytest.approx(g)


def test_validation_split_is_disjoint_from_training_rows():
    full = data_lib.load(config.replace(study.CONFIG, {"data.name": "digits"}).data)
    n = len(full.x_train)
    tr = full.hold_out(n // study.training.VAL_FRACTION)
    rows = lambda a: {r.tobytes() for r in np.asarray(a)}  # noqa: E731
    assert not rows(tr.x_train) & rows(tr.x_test)  # the "test" slot holds the validation split
    assert len(tr.x_train) + len(tr.x_test) == n and len(tr.x_test) == n // 8
    np.testing.assert_array_equal(tr.x_test, full.x_train[n - n // 8 :])  # the last eighth
    with pytest.raises(UserError, match="cannot hold out"):
        full.hold_out(n)


def test_pick_rate_is_the_argmax_of_mean_validation_accuracy():
    val = np.array([[0.2, 0.3], [0.6, np.nan], [0.4, 0.45], [0.1, 0.1]])
    # means (NaN = diverged = 0): 0.25, 0.3, 0.425, 0.1
    assert study.training.pick_rate(val) == 2


def test_remedies_that_differ_in_init_and_traced_values_share_a_program():
    groups = study.training.groups_of(study.CONFIG, list(study.training.REMEDIES))
    together = next(g for g in groups if "plain" in g.cfgs)
    assert {"plain", "glorot", "he", "critical", "clip"} <= set(together.cfgs)
    res = next(g for g in groups if "residual" in g.cfgs)
    assert set(res.cfgs) == {"residual", "residual_sqrt"}
    depth = study.CONFIG.model.depth
    assert res.cfgs["residual_sqrt"].init.residual_scale == pytest.approx(depth**-0.5)
    assert len({study.training.static_key(c) for g in groups for c in g.cfgs.values()}) == len(
        groups
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, monkeypatch_module):
    """The study on a tiny grid: digits, depth 3, width 8, 3 remedies in 2 programs."""
    m = monkeypatch_module
    m.setattr(
        study.training,
        "REMEDIES",
        {k: study.training.REMEDIES[k] for k in ("plain", "he", "batchnorm")},
    )
    m.setattr(study.training, "N_RATES", 3)
    m.setattr(study.training, "SGD_RATES", (0.03, 0.3, 3.0))
    m.setattr(study.training, "TUNE_SEEDS", (1000, 1001))
    m.setattr(study.checks, "YANG_ACTIVATIONS", ("relu",))
    m.setattr(study.checks, "YANG_DEPTHS", (3, 4))
    m.setattr(study.checks, "YANG_SEEDS", 2)
    m.setattr(study.checks, "HE_DEPTH", 3)
    m.setattr(study.checks, "HE_RATES", (0.1,))
    m.setattr(study.checks, "HE_SEEDS", 2)
    s = study.STUDY.with_overrides(
        {"model.width": 8, "model.depth": 3, "train.steps": 40, "train.log_every": 20},
        {"data.name": ["digits"], "seed": list(range(6))},  # 6 = 3 rates x 2 tuning seeds
    )
    out = tmp_path_factory.mktemp("remedies") / "run"
    ds, path, head = run_study(s, out)
    return results.load(path / "results.nc"), path, head


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as m:
        yield m


@pytest.mark.slow
def test_tiny_study_picks_rates_on_validation_not_test(tiny):
    ds, _, _ = tiny
    mean_val = ds.tune_val_accuracy.fillna(0.0).mean("tune_seed")
    np.testing.assert_array_equal(ds.best_rate.values, mean_val.argmax("rate").values)
    np.testing.assert_allclose(ds.best_lr, ds.lr.isel(rate=ds.best_rate.astype(int)))
    # the reported seeds are not the tuning seeds, and test accuracy is a single final number
    assert not set(ds.seed.values.tolist()) & set(ds.tune_seed.values.tolist())
    assert ds.test_accuracy.dims == ("name", "depth", "remedy", "seed")


@pytest.mark.slow
def test_tiny_study_table_matches_results(tiny):
    ds, path, head = tiny
    rows = {r["remedy"]: r for r in _csv(path / "table.csv")}
    ratio = analysis.grad_ratio(ds).median("seed")
    for r in ds.remedy.values.tolist():
        one = ds.sel(name="digits", depth=3, remedy=r)
        # the gradient ratio from the raw per-layer norms: layer 1 over the output layer
        g = one.grad_norm.isel(step=0).values
        n = int(one.n_layers)
        assert float(rows[r]["grad_ratio_init"]) == pytest.approx(
            float(np.median(g[:, 0] / g[:, n - 1])), rel=1e-5
        )
        assert float(rows[r]["grad_ratio_final"]) == pytest.approx(
            float(ratio.sel(name="digits", depth=3, remedy=r).isel(step=-1)), rel=1e-5
        )
        acc = one.test_accuracy.values
        assert float(rows[r]["test_accuracy_mean"]) == pytest.approx(np.nanmean(acc), rel=1e-6)
    assert int(ds.n_layers.sel(remedy="batchnorm")) == 4
    assert (path / "figures" / "val_accuracy.png").exists()
    assert json.loads((path / "config.json").read_text())["headline"]["critical_init"]


def _csv(path):
    import pandas as pd

    return pd.read_csv(path).to_dict("records")
