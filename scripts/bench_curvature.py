"""Cost of the curvature metrics: time of one logged step recording them, relative to a plain
step (loss only), for one member of the convergence_rates setting (one hidden layer, N = 100
examples, full batch). Prints medians over repeats.

    python scripts/bench_curvature.py [--widths 64,512,2048] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from experiments import convergence_rates
from sigjax import config
from sigjax import data as data_lib
from sigjax.engine import train

VARIANTS = {
    "plain step": "",
    "ntk_max,ntk_min,ntk_cond": "ntk_max,ntk_min,ntk_cond",
    "sharpness": "sharpness",
    "all four": "ntk_max,ntk_min,ntk_cond,sharpness",
}


def step_time(cfg, repeats: int) -> float:
    """Median seconds of one jitted training step that returns its Record."""
    data = data_lib.load(cfg.data)
    prog = train.program(cfg, data)
    hp, key = train.hparams_of(cfg), jax.random.key(0)
    step = jax.jit(lambda st: prog.step(data, hp, key, st))
    state = prog.init(hp, key)
    jax.block_until_ready(step(state))  # compile
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(step(state))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="64,512,2048")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--activation", default="tanh")
    args = ap.parse_args()
    print(f"device: {jax.devices()[0].device_kind}; one member, N = 100, depth 1; medians")
    print(f"{'width':>6} {'metrics':<28} {'ms/step':>9} {'× plain':>8}")
    for width in (int(w) for w in args.widths.split(",")):
        base = config.replace(
            convergence_rates.training.CONFIG,
            {
                "data.name": "seed_regression",
                "model.width": width,
                "model.activation": args.activation,
            },
        )
        plain = None
        for label, names in VARIANTS.items():
            t = step_time(config.replace(base, {"train.metrics": names}), args.repeats)
            plain = t if plain is None else plain
            print(f"{width:>6} {label:<28} {1e3 * t:>9.3f} {t / plain:>8.1f}")


if __name__ == "__main__":
    main()
