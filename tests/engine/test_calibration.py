"""The planner's measured lax.map batch: the choice, the store keyed by shape and machine."""

import dataclasses

import jax

from sigjax import config
from sigjax.engine import calibrate, compile_cache, grid, plan, sweep


def test_fastest_takes_the_least_time_and_ties_go_to_the_smaller_batch():
    fake = {1: 3.0, 4: 1.5, 16: 1.2, 64: 2.5}  # seconds, as a timer would report them
    best, times = calibrate.fastest([1, 4, 16, 64], fake.__getitem__)
    assert best == 16 and times == fake
    best, _ = calibrate.fastest([2, 8, 32], {2: 1.0, 8: 1.0, 32: 1.0}.__getitem__)
    assert best == 2


def test_candidates_span_a_factor_of_sixteen_and_stay_within_a_device():
    assert calibrate.candidates(64, 128) == [4, 16, 64, 128]
    assert calibrate.candidates(4, 128) == [1, 4, 16]
    assert calibrate.candidates(8, 10) == [1, 2, 8, 10]


def test_the_store_is_keyed_by_shape_and_machine(tmp_path):
    path = tmp_path / calibrate.FILE
    here = calibrate.machine_key(2, "cpu")
    other = calibrate.machine_key(4, "cpu")  # the same host with other devices is another
    w = calibrate.workload_key((40, 10, 128), 128)
    w_small = calibrate.workload_key((40, 10, 32), 128)
    entry = {"batch": 4, "times": {2: 0.5, 4: 0.25, 8: 0.4}, "steps": 8}
    calibrate.save(path, calibrate.key_of(here, w), entry)
    assert calibrate.load(path, calibrate.key_of(here, w)) == entry
    assert calibrate.load(path, calibrate.key_of(other, w)) is None
    assert calibrate.load(path, calibrate.key_of(here, w_small)) is None
    calibrate.save(path, calibrate.key_of(here, w_small), {**entry, "batch": 8})
    assert calibrate.load(path, calibrate.key_of(here, w))["batch"] == 4  # both kept
    assert calibrate.load(path, calibrate.key_of(here, w_small))["batch"] == 8


def _plans_with_map(batch: int, members: int = 32):
    cfg = config.replace(
        config.Config(),
        {
            "data.name": "seed_regression",
            "data.n_train": 20,
            "data.dim": 4,
            "data.out_dim": 1,
            "model.width": 8,
            "model.depth": 1,
            "train.loss": "mse",
            "train.steps": 20,
            "train.log_every": 5,
        },
    )
    axes = grid.make_axes({"model.activation": ("sigmoid", "tanh"), "seed": tuple(range(members))})
    datasets: dict = {}
    plans = sweep.make_plan(cfg, axes, 1 << 30, datasets)
    forced = plan.Strategy(devices=jax.local_device_count(), batch=batch)
    plans = [dataclasses.replace(p, strategy=forced, why="model") for p in plans]
    return plans, list(grid.groups(cfg, axes)), datasets


def test_the_plan_takes_the_measured_batch_and_times_a_shape_once(monkeypatch, tmp_path):
    monkeypatch.setattr(calibrate, "store_path", lambda: tmp_path / calibrate.FILE)
    timed = []

    def fake_time(prog, data, members, p, batch, n):
        timed.append(batch)
        return {1: 2.0, 2: 0.5, 8: 1.0, 32: 3.0}[batch]

    monkeypatch.setattr(calibrate, "_time_batch", fake_time)
    plans, groups, datasets = _plans_with_map(batch=8)
    out = calibrate.calibrated(plans, groups, datasets)
    # both activations are one workload shape: timed once, each candidate once
    assert sorted(timed) == calibrate.candidates(8, 32) == [1, 2, 8, 32]
    assert [p.strategy.batch for p in out] == [2, 2]
    assert "measured on this machine" in out[0].why and "chose 2 (cache model: 8)" in out[0].why
    assert "measured on this machine" in plan.describe(out, 1 << 30)
    timed.clear()
    again = calibrate.calibrated(plans, groups, datasets)  # a second run reads the store
    assert timed == [] and [p.strategy.batch for p in again] == [2, 2]


def test_without_a_cache_directory_the_cache_model_stands(monkeypatch):
    monkeypatch.setattr(calibrate, "_time_batch", lambda *a: 1 / 0)  # must not be called
    assert calibrate.store_path() is None  # the tests run with calibration off (conftest)
    plans, groups, datasets = _plans_with_map(batch=8)
    assert calibrate.calibrated(plans, groups, datasets) == plans


def test_plan_notes_the_compilation_cache(tmp_path):
    (tmp_path / "a-cache").write_bytes(b"x" * 2048)
    (tmp_path / "a-atime").write_bytes(b"0")
    (tmp_path / "b-cache").write_bytes(b"x" * 1024)
    plans, _, _ = _plans_with_map(batch=0, members=2)  # (compiles nothing below)
    old = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))
        st = compile_cache.state()
        assert (st.entries, st.bytes) == (2, 3072)
        text = plan.describe(plans, 1 << 30)
        assert f"compilation cache: on in {tmp_path} (2 program(s), 3.0 KiB)" in text
    finally:
        jax.config.update("jax_compilation_cache_dir", old)
    # back on the directory in force before (the test run's own, or off)
    text = plan.describe(plans, 1 << 30)
    assert str(tmp_path) not in text and str(compile_cache.state()).split(" (")[0] in text
