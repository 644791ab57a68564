"""A user's own study and registrations: `sigjax run FILE.py`, `--import`, `experiments.register`,
`sigjax.run` with every command-line behaviour, and the devices a Python run gets.

The studies are tiny and share one static group, so after the first run every run reuses the
compiled program (the results are compared with `sweep.run` of the same config and grid).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import experiments
import sigjax
from sigjax import cli
from sigjax import data as data_lib
from sigjax.engine import checkpoint, results, sweep
from sigjax.errors import UserError
from sigjax.nn import activations
from sigjax.study import Interrupted, Study

STUDY_FILE = """
from sigjax import config
from sigjax.config import Config
from sigjax.study import Study

STUDY = Study(
    name={name!r},
    description="a user's tiny study",
    config=config.replace(
        Config(),
        {{
            "model.width": 8,
            "train.steps": 10,
            "train.log_every": 5,
            "train.record": "gradients",
            "data.n_train": 40,
        }},
    ),
    grid={{"seed": (0, 1)}},
)
"""
ACTIVATION_FILE = """
import jax.numpy as jnp

import sigjax


def user_tanh(x):
    return jnp.tanh(x)


sigjax.register_activation("user_tanh", user_tanh)
"""


def _write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def _call(argv: list[str]) -> SimpleNamespace:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(argv)
    return SimpleNamespace(rc=rc, out=out.getvalue(), err=err.getvalue())


def _one_error_line(r: SimpleNamespace, *mentions: str) -> str:
    assert r.rc == 2, r
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sigjax: error: "), r.err
    assert "Traceback" not in r.err
    for m in mentions:
        assert m in lines[0], (m, lines[0])
    return lines[0]


def _same_results(a, b) -> None:
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.fixture(autouse=True)
def _registries(monkeypatch):
    """What a test registers (studies, activations) is gone after it."""
    monkeypatch.setattr(experiments, "STUDIES", dict(experiments.STUDIES))
    monkeypatch.setattr(activations, "REGISTRY", dict(activations.REGISTRY))


@pytest.fixture(scope="module")
def study_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "my_study.py"
    return _write(path, STUDY_FILE.format(name="tiny_user"))


@pytest.fixture(scope="module")
def reference(study_file):
    """The study file's config and grid trained by the sweep directly."""
    s = experiments.from_file(study_file)
    return sweep.run(s.config, s.axes())


# --------------------------------------------------------------------------- study files


def test_a_study_file_runs_with_the_run_directory_contract(study_file, reference, tmp_path):
    out = tmp_path / "run"
    argv = ["run", study_file, "--out", str(out), "--quiet"]
    r = _call(argv)
    assert r.rc == 0, r.err
    assert {"results.nc", "summary.csv", "config.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["study"] == "tiny_user"
    _same_results(results.load(out / "results.nc"), reference)
    _one_error_line(_call(argv), str(out), "--overwrite")  # nothing replaced without it
    assert _call([*argv, "--overwrite"]).rc == 0
    _one_error_line(_call([*argv, "--resume"]), "nothing to resume")


def test_a_study_file_plans_without_writing(study_file, tmp_path):
    r = _call(["run", study_file, "--plan", "--out", str(tmp_path / "run")])
    assert r.rc == 0, r.err
    assert "1 static group(s)" in r.out and "2 members" in r.out
    assert list(tmp_path.iterdir()) == []


def test_the_default_run_directory_is_named_after_the_study(study_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _call(["run", study_file, "--quiet"]).rc == 0
    assert (tmp_path / "runs" / "tiny_user" / "results.nc").exists()


BAD_FILES = {
    "missing": (None, ["no such file"]),
    "raises": ("raise ValueError('boom\\nsecond line')\n", ["ValueError: boom"]),
    "syntax": ("def (:\n", ["SyntaxError"]),
    "no STUDY": ("x = 1\n", ["defines no STUDY", "STUDY = sigjax.study.Study"]),
    "STUDY of another type": ("STUDY = {'name': 'x'}\n", ["sigjax.study.Study", "dict"]),
}


@pytest.mark.parametrize("text, mentions", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_study_file_is_one_line_exit_2(text, mentions, tmp_path):
    path = tmp_path / "bad_study.py"
    if text is not None:
        path.write_text(text)
    line = _one_error_line(_call(["run", str(path), "--out", str(tmp_path / "run")]), *mentions)
    assert "second line" not in line and str(path) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == (["bad_study.py"] if text else [])


@pytest.mark.parametrize("command", [["list"], ["show", "somewhere"]])
@pytest.mark.parametrize("which", ["missing", "raises", "syntax", "module"])
def test_a_bad_import_is_one_line_exit_2(command, which, tmp_path):
    spec = "no_such_module_for_sigjax" if which == "module" else str(tmp_path / "bad.py")
    if which in ("raises", "syntax"):
        Path(spec).write_text(BAD_FILES[which][0])
    mentions = ["ModuleNotFoundError"] if which == "module" else BAD_FILES[which][1]
    _one_error_line(_call([*command, "--import", spec]), "--import", spec, *mentions)


# ------------------------------------------------------------------ --import and registries


def test_import_registers_an_activation_for_run_and_theory(study_file, tmp_path):
    act = _write(tmp_path / "acts.py", ACTIVATION_FILE)
    theory = ["theory", "critical", "--activation"]
    _one_error_line(_call([*theory, "user_tanh"]), "user_tanh")
    mine = _call([*theory, "user_tanh", "--import", act])
    assert mine.rc == 0, mine.err
    # the same function as tanh: the same critical point
    assert mine.out.splitlines()[-1] == _call([*theory, "tanh"]).out.splitlines()[-1]
    plan = ["run", study_file, "--plan", "--set", "model.activation=user_tanh"]
    assert _call([*plan, "--import", act, "--import", act]).rc == 0  # imported once


def test_a_registered_study_is_listed_and_runs_by_name(tmp_path):
    path = tmp_path / "registers.py"
    _write(path, STUDY_FILE.format(name="registered_user") + "\nexperiments.register(STUDY)\n")
    path.write_text("import experiments\n" + path.read_text())
    _one_error_line(_call(["run", "registered_user", "--plan"]), "unknown study")
    r = _call(["list", "--import", str(path)])
    assert r.rc == 0, r.err
    names = [ln.split()[0] for ln in r.out.splitlines()]
    assert names[: len(experiments.BUILTIN)] == list(experiments.BUILTIN)
    assert names[-1] == "registered_user" and "a user's tiny study" in r.out.splitlines()[-1]
    r = _call(["run", "registered_user", "--plan", "--import", str(path)])
    assert r.rc == 0 and "2 members" in r.out, r.err


def test_register_refuses_what_would_be_ambiguous(study_file):
    s = experiments.from_file(study_file)
    assert experiments.register(s) is s and experiments.register(s) is s  # again: no change
    assert experiments.get("tiny_user") is s
    other = s.with_overrides({"model.width": 4})
    with pytest.raises(UserError, match="already registered"):
        experiments.register(other)
    assert experiments.register(other, replace=True) is other
    with pytest.raises(UserError, match="built in"):
        experiments.register(Study("glorot2010", "mine", s.config))
    with pytest.raises(UserError, match="a word"):
        experiments.register(Study("runs/mine", "mine", s.config))
    with pytest.raises(UserError, match="sigjax.study.Study"):
        experiments.register("tiny_user")


# ---------------------------------------------------------------------------- sigjax.run


def test_sigjax_run_takes_a_name_a_path_or_a_study(study_file, reference):
    s = experiments.from_file(study_file)
    _same_results(sigjax.run(study_file), reference)
    _same_results(sigjax.run(Path(study_file), max_memory="64M", progress=False), reference)
    _same_results(sigjax.run(s, {"train.steps": 10}, {"seed": [0, 1]}), reference)
    experiments.register(s)
    _same_results(sigjax.run("tiny_user", max_memory=1 << 26), reference)


def test_sigjax_run_resumes_an_interrupted_run(study_file, reference, tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = checkpoint.Store.save_state

    def interrupt(self, *args):
        original(self, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Store, "save_state", interrupt)
    with pytest.raises(Interrupted, match="--resume"):
        sigjax.run(study_file, out=out)
    monkeypatch.setattr(checkpoint.Store, "save_state", original)
    with pytest.raises(UserError, match="--resume"):  # the checkpoint is not silently dropped
        sigjax.run(study_file, out=out)
    _same_results(sigjax.run(study_file, out=out, resume=True), reference)
    _same_results(sigjax.run(study_file, out=out, overwrite=True), reference)


def test_sigjax_run_trains_on_given_data(study_file, tmp_path):
    s = experiments.from_file(study_file)
    rng = np.random.default_rng(3)
    d = data_lib.from_arrays(rng.normal(size=(30, 4)), rng.normal(size=(30, 2)))
    want = sweep.run(s.config, s.axes(), data=d)
    _same_results(sigjax.run(s, data=d), want)
    out = tmp_path / "run"
    _same_results(sigjax.run(s, data=d, out=out), want)
    meta = json.loads((out / "config.json").read_text())["config"]["data"]
    assert meta["name"] == "arrays" and meta["path"] == "sha256:" + data_lib.fingerprint(d)
    assert (meta["n_train"], meta["dim"], meta["out_dim"]) == (30, 4, 2)
    with pytest.raises(UserError, match="data.n_train"):
        sigjax.run(s, {"data.n_train": 10}, data=d)
    with pytest.raises(UserError, match="phase_diagram runs its own computation"):
        sigjax.run("phase_diagram", data=d)


BAD_CALLS = {
    "study of another type": ({"study": 3}, "study must be"),
    "resume without out": ({"resume": True}, "pass out="),
    "resume not a bool": ({"resume": "yes", "out": "x"}, "resume must be True or False"),
    "progress not a bool": ({"progress": 1}, "progress must be True or False"),
    "bad size": ({"max_memory": "lots"}, "'lots'"),
    "negative size": ({"max_memory": -5}, "max_memory must be"),
    "data not a Data": ({"data": {"x_train": [[1.0]]}}, "data must be a sigjax.data.Data"),
    "no such study": ({"study": "no_such_study"}, "unknown study"),
    "no such file": ({"study": "nowhere/study.py"}, "no such file"),
}


@pytest.mark.parametrize("kwargs, message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_a_mistake_in_a_sigjax_run_call_is_a_user_error(study_file, kwargs, message):
    kwargs = {"study": study_file} | kwargs
    with pytest.raises(UserError) as e:
        sigjax.run(kwargs.pop("study"), **kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


# ------------------------------------------------------------------------------- devices


def test_importing_sigjax_gives_jax_one_device_per_core_as_the_cli_does():
    assert cli._use_all_cores is sigjax._devices.use_all_cores
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env |= {"JAX_PLATFORMS": "cpu", "SIGJAX_HOST_DEVICES": "3"}
    prog = "import sigjax, jax; print(jax.local_device_count())"
    out = subprocess.run([sys.executable, "-c", prog], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == 3


FLAG = "--xla_force_host_platform_device_count"
DEVICE_CASES = {  # (XLA_FLAGS, SIGJAX_HOST_DEVICES, JAX imported) -> XLA_FLAGS after
    "the count asked": (None, "3", False, f"{FLAG}=3"),
    "one per core": (None, None, False, f"{FLAG}={os.cpu_count()}"),
    "other flags kept": ("--xla_dump_to=x", "2", False, f"--xla_dump_to=x {FLAG}=2"),
    "a count already set": (f"{FLAG}=2", "3", False, f"{FLAG}=2"),
    "JAX imported first": (None, "3", True, None),
}


@pytest.mark.parametrize("flags, count, imported, after", DEVICE_CASES.values(), ids=DEVICE_CASES)
def test_the_host_device_count_is_set_only_before_jax_and_unless_given(
    flags, count, imported, after, monkeypatch
):
    for name, value in (("XLA_FLAGS", flags), ("SIGJAX_HOST_DEVICES", count)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    if not imported:
        monkeypatch.delitem(sys.modules, "jax")
    sigjax._devices.use_all_cores()
    assert os.environ.get("XLA_FLAGS") == after
