"""Fitted convergence rates, half-lives and power-law exponents on synthetic loss curves."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from experiments import sigmoid_convergence as study
from sigjax import analysis, config
from sigjax.errors import UserError

STEPS = np.arange(0, 1001, 10)
RATES = np.array([0.002, 0.01, 0.04])  # one per lr
AMPS = np.array([0.3, 1.0, 2.5, 7.0])  # one per seed


def _ds(loss: np.ndarray, diverged=None, steps=STEPS) -> xr.Dataset:
    """A results-like Dataset: loss (lr, seed, step), diverged_at (lr, seed)."""
    n_lr, n_seed = loss.shape[:2]
    div = np.full((n_lr, n_seed), np.nan) if diverged is None else diverged
    return xr.Dataset(
        {"loss": (("lr", "seed", "step"), loss), "diverged_at": (("lr", "seed"), div)},
        coords={"lr": [0.01, 0.1, 1.0][:n_lr], "seed": np.arange(n_seed), "step": steps},
    )


def _exp(floor=0.0, t=STEPS):
    return AMPS[None, :, None] * np.exp(-RATES[:, None, None] * t) + floor


def _one(da: xr.DataArray) -> float:
    return float(da.values.item())


def _sxx(t):
    return np.sum((t - t.mean()) ** 2)


def test_exponential_rate_is_exact():
    r = analysis.convergence_rate(_ds(_exp()))
    assert r.dims == ("lr", "seed") and r.name == "rate"
    np.testing.assert_allclose(r.values, np.broadcast_to(RATES[:, None], r.shape), rtol=1e-6)
    # as results store it (float32): still to 1e-6
    r32 = analysis.convergence_rate(_ds(_exp().astype(np.float32)))
    np.testing.assert_allclose(r32.values, r.values, rtol=1e-6)


def test_noisy_rate_within_the_regression_error():
    """Multiplicative noise exp(σε): log-loss noise σ, so the slope's standard error is
    σ/√Σ(t − t̄)²; the fit must land within 4 of them."""
    sigma = 0.05
    noise = np.random.default_rng(0).standard_normal((3, 4, STEPS.size))
    r = analysis.convergence_rate(_ds(_exp() * np.exp(sigma * noise)))
    err = np.abs(r.values - RATES[:, None])
    assert np.all(err < 4 * sigma / np.sqrt(_sxx(STEPS)))
    assert np.all(err > 0)  # the noise is really there


def test_a_floor():
    c, t = 0.07, STEPS[:51]  # up to step 500: A·e^(−rt) stays far above the floor's rounding
    ds = _ds(_exp(floor=c, t=t), steps=t)
    exact = np.broadcast_to(RATES[:, None], (3, 4))
    np.testing.assert_allclose(analysis.convergence_rate(ds, floor=c), exact, rtol=1e-6)
    # per member (a DataArray floor), here the same number
    per = xr.full_like(ds.diverged_at, c)
    np.testing.assert_allclose(analysis.convergence_rate(ds, floor=per), exact, rtol=1e-6)
    # the plain loss flattens onto the floor: a slower fitted rate, much slower where the
    # excess has fallen far below the floor within the run
    plain = analysis.convergence_rate(ds).values
    assert np.all(plain < exact) and np.all(plain[2] < 0.5 * exact[2])
    # floor="min" on a curve that has reached its floor (r·T ≥ 20): the minimum is the floor up
    # to A·e^(−20); the points within 1 % of it are left out, the rest fit r
    t = np.arange(0, 2001, 10)
    curve = 0.5 * np.exp(-0.01 * t) + c
    ds = _ds(curve[None, None], steps=t)
    assert _one(analysis.convergence_rate(ds, floor="min")) == pytest.approx(0.01, rel=1e-5)
    # and with noise on the plateau, still within a few percent
    noisy = curve + 1e-5 * np.random.default_rng(1).standard_normal(t.size)
    ds = _ds(noisy[None, None], steps=t)
    assert _one(analysis.convergence_rate(ds, floor="min")) == pytest.approx(0.01, rel=0.03)


def test_window():
    """A curve with rate 0.02 up to step 400 and 0.005 after: each window finds its own."""
    t = STEPS.astype(float)
    log = np.where(t <= 400, -0.02 * t, -0.02 * 400 - 0.005 * (t - 400))
    ds = _ds(np.exp(log)[None, None])
    early = analysis.convergence_rate(ds, window=(None, 400))
    late = analysis.convergence_rate(ds, window=(400, None))
    assert _one(early) == pytest.approx(0.02, rel=1e-6)
    assert _one(late) == pytest.approx(0.005, rel=1e-6)
    whole = _one(analysis.convergence_rate(ds))
    assert 0.005 < whole < 0.02


def test_nan_handling():
    curve = _exp().copy()
    div = np.full((3, 4), np.nan)
    curve[0, 0, 31:] = np.nan  # diverged at step 310: frozen and NaN afterwards
    div[0, 0] = 310.0
    curve[0, 1, 2:] = np.nan  # only two finite points (without being marked diverged)
    curve[1, 2, 10:60] = np.nan  # a gap: the fit uses the finite points around it
    curve[1, 3, 5] = 0.0  # an exact zero has no logarithm: left out
    curve[2, 0, :] = np.nan  # nothing finite
    r = analysis.convergence_rate(_ds(curve, div))
    assert np.isnan(r.values[0, 0]) and np.isnan(r.values[0, 1]) and np.isnan(r.values[2, 0])
    assert _one(r[1, 2]) == pytest.approx(RATES[1], rel=1e-6)
    assert _one(r[1, 3]) == pytest.approx(RATES[1], rel=1e-6)
    assert _one(r[2, 1]) == pytest.approx(RATES[2], rel=1e-6)  # the others are untouched
    assert analysis.MIN_POINTS == 3
    three = _exp()[:1, :1].copy()
    three[..., 3:] = np.nan
    assert _one(analysis.convergence_rate(_ds(three))) == pytest.approx(RATES[0], rel=1e-6)
    for f in (analysis.half_life, analysis.power_law_exponent):
        assert np.isnan(f(_ds(curve, div)).values[0, 0])


def test_half_life():
    ds = _ds(_exp())
    fitted = analysis.half_life(ds)
    np.testing.assert_allclose(fitted, np.log(2) / RATES[:, None] + 0 * AMPS, rtol=1e-6)
    # measured on the curve: log-linear interpolation between logged steps is exact here
    measured = analysis.half_life(ds, measured=True)
    np.testing.assert_allclose(measured, np.log(2) / RATES[:, None] + 0 * AMPS, rtol=1e-9)
    # from a window's start, above a floor
    c = 0.2
    m = analysis.half_life(_ds(_exp(floor=c)), window=(300, None), floor=c, measured=True)
    np.testing.assert_allclose(m, np.log(2) / RATES[:, None] + 0 * AMPS, rtol=1e-9)
    # by hand, on a curve that is not exponential: 1, 0.8, 0.6, 0.4 at steps 0, 10, 20, 30
    hand = _ds(np.array([[[1.0, 0.8, 0.6, 0.4]]]), steps=np.array([0, 10, 20, 30]))
    expected = 20 + 10 * (np.log(0.5) - np.log(0.6)) / (np.log(0.4) - np.log(0.6))
    assert _one(analysis.half_life(hand, measured=True)) == pytest.approx(expected, rel=1e-12)
    # a growing loss: never halves
    grow = _ds(np.exp(0.001 * STEPS)[None, None])
    assert _one(analysis.half_life(grow)) == np.inf
    assert np.isnan(_one(analysis.half_life(grow, measured=True)))


def test_power_law_exponent():
    t = STEPS.astype(float)
    p = np.array([0.5, 1.0, 2.0])
    with np.errstate(divide="ignore"):
        curve = AMPS[None, :, None] * t ** -p[:, None, None]  # inf at step 0: left out
    ds = _ds(curve)
    got = analysis.power_law_exponent(ds)
    assert got.name == "power_law_exponent"
    np.testing.assert_allclose(got, p[:, None] + 0 * AMPS, rtol=1e-6)
    # above a floor, and with multiplicative noise (slope error σ/√Σ(log t − mean)²)
    np.testing.assert_allclose(analysis.power_law_exponent(_ds(curve + 0.3), floor=0.3), got)
    sigma = 0.05
    noise = np.random.default_rng(2).standard_normal(curve.shape)
    noisy = analysis.power_law_exponent(_ds(curve * np.exp(sigma * noise)))
    bound = 4 * sigma / np.sqrt(_sxx(np.log(t[1:])))
    assert np.all(np.abs(noisy.values - p[:, None]) < bound)
    # an exponential is no power law: its exponent grows with the window's end
    e = _ds(_exp())
    assert np.all(
        analysis.power_law_exponent(e, window=(0, 1000)).values
        > analysis.power_law_exponent(e, window=(0, 300)).values
    )


def test_user_errors():
    ds = _ds(_exp())
    with pytest.raises(UserError, match="floor must be None, 'min' or a number"):
        analysis.convergence_rate(ds, floor="max")
    with pytest.raises(UserError, match=r"window \(2000, 3000\) holds no logged step"):
        analysis.convergence_rate(ds, window=(2000, 3000))
    with pytest.raises(UserError, match="window must be"):
        analysis.half_life(ds, window=(1, 2, 3))


def test_summary_table_has_the_rate():
    ds = _ds(_exp())
    ds["grad_norm"] = xr.DataArray(np.ones((3, 4, STEPS.size, 2)), dims=(*ds.loss.dims, "layer"))
    ds = ds.assign_coords(layer=[1, 2])
    ds["n_layers"] = xr.full_like(ds.diverged_at, 2, dtype=int)
    table = analysis.summary_table(ds, 0.1)
    assert "rate" in table.columns
    one = table[(table.lr == 0.1) & (table.seed == 2)].iloc[0]
    assert one.rate == pytest.approx(RATES[1], rel=1e-6)


def test_sigmoid_convergence_table_has_the_rate_at_the_best_lr(tmp_path, monkeypatch):
    """The study's table: the median over seeds of the fitted rate at each setting's best lr."""
    monkeypatch.setattr(study, "blog_engine", study.blog_descent)  # part 1 is not under test
    steps = np.arange(0, 101, 10)
    acts, depths, lrs, seeds = ["sigmoid", "tanh"], [1], [0.1, 0.3], [0, 1, 2]
    # rate r(act, lr, seed): the larger lr is faster for both; the seeds spread it
    r = np.array([0.01, 0.03])[:, None, None, None] * np.array([1.0, 2.0])[None, None, :, None]
    r = r * np.array([0.8, 1.0, 1.5])[None, None, None, :]  # (act, depth, lr, seed)
    loss = 0.3 * np.exp(-r[..., None] * steps)
    dims = ("activation", "depth", "lr", "seed")
    ds = xr.Dataset(
        {
            "loss": ((*dims, "step"), loss.astype(np.float32)),
            "grad_norm": ((*dims, "step", "layer"), np.ones((*loss.shape, 2), np.float32)),
            "diverged_at": (dims, np.full(r.shape, np.nan)),
            "n_layers": (dims, np.full(r.shape, 2)),
        },
        coords={
            "activation": acts,
            "depth": depths,
            "lr": lrs,
            "seed": seeds,
            "step": steps,
            "layer": [1, 2],
        },
    )
    cfg = config.replace(study.CONFIG, {"train.steps": 100, "train.loss_threshold": 0.2})
    ds.attrs["config"] = json.dumps(config.to_dict(cfg))
    study.report(ds, tmp_path)
    table = pd.read_csv(tmp_path / "table.csv").set_index("activation")
    assert list(table.best_lr) == [0.3, 0.3]  # the faster rate reaches 0.2 first
    assert table.loc["sigmoid", "rate"] == pytest.approx(0.01 * 2.0, rel=1e-5)  # median seed
    assert table.loc["tanh", "rate"] == pytest.approx(0.03 * 2.0, rel=1e-5)
    md = (tmp_path / "table.md").read_text()
    assert "| final loss | rate /step |" in md
    assert "| 0.02 |" in md and "| 0.06 |" in md
