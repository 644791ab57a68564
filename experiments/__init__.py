"""The studies, one module each; `STUDIES` maps a study's name to its module path."""

from __future__ import annotations

import importlib

from sigjax.errors import UserError

STUDIES = {
    "sigmoid_convergence": "experiments.sigmoid_convergence",
    "glorot2010": "experiments.glorot2010",
    "dynamical_isometry": "experiments.dynamical_isometry",
    "phase_diagram": "experiments.phase_diagram",
    "gradient_propagation": "experiments.gradient_propagation",
    "trainability": "experiments.trainability",
}
DEFAULT = "sigmoid_convergence"


def get(name: str):
    """The Study called `name`."""
    if name not in STUDIES:
        raise UserError(f"unknown study {name!r}; choose from {', '.join(STUDIES)}")
    return importlib.import_module(STUDIES[name]).STUDY
