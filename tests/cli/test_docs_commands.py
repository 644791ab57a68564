"""Every `sigjax ...` command line in README.md and docs/*.md runs and succeeds.

Commands are collected in document order from fenced code blocks (a line ending in `\\` joins the
next) and from inline backticks; `# comments`, `[--optional]` parts and `pip install ... &&`
prefixes are dropped, and `NAME` stands for every study. Skipped, each with its reason: the
`--coordinator` examples (they need two processes), `--compare torch` without PyTorch,
placeholders (`…`, `a|b`, `DIR`), and inline mentions that only name a command documented in full
elsewhere (`sigjax theory critical`).

Each runs in-process through `sigjax.cli.main`, in one temporary working directory (so a
`sigjax show runs/X` sees the run an earlier command wrote), with every study made tiny: a few
steps, width 8, each grid axis over traced numbers cut to its first two values and each static
axis (a compiled program per value) to its first (the command's own `--grid` too; its `--set`
applies as given, but for the step count), figures written as coarse PNGs, and the benchmark's
workloads shrunk to a few steps of a small net. The heavy studies' and the benchmark's commands
are marked slow (see SLOW_STUDIES). A command that writes a run
directory an earlier one wrote replaces it (the documents list alternatives, not a sequence); one
whose comment says `Ctrl-C` is interrupted after its first checkpoint, and the `--resume` that
follows it must finish the run.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

import experiments
from experiments import dynamical_isometry, sigmoid_convergence, trainability
from sigjax import bench, config
from sigjax.analysis import plotting
from sigjax.cli import main
from sigjax.engine import checkpoint
from sigjax.study import Study

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
HAS_TORCH = importlib.util.find_spec("torch") is not None

MAX_VALUES = 2  # values per grid axis over traced numbers (one compiled program serves them)
MAX_STATIC = 1  # values per static axis (each value compiles its own programs)
STEPS, LOG_EVERY = 20, 10
TINY_SETS = {"train.steps": STEPS, "train.log_every": LOG_EVERY, "model.width": 8}
# Even tiny, these compile 10-30 s of programs per command on a 2-core CPU (the probed sweeps
# of glorot2010 / dynamical_isometry, trainability's per-activation sweeps, the benchmark's
# several timed variants of each workload): run with `-m slow`.
SLOW_STUDIES = (
    "glorot2010",
    "dynamical_isometry",
    "trainability",
    "remedies",
    "convergence_rates",
)
STUDY_SETS = {  # on top of TINY_SETS
    "glorot2010": {"model.depth": 2},
    "gradient_propagation": {"model.depth": 4},
    "trainability": {"train.steps": 4, "train.log_every": 2},
}

# ---------------------------------------------------------------- collecting the commands

_FENCE = re.compile(r"^```.*?$(.*?)^```", re.S | re.M)
_INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")


def _spans(text: str) -> list[tuple[int, str, bool]]:
    """(offset, text, inline?) of every command candidate: code-block lines (continuations
    joined) and inline code spans, in document order."""
    out, last = [], 0
    for m in _FENCE.finditer(text):
        out += [
            (last + i.start(), i.group(1), True) for i in _INLINE.finditer(text[last : m.start()])
        ]
        block = m.group(1).replace("\\\n", " ")
        pos = m.start(1)
        for line in block.splitlines():
            out.append((pos, line, False))
            pos += len(line) + 1
        last = m.end()
    out += [(last + i.start(), i.group(1), True) for i in _INLINE.finditer(text[last:])]
    return sorted(out, key=lambda s: s[0])


def _normalize(line: str) -> tuple[str, str] | None:
    """(command without comments, its comment) if the line is a `sigjax` command, else None."""
    line = " ".join(line.split())
    cmd, _, comment = line.partition(" #")
    cmd = cmd.split("&&")[-1].strip()
    if not cmd.startswith("sigjax "):
        return None
    return " ".join(re.sub(r"\[[^\]]*\]", " ", cmd).split()), comment


def _skip_reason(argv: list[str]) -> str | None:
    if "--coordinator" in argv:
        return "a multi-process run needs two processes (tests/engine/test_distributed.py)"
    if "--compare" in argv and not HAS_TORCH:
        return "--compare torch needs PyTorch"
    for a in argv:
        if "…" in a or "..." in a or "|" in a or (a.isupper() and a.isalpha() and len(a) > 1):
            return f"placeholder {a!r}"
    return None


def doc_commands() -> list:
    """pytest params, one per distinct command (in document order), skips marked."""
    found = []  # (where, command, comment, inline?)
    for path in DOCS:
        text = path.read_text()
        for offset, span, inline in _spans(text):
            got = _normalize(span)
            if got:
                where = f"{path.name}:{text.count(chr(10), 0, offset) + 1}"
                found.append((where, *got, inline))
    expanded = []
    for where, cmd, comment, inline in found:
        names = experiments.STUDIES if " NAME" in f" {cmd} " else [None]
        for name in names:
            one = " ".join(name if t == "NAME" and name else t for t in cmd.split(" "))
            expanded.append((where, one, comment, inline))
    every = {c for _, c, _, _ in expanded}
    entries = []
    for where, cmd, comment, inline in expanded:
        argv = shlex.split(cmd)[1:]
        why = _skip_reason(argv)
        if inline and any(c.startswith(cmd + " ") for c in every):
            why = why or "names a command that is documented in full"
        entries.append((where, cmd, comment, argv, why))
    runnable = {cmd for *_, cmd, _, _, why in entries if why is None}
    params, seen = [], set()
    for where, cmd, comment, argv, why in entries:
        if cmd in seen or (why and cmd in runnable):  # each command once, run where it can be
            continue
        seen.add(cmd)
        marks = [pytest.mark.skip(reason=why)] if why else []
        heavy = "sharpness" in cmd  # the curvature metrics: NTK and Hessian at each log
        if argv[0] == "bench" or (argv[0] == "run" and argv[1:2] and argv[1] in SLOW_STUDIES):
            heavy = True
        if heavy:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(argv, "Ctrl-C" in comment, id=f"{where} {cmd}", marks=marks))
    return params


COMMANDS = doc_commands()

# ---------------------------------------------------------------- tiny studies and benchmarks


@dataclasses.dataclass(frozen=True)
class _Tiny(Study):
    """A study whose grid axes keep at most MAX_VALUES values and whose runs stay short."""

    def with_overrides(self, sets=None, grids=None) -> Study:
        return _clamp(Study.with_overrides(self, sets, grids))

    def preset(self, name: str | None) -> Study:  # a preset's sizes give way to the tiny ones
        return _tiny_sets(Study.preset(self, name))


def _clamp(study: Study) -> Study:
    cfg = study.config
    steps = min(cfg.train.steps, STEPS)
    log_every = min(cfg.train.log_every, LOG_EVERY, steps)
    cfg = config.replace(cfg, {"train.steps": steps, "train.log_every": log_every})
    grid = {k: tuple(v)[: MAX_VALUES if _dynamic(k) else MAX_STATIC] for k, v in study.grid.items()}
    return dataclasses.replace(study, config=cfg, grid=grid)


def _dynamic(key: str | tuple[str, ...]) -> bool:
    return all(k in config.DYNAMIC_KEYS for k in (key if isinstance(key, tuple) else (key,)))


def _tiny_sets(study: Study) -> Study:
    sets = TINY_SETS | STUDY_SETS.get(study.name, {})
    swept = {k for key in study.grid for k in (key if isinstance(key, tuple) else (key,))}
    plain = {k: v for k, v in sets.items() if k not in swept}  # a swept key keeps its axis
    return dataclasses.replace(study, config=config.replace(study.config, plain))


def _tiny_study(get, name: str) -> Study:
    study = get(name)
    fields = {f.name: getattr(study, f.name) for f in dataclasses.fields(Study)}
    return _clamp(_tiny_sets(_Tiny(**fields)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The patches, and one working directory shared by every command in the module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiments, "get", functools.partial(_tiny_study, experiments.get))
        # each activation's own σ_w² axis is a grid axis too
        mp.setattr(
            trainability.training,
            "SIGMA_W2",
            {k: v[:: len(v) - 1] for k, v in trainability.training.SIGMA_W2.items()},
        )
        mp.setattr(dynamical_isometry.jacobians, "MIN_SPECTRA_DEPTH", 4)
        mp.setattr(dynamical_isometry.jacobians, "MIN_SPECTRA_WIDTH", 8)
        # the blog's example by hand for a few steps
        # (tests/studies/test_sigmoid_convergence.py checks it against sigjax's engine)
        descent = functools.partial(sigmoid_convergence.blog_descent, steps=STEPS)
        mp.setattr(sigmoid_convergence, "blog_descent", descent)
        mp.setattr(sigmoid_convergence, "blog_engine", descent)
        mp.setattr(plotting, "save", _save_png)
        mp.setattr(
            bench,
            "WORKLOADS",
            {
                n: dataclasses.replace(w, seeds=1, width=8, depth=1, steps=4)
                for n, w in bench.WORKLOADS.items()
            },
        )
        workload = bench.bench_workload

        def tiny_workload(w, peak, steps=None, seeds=None, *args, **kw):
            return workload(w, peak, min(steps or w.steps, 4), 1, *args, **kw)

        mp.setattr(bench, "bench_workload", tiny_workload)
        mp.setattr(bench, "gemm_peak", functools.partial(bench.gemm_peak, 64, 1))
        yield tmp_path_factory.mktemp("docs")


def _save_png(fig, directory, name: str, dpi: int = 100) -> list[Path]:
    """plotting.save, PNG only and coarse (a PDF costs more than a tiny run)."""
    out = Path(directory) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / f"{name}.png", dpi=20)
    plotting.plt.close(fig)
    return [out / f"{name}.png"]


def _run_dir(argv: list[str]) -> Path:
    """The run directory of a `run` command (its --out, else runs/STUDY)."""
    if "--out" in argv:
        return Path(argv[argv.index("--out") + 1])
    named = len(argv) > 1 and not argv[1].startswith("-")
    return Path("runs") / (argv[1] if named else experiments.DEFAULT)


def test_every_documented_command_is_collected():
    ids = [p.id for p in COMMANDS]
    joined = [p.values[0] for p in COMMANDS if "runs/init" in p.values[0]]  # across a `\`
    assert joined and "model.activation=sigmoid,tanh" in joined[0] and "seed=range(32)" in joined[0]
    assert any(i.endswith("sigjax show runs/sigmoid_convergence") for i in ids)  # [--plot] gone
    assert any(i.endswith("sigjax run trainability") for i in ids)  # NAME, every study
    assert all("#" not in i.split(" ", 1)[1] for i in ids)


def test_documented_commands_are_valid_shell():
    """An unquoted `(` is a shell syntax error: `--grid 'seed=range(8)'` needs its quotes."""
    for p in COMMANDS:
        cmd = p.id.split(" ", 1)[1]
        tokens = list(shlex.shlex(cmd, posix=True, punctuation_chars=True))
        assert not any(set(t) & set("()") for t in tokens if set(t) <= set("();<>|&")), cmd


@pytest.mark.parametrize(("argv", "interrupt"), COMMANDS)
def test_documented_command_runs(argv, interrupt, tiny, monkeypatch, capsys):
    monkeypatch.chdir(tiny)
    run = argv[0] == "run" and "--plan" not in argv
    out = _run_dir(argv) if run else None
    if run and "--resume" not in argv and out.exists():
        shutil.rmtree(out)
    if interrupt:
        save = checkpoint.Store.save_state

        def stop_after_first(self, *args):
            save(self, *args)
            raise KeyboardInterrupt

        monkeypatch.setattr(checkpoint.Store, "save_state", stop_after_first)
        assert main(argv) == 130, capsys.readouterr().err
        assert any(out.parent.glob(f".{out.name}.partial*")), "no checkpoint kept for --resume"
        assert not out.exists()
        return
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    if run:
        assert (out / "results.nc").is_file()
        assert f"wrote {out.resolve()}/" in captured.out
    if "--json" in argv:
        result = json.loads(captured.out)
        assert {w["workload"] for w in result["workloads"]} <= set(bench.WORKLOADS)
    if argv[0] == "show":
        assert "study " in captured.out
