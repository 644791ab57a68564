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
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import xarray as xr

from sigjax import analysis, config
from sigjax import data as data_lib
from sigjax.config import Config
from sigjax.engine import checkpoint, grid, results, rundir, sweep
from sigjax.errors import Fault, UserError, one_line


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
        """`sets` fix a key (a swept key becomes a one-value axis); `grids` add or replace axes,
        each a list of values or an expression string as on the command line ('0.1,0.3').

        UserError when either is not a dict or one key is given twice (in both, or in two grid
        entries: a zipped tuple of keys overlaps another)."""
        for name, arg, example in (
            ("overrides", sets, "{'train.steps': 500}"),
            ("grid", grids, "{'optim.lr': [0.01, 0.1]}"),
        ):
            if arg is not None and not isinstance(arg, Mapping):
                raise UserError(
                    f"{name} must be a dict like {example}, got {type(arg).__name__} {arg!r}"
                )
        sets, grids = dict(sets or {}), dict(grids or {})
        for key in sets:
            config.get(self.config, key)  # a known key (names a bad one before anything else)
        grid.check_distinct([*(("overrides", k) for k in sets), *(("grid", k) for k in grids)])
        grids = {key: grid.as_values(key, values) for key, values in grids.items()}
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
            g[key] = values
        cfg = config.replace(self.config, plain)
        return replace(self, config=cfg, grid=g)


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
    every segment; an interrupted or failed run keeps it, and `resume=True` continues from it
    (with the overwrite intent of the run it continues). The run holds a lock on the directory
    from start to end: a second run on the same directory is refused while this one lives.
    Results are written before the study's report runs, so a failing report loses nothing.
    """
    path = rundir.resolve_out(study.name, out, overwrite or resume)
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
    with rundir.locked(path, suffix):
        overwrite = _claim(path, partial, overwrite, resume)
        # a user's data is keyed on its content: a changed npz file never resumes a checkpoint
        token = data_lib.token(g.cfg.data for g in grid.groups(study.config, axes))
        fp = sweep.fingerprint(study.config, axes, token)
        store = checkpoint.Store(partial / "checkpoint", fp)
        try:
            store.open(resume)
        except OSError as e:
            shutil.rmtree(partial, ignore_errors=True)
            raise Fault(f"cannot write {partial}: {e.strerror}") from None
        rundir.write_status(partial, "running", overwrite=overwrite)
        t0 = time.perf_counter()
        try:
            if uses_sweep(study):
                ds = _sweep(study.config, axes, progress, store, max_memory=max_memory)
            else:
                ds = study.compute(study.config, axes, progress, store)
        except KeyboardInterrupt:
            rundir.write_status(partial, "interrupted")
            raise Interrupted(
                f"interrupted; finished segments are saved in {partial}; "
                "run the same command with --resume to continue"
            ) from None
        except BaseException as e:
            _keep_or_clean(partial, store, one_line(e))
            if isinstance(e, OSError):
                kept = (
                    f"finished segments are kept in {partial}: fix that and run the same "
                    "command with --resume"
                    if store.has_saved()
                    else "nothing was saved"
                )
                raise Fault(f"{_os_error(e)} while training; {kept}") from None
            raise
        ds.attrs["study"] = study.name
        ds.attrs["wall_time_s"] = time.perf_counter() - t0
        if rank > 0:  # every process holds the gathered results; process 0 writes them
            shutil.rmtree(partial, ignore_errors=True)
            return ds, path, {}
        try:
            headline, report_error = _write(study, axes, ds, path)
        except KeyboardInterrupt:
            rundir.write_status(partial, "interrupted")
            raise Interrupted(
                f"interrupted while writing {path}; the training is saved in {partial}: "
                "run the same command with --resume to write it"
            ) from None
        except OSError as e:
            rundir.write_status(partial, "failed", reason=_os_error(e))
            raise Fault(
                f"{_os_error(e)} while writing {path}; the training is saved in {partial}: "
                "fix that and run the same command with --resume to write it"
            ) from None
        except BaseException as e:  # a bug in writing: the training is still saved
            rundir.write_status(partial, "failed", reason=one_line(e))
            raise
        shutil.rmtree(partial, ignore_errors=True)
    if report_error:
        raise Fault(
            f"the {study.name} report failed ({report_error}); results.nc, summary.csv and "
            f"config.json are saved in {path}, the traceback in {path / REPORT_ERROR}"
        )
    return ds, path, headline


REPORT_ERROR = "report_error.txt"


def _claim(path: Path, partial: Path, overwrite: bool, resume: bool) -> bool:
    """Check what an earlier run left against what this one asks (lock held); returns the
    overwrite intent in force (a resumed run keeps the one it was started with)."""
    if resume:
        if not (partial / "checkpoint" / "manifest.json").exists():
            raise UserError(f"nothing to resume: no interrupted run of {path}")
        overwrite = overwrite or bool(rundir.read_status(partial).get("overwrite"))
        if rundir.is_nonempty_dir(path) and not overwrite:
            raise UserError(
                f"--out {path} already holds a run; pass --overwrite --resume to replace it"
            )
        return overwrite
    if partial.exists():
        if not overwrite:
            raise UserError(
                f"the last run of {path} {rundir.what_happened(partial)} and left its "
                f"checkpoint in {partial}; pass --resume to continue it or --overwrite "
                "to start over"
            )
        shutil.rmtree(partial)
    return overwrite


def _keep_or_clean(partial: Path, store: checkpoint.Store, reason: str) -> None:
    """After a failure: keep a checkpoint worth resuming (saying why it stopped), else remove."""
    if store.has_saved():
        rundir.write_status(partial, "failed", reason=reason)
    else:
        shutil.rmtree(partial, ignore_errors=True)


def _os_error(e: OSError) -> str:
    where = f" ({e.filename})" if e.filename else ""
    return f"{e.strerror or one_line(e)}{where}"


def _write(study: Study, axes, ds: xr.Dataset, path: Path) -> tuple[dict, str]:
    """Write the run directory (results first, then the report) and move it into place.

    Returns (headline numbers, '' or the report's error as one line): a report that raises
    leaves its traceback in report_error.txt and the results in place.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".writing", dir=path.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a run directory is an ordinary one
        (tmp / "figures").mkdir()
        rundir.write_marker(tmp, study.name)
        results.save(ds, tmp / "results.nc")
        if "loss" in ds:
            table = analysis.summary_table(ds, study.config.train.loss_threshold)
            table.to_csv(tmp / "summary.csv", index=False)
        meta = {"study": study.name, "config": config.to_dict(study.config)}
        meta["grid"] = {
            "+".join((a.key, *(k for k, _ in a.zipped))): [
                list(a.at(i).values()) if a.zipped else a.values[i] for i in range(len(a.values))
            ]
            for a in axes
        }
        _write_json(tmp / "config.json", meta)
        headline, error = {}, ""
        if study.report:
            try:
                headline = study.report(ds, tmp)
            except Exception as e:  # the results are safe; report the failure, keep them
                error = one_line(e)
                (tmp / REPORT_ERROR).write_text(traceback.format_exc())
        _write_json(tmp / "config.json", meta | {"headline": headline})
        _move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return headline, error


def _write_json(path: Path, obj: dict) -> None:
    checkpoint.atomic_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename tmp to path; an existing path is set aside first and removed only after."""
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
