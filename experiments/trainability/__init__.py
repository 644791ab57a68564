"""Trainability vs depth and σ_w²: do the mean-field depth scales bound what trains?

Schoenholz et al. (2017, Figs. 5-6): a random net of depth L can be trained only if L ≲ 6 ξ_c,
where ξ_c = -1/log χ_c is the depth over which two inputs' correlation relaxes to its fixed point
(χ_c = χ₁ in the ordered phase). ξ_c diverges on the critical line χ₁ = 1, so the trainable
region is a band of depths around the critical σ_w² that widens with depth budget.

This study trains MLPs (width 64 by default) on a real task (scikit-learn's 8×8 digits,
standardised, softmax cross-entropy, SGD, batch 64) for a fixed number of steps, on a grid of
depth × σ_w² × learning rate × seed at σ_b² = 0.05 (W ~ N(0, σ_w²/fan_in), b ~ N(0, σ_b²)), for
tanh (critical σ_w² ≈ 1.76) and the sigmoid (critical σ_w² ≈ 103). Each activation has its own
σ_w² axis (`SIGMA_W2`) and learning-rate axis (`LR`); a `--grid init.sigma_w2=…` or
`--grid optim.lr=…` replaces both. σ_w², the rate and the seed are traced (one compile per
activation and depth).

Selection never sees the test set: the last n_test training examples (as many as the test
split holds) are held out as a validation split, and each (activation, depth, σ_w²) cell takes
the rate with the best mean final validation accuracy over seeds (rates within `TIE` of it tie;
the lower mean validation loss breaks the tie). A cell whose chosen rate is the smallest or
largest of its axis is flagged (`lr_at_edge`). The cell's value is the mean test accuracy at
that rate; it is trainable when that is above halfway from chance to the activation's best cell.

Two comparisons with theory (`sigjax.theory.grid.mean_field_grid` gives ξ_c):
- the agreement score (share of cells where "trainable" equals depth ≤ 6 ξ_c), reported beside
  the scores of trivial rules that ignore σ_w²: every cell trainable, none trainable, and the
  best rule "depth ≤ D" (D chosen afterwards, so it is an upper bound for such rules);
- per σ_w², the fitted trainable-depth boundary L_fit (where the mean test accuracy crosses the
  trainability threshold, interpolated in log depth) against 6 ξ_c, and the factor k of the fit
  L_fit ≈ k ξ_c over the σ_w² whose boundary lies inside the depth grid (the paper's k ≈ 6).

Outputs: results.nc (the sweep, dims activation × depth × lr × sigma_w2 × seed …; val_loss,
val_accuracy, test_loss, test_accuracy; a cell outside an activation's own axes is NaN),
figures/trainability.png, table.md / table.csv (one row per cell), boundary.csv.
"""

from __future__ import annotations

from experiments.trainability import reporting, training
from sigjax.study import Study

STUDY = Study(
    name="trainability",
    description=(
        "depth x sigma_w2 x lr x seed grid trained on digits for tanh and sigmoid at "
        "sigma_b2 = 0.05; rate chosen on a validation split; test accuracy heat map with xi_c, "
        "6 xi_c and the fitted trainable-depth boundary; figures/trainability.png, table.md"
    ),
    config=training.CONFIG,
    grid=training.GRID,
    report=reporting.report,
    compute=training.compute,
    presets={"quick": ({}, {}), "full": training.FULL},
)
