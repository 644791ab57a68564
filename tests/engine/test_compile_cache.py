"""The persistent compilation cache, and how often a sweep compiles.

Compilations are counted through jax.monitoring (`compile_cache.counting`), never timed.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from helpers import subprocess_env

from sigjax import config
from sigjax import data as data_lib
from sigjax.engine import compile_cache, grid, sweep, train

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("jit(init)", "jit(members)", "jit(finish)")  # what a static group compiles

# A tiny sweep of two static groups (two activations), counted, as a fresh process runs it.
SCRIPT = """
import json, sys
import sigjax
from sigjax.engine import compile_cache, grid, sweep
from sigjax import config
import experiments

cfg = config.replace(
    experiments.get("sigmoid_convergence").config,
    {"train.steps": 20, "train.log_every": 10, "model.depth": 1},
)
axes = grid.make_axes(
    {"model.activation": ("sigmoid", "tanh"), "optim.lr": tuple(json.loads(sys.argv[1])),
     "seed": (0, 1)}
)
with compile_cache.counting() as c:
    ds = sweep.run(cfg, axes, segments=2)
print(json.dumps({"by_name": c.by_name, "hits": c.hits, "loss": ds.loss.values.tolist(),
                  "dir": str(compile_cache.state().directory)}))
"""


def _tiny():
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
            "train.batch_size": 0,
            "train.steps": 20,
            "train.log_every": 5,
        },
    )
    axes = grid.make_axes(
        {
            "model.activation": ("sigmoid", "tanh", "relu"),
            "optim.lr": (0.05, 0.2),
            "seed": (0, 1),
        }
    )
    return cfg, axes


def _run_script(env_cache: str, lrs) -> dict:
    env = subprocess_env(SIGJAX_COMPILATION_CACHE=env_cache, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(lrs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_compiles_nothing_of_the_sweep(tmp_path):
    cache = tmp_path / "jax-cache"
    first = _run_script(str(cache), [0.1, 0.3])
    assert first["dir"] == str(cache)
    n_first = {k: first["by_name"].get(k, 0) for k in PROGRAMS}
    assert n_first == dict.fromkeys(PROGRAMS, 2)  # one of each per static group
    entries = list(cache.glob("*-cache"))
    assert entries, "nothing was written to the cache"
    # other traced values (learning rates), same static shapes: every program from the cache
    second = _run_script(str(cache), [0.05, 0.2])
    n_second = {k: second["by_name"].get(k, 0) for k in PROGRAMS}
    assert n_second == n_first
    assert second["hits"] >= sum(n_second.values())  # each of them loaded, none compiled
    assert np.isfinite(np.asarray(second["loss"])).all()


def test_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SIGJAX_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for off in ("0", "off", "False", "no"):
        monkeypatch.setenv(compile_cache.ENV, off)
        assert compile_cache.wanted_dir() is None
    for on in ("", "1", "on"):
        monkeypatch.setenv(compile_cache.ENV, on)
        assert compile_cache.wanted_dir() == tmp_path / "xdg" / "sigjax" / "jax"
    monkeypatch.delenv(compile_cache.ENV)
    assert compile_cache.wanted_dir() == tmp_path / "xdg" / "sigjax" / "jax"
    monkeypatch.setenv("SIGJAX_CACHE", str(tmp_path / "mine"))
    assert compile_cache.wanted_dir() == tmp_path / "mine" / "jax"
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "elsewhere"))
    assert compile_cache.wanted_dir() == tmp_path / "elsewhere"


def test_the_test_session_writes_only_to_its_own_temporary_cache():
    # conftest points the cache at the run's temporary directory (removed when the run ends):
    # nothing lands in the user's cache directory
    run_cache = os.environ.get("SIGJAX_TEST_RUN_CACHE")
    assert run_cache and Path(run_cache).is_dir()
    if os.environ.get("SIGJAX_TEST_COMPILE_CACHE") == "0":
        assert compile_cache.state().directory is None
    else:
        assert compile_cache.state().directory == Path(run_cache)
        assert Path(tempfile.gettempdir()) in Path(run_cache).parents


def test_each_group_compiles_each_program_once_and_ahead_changes_no_bit():
    cfg, axes = _tiny()
    with compile_cache.counting() as c:
        ds = sweep.run(cfg, axes, segments=2)
    groups = list(grid.groups(cfg, axes))
    # init, one segment program (the 4 intervals split into 2 equal segments), final measure;
    # the next group's, compiled in the background, is reused, never built a second time
    assert {k: c.by_name.get(k, 0) for k in PROGRAMS} == dict.fromkeys(PROGRAMS, len(groups))
    # the same groups run one after another without compiling ahead: the same bits
    for g in groups:
        d = data_lib.load(g.cfg.data)
        alone = sweep.run_group(train.program(g.cfg, d), d, g.members, segments=2)
        sel = dict(zip([a.dim for a in axes if not a.dynamic], g.index, strict=True))
        got = ds.loss.isel(activation=sel["activation"]).transpose("lr", "seed", "step")
        np.testing.assert_array_equal(got.values.reshape(alone["loss"].shape), alone["loss"])
        gn = ds.grad_norm.isel(activation=sel["activation"]).transpose("lr", "seed", "step", ...)
        want = alone["grad_norm"]
        np.testing.assert_array_equal(gn.values.reshape(want.shape), want)
