"""Figure helpers shared by studies (matplotlib, Agg backend, PNG + PDF)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

COLORS = {
    "sigmoid": "C3",
    "centred_sigmoid": "C1",
    "tanh": "C0",
    "relu": "C2",
    "softsign": "C4",
    "erf": "C5",
}


def color(name: str, i: int = 0) -> str:
    return COLORS.get(name, f"C{i % 10}")


def band(ax, da: xr.DataArray, x: str = "step", over: str = "seed", q=(0.1, 0.9), **kw):
    """Median over `over` as a line, with a quantile band (default 10–90 %)."""
    med = da.median(over)
    lo, hi = (da.quantile(v, over) for v in q)
    (line,) = ax.plot(da[x], med, **kw)
    ax.fill_between(da[x], lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return line


def save(fig, directory: str | Path, name: str, dpi: int = 100) -> list[Path]:
    """Write figures/<name>.png and .pdf under directory; close the figure.

    dpi 100 keeps a PNG small enough to commit as a reference figure."""
    out = Path(directory) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return paths


def subplots(nrows: int, ncols: int, size=(4.0, 3.0), **kw):
    return plt.subplots(
        nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False, **kw
    )


def finite_or(values, fill):
    arr = np.asarray(values, dtype=float)
    return np.where(np.isfinite(arr), arr, fill)
