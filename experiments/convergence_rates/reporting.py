"""The convergence_rates report: table.md, summary files and the figures."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from experiments.convergence_rates.figures import draw_figures
from experiments.convergence_rates.tables import default_table, gap, markdown, tables, width_slope
from experiments.convergence_rates.training import TREND_FACTOR


def report(ds: xr.Dataset, out: Path) -> dict:
    table = tables(ds)
    table.to_csv(out / "table.csv", index=False)
    g = gap(ds).sel(lr_factor=TREND_FACTOR).median("seed")
    slopes = xr.Dataset(
        {"gap": width_slope(g), "kernel": width_slope(ds.kernel_gap.median("seed"))}
    )
    slopes = slopes.to_dataframe().reset_index()
    default = default_table(ds)
    (out / "table.md").write_text(markdown(table, slopes, default))
    draw_figures(ds, out)
    saxe = _saxe_summary(ds)
    return {
        "gap_width_slope": {
            f"{r['task']}/{r['activation']}": float(r["gap"]) for r in slopes.to_dict("records")
        },
        "kernel_gap_width_slope": {
            f"{r['task']}/{r['activation']}": float(r["kernel"]) for r in slopes.to_dict("records")
        },
        "saxe_max_mode_error": saxe,
    }


def _saxe_summary(ds: xr.Dataset) -> dict:
    """Largest |measured − exact| mode strength over the run / the largest s, per start: against
    Saxe et al.'s continuous-time curve and against the discrete recursion."""
    out = {}
    for name in ("exact", "discrete"):
        err = abs(ds.saxe_modes - ds[f"saxe_{name}"]).max(["saxe_step", "mode"]) / ds.saxe_s.max()
        out |= {f"{k}_vs_{name}": float(err.sel(saxe_start=k)) for k in ds.saxe_start.values}
    return out
