"""A study: a base config, a grid, a way to compute results and a report (figures, tables).

`run_study` writes a run directory: results.nc, summary.csv, config.json, report files and
figures/. It is built in a temporary sibling directory and moved into place only when complete,
so a failed or interrupted run never leaves half a result, and an existing directory is replaced
only with `overwrite=True` (and only once the new one is complete).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import xarray as xr

from sigjax import analysis, checkpoint, config, grid, results, sweep
from sigjax.config import Config
from sigjax.errors import UserError


def _sweep(
    cfg: Config,
    axes: tuple[grid.Axis, ...],
    progress: bool,
    store: checkpoint.Store | None,
    max_memory: int | None = None,
) -> xr.Dataset:
    return sweep.run(cfg, axes, progress=progress, store=store, max_memory=max_memory)


def uses_sweep(study: Study) -> bool:
    """True when the study's results come from the standard sweep (so a sweep plan applies)."""
    return study.compute is _sweep


class Interrupted(UserError):
    """The run stopped (Ctrl-C); its checkpoint is kept for --resume."""


@dataclass(frozen=True)
class Study:
    name: str
    description: str  # one line: what it shows and what it writes
    config: Config
    grid: dict[str, tuple] = field(default_factory=dict)
    # (results, run directory) -> headline numbers; writes figures and tables into the directory
    report: Callable[[xr.Dataset, Path], dict[str, Any]] | None = None
    # (config, axes, progress, checkpoint store or None) -> results
    compute: Callable[..., xr.Dataset] = _sweep
    # grid dims the report reads (checked before anything runs)
    requires: tuple[str, ...] = ()
    # named variants, e.g. {"quick": ({sets}, {grids}), "full": (...)}: `--quick` / `--full`
    presets: dict[str, tuple[dict, dict]] = field(default_factory=dict)

    def preset(self, name: str | None) -> Study:
        """The study with preset `name` applied (None: as declared)."""
        if name is None:
            return self
        if name not in self.presets:
            raise UserError(f"study {self.name} has no --{name} setting")
        sets, grids = self.presets[name]
        return self.with_overrides(sets, grids)

    def axes(self) -> tuple[grid.Axis, ...]:
        return grid.make_axes(self.grid)

    def with_overrides(
        self, sets: dict[str, Any] | None = None, grids: dict[str, list] | None = None
    ) -> Study:
        """`sets` fix a key (a swept key becomes a one-value axis); `grids` add or replace axes."""
        sets, grids = dict(sets or {}), dict(grids or {})
        g = dict(self.grid)
        plain = {}
        zipped = {k for key in g if isinstance(key, tuple) for k in key}
        for key, value in sets.items():
            if key in zipped:
                raise UserError(f"--set {key}: the study zips it with other keys; use --zip")
            if key in g:
                g[key] = (value,)
            else:
                plain[key] = value
        for key, values in grids.items():  # replaces any axis over the same keys
            new = set(key) if isinstance(key, tuple) else {key}
            for old in list(g):
                if new & (set(old) if isinstance(old, tuple) else {old}):
                    del g[old]
            g[key] = tuple(values)
        cfg = config.replace(self.config, plain)
        return replace(self, config=cfg, grid=g)


def resolve_out(name: str, out: str | os.PathLike | None, overwrite: bool) -> Path:
    """The run directory, checked: never the working directory or one of its parents, never
    below a file, and an existing one only with overwrite and only if it is a sigjax run."""
    path = Path(out) if out is not None else Path("runs") / name
    full = path.resolve()
    if full == Path.cwd().resolve() or full in Path.cwd().resolve().parents:
        raise UserError(f"--out {path} is the working directory or contains it; name a subfolder")
    for parent in full.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--out {path}: {parent} is a file, not a directory")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is not a directory")
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists; pass --overwrite to replace it or --out elsewhere")
    if path.exists() and any(path.iterdir()) and not (path / "config.json").exists():
        raise UserError(f"{path} is not a sigjax run directory; --overwrite will not replace it")
    return full


def run_study(
    study: Study,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = False,
    max_memory: int | None = None,
) -> tuple[xr.Dataset, Path, dict[str, Any]]:
    """Compute, report and write the study; returns (results, run directory, headline numbers).

    Work in progress lives in `.NAME.partial` beside the run directory, with a checkpoint after
    every segment; an interrupted run keeps it, and `resume=True` continues from it.
    """
    path = resolve_out(study.name, out, overwrite and not resume)
    axes = study.axes()
    missing = [d for d in study.requires if d not in {a.dim for a in axes}]
    if missing:
        raise UserError(
            f"study {study.name} needs grid axes {', '.join(study.requires)} "
            f"(each its own axis, not zipped); missing: {', '.join(missing)}"
        )
    if uses_sweep(study):
        sweep.check(study.config, axes)  # every bad value fails here, before any compile
    import jax

    rank = jax.process_index()
    suffix = f".p{rank}" if jax.process_count() > 1 else ""  # one checkpoint per process
    partial = path.with_name(f".{path.name}.partial{suffix}")
    if partial.exists() and not (resume or overwrite):
        raise UserError(
            f"an interrupted run is waiting in {partial}; pass --resume to continue it "
            "or --overwrite to start over"
        )
    if resume and not partial.exists():
        raise UserError(f"nothing to resume: no interrupted run of {path}")
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    fp = sweep.fingerprint(study.config, axes)
    store = checkpoint.Store(partial / "checkpoint", fp)
    partial.mkdir(parents=True, exist_ok=True)
    store.open(resume)
    try:
        t0 = time.perf_counter()
        if uses_sweep(study):
            ds = _sweep(study.config, axes, progress, store, max_memory=max_memory)
        else:
            ds = study.compute(study.config, axes, progress, store)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; finished segments are saved in {partial}; "
            "run the same command with --resume to continue"
        ) from None
    except BaseException:
        if not any(store.dir.glob("*.npz")):  # nothing worth resuming: leave no trace
            shutil.rmtree(partial, ignore_errors=True)
        raise
    ds.attrs["study"] = study.name
    ds.attrs["wall_time_s"] = time.perf_counter() - t0
    if rank > 0:  # every process holds the gathered results; process 0 writes them
        shutil.rmtree(partial, ignore_errors=True)
        return ds, path, {}
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".writing", dir=path.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a run directory is an ordinary one
        (tmp / "figures").mkdir()
        headline = study.report(ds, tmp) if study.report else {}
        results.save(ds, tmp / "results.nc")
        if "loss" in ds:
            table = analysis.summary_table(ds, study.config.train.loss_threshold)
            table.to_csv(tmp / "summary.csv", index=False)
        meta = {
            "study": study.name,
            "config": config.to_dict(study.config),
            "grid": {
                "+".join((a.key, *(k for k, _ in a.zipped))): [
                    list(a.at(i).values()) if a.zipped else a.values[i]
                    for i in range(len(a.values))
                ]
                for a in axes
            },
            "headline": headline,
        }
        (tmp / "config.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
        _move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(partial, ignore_errors=True)
    return ds, path, headline


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename tmp to path; an existing path is set aside first and removed only after."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
