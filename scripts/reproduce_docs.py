"""Rerun the studies the docs quote and regenerate their tables and figures in place.

    python scripts/reproduce_docs.py            # rerun every study the docs quote, rewrite them
    python scripts/reproduce_docs.py --check    # exit 1 if the docs would change; writes nothing
    python scripts/reproduce_docs.py --only phase_diagram
    python scripts/reproduce_docs.py --list     # the regions and the command behind each
    python scripts/reproduce_docs.py --only remedies --keep runs/docs   # keep the run directories

A doc region that quotes a study sits between two HTML comments (invisible on GitHub):

    <!-- reproduce: STUDY [ARGS ...] [| table=FILE[#PARTS]] [| figures=SRC:DST[,SRC:DST ...]] -->
    ... generated: replaced at every run ...
    <!-- /reproduce -->

* `STUDY ARGS` is what follows `sigjax run` (a study's name, then e.g. `--quick` or
  `--set train.steps=500`). The study runs once per distinct command, through the command
  line, into a temporary run directory (`--out` and `--quiet` are added); with `--keep DIR`
  the run directories are kept, as DIR/run0, DIR/run1, … (DIR must not hold them already).
* `table=FILE#PARTS` names what the region holds: FILE in the run directory (default
  table.md), PARTS its blank-line-separated blocks, 1-based (`#2`, `#1-3`; default all);
  `table=none` holds no table (a region that only states where its figures came from).
* `figures=SRC:DST,...` copies the run's figures/SRC.png to docs/figures/DST.png.

The region becomes the chosen text followed by a line "Made by `sigjax run STUDY ARGS` at commit
HASH." (HASH: the short git commit the run records, `+dirty` for uncommitted changes). A region
whose text is unchanged apart from that commit is left as it is, and `--check` ignores the
commit: a new commit changes the docs only where it changes a number. Figures are compared
byte for byte (matplotlib's PNGs are deterministic for the same results).

To make another section reproducible, put the two comments around the table it quotes (the
text between them is replaced), name the figures it shows, and run the script once: e.g.

    <!-- reproduce: trainability | figures=trainability:trainability -->
    <!-- /reproduce -->

Markers are found in README.md and docs/*.md. A marker naming an unknown study, an unclosed or
nested marker and a missing file or part are one-line errors (exit 2); a failing run exits 1.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sigjax.errors import Fault, UserError  # noqa: E402

OPEN = re.compile(r"<!--\s*reproduce:(?P<spec>.*?)-->")
CLOSE = re.compile(r"<!--\s*/reproduce\s*-->")
MADE_BY = re.compile(r"^Made by `sigjax run (?P<cmd>[^`]*)` at commit (?P<commit>\S+)\.$", re.M)
DOCS = ("README.md", "docs/*.md")
FIGURES = Path("docs/figures")


@dataclass(frozen=True)
class Region:
    """One marked region of a doc: what to run and what to put where."""

    doc: str  # the doc's path, as shown in messages
    line: int  # 1-based line of the opening marker
    start: int  # character offsets of the region's body (between the markers)
    end: int
    args: tuple[str, ...]  # after `sigjax run`: the study's name first
    table: str = "table.md"  # a file of the run directory, or "none"
    parts: tuple[int, int] | None = None  # 1-based inclusive block range; None: all
    figures: tuple[tuple[str, str], ...] = ()  # (run's figures/SRC, docs/figures/DST)

    @property
    def study(self) -> str:
        return self.args[0]

    @property
    def command(self) -> str:
        return shlex.join(self.args)


def parse_spec(spec: str, where: str) -> dict:
    """The fields of a marker's `STUDY ARGS | key=value | ...` (see the module docstring)."""
    head, *fields = (f.strip() for f in spec.split("|"))
    try:
        args = tuple(shlex.split(head))
    except ValueError as e:
        raise UserError(f"{where}: cannot read the command {head!r}: {e}") from None
    if not args:
        raise UserError(f"{where}: the marker names no study")
    out: dict = {"args": args}
    for field in fields:
        key, eq, value = field.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in ("table", "figures"):
            raise UserError(f"{where}: unknown marker field {field!r} (table=…, figures=…)")
        if key == "table":
            name, _, part = value.partition("#")
            out["table"] = name or "table.md"
            if part:
                m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
                if not m or int(m[1]) < 1 or int(m[2] or m[1]) < int(m[1]):
                    raise UserError(f"{where}: table part {part!r} is not N or N-M (from 1)")
                out["parts"] = (int(m[1]), int(m[2] or m[1]))
        else:
            pairs = []
            for item in filter(None, (v.strip() for v in value.split(","))):
                src, colon, dst = item.partition(":")
                if not colon or not src or not dst or "/" in src + dst:
                    raise UserError(f"{where}: figures takes SRC:DST names, got {item!r}")
                pairs.append((src, dst))
            out["figures"] = tuple(pairs)
    return out


def find_regions(text: str, doc: str = "<doc>") -> list[Region]:
    """The marked regions of `text`, in order. UserError for an unclosed, nested or stray
    marker, or a malformed one."""
    regions, pos = [], 0
    while True:
        m_open, m_close = OPEN.search(text, pos), CLOSE.search(text, pos)
        if m_open is None:
            if m_close is not None:
                raise UserError(f"{doc}:{_line(text, m_close.start())}: /reproduce without a start")
            return regions
        where = f"{doc}:{_line(text, m_open.start())}"
        if m_close is not None and m_close.start() < m_open.start():
            raise UserError(f"{doc}:{_line(text, m_close.start())}: /reproduce without a start")
        if m_close is None:
            raise UserError(f"{where}: reproduce marker without <!-- /reproduce -->")
        nested = OPEN.search(text, m_open.end(), m_close.start())
        if nested is not None:
            raise UserError(f"{doc}:{_line(text, nested.start())}: reproduce markers nest")
        fields = parse_spec(m_open["spec"], where)
        regions.append(
            Region(doc, _line(text, m_open.start()), m_open.end(), m_close.start(), **fields)
        )
        pos = m_close.end()


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def made_by(command: str, commit: str) -> str:
    return f"Made by `sigjax run {command}` at commit {commit}."


def select_parts(text: str, parts: tuple[int, int] | None, where: str = "") -> str:
    """Blocks parts[0]..parts[1] (1-based) of `text`, blocks being separated by blank lines."""
    if parts is None:
        return text.strip()
    blocks = [b.strip() for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    lo, hi = parts
    if hi > len(blocks):
        raise UserError(f"{where}: the table has {len(blocks)} parts, not {hi}")
    return "\n\n".join(blocks[lo - 1 : hi])


def body(quoted: str, command: str, commit: str) -> str:
    """A region's body: the quoted text (may be empty) and its "Made by" line."""
    lines = [quoted.strip(), ""] if quoted.strip() else []
    return "\n" + "\n".join([*lines, made_by(command, commit)]) + "\n"


def _without_commit(text: str) -> str:
    return MADE_BY.sub(lambda m: made_by(m["cmd"], "COMMIT"), text)


def replace_regions(text: str, regions: Iterable[Region], bodies: Callable[[Region], str]) -> str:
    """`text` with each region's body replaced by bodies(region) (a pure function of its
    inputs); a body equal to the old one up to the commit in its "Made by" line is kept."""
    out, pos = [], 0
    for r in sorted(regions, key=lambda r: r.start):
        old, new = text[r.start : r.end], bodies(r)
        out += [text[pos : r.start], old if _without_commit(old) == _without_commit(new) else new]
        pos = r.end
    return "".join([*out, text[pos:]])


# ---------------------------------------------------------------- running the studies

Runner = Callable[[tuple[str, ...], Path], None]


def run_cli(args: tuple[str, ...], out: Path) -> None:
    """`sigjax run ARGS --out OUT --quiet` in a fresh process, from the repository root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "sigjax.cli", "run", *args, "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise Fault(f"sigjax run {shlex.join(args)} failed (exit {proc.returncode}): {last}")


def run_commit(run: Path) -> str:
    """The short commit a run directory's results record ('unknown' when they do not)."""
    path = run / "results.nc"
    if not path.exists():
        return "unknown"
    import xarray as xr

    with xr.open_dataset(path) as ds:
        full = str(ds.attrs.get("git_commit", "unknown"))
    commit, plus, rest = full.partition("+")
    return (commit[:7] if commit != "unknown" else commit) + plus + rest


def check_studies(regions: Iterable[Region], names: Iterable[str]) -> None:
    """UserError naming the first region whose study is not one of `names`."""
    names = list(names)
    for r in regions:
        if r.study not in names:
            raise UserError(
                f"{r.doc}:{r.line}: unknown study {r.study!r}; choose from {', '.join(names)}"
            )


def docs_of(root: Path) -> list[Path]:
    return sorted({p for pattern in DOCS for p in root.glob(pattern) if p.is_file()})


def reproduce(
    root: Path,
    runner: Runner = run_cli,
    *,
    only: str | None = None,
    check: bool = False,
    studies: Iterable[str] | None = None,
    log: Callable[[str], None] = print,
    keep: Path | None = None,
) -> list[str]:
    """Rerun the marked studies and rewrite their regions and figures under `root` (with
    check=True: write nothing; keep: the directory the runs are kept in, else a temporary one).
    Returns what changed (or would), as 'path' strings."""
    if studies is None:
        import experiments

        studies = list(experiments.STUDIES)
    studies = list(studies)
    if only is not None and only not in studies:
        raise UserError(f"unknown study {only!r}; choose from {', '.join(studies)}")
    docs = {p: p.read_text() for p in docs_of(root)}
    regions = {p: find_regions(t, str(p.relative_to(root))) for p, t in docs.items()}
    for rs in regions.values():
        check_studies(rs, studies)
    todo = {p: [r for r in rs if only is None or r.study == only] for p, rs in regions.items()}
    commands = list(dict.fromkeys(r.args for rs in todo.values() for r in rs))
    if not commands:
        log(f"no regions quote {only}" if only else "no reproduce markers in the docs")
        return []
    if keep is not None:
        taken = [keep / f"run{i}" for i in range(len(commands)) if (keep / f"run{i}").exists()]
        if taken:
            raise UserError(f"--keep: {taken[0]} exists; choose another directory")
    with tempfile.TemporaryDirectory(prefix="reproduce_docs.") as tmp:
        runs = {}
        for i, args in enumerate(commands):
            log(f"sigjax run {shlex.join(args)}")
            t0 = time.perf_counter()
            runs[args] = Path(keep if keep is not None else tmp) / f"run{i}"
            runs[args].parent.mkdir(parents=True, exist_ok=True)
            runner(args, runs[args])
            log(f"  done in {time.perf_counter() - t0:.0f} s")

        def bodies(r: Region) -> str:
            run = runs[r.args]
            quoted = ""
            if r.table != "none":
                path = run / r.table
                if not path.is_file():
                    raise UserError(f"{r.doc}:{r.line}: the run wrote no {r.table}")
                quoted = select_parts(path.read_text(), r.parts, f"{r.doc}:{r.line}")
            return body(quoted, r.command, run_commit(run))

        # everything is computed and checked before anything is written
        texts = {p: replace_regions(docs[p], rs, bodies) for p, rs in todo.items() if rs}
        copies = {}
        for r in (r for rs in todo.values() for r in rs):
            for src, dst in r.figures:
                a, b = runs[r.args] / "figures" / f"{src}.png", root / FIGURES / f"{dst}.png"
                if not a.is_file():
                    raise UserError(f"{r.doc}:{r.line}: the run drew no figures/{src}.png")
                if not (b.is_file() and filecmp.cmp(a, b, shallow=False)):
                    copies[b] = a
        changed = [str(p.relative_to(root)) for p, t in texts.items() if t != docs[p]]
        changed += [str(b.relative_to(root)) for b in copies]
        if not check:
            for p, t in texts.items():
                if t != docs[p]:
                    p.write_text(t)
            for b, a in copies.items():
                b.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(a, b)
    return list(dict.fromkeys(changed))


def list_regions(root: Path) -> list[str]:
    """One line per marked region: where, the command, what it quotes and copies."""
    lines = []
    for p in docs_of(root):
        for r in find_regions(p.read_text(), str(p.relative_to(root))):
            part = "" if r.parts is None else f"#{r.parts[0]}-{r.parts[1]}"
            figs = ", ".join(f"{s}→{FIGURES}/{d}.png" for s, d in r.figures)
            lines.append(
                f"{r.doc}:{r.line}  sigjax run {r.command}  [{r.table}{part}]"
                + (f"  figures: {figs}" if figs else "")
            )
    return lines


def main(argv: list[str] | None = None, runner: Runner = run_cli, root: Path = ROOT) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", metavar="STUDY", help="only the regions that quote this study")
    p.add_argument("--check", action="store_true", help="exit 1 if the docs would change")
    p.add_argument("--list", action="store_true", help="list the marked regions and exit")
    p.add_argument("--keep", metavar="DIR", type=Path, help="keep the run directories in DIR")
    args = p.parse_args(argv)
    try:
        if args.list:
            print("\n".join(list_regions(root)) or "no reproduce markers in the docs")
            return 0
        changed = reproduce(root, runner, only=args.only, check=args.check, keep=args.keep)
    except UserError as e:
        print(f"reproduce_docs: error: {e}", file=sys.stderr)
        return 2
    except Fault as e:
        print(f"reproduce_docs: error: {e}", file=sys.stderr)
        return 1
    verb = "would change" if args.check else "changed"
    print(f"{verb}: {', '.join(changed)}" if changed else "the docs are up to date")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
