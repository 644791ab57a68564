"""Grid dims a study's report does not lay out itself (a user's `--grid model.width=16,32`).

A report keeps its own layout (rows per depth, columns per activation, …) and repeats it for
every setting of the extra dims: tables get one row per setting, figures draw every setting when
there are few and otherwise the first value of each extra dim, saying so in a note.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import xarray as xr

from sigjax.errors import UserError

FIGURE_LIMIT = 4  # a figure repeats its layout for at most this many extra settings


def extra_dims(da: xr.DataArray | xr.Dataset, known: Iterable[str]) -> list[str]:
    """The dims of `da` outside `known`, in `da`'s order."""
    known = set(known)
    return [str(d) for d in da.dims if d not in known]


def combos(da: xr.DataArray | xr.Dataset, dims: Sequence[str]) -> list[dict]:
    """Every {dim: value} combination over `dims`, the last dim fastest ([{}] for no dims)."""
    out: list[dict] = [{}]
    for d in dims:
        out = [c | {d: v} for c in out for v in da[d].values.tolist()]
    return out


def value(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def label(setting: dict) -> str:
    """`sigma_w2=0.5, width=16` ('' for no setting)."""
    return ", ".join(f"{k}={value(v)}" for k, v in setting.items())


def refuse_other_axes(study: str, axes, keys: Sequence[str]) -> None:
    """UserError for a grid axis over any key but `keys`, or a zipped one: a computation that
    reads only those would silently ignore it."""
    for a in axes:
        if a.zipped:
            raise UserError(
                f"study {study} takes each of {', '.join(keys)} as its own axis, not zipped"
            )
        if a.key not in keys:
            raise UserError(
                f"study {study} sweeps only {', '.join(keys)}; --grid {a.key} would change nothing "
                f"(fix it with --set {a.key}=VALUE)"
            )


def figure_settings(
    da: xr.DataArray | xr.Dataset,
    dims: Sequence[str],
    limit: int = FIGURE_LIMIT,
    loop: Sequence[str] = (),
) -> tuple[list[dict], str]:
    """(settings a figure draws, a note on what it leaves out: '' when nothing).

    Every combination of `loop` (dims the figure always repeats over) times every combination
    of `dims` when there are at most `limit` of those, else the first value of each of `dims`.
    """
    extra = combos(da, dims)
    if len(extra) <= limit:
        return [c | e for c in combos(da, loop) for e in extra], ""
    first = {d: da[d].values.tolist()[0] for d in dims}
    sizes = ", ".join(f"{d}={value(v)} (first of {da.sizes[d]})" for d, v in first.items())
    note = f"figures drawn at {sizes} only; table.md has every setting"
    return [c | first for c in combos(da, loop)], note
