"""Sweeps specified wrongly or hugely: one clear error naming the key, or a prompt answer.

Command-line cases run in-process with `--plan`, so nothing trains; Python cases replace the
sweep engine with one that fails, so a mistake must be caught before anything is computed.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

import experiments
import sigjax
from sigjax import config
from sigjax.cli import main
from sigjax.config import Config
from sigjax.engine import grid, plan, sweep

STUDY = "sigmoid_convergence"


def _one_error_line(err: str, *mentions: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {err!r}"
    assert lines[0].startswith("sigjax: error: ") and "Traceback" not in err
    for m in mentions:
        assert m in lines[0], f"{m!r} not in {lines[0]!r}"
    return lines[0]


# ---------------------------------------------------------------- conflicting flags

CONFLICTS = {
    "set and grid": (["--set", "model.width=8", "--grid", "model.width=8,16"], "model.width"),
    "grid twice": (["--grid", "optim.lr=0.1", "--grid", "optim.lr=0.2,0.3"], "optim.lr"),
    "set twice": (["--set", "model.width=8", "--set", "model.width=16"], "model.width"),
    "zip and grid": (
        ["--zip", "model.depth=1,2", "model.width=8,16", "--grid", "model.width=4,5"],
        "model.width",
    ),
    "zip and set": (
        ["--set", "model.depth=3", "--zip", "model.depth=1,2", "model.width=8,16"],
        "model.depth",
    ),
    "two zips": (
        ["--zip", "model.depth=1,2", "model.width=8,16"]
        + ["--zip", "model.depth=3,4", "init.sigma_w2=1,2"],
        "model.depth",
    ),
    "one zip, one key twice": (["--zip", "seed=1,2", "seed=3,4"], "seed"),
}


@pytest.mark.parametrize("flags, key", CONFLICTS.values(), ids=CONFLICTS.keys())
def test_a_key_given_by_two_flags_is_refused(flags, key, capsys):
    assert main(["run", STUDY, "--plan", *flags]) == 2
    out, err = capsys.readouterr()
    line = _one_error_line(err, key, "twice")
    assert out == ""
    assert line.count(key) == 1  # the key at fault, not a list of every key


def test_a_grid_over_the_studys_own_axis_replaces_it(capsys):
    argv = ["run", STUDY, "--plan", "--set", "train.steps=20", "--set", "train.log_every=10"]
    assert main([*argv, "--grid", "model.depth=2", "--grid", "seed=range(3)"]) == 0
    out, err = capsys.readouterr()
    study = experiments.get(STUDY)
    n_act = len(study.grid["model.activation"])
    n_lr = len(study.grid["optim.lr"])
    assert f"plan: {n_act} static group(s)" in out
    assert f"{n_act * n_lr * 3} members" in out  # seed now 3 values, depth one
    assert "depth=2" in out and "depth=1" not in out and "depth=6" not in out


# ---------------------------------------------------------------- the Python API


@pytest.fixture
def no_compute(monkeypatch):
    """The sweep engine replaced by a recorder: a test sees what would run, and nothing does."""
    calls = []

    def fake_run(cfg, axes, **kw):
        calls.append((cfg, axes))
        return "ran"

    monkeypatch.setattr(sweep, "run", fake_run)
    return calls


API_MISTAKES = {
    "overrides a string": (dict(overrides="train.steps=20"), "overrides"),
    "grid a string": (dict(grid="optim.lr=0.1"), "grid"),
    "scalar grid value": (dict(grid={"optim.lr": 0.1}), "optim.lr"),
    "set of values": (dict(grid={"optim.lr": {0.1, 0.2}}), "optim.lr"),
    "zip rows of unequal length": (
        dict(grid={("model.depth", "model.width"): [(1, 2), (3,)]}),
        "model.depth+model.width",
    ),
    "zip rows not rows": (dict(grid={("model.depth", "model.width"): [1, 2]}), "model.depth"),
    "out not a path": (dict(out=123), "out"),
    "unknown study": (dict(study="no_such_study"), "no_such_study"),
    "study not a name": (dict(study=3), "study"),
    "non-string override key": (dict(overrides={1: 2}), "1"),
    "non-string grid key": (dict(grid={1: [1, 2]}), "1"),
    "non-string key in a zip": (dict(grid={("model.depth", 2): [(1, 2)]}), "model.depth"),
    "unknown preset": (dict(preset="bogus"), "bogus"),
    "key in overrides and grid": (
        dict(overrides={"model.width": 8}, grid={"model.width": [8, 16]}),
        "model.width",
    ),
    "zip overlapping a grid key": (
        dict(grid={("model.depth", "model.width"): [(1, 8), (2, 4)], "model.width": [3]}),
        "model.width",
    ),
    "bad value in a grid string": (dict(grid={"optim.lr": "0.1,x"}), "optim.lr"),
    "unknown key in overrides": (dict(overrides={"model.widht": 8}), "model.widht"),
}


@pytest.mark.parametrize("kwargs, mention", API_MISTAKES.values(), ids=API_MISTAKES.keys())
def test_python_mistakes_raise_user_error_before_anything_runs(kwargs, mention, no_compute):
    kwargs = {"study": STUDY, **kwargs}
    with pytest.raises(sigjax.UserError) as exc:
        sigjax.run(kwargs.pop("study"), **kwargs)
    assert mention in str(exc.value)
    assert "\n" not in str(exc.value)
    assert no_compute == []
    assert sigjax.UserError is sigjax.errors.UserError


def test_python_and_command_line_give_the_same_message(no_compute, capsys):
    with pytest.raises(sigjax.UserError) as exc:
        sigjax.run(STUDY, overrides={"model.depth": "1.5"})
    assert main(["run", STUDY, "--plan", "--set", "model.depth=1.5"]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"sigjax: error: {exc.value}"
    with pytest.raises(sigjax.UserError) as exc:
        sigjax.run(STUDY, grid={"optim.lr": "linspace(1,2)"})
    assert main(["run", STUDY, "--plan", "--grid", "optim.lr=linspace(1,2)"]) == 2
    assert _one_error_line(capsys.readouterr().err) == f"sigjax: error: {exc.value}"


@pytest.mark.parametrize("expr", ["0.1,0.2", "logspace(-2,0,3)", "linspace(0.1, 0.5, 5)"])
def test_a_grid_string_is_parsed_as_on_the_command_line(expr, no_compute):
    assert sigjax.run(STUDY, grid={"optim.lr": expr}) == "ran"
    ((_, axes),) = no_compute
    lr = next(a for a in axes if a.key == "optim.lr")
    cli = grid.make_axes(dict([grid.parse(f"optim.lr={expr}")]))[0]
    assert lr.values == cli.values
    assert lr.values == tuple(float(v) for v in grid.expand(expr))


def test_python_values_and_strings_agree(no_compute):
    sigjax.run(STUDY, overrides={"model.width": "12"}, grid={"seed": range(3), "model.depth": "2"})
    ((cfg, axes),) = no_compute
    assert cfg.model.width == 12
    by_key = {a.key: a.values for a in axes}
    assert by_key["seed"] == (0, 1, 2) and by_key["model.depth"] == (2,)
    sigjax.run(STUDY, grid={"init.sigma_w2": np.array([0.5, 2.0])})
    assert {a.key: a.values for a in no_compute[1][1]}["init.sigma_w2"] == (0.5, 2.0)


# ---------------------------------------------------------------- conversion, limits


def test_convert_all_agrees_with_one_value_at_a_time():
    cases = {
        "model.depth": ["1", 2, 3.0, np.int64(4), " 5"],
        "optim.lr": ["0.1", 1, 0.5, np.float32(0.25), "nan"],
        "model.activation": ["tanh", "relu"],
        "model.out_dim": ["none", 3, None],
        "data.standardize": ["true", 0, "no"],
    }
    for key, values in cases.items():
        one = [config.get(config.replace(Config(), {key: v}), key) for v in values]
        got = config.convert_all(key, values)
        np.testing.assert_equal(got, one)
        assert [type(v) for v in got] == [type(v) for v in one]
    for key, bad, shown in [
        ("model.depth", ["1", "1.5"], "'1.5'"),
        ("model.depth", [1, True], "True"),
        ("optim.lr", ["0.1", "x"], "'x'"),
    ]:
        with pytest.raises(sigjax.UserError) as exc:
            config.convert_all(key, bad)
        with pytest.raises(sigjax.UserError) as one:
            config.parse_value(key, bad[-1]) if isinstance(bad[-1], str) else config.replace(
                Config(), {key: bad[-1]}
            )
        assert str(exc.value) == str(one.value) and shown in str(exc.value)


@pytest.mark.parametrize(
    "flag, mentions",
    [
        ("seed=range(1000000000000)", ["seed", "more than"]),
        ("optim.lr=logspace(-3,0,1000000000)", ["optim.lr", "more than"]),
        ("seed=range(1e30)", ["seed"]),
        ("seed=range(0,5,0)", ["range(0,5,0)", "step"]),
        ("model.width=range(1,100001)", ["static groups", "width 100,000", "100,000"]),
    ],
    ids=["huge range", "huge logspace", "range past int64", "zero step", "too many groups"],
)
def test_unreasonable_grids_are_refused_at_once(flag, mentions, capsys):
    t0 = time.perf_counter()
    assert main(["run", STUDY, "--plan", "--grid", flag]) == 2
    _one_error_line(capsys.readouterr().err, *mentions)
    assert time.perf_counter() - t0 < 30  # before: hours, or a traceback


def test_members_past_the_limit_are_refused_by_count():
    axes = [
        grid.Axis("seed", tuple(range(20_000))),
        grid.Axis("optim.lr", tuple(float(i + 1) for i in range(10_000))),
    ]
    with pytest.raises(sigjax.UserError, match=r"200,000,000 members \(seed 20,000 x lr 10,000\)"):
        grid.check_size(axes)
    assert grid.n_members(axes) == 200_000_000  # a Python int, no overflow
    huge = [grid.Axis("seed", tuple(range(3)))] * 50  # 3**50 overflows int64
    assert grid.n_members(huge) == 3**50


# ---------------------------------------------------------------- scale


def test_a_million_members_parse_and_enumerate_in_seconds():
    t0 = time.perf_counter()
    study = experiments.get(STUDY).with_overrides({}, {"seed": "range(1000000)"})
    axes = study.axes()
    groups = list(grid.groups(study.config, axes))
    elapsed = time.perf_counter() - t0
    n_lr = len(study.grid["optim.lr"])
    seed = groups[0].members["seed"]
    assert seed.shape == (n_lr * 1_000_000,) and seed.dtype == np.float64
    # C order: the seed (last axis) moves fastest
    np.testing.assert_array_equal(seed[:3], [0, 1, 2])
    assert seed[1_000_000] == 0 and seed[-1] == 999_999
    lr = groups[0].members["optim.lr"]
    assert lr[999_999] == lr[0] != lr[1_000_000]
    assert elapsed < 15, elapsed  # measured ~1.5 s; before, ~2 ms per value (over half an hour)


def _plans(n: int) -> list[plan.GroupPlan]:
    mem = plan.MemoryEstimate(params=100, state=400, activations=1000, trajectory=512)
    return [
        plan.GroupPlan(f"width={i + 1}", members=8, chunk=8 if i % 2 else 4, memory=mem)
        for i in range(n)
    ]


def test_describe_of_thousands_of_groups_is_a_summary_with_totals():
    plans = _plans(3000)
    plans[1234] = plan.GroupPlan(
        "width=1235", 8, 2, plan.MemoryEstimate(100, 400, 100_000, 512), why="big"
    )
    text = plan.describe(plans, 1 << 30)
    lines = text.splitlines()
    assert len(lines) < 20
    assert lines[0].startswith("plan: 3000 static group(s)")
    assert "24000 members" in lines[0]  # 3000 x 8
    chunks = 1500 * 1 + 1499 * 2 + 4  # odd i: chunk 8 (1), even: 4 (2), the big one: 2 (4)
    assert f"{chunks} chunk(s)" in lines[0]
    assert f"trajectories {plan.human(24000 * 512)} in all" in lines[0]
    labels = [ln.split(":")[0].strip() for ln in lines[1:] if ln.startswith("  width=")]
    assert labels == [f"width={i}" for i in (1, 2, 3, 4, 5, 2996, 2997, 2998, 2999, 3000)]
    (rest,) = [ln for ln in lines if "more groups" in ln]
    assert "2990 more groups" in rest and "the most at width=1235" in rest
    assert "1-4 chunk(s)" in rest


def test_describe_lists_every_group_of_a_small_plan():
    text = plan.describe(_plans(12), 1 << 30)
    assert [f"width={i}:" in text for i in range(1, 13)] == [True] * 12
    assert "more groups" not in text


# ---------------------------------------------------------------- member order


def test_groups_equal_the_straightforward_enumeration():
    spec = {
        "model.activation": ["tanh", "relu"],
        "optim.lr": [0.1, 0.3, 0.5],
        ("model.depth", "model.width"): [(1, 8), (2, 4)],
        ("init.sigma_w2", "init.sigma_b2"): [(1.0, 0.0), (2.0, 0.1)],
        "seed": [5, 7, 9, 11],
    }
    axes = grid.make_axes(spec)
    static = [a for a in axes if not a.dynamic]
    dynamic = [a for a in axes if a.dynamic]
    assert [a.key for a in dynamic] == ["optim.lr", "init.sigma_w2", "seed"]
    got = list(grid.groups(Config(), axes))
    want_index = list(itertools.product(*(range(len(a.values)) for a in static)))
    assert [g.index for g in got] == want_index
    positions = list(itertools.product(*(range(len(a.values)) for a in dynamic)))
    for g, index in zip(got, want_index, strict=True):
        updates = {}
        for a, i in zip(static, index, strict=True):
            updates |= a.at(i)
        assert g.cfg == config.replace(Config(), updates)
        assert list(g.members) == ["optim.lr", "init.sigma_w2", "init.sigma_b2", "seed"]
        for i, a in enumerate(dynamic):
            for key in (a.key, *(k for k, _ in a.zipped)):
                want = np.array([a.at(p[i])[key] for p in positions], dtype=np.float64)
                assert g.members[key].dtype == np.float64
                np.testing.assert_array_equal(g.members[key], want)
    assert grid.n_members(axes) == len(positions) == 24
    assert list(grid.groups(Config(), grid.make_axes({"model.depth": [1]})))[0].members == {}
