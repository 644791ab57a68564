"""Run directories: where a run writes, who may write there, and what an unfinished run left.

- A run directory holds a marker file `.sigjax-run` (JSON with its format) that sigjax writes
  into every run directory it makes; `--overwrite` replaces only a directory carrying it.
- While a run works on `DIR`, it holds an OS file lock (`fcntl.flock`) on `.DIR.lock` beside
  it; the kernel releases the lock on any exit, SIGKILL included, so a second run on the same
  `DIR` is refused while the first is alive and never afterwards (a killed run leaves the
  empty lock file, which the next run takes over).
- Work in progress lives in `.DIR.partial` with a `status.json` that says what happened to it
  (running, interrupted, failed and why), so the next run can say so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sigjax.engine.checkpoint import atomic_text
from sigjax.errors import Fault, UserError

MARKER = ".sigjax-run"
MARKER_FORMAT = 1


def resolve_out(name: str, out: str | os.PathLike | None, overwrite: bool) -> Path:
    """The run directory, checked: never the working directory or one of its parents, never
    below a file; an existing non-empty one only with overwrite and only if sigjax made it."""
    if out is not None and not isinstance(out, str | os.PathLike):
        raise UserError(f"out must be a path (str or os.PathLike), got {type(out).__name__}")
    path = Path(out) if out is not None else Path("runs") / name
    if str(out).strip() == "":
        raise UserError("--out is empty; name a directory")
    full = path.resolve()
    if full == Path.cwd().resolve() or full in Path.cwd().resolve().parents:
        raise UserError(f"--out {path} is the working directory or contains it; name a subfolder")
    for parent in full.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"--out {path}: {parent} is a file, not a directory")
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} exists and is not a directory")
    if is_nonempty_dir(path):
        if not is_run_dir(path):
            raise UserError(
                f"--out {path} holds files sigjax did not write (no {MARKER} marker); "
                "it is never replaced: choose another --out"
            )
        if not overwrite:
            raise UserError(
                f"--out {path} already holds a run; pass --overwrite to replace it or "
                "choose another --out"
            )
    return full


def is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def is_run_dir(path: Path) -> bool:
    """Whether path carries the marker sigjax writes into each run directory."""
    try:
        meta = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == MARKER_FORMAT


def write_marker(directory: Path, study: str) -> None:
    from sigjax import __version__

    meta = {"format": MARKER_FORMAT, "study": study, "sigjax_version": __version__}
    atomic_text(directory / MARKER, json.dumps(meta) + "\n")


@contextlib.contextmanager
def locked(path: Path, suffix: str = "") -> Iterator[None]:
    """Hold the lock of run directory `path` (UserError naming the live run if it is held).

    The lock file is removed while still locked, on the way out; a run that opened it
    meanwhile then finds that its locked file is no longer the one at that name, and
    starts over with a new one, so two runs never both hold "the" lock.
    """
    lock = path.with_name(f".{path.name}.lock{suffix}")
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise Fault(
                f"cannot write beside {path}: {e.strerror} ({e.filename or lock})"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise UserError(
                f"--out {path} is in use by a running sigjax ({holder}); wait for it to finish "
                "or choose another --out"
            ) from None
        if _same_file(fd, lock):
            break
        os.close(fd)  # the holder removed it as we opened it: take the new one
    try:
        info = {
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)  # releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {info['pid']}, started {info['started']}: {info.get('command', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


# ---------------------------------------------------------------------- unfinished runs
def read_status(partial: Path) -> dict:
    try:
        status = json.loads((partial / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def write_status(partial: Path, state: str, **fields) -> None:
    status = read_status(partial) | fields | {"state": state}
    status["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    with contextlib.suppress(OSError):  # a status is a courtesy; never fail a run over it
        atomic_text(partial / "status.json", json.dumps(status) + "\n")


def what_happened(partial: Path) -> str:
    """How the run that left `partial` ended, in words (its lock is known to be free)."""
    status = read_status(partial)
    state = status.get("state")
    when = status.get("updated", "?")
    if state == "interrupted":
        return f"was interrupted at {when}"
    if state == "failed":
        return f"failed at {when} ({status.get('reason', 'unknown error')})"
    return f"stopped without finishing (killed, or the machine went down; last saved {when})"
