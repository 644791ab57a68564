"""Checkpoints of a sweep in progress: plain `.npz` files written atomically, listed in a manifest.

Layout of a checkpoint directory:
- `manifest.json`: format version, the fingerprint (config + grid) of the run it belongs to, a
  random run id, and for every logical entry the file that holds it and that file's SHA-256;
- the entries: `group-G` (the records of a finished static group G, never recomputed on
  resume), `chunk-G-C` (a finished chunk C of the group in progress) and `state-G-C` (the
  training state and records so far of the chunk in progress, replaced after every segment),
  each in a file `ENTRY.N.npz` whose N grows with every save.

A save writes a new file (to a temporary name, fsync, rename), then the manifest that points to
it (the same way), then deletes the file it replaces. A process killed at any moment therefore
leaves a manifest whose every entry is a complete file with the recorded checksum. Only files
the manifest lists are ever read, and each is checked against its checksum first: a file this
run did not write, or one altered since, is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

import jax
import numpy as np

from sigjax.errors import UserError

FORMAT_VERSION = 2


def fingerprint(config_json: str, grid_json: str) -> str:
    return hashlib.sha256((config_json + "\n" + grid_json).encode()).hexdigest()[:16]


class Store:
    """Reads and writes the checkpoint files of one run."""

    def __init__(self, directory: str | os.PathLike, fp: str):
        self.dir = Path(directory)
        self.fp = fp
        self.entries: dict[str, dict[str, str]] = {}  # entry -> {"file": name, "sha256": hex}
        self.run_id = ""
        self._serial = 0

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.json"

    def open(self, resume: bool) -> None:
        """Start fresh (resume=False: every earlier file is removed, unread) or load and check
        the manifest of the run being resumed."""
        if resume:
            meta = self._read_manifest()
            if meta.get("format_version") != FORMAT_VERSION:
                raise UserError(
                    f"checkpoint {self.dir} has format {meta.get('format_version')}, "
                    f"this sigjax reads {FORMAT_VERSION}; rerun with --overwrite to start over"
                )
            if meta.get("fingerprint") != self.fp:
                raise UserError(
                    f"the checkpoint in {self.dir} was made with a different config, grid, "
                    "function or data; rerun with the same settings, or with --overwrite "
                    "to start over"
                )
            entries = meta.get("entries")
            if not isinstance(entries, dict) or not all(
                isinstance(v, dict) and {"file", "sha256"} <= set(v) for v in entries.values()
            ):
                raise UserError(f"checkpoint manifest {self.manifest} is corrupt")
            self.entries, self.run_id = entries, str(meta.get("run_id", ""))
            self._serial = int(meta.get("serial", 0))
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for f in self.dir.iterdir():
            if f.is_file():
                f.unlink()
        self.entries, self.run_id, self._serial = {}, uuid.uuid4().hex, 0
        self._write_manifest()

    def has_saved(self) -> bool:
        """Whether anything worth resuming was saved."""
        return bool(self.entries)

    def has_group(self, g: int) -> bool:
        """Whether group g finished and was saved."""
        return f"group-{g}" in self.entries

    # finished groups and chunks: dicts of arrays
    def save_group(self, g: int, arrays: dict[str, np.ndarray]) -> None:
        self._save(
            f"group-{g}", arrays, drop=[e for e in self.entries if e.startswith(f"chunk-{g}-")]
        )

    def load_group(self, g: int, rows: int | None = None) -> dict[str, np.ndarray] | None:
        """Group g's records ((rows, …) arrays when rows is given, checked), or None."""
        return self._load(f"group-{g}", rows)

    def save_chunk(self, g: int, c: int, arrays: dict[str, np.ndarray]) -> None:
        self._save(f"chunk-{g}-{c}", arrays, drop=[f"state-{g}-{c}"])

    def load_chunk(self, g: int, c: int, rows: int | None = None) -> dict[str, np.ndarray] | None:
        return self._load(f"chunk-{g}-{c}", rows)

    # a chunk in progress: a state pytree (flattened) and its records so far
    def save_state(self, g: int, c: int, state: Any, records: dict[str, np.ndarray]) -> None:
        leaves = jax.tree.leaves(state)
        arrays = {f"leaf{i}": np.asarray(x) for i, x in enumerate(leaves)}
        arrays |= {f"rec_{k}": v for k, v in records.items()}
        self._save(f"state-{g}-{c}", arrays)

    def load_state(self, g: int, c: int, like: Any) -> tuple[Any, dict[str, np.ndarray]] | None:
        """The saved state (with the tree structure and dtypes of `like`) and records, or None."""
        name = f"state-{g}-{c}"
        arrays = self._load(name, None)
        if arrays is None:
            return None
        leaves, treedef = jax.tree.flatten(like)
        try:
            restored = [arrays[f"leaf{i}"] for i in range(len(leaves))]
        except KeyError:
            raise UserError(f"checkpoint {name} in {self.dir} is incomplete") from None
        for new, old in zip(restored, leaves, strict=True):
            if new.shape != old.shape or new.dtype != old.dtype:
                raise UserError(f"checkpoint {name} in {self.dir} does not match this run's shapes")
        records = {k[4:]: v for k, v in arrays.items() if k.startswith("rec_")}
        rows = leaves[0].shape[0] if leaves and np.ndim(leaves[0]) else None
        _check_rows(records, rows, name, self.dir)
        return jax.tree.unflatten(treedef, restored), records

    # ------------------------------------------------------------------ files and manifest
    def _save(self, name: str, arrays: dict[str, np.ndarray], drop: list[str] = ()) -> None:
        self._serial += 1
        file = f"{name}.{self._serial}.npz"
        digest = _atomic_npz(self.dir / file, arrays)
        replaced = [self.entries[e]["file"] for e in (name, *drop) if e in self.entries]
        for e in drop:
            self.entries.pop(e, None)
        self.entries[name] = {"file": file, "sha256": digest}
        self._write_manifest()
        for old in replaced:  # only once the manifest no longer points to them
            (self.dir / old).unlink(missing_ok=True)

    def _load(self, name: str, rows: int | None) -> dict[str, np.ndarray] | None:
        entry = self.entries.get(name)
        if entry is None:
            return None
        path = self.dir / entry["file"]
        if Path(entry["file"]).name != entry["file"]:
            raise UserError(f"checkpoint manifest {self.manifest} is corrupt")
        try:
            digest = _sha256(path)
        except OSError:
            raise UserError(
                f"checkpoint file {path} is missing or unreadable; "
                "rerun with --overwrite to start over"
            ) from None
        if digest != entry["sha256"]:
            raise UserError(
                f"checkpoint file {path} was altered since this run wrote it (checksum "
                "mismatch); rerun with --overwrite to start over"
            )
        arrays = _read_npz(path)
        _check_rows(arrays, rows, name, self.dir)
        return arrays

    def _read_manifest(self) -> dict:
        try:
            meta = json.loads(self.manifest.read_text())
        except FileNotFoundError:
            raise UserError(f"no checkpoint to resume in {self.dir}") from None
        except (OSError, ValueError):
            raise UserError(f"checkpoint manifest {self.manifest} is corrupt") from None
        if not isinstance(meta, dict):
            raise UserError(f"checkpoint manifest {self.manifest} is corrupt")
        return meta

    def _write_manifest(self) -> None:
        meta = {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fp,
            "run_id": self.run_id,
            "serial": self._serial,
            "entries": self.entries,
        }
        atomic_text(self.manifest, json.dumps(meta, indent=1))


def _check_rows(arrays: dict[str, np.ndarray], rows: int | None, name: str, where: Path) -> None:
    if rows is None:
        return
    for key, a in arrays.items():
        if a.ndim == 0 or a.shape[0] != rows:
            raise UserError(
                f"checkpoint {name} in {where} holds {key} of shape {a.shape}, this run expects "
                f"{rows} members; rerun with --overwrite to start over"
            )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Write arrays to path atomically; returns the file's SHA-256. A failed write (a full
    disk, say) removes its temporary file and leaves path as it was."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        digest = _sha256(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def atomic_text(path: Path, text: str) -> None:
    """Write text to path atomically (a temporary file renamed into place, fsynced)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        raise UserError(
            f"checkpoint file {path} is corrupt or truncated; rerun with --overwrite to start over"
        ) from None


class Shifted:
    """A checkpoint store seen through a group offset, so several sweeps share one run's store.

    The group index is shifted; further arguments (chunk, state, `rows=` …) pass as given."""

    def __init__(self, store, offset: int):
        self.store, self.offset = store, offset

    def has_group(self, g: int) -> bool:
        return self.store.has_group(g + self.offset)

    def save_group(self, g, *args, **kw):
        return self.store.save_group(g + self.offset, *args, **kw)

    def load_group(self, g, *args, **kw):
        return self.store.load_group(g + self.offset, *args, **kw)

    def save_chunk(self, g, *args, **kw):
        return self.store.save_chunk(g + self.offset, *args, **kw)

    def load_chunk(self, g, *args, **kw):
        return self.store.load_chunk(g + self.offset, *args, **kw)

    def save_state(self, g, *args, **kw):
        return self.store.save_state(g + self.offset, *args, **kw)

    def load_state(self, g, *args, **kw):
        return self.store.load_state(g + self.offset, *args, **kw)
