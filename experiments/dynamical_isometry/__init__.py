"""Pennington, Schoenholz & Ganguli (NeurIPS 2017), "Resurrecting the sigmoid in deep learning
through dynamical isometry: theory and practice".

Part 1, spectra. The input–output Jacobian of a depth-L net, J = ∂x^L/∂x^0 = Π_l W_l D_l
(row-vector convention, D_l = diag φ'(h^l)), at initialisation, for Gaussian and orthogonal
weights, each activation on its critical line χ₁ = 1 (σ_w², σ_b² from `sigjax.theory`) at a
small q* where it has one, the input drawn so that the first pre-activations already have
variance q*. Width max(128, model.width), depths 2, 4, … up to max(128, the deepest trained
net); the product of per-layer factors of one deep net gives the Jacobians of all its prefixes
at once. The whole density of the squared singular values is compared with the
free-probability prediction S_{JJᵀ} = Π_l S_{WᵀW} S_{D_l²} (`sigjax.theory.free_probability`), by
the Kolmogorov–Smirnov distance and in a figure; its variance is

    Var λ = L (μ₂/μ₁² − 1 − s₁),   μ_k = E[φ'(h)^{2k}], h ~ N(0, q*),

with s₁ = −1 for Gaussian and 0 for orthogonal weights. ReLU (μ₂/μ₁² = 2) has no isometric
regime, nor has the logistic sigmoid with i.i.d. biases (its mean of ½ puts its only critical
point at q* ≈ 46); with the biases b_l = c_l − ½·1ᵀW_l (l ≥ 2) it is the centred-sigmoid net
exactly (σ(z) = ½ + (σ(z) − ½)), a case of its own here.

Part 2, training speed. Steps until the training loss (on 1000 fixed training examples) first
reaches a threshold, against depth, for orthogonal vs Gaussian weights: tanh on its critical
line at q* = 1/64 and ReLU at He init (σ_w² = 2, σ_b² = 0, q* = 1), SGD with the learning rate
swept per depth, on MNIST-1D with its inputs scaled per activation and init scheme so that the
first layer's pre-activations have variance q* (`input_scale`; the recorded metric `preact_q`
checks every layer at init). Every (activation, scheme) runs through `sigjax.engine.sweep` with its
own scaled data, one compiled program per depth. The quick setting (the default) is width 64,
depths 2/8/32, 600 steps logged every 5, 5 seeds; `--full` is width 256, depths 2 to 256, 5000
steps, more rates and seeds (a GPU's worth).
"""

from __future__ import annotations

from experiments.dynamical_isometry import reporting, training
from sigjax.study import Study

STUDY = Study(
    name="dynamical_isometry",
    description=(
        "Pennington et al. 2017: Jacobian singular-value spectra at init (Gaussian vs orthogonal, "
        "relu/tanh/erf/sigmoid on the critical line, depth 2-128) against the free-probability "
        "density, and steps to a training-loss threshold vs depth from q*; table.md, figures/"
    ),
    config=training.CONFIG,
    grid=training.GRID,
    report=reporting.report,
    compute=training.compute,
    presets={"quick": ({}, {}), "full": training.FULL},
)
