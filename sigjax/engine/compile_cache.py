"""JAX's persistent compilation cache, on by default in sigjax's cache directory.

A study compiles a few programs per static group; a second run of it (other learning rates,
seeds or σ's: traced values) compiles the same programs again unless their executables are
kept on disk. `import sigjax` turns JAX's persistent cache on in
`data_sources.cache_root() / "jax"` (`$SIGJAX_CACHE/jax`, else `$XDG_CACHE_HOME/sigjax/jax`,
else `~/.cache/sigjax/jax`), for every program however small or quick to compile: JAX's own
defaults skip programs that compile in under a second, which is most of a sweep's.

SIGJAX_COMPILATION_CACHE=0 (or off, false, no) turns it off; SIGJAX_COMPILATION_CACHE=DIR
puts it in DIR. A cache directory set through JAX itself (`JAX_COMPILATION_CACHE_DIR` or
`jax.config.update("jax_compilation_cache_dir", …)` before `import sigjax`) is left alone.
Entries are keyed by JAX on the program's HLO, the compile options, the device kind and count,
and the JAX and XLA versions, so a changed function or another machine never reuses one.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ENV = "SIGJAX_COMPILATION_CACHE"
OFF = ("0", "off", "false", "no")
ON = ("", "1", "on", "true", "yes")


def wanted_dir() -> Path | None:
    """Where the cache should be by sigjax's rule (None: turned off), from the environment."""
    from sigjax.data import sources as data_sources

    value = os.environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value.lower() in ON:
        return data_sources.cache_root() / "jax"
    return Path(value).expanduser()


def configure() -> Path | None:
    """Turn JAX's persistent cache on where `wanted_dir` says (unless JAX already has a cache
    directory); returns the directory in force, None when off."""
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    where = wanted_dir()
    if where is None:
        return None
    jax.config.update("jax_compilation_cache_dir", str(where))
    # every program is worth keeping: a sweep's segments compile in 0.3-3 s each, and JAX's
    # default threshold (1 s) would skip the quick ones that a rerun still waits for
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    return where


@dataclass(frozen=True)
class CacheState:
    """What `--plan` reports: the directory (None: off) and what it holds now."""

    directory: Path | None
    entries: int = 0
    bytes: int = 0

    def __str__(self) -> str:
        if self.directory is None:
            return f"compilation cache: off ({ENV}=0); every program compiles"
        from sigjax.engine.plan import human

        held = f"{self.entries} program(s), {human(self.bytes)}" if self.entries else "empty"
        return f"compilation cache: on in {self.directory} ({held})"


def state() -> CacheState:
    """The cache directory JAX uses now and the executables it holds (a directory listing)."""
    import jax

    current = jax.config.jax_compilation_cache_dir
    if not current:
        return CacheState(None)
    where = Path(current)
    entries = n_bytes = 0
    try:
        for f in where.iterdir():
            if f.name.endswith("-cache"):  # JAX writes <key>-cache and <key>-atime files
                entries += 1
                n_bytes += f.stat().st_size
    except OSError:
        pass
    return CacheState(where, entries, n_bytes)


HIT_EVENT = "/jax/compilation_cache/cache_hits"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # per executable built or loaded


@dataclass
class Counts:
    """Executables JAX built or loaded while `counting` was open, by function name, and how
    many of them came from the persistent cache (`hits`); `compiled` is what XLA compiled."""

    by_name: dict[str, int]
    hits: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_name.values())

    @property
    def compiled(self) -> int:
        return self.total - self.hits


@contextlib.contextmanager
def counting() -> Iterator[Counts]:
    """Count compilations through jax.monitoring while the block runs (every thread's)."""
    import jax

    counts = Counts({})
    lock = threading.Lock()

    def on_duration(event: str, _secs: float, **kw) -> None:
        if event == COMPILE_EVENT:
            with lock:
                name = str(kw.get("fun_name", "?"))
                counts.by_name[name] = counts.by_name.get(name, 0) + 1

    def on_event(event: str, **_kw) -> None:
        if event == HIT_EVENT:
            with lock:
                counts.hits += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    try:
        yield counts
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)
        jax.monitoring.unregister_event_listener(on_event)
