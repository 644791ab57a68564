"""A fixed list of bad inputs through the command line and the Python API.

Each must be refused with exit code 2 (`sigjax.UserError` from Python), no traceback, one line
that names the key or path at fault, and a run directory that already existed left byte for
byte as it was — even when the bad command names it with `--out ... --overwrite`.
"""

import dataclasses

import pytest

import experiments
import sigjax
from sigjax.cli import main
from sigjax.study import run_study

TINY = {"train.steps": 20, "train.log_every": 10}  # added unless the command sets them


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished run directory and a snapshot of every byte in its parent."""
    root = tmp_path_factory.mktemp("existing")
    sets = {"train.steps": 20, "train.log_every": 10, "model.width": 8}
    grids = {"model.activation": ["tanh"], "model.depth": [1], "optim.lr": [0.1], "seed": [0]}
    study = experiments.get("sigmoid_convergence").with_overrides(sets, grids)
    run_study(dataclasses.replace(study, report=None), root / "run")
    (root / "notes").mkdir()
    (root / "notes" / "config.json").write_text('{"mine": 1}\n')  # not a sigjax run
    (root / "notes" / "src.py").write_text("print('precious')\n")
    (root / "afile").write_text("a file\n")
    return root


def _snapshot(root):
    return {
        str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


# (argv, words the one line must contain). RUN stands for the existing run directory, ROOT for
# its parent; `run` commands get `--out RUN --overwrite` unless they name their own --out.
CLI = [
    (["run", "nosuch"], ["nosuch"]),
    (["run", "--set", "nokey=1"], ["nokey"]),
    (["run", "--set", "model.width"], ["model.width"]),
    (["run", "--set", "model.width=abc"], ["model.width", "abc"]),
    (["run", "--set", "model.width=0"], ["model.width"]),
    (["run", "--set", "model.width=-4"], ["model.width"]),
    (["run", "--set", "model.depth=-1"], ["model.depth"]),
    (["run", "--set", "model.activation=nosuch"], ["nosuch"]),
    (["run", "--set", "model.head_activation=nosuch"], ["nosuch"]),
    (["run", "--set", "init.scheme=nosuch"], ["nosuch"]),
    (["run", "--set", "optim.name=nosuch"], ["nosuch"]),
    (["run", "--set", "train.loss=nosuch"], ["nosuch"]),
    (["run", "--set", "data.name=nosuch"], ["nosuch"]),
    (["run", "--set", "train.steps=0"], ["train.steps"]),
    (["run", "--set", "train.steps=25"], ["train.steps", "train.log_every"]),
    (["run", "--set", "train.log_every=0"], ["train.log_every"]),
    (["run", "--set", "train.batch_size=-1"], ["train.batch_size"]),
    (["run", "--set", "train.record=bogus"], ["train.record"]),
    (["run", "--set", "train.precision=fp8"], ["train.precision"]),
    (["run", "--set", "train.diverge_factor=0.5"], ["train.diverge_factor"]),
    (["run", "--set", "data.seed=-1"], ["data.seed"]),
    (["run", "--set", "model.out_dim=-3"], ["model.out_dim"]),
    (["run", "--set", "data.n_train=1000000000"], ["data.n_train"]),
    (["run", "--set", "optim.lr=-0.1"], ["lr"]),
    (["run", "--set", "optim.lr=nan"], ["lr"]),
    (["run", "--set", "optim.lr=inf"], ["lr"]),
    (["run", "--set", "optim.momentum=1.5"], ["momentum"]),
    (["run", "--set", "init.sigma_w2=-1"], ["sigma_w2"]),
    (["run", "--set", "seed=-1"], ["seed"]),
    (["run", "--set", "seed=4294967296"], ["seed", "2**32"]),
    (["run", "--set", "seed=1.5"], ["seed"]),
    (["run", "--grid", "optim.lr="], ["optim.lr"]),
    (["run", "--grid", "optim.lr"], ["optim.lr"]),
    (["run", "--grid", "optim.lr=linspace(0,1)"], ["linspace"]),
    (["run", "--grid", "optim.lr=logspace(0,1,-2)"], ["logspace"]),
    (["run", "--grid", "seed=range(1.5)"], ["range"]),
    (["run", "--grid", "optim.lr=0.1,0.1"], ["optim.lr"]),
    (["run", "--grid", "optim.lr=0.1,-0.3"], ["lr", "-0.3"]),
    (["run", "--grid", "train.steps=10,20"], ["train.steps"]),
    (["run", "--grid", "model.activation=tanh,nosuch"], ["nosuch"]),
    (["run", "--grid", "model.width=8", "--grid", "model.width=16"], ["model.width"]),
    (["run", "--set", "model.width=8", "--grid", "model.width=8,16"], ["model.width"]),
    (["run", "--zip", "model.depth=1,2", "model.width=8"], ["--zip"]),
    (["run", "--zip", "model.depth=1,2", "model.width=8,16", "--grid", "model.depth=3"], ["depth"]),
    (["run", "--max-memory", "inf"], ["--max-memory"]),
    (["run", "--max-memory", "nan"], ["--max-memory"]),
    (["run", "--max-memory", "1e400"], ["--max-memory"]),
    (["run", "--max-memory", "-1"], ["--max-memory"]),
    (["run", "--max-memory", "abc"], ["--max-memory"]),
    (["run", "--out", "ROOT/afile"], ["afile"]),
    (["run", "--out", "ROOT/afile/below"], ["afile"]),
    (["run", "--out", "ROOT/notes", "--overwrite"], ["notes"]),
    (["run", "--out", "ROOT/notes", "--overwrite", "--resume"], ["notes"]),
    (["run", "--out", "RUN"], ["RUN", "--overwrite"]),
    (["run", "--out", "ROOT/fresh", "--resume"], ["fresh"]),
    (["run", "--coordinator", "localhost:1"], ["--num-processes"]),
    (["run", "phase_diagram", "--plan"], ["--plan"]),
    (["show", "ROOT/nowhere"], ["nowhere"]),
    (["show", "ROOT/notes"], ["notes"]),
    (["theory", "critical", "--activation", "nosuch"], ["nosuch"]),
    (["theory", "point", "--activation", "tanh", "--sigma-w2", "-1"], ["sigma"]),
    (["theory", "line", "--activation", "tanh", "--points", "100000000"], ["--points"]),
    (["theory", "line", "--activation", "tanh", "--points", "0"], ["--points"]),
    (["bench", "--members", "17"], ["--members"]),
    (["bench", "--workload", "nosuch"], ["nosuch"]),
]


def _argv(argv, root):
    out = [a.replace("ROOT", str(root)).replace("RUN", str(root / "run")) for a in argv]
    if out[0] == "run" and "--out" not in out:
        out += ["--out", str(root / "run"), "--overwrite"]
    if out[0] != "run":
        return out
    tiny = [
        x
        for pair in (("--set", f"{k}={v}") for k, v in TINY.items() if k not in " ".join(out))
        for x in pair
    ]
    return [*out, "--quiet", *tiny]


@pytest.mark.parametrize(("argv", "words"), CLI, ids=[" ".join(a) for a, _ in CLI])
def test_cli_refuses_with_one_line(existing, capsys, argv, words):
    before = _snapshot(existing)
    argv = _argv(argv, existing)
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("sigjax: error: "), err
    for w in words:
        w = w.replace("ROOT", str(existing)).replace("RUN", str(existing / "run"))
        assert w in err, (w, err)
    assert _snapshot(existing) == before


def test_the_list_is_long_enough():
    assert len(CLI) + len(PYTHON) >= 60


PYTHON = [
    (dict(study="nosuch"), "nosuch"),
    (dict(overrides="train.steps=20"), "overrides"),
    (dict(grid={"optim.lr": 0.1}), "optim.lr"),
    (dict(grid={("model.depth", "model.width"): [(1, 8), (3,)]}), "model.depth"),
    (dict(out=123), "out"),
    (dict(overrides={"nokey": 1}), "nokey"),
    (dict(overrides={"model.width": "abc"}), "model.width"),
    (dict(preset="bogus"), "bogus"),
    (dict(overrides={"optim.lr": 0.1}, grid={"optim.lr": [0.1, 0.2]}), "optim.lr"),
    (dict(grid={1: [1, 2]}), "1"),
    (dict(overrides={"seed": 2**32}), "seed"),
    (dict(grid={"optim.lr": "0.1,-0.2"}), "lr"),
]


@pytest.mark.parametrize(("kwargs", "word"), PYTHON, ids=[str(k) for k, _ in PYTHON])
def test_python_api_raises_user_error(existing, kwargs, word):
    before = _snapshot(existing)
    kwargs = {"study": "sigmoid_convergence"} | kwargs
    if "out" not in kwargs:
        kwargs |= {"out": existing / "run", "overwrite": True}
    with pytest.raises(sigjax.UserError) as info:
        sigjax.run(**kwargs)
    message = str(info.value)
    assert "\n" not in message and word in message, message
    assert _snapshot(existing) == before
