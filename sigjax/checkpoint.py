"""Checkpoints of a sweep in progress: plain `.npz` files written atomically, with a manifest.

Layout of a checkpoint directory:
- `manifest.json`: format version and the fingerprint (config + grid) of the run it belongs to;
- `group-G.npz`: the records of a finished static group G (never recomputed on resume);
- `chunk-G-C.npz`: a finished chunk C of the group in progress;
- `state-G-C.npz`: the training state and records so far of the chunk in progress, replaced
  after every segment.

Every file is written to a temporary name and renamed into place (`os.replace`), so a process
killed at any moment leaves either the previous file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sigjax.errors import UserError

FORMAT_VERSION = 1


def fingerprint(config_json: str, grid_json: str) -> str:
    return hashlib.sha256((config_json + "\n" + grid_json).encode()).hexdigest()[:16]


class Store:
    """Reads and writes the checkpoint files of one run."""

    def __init__(self, directory: str | os.PathLike, fp: str):
        self.dir = Path(directory)
        self.fp = fp

    def open(self, resume: bool) -> None:
        """Start fresh (resume=False) or check that the manifest belongs to this run."""
        manifest = self.dir / "manifest.json"
        if resume:
            if not manifest.exists():
                raise UserError(f"no checkpoint to resume in {self.dir}")
            try:
                meta = json.loads(manifest.read_text())
            except (OSError, ValueError):
                raise UserError(f"checkpoint manifest {manifest} is corrupt") from None
            if meta.get("format_version") != FORMAT_VERSION:
                raise UserError(
                    f"checkpoint {self.dir} has format {meta.get('format_version')}, "
                    f"this sigjax reads {FORMAT_VERSION}"
                )
            if meta.get("fingerprint") != self.fp:
                raise UserError(
                    f"the checkpoint in {self.dir} was made with a different config or grid; "
                    "rerun with the same settings, or with --overwrite to start over"
                )
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for f in self.dir.glob("*.npz"):
            f.unlink()
        _atomic_text(
            manifest, json.dumps({"format_version": FORMAT_VERSION, "fingerprint": self.fp})
        )

    # finished groups and chunks: dicts of arrays
    def save_group(self, g: int, arrays: dict[str, np.ndarray]) -> None:
        _atomic_npz(self.dir / f"group-{g}.npz", arrays)
        for f in self.dir.glob(f"chunk-{g}-*.npz"):
            f.unlink()

    def load_group(self, g: int) -> dict[str, np.ndarray] | None:
        return _read_npz(self.dir / f"group-{g}.npz")

    def save_chunk(self, g: int, c: int, arrays: dict[str, np.ndarray]) -> None:
        _atomic_npz(self.dir / f"chunk-{g}-{c}.npz", arrays)
        (self.dir / f"state-{g}-{c}.npz").unlink(missing_ok=True)

    def load_chunk(self, g: int, c: int) -> dict[str, np.ndarray] | None:
        return _read_npz(self.dir / f"chunk-{g}-{c}.npz")

    # a chunk in progress: a state pytree (flattened) and its records so far
    def save_state(self, g: int, c: int, state: Any, records: dict[str, np.ndarray]) -> None:
        leaves = jax.tree.leaves(state)
        arrays = {f"leaf{i}": np.asarray(x) for i, x in enumerate(leaves)}
        arrays |= {f"rec_{k}": v for k, v in records.items()}
        _atomic_npz(self.dir / f"state-{g}-{c}.npz", arrays)

    def load_state(self, g: int, c: int, like: Any) -> tuple[Any, dict[str, np.ndarray]] | None:
        """The saved state (with the tree structure and dtypes of `like`) and records, or None."""
        arrays = _read_npz(self.dir / f"state-{g}-{c}.npz")
        if arrays is None:
            return None
        leaves, treedef = jax.tree.flatten(like)
        try:
            restored = [arrays[f"leaf{i}"] for i in range(len(leaves))]
        except KeyError:
            raise UserError(f"checkpoint state-{g}-{c}.npz in {self.dir} is incomplete") from None
        for new, old in zip(restored, leaves, strict=True):
            if new.shape != old.shape or new.dtype != old.dtype:
                raise UserError(f"checkpoint state-{g}-{c}.npz does not match this run's shapes")
        records = {k[4:]: v for k, v in arrays.items() if k.startswith("rec_")}
        return jax.tree.unflatten(treedef, restored), records


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        raise UserError(
            f"checkpoint file {path} is corrupt or truncated; rerun with --overwrite to start over"
        ) from None
