import numpy as np
import pytest
from helpers import tiny

from sigjax.engine import grid, sweep
from sigjax.errors import UserError


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("0.1,0.3", ["0.1", "0.3"]),
        ("range(3)", ["0", "1", "2"]),
        ("range(2,8,3)", ["2", "5"]),
        ("linspace(0.5,4,3)", ["0.5", "2.25", "4.0"]),
    ],
)
def test_expand(expr, expected):
    assert grid.expand(expr) == expected


def test_logspace_matches_numpy():
    got = [float(v) for v in grid.expand("logspace(-3, 0, 16)")]
    np.testing.assert_allclose(got, np.logspace(-3, 0, 16))


@pytest.mark.parametrize("expr", ["linspace(1,2)", "range(a)", "range(1.5)", "logspace(0,1,0)", ""])
def test_malformed_expressions(expr):
    with pytest.raises(UserError):
        grid.make_axes(dict([grid.parse(f"optim.lr={expr}")]))


def test_axes_are_typed_and_split_static_dynamic():
    axes = grid.make_axes({"model.depth": ["1", "3"], "optim.lr": ["0.1"], "seed": range(2)})
    assert [a.values for a in axes] == [(1, 3), (0.1,), (0, 1)]
    assert [a.dynamic for a in axes] == [False, True, True]
    groups = list(grid.groups(tiny(), axes))
    assert [g.cfg.model.depth for g in groups] == [1, 3]
    np.testing.assert_array_equal(groups[0].members["seed"], [0, 1])
    with pytest.raises(UserError, match="repeats"):
        grid.make_axes({"seed": [1, 1]})
    with pytest.raises(UserError, match="cannot be a grid axis"):
        grid.make_axes({"train.steps": [10, 20]})


def test_zipped_axis_equals_the_diagonal_of_the_product():
    keys, rows = grid.parse_zip(["optim.lr=0.05,0.2", "init.sigma_w2=0.5,2.0"])
    zipped = sweep.run(tiny(), grid.make_axes({keys: rows, "seed": [0, 1]}))
    product = sweep.run(
        tiny(),
        grid.make_axes({"optim.lr": [0.05, 0.2], "init.sigma_w2": [0.5, 2.0], "seed": [0, 1]}),
    )
    assert zipped.loss.dims[:2] == ("lr", "seed")
    np.testing.assert_array_equal(zipped.sigma_w2.values, [0.5, 2.0])
    for lr, sw2 in [(0.05, 0.5), (0.2, 2.0)]:
        np.testing.assert_allclose(
            zipped.loss.sel(lr=lr).values, product.loss.sel(lr=lr, sigma_w2=sw2).values, rtol=1e-6
        )


def test_zip_lengths_must_match():
    with pytest.raises(
        UserError, match="same number of values: model.depth has 2, model.width has 1"
    ):
        grid.parse_zip(["model.depth=1,2", "model.width=8"])
