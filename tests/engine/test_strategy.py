"""Execution strategies: every way the planner can run members gives the plain vmap's numbers."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import subprocess_env, tiny

from sigjax import data as data_lib
from sigjax.engine import grid, plan, results, sweep, train
from sigjax.engine.plan import Strategy

AXES = {"optim.lr": [0.03, 0.1, 0.3], "seed": [0, 1]}  # 6 members
MIB = 1 << 20


def _assert_same(a, b, rtol=1e-5):
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=1e-7, err_msg=name)


def _group(cfg, strategy):
    d = data_lib.load(cfg.data)
    members = grid.groups(cfg, grid.make_axes(AXES))
    return sweep.run_group(train.program(cfg, d), d, next(members).members, strategy=strategy)


FAST = {(5, Strategy(batch=4)), (1, Strategy(batch=2)), (5, Strategy(unroll=3))}
STRATEGY_CASES = [  # the other combinations are `slow`: each compiles its own program
    pytest.param(
        log_every,
        s,
        id=f"{log_every}-{s}",
        marks=() if (log_every, s) in FAST else pytest.mark.slow,
    )
    for s in (Strategy(batch=1), Strategy(batch=2), Strategy(batch=4), Strategy(unroll=3))
    for log_every in (1, 5)
]


@pytest.mark.parametrize("log_every, strategy", STRATEGY_CASES)
def test_one_device_strategies_equal_plain_vmap(strategy, log_every):
    # batch=4 of 6 members leaves a remainder that lax.map runs as its own vmap
    cfg = tiny(**{"train.log_every": log_every, "train.steps": 10})
    _assert_same(_group(cfg, strategy), _group(cfg, Strategy()))


@pytest.mark.slow  # a subprocess with four host devices compiling every strategy
def test_host_device_strategies_equal_plain_vmap_on_one_device(tmp_path):
    strategies = [Strategy(4, 0), Strategy(4, 1), Strategy(4, 2, unroll=2)]
    code = textwrap.dedent(f"""
        import sys, jax
        sys.path.insert(0, {os.path.dirname(os.path.dirname(__file__))!r})
        from helpers import tiny
        from sigjax.engine import grid, results, sweep
        from sigjax.engine.plan import Strategy
        assert jax.local_device_count() == 4, jax.devices()
        for i, s in enumerate({strategies!r}):
            # 8 members: each of the 4 devices gets 2 (the chunk is padded to the devices)
            axes = grid.make_axes({{"optim.lr": [0.03, 0.1, 0.3, 1.0], "seed": [0, 1]}})
            results.save(sweep.run(tiny(), axes, strategy=s), f"{tmp_path}/s{{i}}.nc")
    """)
    env = subprocess_env(4)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    axes = grid.make_axes({"optim.lr": [0.03, 0.1, 0.3, 1.0], "seed": [0, 1]})
    plain = sweep.run(tiny(), axes, strategy=Strategy())
    for i, s in enumerate(strategies):
        split = results.load(tmp_path / f"s{i}.nc")
        assert split.attrs["strategies"] == repr([str(s)])
        for name in plain.data_vars:
            np.testing.assert_allclose(
                split[name].values, plain[name].values, rtol=1e-5, atol=1e-7, err_msg=name
            )


def test_planner_choice_equals_plain_vmap():
    cfg = tiny()
    axes = grid.make_axes(AXES)
    chosen = sweep.run(cfg, axes)
    plain = sweep.run(cfg, axes, strategy=Strategy())
    for name in plain.data_vars:
        np.testing.assert_allclose(chosen[name].values, plain[name].values, rtol=1e-5, atol=1e-7)


def _mem(working_set):
    # state + activations = working_set / TEMPORARIES
    half = int(working_set / plan.TEMPORARIES)
    return plan.MemoryEstimate(params=0, state=half, activations=0, trajectory=0)


def test_choose_by_hand():
    # 16 MiB of cache per device, 1.5 MiB a member: 10 fit, the power of two below is 8
    s, why = plan.choose(_mem(int(1.5 * MIB)), 256, "cpu", 2, cache=16 * MIB)
    assert s == Strategy(devices=2, batch=8) and "batches of 8" in why
    # bigger than the cache: small batches (one member alone runs slower than a few)
    s, _ = plan.choose(_mem(40 * MIB), 64, "cpu", 2, cache=16 * MIB)
    assert s == Strategy(devices=2, batch=plan.OVERSIZE_BATCH)
    # every member of a device fits: one vmap
    s, why = plan.choose(_mem(100 << 10), 256, "cpu", 2, cache=16 * MIB)
    assert s == Strategy(devices=2) and "one vmap" in why
    # accelerators: one wide vmap per device whatever the sizes
    s, _ = plan.choose(_mem(40 * MIB), 4096, "gpu", 1, cache=0)
    assert s == Strategy(devices=1)


def test_cache_share_splits_the_last_level_cache_over_devices():
    one, two = plan.cache_share(1), plan.cache_share(2)
    assert one > 0 and two > 0
    if (os.cpu_count() or 1) >= 2:
        assert one == 2 * two or one == two  # two devices share what one device had


def test_plan_describes_strategy_and_reason():
    cfg = tiny()
    axes = grid.make_axes(AXES)
    plans = sweep.make_plan(cfg, axes, budget=1 << 30)
    text = plan.describe(plans, 1 << 30)
    assert str(plans[0].strategy) in text and plans[0].why in text and "[1]" in text


@pytest.mark.parametrize("record", ["gradients", "loss"])
def test_recording_less_keeps_the_loss(record):
    cfg = tiny()
    axes = grid.make_axes(AXES)
    full = sweep.run(cfg, axes)
    less = sweep.run(tiny(**{"train.record": record}), axes)
    np.testing.assert_allclose(less.loss.values, full.loss.values, rtol=1e-6)
    np.testing.assert_allclose(less.test_loss.values, full.test_loss.values, rtol=1e-6)
    assert ("grad_norm" in less) == (record == "gradients")
    assert "act_mean" not in less and "saturation" not in less
    assert (less.n_layers.values == cfg.model.depth + 1).all()
    if record == "gradients":
        np.testing.assert_allclose(less.grad_norm.values, full.grad_norm.values, rtol=1e-6)
