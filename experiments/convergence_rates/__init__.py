"""Convergence rates: measured against the neural tangent kernel's linearized prediction, the
largest stable learning rate against N k/λ_max, the edge of stability, and deep linear networks
against Saxe et al.'s exact curves.

Part 1. One hidden layer of sigmoid, centred sigmoid, tanh, ReLU and erf at widths 64 … 2048 on
the seed task (X ~ U[0,1]^{100×10}, y ~ U[0,1]) and a teacher task (Gaussian inputs, a tanh
teacher's outputs), full-batch gradient descent on the MSE. For each (task, activation, width)
the empirical NTK Θ of every seed at init (`sigjax.theory.linearized.member_kernels`) gives
the linearized limit η* = N k/λ_max (the median over seeds); the members train at multiples
`lr_factor` of it, recording ntk_max, ntk_min and sharpness (`sigjax.engine.curvature`). Each
member's loss is compared with its linearized prediction L_t from its own Θ and f₀
(`sigjax.theory.linearized.predicted_loss`); the gap should shrink like 1/√width. The
infinite-width kernel (`sigjax.theory.infinite_width`, standard parameterization) is compared
with the empirical one on the first THEORY_N training examples.

Part 2. The default study's setting (sigmoid_convergence: width 32, depth 3) at its largest
learning rates, recording sharpness against 2/η (`eos_at`). Variables `default_*`.

Part 3. A deep linear network (identity activation, one hidden layer) on a whitened task with
chosen singular values (`sigjax.theory.deep_linear`), from the decoupled start and from a small
orthogonal one, against the exact mode curves. Variables `saxe_*`.
"""

from __future__ import annotations

from experiments.convergence_rates import reporting, training
from sigjax.study import Study

STUDY = Study(
    name="convergence_rates",
    description=(
        "measured convergence rates vs the NTK's linearized prediction over width, largest "
        "stable lr vs N k/λ_max, sharpness vs 2/η at the default study's rates, deep linear "
        "nets vs Saxe et al.; figures/convergence_rates_*.png, table.md"
    ),
    config=training.CONFIG,
    grid=training.GRID,
    report=reporting.report,
    compute=training.compute,
    requires=("name", "activation", "width", "seed"),
    presets={"quick": training.QUICK},
)
