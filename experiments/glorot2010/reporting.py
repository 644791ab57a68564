"""The glorot2010 report: table.md (the Table 1 analogue, the ordering claims with their tests,
the layer-Jacobian singular values), claims.csv and the figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from experiments.glorot2010.figures import (
    fig_activations,
    fig_distributions,
    fig_val_error,
    fig_variances,
    trajectory,
)
from experiments.glorot2010.tables import (
    all_settings,
    claims,
    figure_settings,
    gradient_ratios,
    jacobian_svs,
    label,
    markdown,
    table,
    variant,
)


def report(ds: xr.Dataset, out: Path) -> dict:
    rows = table(ds)
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "table.csv", index=False)
    note = figure_settings(ds)[1]
    tests = claims(ds)
    pd.DataFrame(tests).to_csv(out / "claims.csv", index=False)
    md = markdown(rows, ds, tests)
    (out / "table.md").write_text(md + (f"\nNote: {note}.\n" if note else ""))
    ratios = gradient_ratios(ds)
    fig_activations(ds, out)
    fig_distributions(ds, out)
    fig_variances(ds, out)
    fig_val_error(ds, out)
    head = {
        "table": {
            f"{label({k: r[k] for k in all_settings(ds)[0]})}/{r['variant']}": {
                "test_error_mean": r["test_error_mean"],
                "test_error_std": r["test_error_std"],
                "best_lr": r["best_lr"],
                "n_diverged": r["n_diverged"],
            }
            for r in rows
        },
        "claims": [
            {k: (v.item() if isinstance(v, np.generic) else v) for k, v in t.items()} for t in tests
        ],
        "first_over_top_hidden_variance_at_init": {},
        "mean_layer_jacobian_singular_value_at_init": {},
        "sigmoid_top_layer_mean_activation": {},
    }
    sv = jacobian_svs(ds)
    for s in all_settings(ds):
        r0 = ratios.sel(s).sel(when="init")
        for act in ds.activation.values.tolist():
            for scheme in ds.scheme.values.tolist():
                key = f"{label(s)}/{variant(act, scheme)}"
                one = r0.sel(activation=act, scheme=scheme)
                head["first_over_top_hidden_variance_at_init"][key] = {
                    k: float(one[k]) for k in ("var_backprop", "var_wgrad", "var_act")
                }
                one_sv = sv.sel(s).sel(activation=act, scheme=scheme)
                head["mean_layer_jacobian_singular_value_at_init"][key] = float(one_sv)
        if "sigmoid" in ds.activation.values and "standard" in ds.scheme.values:
            one = trajectory(ds, s, "sigmoid", "standard")
            top = int(one.n_layers) - 1
            m = one.probe_mean.sel(layer=top)
            head["sigmoid_top_layer_mean_activation"][label(s)] = {
                "init": float(m.isel(step=0)),
                "min": float(m.min()),
                "step_of_min": int(m.idxmin("step")),
                "final": float(m.isel(step=-1)),
            }
    note = figure_settings(ds)[1]
    if note:
        head["figure_note"] = note
    (out / "headline.json").write_text(json.dumps(head, indent=2) + "\n")
    return head
