"""A new activation against the sigmoid: LeCun's scaled tanh, its critical point, and training.

    python scripts/example_activation.py [--steps 1000] [--out runs/lecun]

Registers φ(z) = 1.7159·tanh(2z/3) once; training, saturation and mean-field theory all derive
what they need from that one function. Prints the critical σ_w² (χ₁ = 1) of both activations
and trains both on the seed task at σ_w² = 1 and at each one's own critical point.
"""

import argparse

import jax.numpy as jnp

import sigjax
from sigjax import analysis, theory


def lecun_tanh(z):
    return 1.7159 * jnp.tanh(2.0 * z / 3.0)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--out", default=None, help="also write a run directory here")
    args = p.parse_args(argv)
    sigjax.register_activation("lecun", lecun_tanh)
    critical = {a: float(theory.critical_sigma_w2(a, 0.0)) for a in ("sigmoid", "lecun")}
    for a, w in critical.items():
        chi = float(theory.chi_1(a, 1.0, 0.0))
        print(f"{a:11s} critical sigma_w2 {w:9.4f}   chi_1 at sigma_w2=1: {chi:.4f}")
    out = {}
    for a, w in critical.items():
        ds = sigjax.run(
            "sigmoid_convergence",
            overrides={"model.activation": a, "model.depth": 3, "train.steps": args.steps},
            grid={"init.sigma_w2": [1.0, w], "optim.lr": "logspace(-2,0,3)", "seed": "range(4)"},
            out=None if args.out is None else f"{args.out}/{a}",
            overwrite=True,
        )
        final = analysis.final_loss(ds).median("seed").min("lr").squeeze()  # at the best lr
        for s2, loss in zip(ds.sigma_w2.values, final.values, strict=True):
            print(f"{a:11s} sigma_w2 {s2:9.4f}: median final MSE at the best lr {loss:.4f}")
        out[a] = final.values
    return {"critical": critical, "final": out}


if __name__ == "__main__":
    main()
