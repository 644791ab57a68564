"""How many JAX host (CPU) devices a process gets: one per core, set when sigjax is imported.

`import sigjax` imports this module first, so that a run from Python uses the same devices as
the `sigjax` command: each CPU core becomes a JAX host device, provided JAX is not imported
yet and XLA_FLAGS does not already set the count. SIGJAX_HOST_DEVICES sets the count instead
(the tests set it to 1). Importing JAX before sigjax keeps JAX's own default (one device).
JAX's persistent compilation cache is then turned on (`sigjax.engine.compile_cache`).
"""

from __future__ import annotations

import os
import sys

HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"
HOST_DEVICES_ENV = "SIGJAX_HOST_DEVICES"


def use_all_cores() -> None:
    """Expose each CPU core as a JAX host device (only before JAX is imported).

    XLA's CPU backend runs a small batched matmul on about one core; splitting the member axis
    over one device per core ran the default study about 1.6x faster on 2 cores. It does not
    affect GPU or TPU runs (their devices are the accelerators). SIGJAX_HOST_DEVICES overrides
    the count; an XLA_FLAGS that already sets it is left alone.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if HOST_DEVICES_FLAG in flags or "jax" in sys.modules:
        return
    count = os.environ.get(HOST_DEVICES_ENV) or str(os.cpu_count() or 1)
    os.environ["XLA_FLAGS"] = f"{flags} {HOST_DEVICES_FLAG}={count}".strip()


def configure_jax() -> None:
    """What the engine sets in JAX on import: one host device per core (before JAX loads),
    then the persistent compilation cache (sigjax.engine.compile_cache)."""
    use_all_cores()
    from sigjax.engine import compile_cache

    compile_cache.configure()


configure_jax()  # on import: this module is the first that `import sigjax` loads
