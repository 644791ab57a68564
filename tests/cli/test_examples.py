"""The example scripts in scripts/ run on tiny settings and print what they promise."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_activation(capsys):
    out = _load("example_activation").main(["--steps", "20"])
    # phi(z) = a tanh(bz) at sigma_b2 = 0: q* = 0, so chi_1 = sigma_w2 (ab)^2 = 1
    assert out["critical"]["lecun"] == pytest.approx(1 / (1.7159 * 2 / 3) ** 2, rel=1e-9)
    assert out["critical"]["sigmoid"] == pytest.approx(103.0075539, rel=1e-8)
    for final in out["final"].values():
        assert final.shape == (2,) and np.all(np.isfinite(final))
    assert "critical sigma_w2" in capsys.readouterr().out


def test_example_data_metric(capsys):
    ds = _load("example_data_metric").main(["--steps", "20"])
    # the registered per-layer metric is written like a bundled one: (…, step, layer)
    assert ds.max_preact.dims[-2:] == ("step", "layer")
    assert ds.sizes["layer"] == 4 and ds.sizes["step"] == ds.loss.sizes["step"]
    assert np.all(np.isfinite(ds.max_preact.values)) and np.all(ds.max_preact.values >= 0)
    assert ds.sizes["seed"] == 4 and list(ds.activation.values) == ["sigmoid", "tanh"]
    assert "test MSE" in capsys.readouterr().out
