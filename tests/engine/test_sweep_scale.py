"""Memory plan and device sharding of sweeps."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from helpers import subprocess_env, tiny

from sigjax import data as data_lib
from sigjax.engine import grid, plan, results, sweep, train
from sigjax.errors import UserError

AXES = {"optim.lr": [0.03, 0.1, 0.3], "seed": [0, 1]}


@pytest.mark.slow  # measures the memory of several chunk sizes
def test_memory_estimate_within_a_factor_two_of_measured_bytes():
    for updates in ({}, {"model.depth": 5, "model.width": 64, "train.log_every": 1}):
        cfg = tiny(**updates)
        data = data_lib.load(cfg.data)
        prog = train.program(cfg, data)
        state, traj = jax.jit(prog.train)(data, train.hparams_of(cfg), jax.random.key(0))
        params = sum(x.nbytes for x in jax.tree.leaves(state.params))
        recorded = sum(x.nbytes for x in jax.tree.leaves(traj.records))
        est = plan.estimate(cfg, data.in_dim, data.out_dim, 64, 32)
        assert 0.5 <= est.params / params <= 2
        assert 0.5 <= est.trajectory / recorded <= 2
        assert 0.5 <= (est.params + est.trajectory) / (params + recorded) <= 2


def test_budget_sets_the_chunk_and_chunked_equals_unchunked():
    cfg = tiny()
    axes = grid.make_axes(AXES)
    est = sweep.make_plan(cfg, axes, 1 << 40)[0].memory
    plans = sweep.make_plan(cfg, axes, budget=int(2.5 * est.device))
    assert plans[0].chunk == 2 and plans[0].chunks == 3
    a = sweep.run(cfg, axes)
    b = sweep.run(cfg, axes, max_memory=int(2.5 * est.device))
    for name in a.data_vars:
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5, atol=1e-7)
    with pytest.raises(UserError, match="cannot|needs about"):
        sweep.run(cfg, axes, max_memory=est.device // 2)


@pytest.mark.parametrize(
    "text, value",
    [("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", int(1.5 * (1 << 30))), ("1000", 1000)],
)
def test_parse_bytes(text, value):
    assert plan.parse_bytes(text) == value


@pytest.mark.parametrize("text", ["lots", "-1G", "0"])
def test_parse_bytes_rejects(text):
    with pytest.raises(UserError):
        plan.parse_bytes(text)


def test_sharded_over_four_cpu_devices_equals_one_device(tmp_path):
    out = tmp_path / "sharded.nc"
    code = textwrap.dedent(f"""
        import sys, jax
        sys.path.insert(0, {os.path.dirname(os.path.dirname(__file__))!r})
        from helpers import tiny
        from sigjax.engine import grid, results, sweep
        assert jax.local_device_count() == 4, jax.devices()
        ds = sweep.run(tiny(), grid.make_axes({AXES!r}))
        results.save(ds, {str(out)!r})
    """)
    env = subprocess_env(4)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    sharded = results.load(out)
    single = sweep.run(tiny(), grid.make_axes(AXES))
    assert sharded.attrs["device_count"] == "4" and single.attrs["device_count"] == "1"
    for name in single.data_vars:
        np.testing.assert_allclose(
            sharded[name].values, single[name].values, rtol=1e-5, atol=1e-7, err_msg=name
        )
