"""sigjax: how activation functions shape gradient flow and convergence, many models at once."""

__version__ = "0.1.0"
