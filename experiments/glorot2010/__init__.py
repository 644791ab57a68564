"""Glorot & Bengio (AISTATS 2010), "Understanding the difficulty of training deep feedforward
neural networks", on MNIST-1D and digits (and local MNIST when $SIGJAX_DATA_DIR has it).

Their setup: 5 hidden layers of 1000 units for Table 1 (4 for the sigmoid network of their
Fig. 2, the one that slowly desaturates; with 5 it never does), softmax + negative
log-likelihood, SGD on minibatches of 10 for about 5 million updates, the learning rate tuned
per model on a validation set, biases 0, and two initialisations: "standard" U[±1/√n_in] and
"normalized" U[±√6/√(n_in + n_out)], for the sigmoid, tanh and softsign. Here every
(dataset, activation) pair is one compiled program whose members are every (init scheme,
learning rate, seed): the init scheme only changes the initial weights, so both schemes share
the training program.

Measured, for every member:
- the usual per-step records (minibatch loss, per-layer gradient norms, …), and the loss and
  error on a validation split (the last eighth of the training set, never trained on) at each
  logged step; the test error of the final model on the real test split;
- activation trajectories (their Fig. 2–4): mean, std and the 2nd / 98th percentiles of each
  layer's activations on 300 fixed test examples, at init and after every log interval;
- distributions at init and after training (Fig. 6–8): per-layer variances and histograms of the
  activations, of the back-propagated gradients ∂ℓ/∂z_l (per example) and of the weight
  gradients ∂L/∂W_l, on the same 300 examples; and each layer's average singular value of its
  Jacobian ∂h_l/∂h_{l-1} (their Sec. 4.2.2), on the first N_JAC of them.

The learning rate of each (dataset, variant) is the one with the lowest mean final validation
error (rates within one percentage point of it tie, and the lower validation loss breaks the
tie); Table 1's analogue reports the test error at that rate, mean ± std over seeds, and each
ordering claim of the paper with a Welch t-test (or bootstrap interval) over the seeds. The
quick setting (the default) is width 64, depth 4 and 15000 steps; `--full` is their width
1000, 100000 steps, depth 4 and 5, more rates and seeds, and MNIST when $SIGJAX_DATA_DIR/mnist
exists.
"""

from __future__ import annotations

from experiments.glorot2010 import reporting, training
from sigjax.study import Study

STUDY = Study(
    name="glorot2010",
    description=(
        "Glorot & Bengio 2010: sigmoid/tanh/softsign, standard vs normalized init, 4 hidden "
        "layers, SGD batch 10 on MNIST-1D and digits: activation trajectories, per-layer "
        "distributions, layer-Jacobian singular values, Table 1 analogue with Welch tests; "
        "table.md, claims.csv, figures/"
    ),
    config=training.CONFIG,
    grid=training.GRID,
    report=reporting.report,
    compute=training.compute,
    presets={"quick": ({}, {}), "full": training.FULL},
)
