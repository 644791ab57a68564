"""Sweep scaling: wall time, members·steps/s and peak memory vs the number of members.

    python scripts/bench_sweep_scaling.py [--members 1,16,256,4096] [--devices 1,4] [--steps 200]

Each (devices, members) point runs in a fresh process (the host device count is fixed when JAX
starts), on a small MLP (10 -> 32 x 2 -> 1, sigmoid, full-batch GD on the seed task, metrics
every 10 steps). Compile time is measured apart from the run: the sweep is run once to compile
and once more to time it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _child(members: int, steps: int) -> dict:
    from sigjax import config
    from sigjax.engine import grid, sweep

    cfg = config.replace(
        config.Config(),
        {
            "model.depth": 2,
            "model.width": 32,
            "model.activation": "sigmoid",
            "train.steps": steps,
            "train.log_every": 10,
            "optim.lr": 0.1,
        },
    )
    axes = grid.make_axes({"seed": list(range(members))})
    t0 = time.perf_counter()
    sweep.run(cfg, axes, segments=1)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    ds = sweep.run(cfg, axes, segments=1)
    wall = time.perf_counter() - t0
    import jax

    return {
        "devices": jax.local_device_count(),
        "members": members,
        "steps": steps,
        "wall_s": wall,
        "compile_s": max(first - wall, 0.0),
        "member_steps_per_s": members * steps / wall,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "finite": bool(ds.loss.notnull().all()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", default="1,16,256,4096")
    p.add_argument("--devices", default="1,4")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(_child(args.child, args.steps)))
        return
    rows = []
    for d in (int(x) for x in args.devices.split(",")):
        for m in (int(x) for x in args.members.split(",")):
            env = os.environ | {
                "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}",
                "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
            }
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(m), "--steps", str(args.steps)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"devices {r['devices']:>2}  members {r['members']:>5}  "
                f"wall {r['wall_s']:7.2f} s  compile {r['compile_s']:5.2f} s  "
                f"{r['member_steps_per_s']:>10.0f} member·steps/s  "
                f"peak RSS {r['peak_rss_mib']:6.0f} MiB",
                flush=True,
            )
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
