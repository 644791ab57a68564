"""A study's report on a grid with a dim it does not lay out itself (a user's extra `--grid`).

For each study whose report reads a training sweep, the sweep runs in-process on tiny settings
with an added grid axis; the report must give one table row per setting, the extra dim as a
column (in the Markdown table too), numbers equal to the same quantity computed by hand from the
results for one row, and its figures. Figures repeat their layout for a few extra settings and
otherwise draw the first one and say so. The theory-only studies refuse a grid they would ignore.
"""

from __future__ import annotations

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

import experiments
from experiments import dynamical_isometry as di
from experiments import glorot2010 as gl
from experiments import sigmoid_convergence as sc
from experiments import trainability
from sigjax.cli import main
from sigjax.engine import sweep

TINY = {"train.steps": 20, "train.log_every": 10, "model.width": 8}
SIGMA_W2 = [0.5, 1.0, 2.0, 3.0, 4.0]


@pytest.fixture(autouse=True)
def _quick_blog_example(monkeypatch):
    """The sigmoid study's report also replays the blog's example through sigjax's engine
    (1000 steps); tests/studies/test_sigmoid_convergence.py checks that part, here the hand-written
    descent stands in for it."""
    monkeypatch.setattr(sc, "blog_engine", sc.blog_descent)


def hand_best_lr(loss: np.ndarray, lrs, steps: np.ndarray, threshold: float) -> float:
    """The learning rate reaching `threshold` in the fewest steps (median over seeds, never
    = infinitely many), else the one with the lowest median final loss; loss (lr, seed, step)."""
    reached = loss <= threshold
    first = np.where(reached.any(-1), steps[reached.argmax(-1)], np.inf)
    median = np.median(first, axis=1)
    if np.isfinite(median).any():
        return float(lrs[np.argmin(median)])
    final = np.nan_to_num(loss[..., -1], nan=np.inf)
    return float(lrs[np.argmin(np.median(final, axis=1))])


def _height(path) -> int:
    return matplotlib.image.imread(path).shape[0]


def _md_rows(md: str) -> list[list[str]]:
    """The body rows of the first Markdown table in md, as lists of cells."""
    rows = [line for line in md.splitlines() if line.startswith("|")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


# ---------------------------------------------------------------- sigmoid_convergence


@pytest.fixture(scope="module")
def sc_results():
    """tanh, depth 1, with two extra dims: init.scheme (static) and init.sigma_w2 (5 values)."""
    study = experiments.get("sigmoid_convergence").with_overrides(
        {**TINY, "model.depth": 1, "train.loss_threshold": 0.1},
        {
            "model.activation": ["tanh"],
            "init.scheme": ["gaussian", "orthogonal"],
            "init.sigma_w2": SIGMA_W2,
            "optim.lr": [0.1, 0.3],
            "seed": [0, 1, 2],
        },
    )
    return study, sweep.run(study.config, study.axes())


def test_sigmoid_convergence_table_has_a_row_per_extra_setting(sc_results, tmp_path):
    study, ds = sc_results
    head = study.report(ds, tmp_path)
    table = pd.read_csv(tmp_path / "table.csv")
    assert len(table) == 2 * len(SIGMA_W2)
    assert set(zip(table.scheme, table.sigma_w2, strict=True)) == {
        (s, w) for s in ("gaussian", "orthogonal") for w in SIGMA_W2
    }
    # one row by hand
    thr = 0.1
    one = ds.sel(activation="tanh", depth=1, scheme="orthogonal", sigma_w2=3.0)
    loss = one.loss.transpose("lr", "seed", "step").values
    lr = hand_best_lr(loss, one.lr.values, one.step.values, thr)
    row = table[(table.scheme == "orthogonal") & (table.sigma_w2 == 3.0)].iloc[0]
    assert row.best_lr == pytest.approx(lr)
    i = list(one.lr.values).index(lr)
    assert row.final_loss == pytest.approx(np.median(loss[i, :, -1]), rel=1e-6)
    reached = loss[i] <= thr
    first = np.where(reached.any(-1), one.step.values[reached.argmax(-1)], np.inf)
    assert row.median_steps == np.median(first)
    # the Markdown table: the extra dims as columns, one row per setting
    md = (tmp_path / "table.md").read_text()
    assert "| activation | depth | scheme | sigma_w2 | best lr |" in md
    body = _md_rows(md)
    assert len(body) == len(table)
    assert ["tanh", "1", "orthogonal", "3", f"{lr:.3g}"] in [r[:5] for r in body]
    # 20 steps: the largest logged step <= 250 is the final one, shown once as the final loss
    assert "loss@" not in md and not any(c.startswith("loss_at") for c in table.columns)
    # too many settings for the figures: the first of each, said in the note
    note = head["figure_note"]
    assert "scheme=gaussian (first of 2)" in note and "sigma_w2=0.5 (first of 5)" in note
    assert note in md
    assert set(head["median_steps_to_threshold"]) == {
        f"tanh/depth1/scheme={s}/sigma_w2={w:g}"
        for s in ("gaussian", "orthogonal")
        for w in SIGMA_W2
    }
    for name in ("convergence", "grad_norm_layers"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0


def test_sigmoid_convergence_figures_repeat_for_a_few_settings(sc_results, tmp_path):
    study, ds = sc_results
    many, few = tmp_path / "many", tmp_path / "few"
    many.mkdir(), few.mkdir()
    study.report(ds, many)
    head = study.report(ds.sel(sigma_w2=[0.5]), few)  # two settings: both schemes drawn
    assert "figure_note" not in head
    assert "Note:" not in (few / "table.md").read_text()
    for name in ("convergence", "grad_norm_layers"):  # one row per scheme instead of one
        ratio = _height(few / "figures" / f"{name}.png") / _height(many / "figures" / f"{name}.png")
        assert ratio > 1.6


@pytest.mark.parametrize(("steps", "shown"), [((0, 200, 400), 200), ((0, 250, 1000), 250)])
def test_sigmoid_convergence_loss_column_names_the_step_shown(sc_results, tmp_path, steps, shown):
    """The loss@250 column is the loss at the largest logged step <= 250, and says which."""
    study, ds = sc_results
    ds = ds.sel(sigma_w2=[0.5], scheme=["gaussian"]).assign_coords(step=list(steps))
    study.report(ds, tmp_path)
    table = pd.read_csv(tmp_path / "table.csv")
    md = (tmp_path / "table.md").read_text()
    assert f"| loss@{shown} |" in md and md.count("loss@") == 1
    one = ds.sel(activation="tanh", depth=1, scheme="gaussian", sigma_w2=0.5)
    lr = table.best_lr.iloc[0]
    expected = np.median(one.loss.sel(lr=lr).isel(step=1).values)
    assert table[f"loss_at_{shown}"].iloc[0] == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- glorot2010


@pytest.mark.slow  # its probed sweep compiles for ~40 s of CPU even this small
def test_glorot2010_table_has_a_row_per_extra_setting(tmp_path):
    study = experiments.get("glorot2010").with_overrides(
        {**TINY, "model.depth": 2},
        {
            "data.name": ["digits"],
            "model.activation": ["tanh"],
            "optim.lr": [0.1, 0.3],
            "seed": [0, 1],
            "optim.weight_decay": [0.0, 0.01],  # the extra dim
        },
    )
    ds = study.compute(study.config, study.axes(), False, None)
    head = study.report(ds, tmp_path)
    table = pd.read_csv(tmp_path / "table.csv")
    assert len(table) == 2 * 2  # weight decay × (tanh, tanh-N)
    assert set(zip(table.weight_decay, table.variant, strict=True)) == {
        (w, v) for w in (0.0, 0.01) for v in ("tanh", "tanh-N")
    }
    # one row by hand: the lowest mean final validation error, ties (within one point) broken
    # by the lower mean final validation loss; test error at that rate, mean over seeds
    one = ds.sel(name="digits", activation="tanh", scheme="normalized", weight_decay=0.01)
    err = (1 - one.val_accuracy.isel(step=-1)).fillna(1.0).mean("seed").values
    vloss = one.val_loss.isel(step=-1).fillna(np.inf).mean("seed").values
    lr = float(one.lr.values[np.argmin(np.where(err <= err.min() + gl.tables.TIE, vloss, np.inf))])
    row = table[(table.weight_decay == 0.01) & (table.variant == "tanh-N")].iloc[0]
    assert row.best_lr == pytest.approx(lr)
    test_err = 100 * one.final_test_error.sel(lr=lr).values
    assert row.test_error_mean == pytest.approx(test_err.mean(), rel=1e-6)
    md = (tmp_path / "table.md").read_text()
    assert "| variant | digits, weight_decay 0 | digits, weight_decay 0.01 |" in md
    assert "figure_note" not in head  # two settings: every figure draws both
    assert "digits/tanh-N" not in head["table"]
    assert {"digits, weight_decay 0/tanh-N", "digits, weight_decay 0.01/tanh"} <= set(head["table"])
    for name in ("activations", "distributions", "variances", "val_error"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0


# ---------------------------------------------------------------- dynamical_isometry


@pytest.mark.slow  # as glorot2010's, plus the spectra
def test_dynamical_isometry_table_has_a_row_per_extra_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(
        di.jacobians, "MIN_SPECTRA_DEPTH", 4
    )  # the spectra part is not under test here
    monkeypatch.setattr(di.jacobians, "MIN_SPECTRA_WIDTH", 8)
    study = experiments.get("dynamical_isometry").with_overrides(
        {**TINY, "init.scheme": "orthogonal", "train.loss_threshold": 2.25},
        {
            "model.activation": ["tanh"],
            "model.depth": [2],
            "optim.lr": [0.1, 0.3],
            "seed": [0, 1, 2],
            "optim.weight_decay": [0.0, 0.01, 0.1],  # the extra dim
        },
    )
    ds = study.compute(study.config, study.axes(), False, None)
    head = study.report(ds, tmp_path)
    table = pd.read_csv(tmp_path / "training.csv")
    assert len(table) == 3
    assert sorted(table.weight_decay) == [0.0, 0.01, 0.1]
    # one row by hand, on the loss of the fixed training examples
    thr = 2.25
    one = ds.sel(activation="tanh", scheme="orthogonal", depth=2, weight_decay=0.1)
    loss = one.train_eval_loss.transpose("lr", "seed", "step").values
    lr = hand_best_lr(loss, one.lr.values, one.step.values, thr)
    row = table[table.weight_decay == 0.1].iloc[0]
    assert row.best_lr == pytest.approx(lr)
    i = list(one.lr.values).index(lr)
    assert row.final_loss == pytest.approx(np.median(loss[i, :, -1]), rel=1e-6)
    md = (tmp_path / "table.md").read_text()
    assert "| activation | depth | scheme | weight_decay | best lr |" in md
    assert sum(line.startswith("| tanh | 2 | orthogonal |") for line in md.splitlines()) == 3
    assert set(head["median_steps_to_threshold"]) == {
        f"tanh/orthogonal/depth2/weight_decay={w:g}" for w in (0.0, 0.01, 0.1)
    }
    for name in ("spectra", "spread", "training"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0


# ---------------------------------------------------------------- trainability


@pytest.mark.slow  # trains a trainability grid twice over
def test_trainability_table_has_a_row_per_extra_setting(tmp_path):
    study = experiments.get("trainability").with_overrides(
        {"model.width": 8, "train.steps": 4, "train.log_every": 2},
        {
            "model.activation": ["tanh"],
            "model.depth": [2],
            "optim.lr": [0.1, 0.3],
            "init.sigma_w2": [0.5, 1.0, 2.0],
            "optim.weight_decay": [0.0, 0.01],  # the extra dim
        },
    )
    ds = study.compute(study.config, study.axes(), False, None)
    head = study.report(ds, tmp_path)
    table = pd.read_csv(tmp_path / "table.csv")
    assert len(table) == 2 * 3  # weight decay × σ_w²
    assert set(zip(table.weight_decay, table.depth, table.sigma_w2, strict=True)) == {
        (w, 2, s) for w in (0.0, 0.01) for s in (0.5, 1.0, 2.0)
    }
    # one row by hand: mean test accuracy at the rate chosen on validation; trainable means
    # above halfway from chance to the best cell of the same activation and weight decay
    sel = trainability.tables.select_lr(ds).sel(activation="tanh", weight_decay=0.01)
    best_cell = float(sel.test_accuracy.max())
    v = float(sel.test_accuracy.sel(depth=2, sigma_w2=2.0))
    row = table[(table.weight_decay == 0.01) & (table.sigma_w2 == 2.0)]
    assert row.test_accuracy.iloc[0] == pytest.approx(v)
    chance = 1.0 / ds.attrs["n_classes"]
    assert bool(row.trainable.iloc[0]) == (v >= chance + 0.5 * (best_cell - chance))
    md = (tmp_path / "table.md").read_text()
    assert "**tanh, weight_decay=0**" in md and "**tanh, weight_decay=0.01**" in md
    assert set(head["agreement_with_6xi_c"]) == {"tanh, weight_decay=0", "tanh, weight_decay=0.01"}
    assert (tmp_path / "figures" / "trainability.png").stat().st_size > 0


# ---------------------------------------------------------------- grids a study would ignore


@pytest.mark.parametrize(
    ("name", "grid", "key"),
    [
        ("phase_diagram", "model.depth=2,4", "model.depth"),
        ("gradient_propagation", "init.sigma_w2=1,2", "init.sigma_w2"),
        ("trainability", "init.sigma_b2=0,0.05", "init.sigma_b2"),
    ],
)
def test_a_grid_a_study_would_ignore_is_refused(tmp_path, capsys, name, grid, key):
    out = tmp_path / "run"
    assert main(["run", name, "--quiet", "--out", str(out), "--grid", grid]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sigjax: error: ") and key in err and len(err.splitlines()) == 1
    assert not out.exists()
