"""The theory studies: phase_diagram, gradient_propagation, trainability.

Measured quantities go through the studies' own JAX code (sigjax's model at init); tolerances
scale with the width N: a per-layer log ratio of squared gradient norms fluctuates by about
K/√N (K ≲ 3 for tanh), its mean over L−1 layers and S seeds by K/√(N(L−1)S), and the mean of a
log sits below the log of the mean by the Jensen gap Var/2 ≈ K²/(2N).
"""

import json
import math

import numpy as np
import pytest

from experiments import gradient_propagation as gp
from experiments import phase_diagram as pd_
from experiments import trainability as tr
from sigjax import cli, config, theory
from sigjax.engine import grid, results

WIDTH, DEPTH, SEEDS = 300, 20, 4
K = 3.0  # bound on √N × (std of one per-layer log ratio) for tanh (measured ≈ 1.5-2.4)


@pytest.fixture(scope="module")
def tanh_nets():
    cfg = config.replace(gp.CONFIG, {"model.width": WIDTH, "model.depth": DEPTH})
    axes = grid.make_axes({"model.activation": ["tanh"], "seed": list(range(SEEDS))})
    return gp.compute(cfg, axes)


def _grad_tolerance(n, depth, seeds):
    return 3 * K / math.sqrt(n * (depth - 1) * seeds) + K**2 / (2 * n)


@pytest.mark.parametrize("phase", ["ordered", "critical", "chaotic"])
def test_gradient_log_ratio_matches_log_chi_1(tanh_nets, phase):
    t = gp.summary(tanh_nets).set_index("phase")
    row = t.loc[phase]
    assert row.activation == "tanh"
    # the premise of the tolerance: per-layer fluctuations of order K/√N
    assert row.log_chi_1_std * math.sqrt(WIDTH) < K
    tol = _grad_tolerance(WIDTH, DEPTH, SEEDS)
    assert abs(row.log_chi_1_meas - row.log_chi_1_pred) < tol, (row.to_dict(), tol)
    if phase != "critical":  # the test can tell the phases apart
        assert abs(row.log_chi_1_pred) > 2 * tol
        assert np.sign(row.log_chi_1_meas) == np.sign(row.log_chi_1_pred)
    # the layers sit at the fixed point q*
    assert row.q_meas == pytest.approx(row.q_star_pred, rel=4 * math.sqrt(2 / WIDTH))


def test_gradient_norms_fall_exponentially_with_depth_in_the_ordered_phase(tanh_nets):
    # log‖δ_l‖² decreases linearly with depth in the ordered phase: slope log χ₁ per layer
    one = tanh_nets.isel(point=int(np.flatnonzero(tanh_nets.phase.values == "ordered")[0]))
    prof = one.log_grad_sqnorm.mean(("seed", "input")).values
    slope = np.polyfit(np.arange(1, DEPTH + 1), prof, 1)[0]
    assert slope == pytest.approx(-math.log(float(one.chi_1_pred)), abs=0.05)


@pytest.mark.parametrize("phase", ["ordered", "critical", "chaotic"])
def test_correlations_follow_the_c_map(tanh_nets, phase):
    p = int(np.flatnonzero(tanh_nets.phase.values == phase)[0])
    one = tanh_nets.isel(point=p)
    err = np.abs(one.corr.mean("seed") - one.corr_pred).values  # (pair, layer)
    scale = 1.0 / math.sqrt(WIDTH * SEEDS)
    assert err.mean() < 2.5 * scale, err.mean()
    assert err.max() < 8 * scale, err.max()
    # the first layer's correlation is set by the inputs: c¹ = (σ_w² m cos + σ_b²)/q*
    w, b, q = float(one.sigma_w2), float(one.sigma_b2), float(one.q_star_pred)
    c1 = (w * (q - b) / w * np.array(gp.COSINES) + b) / q
    np.testing.assert_allclose(one.corr_pred.isel(layer=0), c1)
    np.testing.assert_allclose(one.corr.isel(layer=0).mean("seed"), c1, atol=4 * scale)


def test_chaotic_correlations_forget_the_inputs(tanh_nets):
    p = int(np.flatnonzero(tanh_nets.phase.values == "chaotic")[0])
    one = tanh_nets.isel(point=p)
    c_star = float(theory.mean_field("tanh", float(one.sigma_w2), float(one.sigma_b2)).c_star)
    pred, meas = one.corr_pred.values, one.corr.mean("seed").values  # (pair, layer)
    # every pair moves towards c* ≈ 0.17, and the pairs' spread shrinks, in theory and measured
    assert np.all(np.abs(pred[:, -1] - c_star) < 0.5 * np.abs(pred[:, 0] - c_star))
    assert np.ptp(pred[:, -1]) < 0.3 * np.ptp(pred[:, 0])
    assert np.ptp(meas[:, -1]) < 0.3 * np.ptp(meas[:, 0])


@pytest.fixture(scope="module")
def phase_ds():
    axes = grid.make_axes(
        {
            "model.activation": ["tanh", "sigmoid", "softsign"],
            "init.sigma_w2": [float(v) for v in np.logspace(-1, 3, 25)],
            "init.sigma_b2": [0.0, 0.25, 1.0],
        }
    )
    return pd_.compute(pd_.CONFIG, axes)


def test_phase_diagram_chi_1_is_one_on_the_critical_line(phase_ds):
    assert np.nanmax(np.abs(phase_ds.critical_chi_1.values - 1)) < 1e-6
    for act in phase_ds.activation.values:
        crit = phase_ds.critical_sigma_w2.sel(activation=act)
        assert np.all(np.isfinite(crit))
        chi = theory.chi_1(str(act), crit.values, phase_ds.sigma_b2.values)
        np.testing.assert_allclose(chi, 1.0, atol=1e-6)


def test_phase_diagram_ordered_below_chaotic_above(phase_ds):
    w = phase_ds.sigma_w2
    crit = phase_ds.critical_sigma_w2
    chi = phase_ds.chi_1
    below = w < crit * (1 - 1e-6)
    above = w > crit * (1 + 1e-6)
    assert bool(below.any()) and bool(above.any())
    assert bool((chi < 1).where(below, True).all())
    assert bool((chi > 1).where(above, True).all())
    # ξ_c is finite off the line and largest next to it
    xi = phase_ds.xi_c.sel(activation="tanh", sigma_b2=0.25)
    j = int(np.argmin(np.abs(np.log(w.values / float(crit.sel(activation="tanh", sigma_b2=0.25))))))
    assert float(xi[j]) == pytest.approx(float(xi.max()))


def test_sigmoid_critical_sigma_w2_is_about_103(phase_ds):
    crit = float(phase_ds.critical_sigma_w2.sel(activation="sigmoid", sigma_b2=0.0))
    assert crit == pytest.approx(103.0075539, rel=1e-8)
    g = phase_ds.sel(activation="sigmoid")
    assert float(g.glorot_chi_1.sel(init="normalized")) < 0.06  # deep in the ordered phase


@pytest.mark.parametrize(
    ("act", "w", "b"), [("tanh", 2.5, 0.05), ("sigmoid", 300.0, 0.05), ("softsign", 6.0, 0.5)]
)
def test_fast_chaotic_solver_matches_the_reference(act, w, b):
    fast = pd_.mean_field_grid(act, w, b)
    ref = theory.mean_field(act, w, b)
    assert float(fast["c_star"]) == pytest.approx(float(ref.c_star), abs=1e-8)
    assert float(fast["chi_c"]) == pytest.approx(float(ref.chi_c), rel=1e-8)
    assert float(fast["xi_c"]) == pytest.approx(float(ref.xi_c), rel=1e-7)


# ---------------------------------------------------------------- end to end through the CLI


def _run(tmp_path, name, *args):
    out = tmp_path / name
    code = cli.main(["run", name, "--out", str(out), "--quiet", *args])
    assert code == 0
    meta = json.loads((out / "config.json").read_text())
    assert meta["study"] == name
    assert (out / "figures" / f"{name}.png").stat().st_size > 10_000
    assert (out / "table.md").read_text().count("|") > 10
    assert (out / "table.csv").exists()
    return out, meta["headline"], results.load(out / "results.nc")


def test_phase_diagram_end_to_end(tmp_path):
    out, head, ds = _run(
        tmp_path,
        "phase_diagram",
        "--grid",
        "model.activation=tanh,sigmoid",
        "--grid",
        "init.sigma_w2=logspace(-1,3,9)",
        "--grid",
        "init.sigma_b2=0,0.5",
    )
    assert head["critical_sigma_w2_at_sigma_b2_0"]["sigmoid"] == pytest.approx(103.0, abs=0.01)
    assert head["max_abs_chi_1_minus_1_on_critical_line"] < 1e-6
    assert head["xi_c_fast_solver_max_rel_err"] < 1e-6
    assert dict(ds.sizes) == {"activation": 2, "sigma_b2": 2, "sigma_w2": 9, "init": 2}


def test_gradient_propagation_end_to_end(tmp_path):
    out, head, ds = _run(
        tmp_path,
        "gradient_propagation",
        "--set",
        "model.width=32",
        "--set",
        "model.depth=4",
        "--grid",
        "model.activation=tanh,relu",
        "--grid",
        "seed=0,1",
    )
    assert set(head) == {"tanh/ordered", "tanh/critical", "tanh/chaotic", "relu/critical (He)"}
    assert ds.sizes["layer"] == 4 and ds.sizes["seed"] == 2
    assert "log χ₁ predicted" in (out / "table.md").read_text()


@pytest.mark.slow  # the whole study, shrunk; test_report_grids.py checks its table
def test_trainability_end_to_end(tmp_path):
    out, head, ds = _run(
        tmp_path,
        "trainability",
        "--set",
        "model.width=8",
        "--set",
        "train.steps=4",
        "--set",
        "train.log_every=2",
        "--grid",
        "model.depth=2",
        "--grid",
        "optim.lr=0.1",
        "--grid",
        "init.sigma_w2=0.5,2",
    )
    assert set(head["agreement_with_6xi_c"]) == {"tanh", "sigmoid"}
    assert ds.sizes["activation"] == 2 and ds.sizes["depth"] == 1
    assert np.isfinite(ds.xi_c.values).all()
    assert (out / "summary.csv").exists()


def test_trainability_gives_each_activation_its_own_sigma_w2_axis():
    axes = grid.make_axes({"model.activation": ["tanh", "sigmoid"], "model.depth": [2]})
    assert tr.training._sigma_w2_axes(axes, "sigmoid") == tr.training.SIGMA_W2["sigmoid"]
    crit = float(theory.critical_sigma_w2("sigmoid", 0.05))
    assert min(tr.training.SIGMA_W2["sigmoid"]) < crit < max(tr.training.SIGMA_W2["sigmoid"])
    crit = float(theory.critical_sigma_w2("tanh", 0.05))
    assert min(tr.training.SIGMA_W2["tanh"]) < crit < max(tr.training.SIGMA_W2["tanh"])


def test_full_presets_are_valid():
    for study in (pd_.STUDY, gp.STUDY, tr.STUDY):
        full = study.preset("full")
        assert full.axes()  # every value converts to its field's type
    assert tr.STUDY.preset("full").config.model.width >= 256
    assert gp.STUDY.preset("full").config.model.width >= 1000


@pytest.mark.slow
def test_gradient_propagation_quick_default_matches_theory(tmp_path):
    """Every point of the quick default, sigmoid included, within 4 s.e.m. + the Jensen gap."""
    ds = gp.compute(gp.CONFIG, gp.STUDY.axes())
    t = gp.summary(ds)
    gap = t.log_chi_1_std**2 / 2
    assert np.all(np.abs(t.log_chi_1_meas - t.log_chi_1_pred) < 4 * t.log_chi_1_sem + 2 * gap)
    assert np.all(np.abs(t.log_mean_ratio - t.log_chi_1_pred) < 0.03)


# ---------------------------------------------------------------- trainability analysis


def test_trainability_validation_split_is_held_out_of_training():
    from sigjax import data as data_lib

    full = data_lib.load(tr.training.CONFIG.data)
    split = tr.training.split_validation(full)
    n, k = full.x_train.shape[0], full.x_test.shape[0]
    assert split.x_train.shape[0] == n - k and split.x_test.shape[0] == 2 * k
    np.testing.assert_array_equal(split.x_test[:k], full.x_train[n - k :])  # validation half
    np.testing.assert_array_equal(split.x_test[k:], full.x_test)  # test half
    np.testing.assert_array_equal(split.x_train, full.x_train[: n - k])


def _fake(val, test, vloss, lrs=(0.01, 0.1, 1.0)):
    """A results-like Dataset: dims (activation, depth, sigma_w2, lr, seed, step=1)."""
    import xarray as xr

    val, test, vloss = (np.asarray(v, float)[:, :, :, :, :, None] for v in (val, test, vloss))
    dims = ("activation", "depth", "sigma_w2", "lr", "seed", "step")
    coords = {
        "activation": ["tanh"],
        "depth": [4, 8][: val.shape[1]],
        "sigma_w2": [1.0, 2.0][: val.shape[2]],
        "lr": list(lrs),
        "seed": list(range(val.shape[4])),
        "step": [10],
    }
    ds = xr.Dataset(
        {
            "val_accuracy": (dims, val),
            "test_accuracy": (dims, test),
            "val_loss": (dims, vloss),
            "loss": (dims, np.ones_like(val)),
        },
        coords=coords,
    )
    ds.attrs["n_classes"] = 10
    return ds


def test_trainability_selects_the_rate_on_validation_never_on_test():
    # one cell, two seeds: validation prefers lr 0.1, test would prefer lr 1.0
    val = np.array([0.5, 0.9, 0.7])[None, None, None, :, None] * np.ones((1, 1, 1, 3, 2))
    test = np.array([0.5, 0.6, 0.95])[None, None, None, :, None] * np.ones((1, 1, 1, 3, 2))
    sel = tr.tables.select_lr(_fake(val, test, np.ones_like(val)))
    assert float(sel.best_lr.squeeze()) == 0.1 and not bool(sel.lr_at_edge.squeeze())
    assert float(sel.test_accuracy.squeeze()) == pytest.approx(0.6)
    # a tie within TIE goes to the lower validation loss; a diverged (NaN) seed counts as 0
    val2 = val.copy()
    val2[..., 2, :] = 0.9 - tr.training.TIE / 2
    vloss = np.ones_like(val)
    vloss[..., 2, :] = 0.5
    sel = tr.tables.select_lr(_fake(val2, test, vloss))
    assert float(sel.best_lr.squeeze()) == 1.0 and bool(sel.lr_at_edge.squeeze())
    val3 = val2.copy()
    val3[..., 2, 0] = np.nan  # mean over seeds (0 + 0.8975)/2 < 0.9
    sel = tr.tables.select_lr(_fake(val3, test, vloss))
    assert float(sel.best_lr.squeeze()) == 0.1


def _column(acc, depths=(4, 8, 16, 32, 64), thr=0.5, w=1.0, xi=5.0):
    import pandas as pd

    return pd.DataFrame(
        {
            "sigma_w2": w,
            "depth": list(depths),
            "test_accuracy": list(acc),
            "threshold": thr,
            "xi_c": xi,
            "trainable": [a >= thr for a in acc],
        }
    )


def test_trainability_boundary_interpolates_in_log_depth_and_censors():
    import pandas as pd

    # 0.9 at 8, 0.3 at 16: the threshold 0.5 is 2/3 of the way, so L = 2^(3 + 2/3)
    b = tr.tables.boundary(_column([0.9, 0.9, 0.3, 0.2, 0.1]))
    assert float(b.L_fit.iloc[0]) == pytest.approx(2 ** (3 + 2 / 3))
    assert b.censored.iloc[0] == "" and not bool(b.retrains.iloc[0])
    assert float(b.L_fit_over_xi_c.iloc[0]) == pytest.approx(2 ** (3 + 2 / 3) / 5)
    assert tr.tables.boundary(_column([0.9] * 5)).censored.iloc[0] == "above"
    assert tr.tables.boundary(_column([0.2] * 5)).censored.iloc[0] == "below"
    assert bool(tr.tables.boundary(_column([0.9, 0.2, 0.6, 0.1, 0.1])).retrains.iloc[0])
    # k is the geometric mean of L/ξ over the fitted columns; censored ones checked against 6 ξ
    two = pd.concat(
        [
            _column([0.9, 0.9, 0.3, 0.2, 0.1], w=1.0, xi=5.0),
            _column([0.9, 0.9, 0.9, 0.9, 0.3], w=2.0, xi=10.0),  # L = 2^(5 + 2/3)
            _column([0.9] * 5, w=3.0, xi=20.0),  # above, 6 ξ = 120 ≥ 64: consistent
            _column([0.2] * 5, w=4.0, xi=1.0),  # below, 6 ξ = 6 ≥ 4: not consistent
        ]
    )
    fit = tr.tables.fitted_factor(tr.tables.boundary(two))
    want = np.sqrt(2 ** (3 + 2 / 3) / 5 * 2 ** (5 + 2 / 3) / 10)
    assert fit["k"] == pytest.approx(want) and fit["n_fitted"] == 2
    assert fit["n_censored"] == 2 and fit["n_censored_consistent_with_6xi_c"] == 1


def test_trainability_baselines_by_hand():
    t = _column([0.9, 0.9, 0.3, 0.2, 0.1])  # trainable at depths 4, 8
    t["agree"] = [True, False, True, True, True]
    base = tr.tables.baselines(t)
    assert base["6xi_c"] == pytest.approx(0.8)
    assert base["all_trainable"] == pytest.approx(0.4)
    assert base["none_trainable"] == pytest.approx(0.6)
    assert base["depth_le_8"] == 1.0
    assert base["best_depth_rule"] == {"max_depth": 8, "agreement": 1.0}
