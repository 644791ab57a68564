"""Figure helpers shared by studies (matplotlib, Agg backend): one style, PNG + vector PDF.

A study draws through `subplots` and writes through `save`; between the two, `STYLE` is in
effect, so every study gets the same look without asking for it:

* figures are drawn at the size they are printed: `subplots` shrinks a figure wider than
  `TEXT_WIDTH` (7 in, a two-column page's text width) to it, keeping its aspect, so that its
  8 pt labels and 7 pt tick labels and legends are 8 and 7 pt in the paper too (`save` raises
  any smaller text a study asked for to `MIN_FONT`);
* one colour per activation in every figure (`color`, `COLORS`): the Okabe–Ito palette
  (colourblind-safe) for the common activations, Paul Tol's "muted" one for the rest;
* log axes label whole decades, or 1, 2, 5 × 10^k when fewer than two decades are in view,
  and never their minor ticks (whose labels overlap on short axes);
* `save` writes figures/NAME.png (dpi 100: small enough to commit) and a vector
  figures/NAME.pdf with embedded TrueType text.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from cycler import cycler  # noqa: E402
from matplotlib import ticker  # noqa: E402
from matplotlib.text import Text  # noqa: E402

TEXT_WIDTH = 7.0  # inches: the widest a figure is printed (a two-column page's text width)
MIN_FONT = 7.0  # points: no text in a saved figure is smaller

# Okabe & Ito (2008), "Color Universal Design": distinct for the common colour-vision
# deficiencies (its yellow is left out: too light for lines on white).
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
# Paul Tol's "muted" scheme (colourblind-safe), for the activations beyond the first seven
TOL_MUTED = {
    "indigo": "#332288",
    "green": "#117733",
    "teal": "#44AA99",
    "olive": "#999933",
    "rose": "#CC6677",
    "wine": "#882255",
    "cyan": "#88CCEE",
    "purple": "#AA4499",
    "sand": "#DDCC77",
}
# One colour per built-in activation, the same in every figure; kin share a hue family
# (the sigmoids warm, tanh and erf blue, the ReLU family green).
COLORS = {
    "sigmoid": OKABE_ITO["vermillion"],
    "centred_sigmoid": OKABE_ITO["orange"],
    "tanh": OKABE_ITO["blue"],
    "erf": OKABE_ITO["sky_blue"],
    "relu": OKABE_ITO["bluish_green"],
    "softsign": OKABE_ITO["reddish_purple"],
    "identity": OKABE_ITO["black"],
    "gelu": TOL_MUTED["wine"],
    "silu": TOL_MUTED["olive"],
    "softplus": TOL_MUTED["indigo"],
    "elu": TOL_MUTED["teal"],
    "leaky_relu": TOL_MUTED["green"],
    "hard_sigmoid": TOL_MUTED["rose"],
    "hard_tanh": "#777777",
}
# for names without a colour of their own (a user's activation, a setting), by index
OTHER = (TOL_MUTED["cyan"], TOL_MUTED["purple"], TOL_MUTED["sand"], "#BBBBBB")
# the colour cycle ("C0", "C1", … and unlabelled lines): Okabe–Ito, then Tol
CYCLE = (*OKABE_ITO.values(), *(TOL_MUTED[k] for k in ("indigo", "wine", "olive", "teal")))

STYLE = {
    "font.size": 8.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 8.0,
    "figure.titlesize": 9.0,
    "xtick.labelsize": 7.0,
    "ytick.labelsize": 7.0,
    "legend.fontsize": 7.0,
    "legend.title_fontsize": 7.0,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "legend.borderaxespad": 0.3,
    "axes.prop_cycle": cycler(color=list(CYCLE)),
    "axes.linewidth": 0.6,
    "axes.titlepad": 3.0,
    "axes.labelpad": 2.0,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "xtick.minor.size": 1.5,
    "ytick.minor.size": 1.5,
    "xtick.major.pad": 2.0,
    "ytick.major.pad": 2.0,
    "pdf.fonttype": 42,  # TrueType text in the PDF: selectable, editable, accepted by journals
    "ps.fonttype": 42,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "image.cmap": "viridis",
}


def color(name: str, i: int = 0) -> str:
    """The colour of activation (or other series) `name`; `i` picks one for names without."""
    return COLORS.get(str(name), OTHER[i % len(OTHER)])


def shades(name: str, n: int, i: int = 0) -> list[tuple[float, float, float]]:
    """`n` shades of `name`'s colour, light to dark (for several settings of one activation)."""
    base = np.asarray(matplotlib.colors.to_rgb(color(name, i)))
    if n == 1:
        return [tuple(base)]
    # mix with white (t < 0) or black (t > 0); the full colour sits in the middle
    out = []
    for t in np.linspace(-0.55, 0.45, n):
        rgb = base + (-t) * (1.0 - base) if t < 0 else base * (1.0 - t)
        out.append(tuple(float(v) for v in np.clip(rgb, 0.0, 1.0)))
    return out


def band(ax, da: xr.DataArray, x: str = "step", over: str = "seed", q=(0.1, 0.9), **kw):
    """Median over `over` as a line, with a quantile band (default 10–90 %)."""
    med = da.median(over)
    lo, hi = (da.quantile(v, over) for v in q)
    (line,) = ax.plot(da[x], med, **kw)
    ax.fill_between(da[x], lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return line


def subplots(nrows: int, ncols: int, size=(4.0, 3.0), **kw):
    """plt.subplots with `size` (w, h) inches per panel, in STYLE, at most TEXT_WIDTH wide.

    A grid wider than TEXT_WIDTH is shrunk to it (aspect kept), so that it is drawn at print
    size: a study that asks for many panels gets smaller ones, not smaller text. The style stays
    in effect until `save` writes the figure (text, ticks and colours are fixed as drawn)."""
    width, height = size[0] * ncols, size[1] * nrows
    scale = min(1.0, TEXT_WIDTH / width)
    restore = None if _style_active() else {k: matplotlib.rcParams[k] for k in STYLE}
    matplotlib.rcParams.update(STYLE)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * scale, height * scale), squeeze=False, **kw
    )
    fig._sigjax_restore = restore  # save() puts the caller's settings back
    return fig, axes


def fig_legend(fig, axes=None, ncol: int | None = None, **kw):
    """One legend for the whole figure, centred above it: the distinct labelled artists of
    `axes` (default: all of the figure's), in the order first drawn. Call after tight_layout."""
    handles, labels = [], []
    for ax in np.ravel(axes) if axes is not None else fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    if not handles:
        return None
    renderer = fig.canvas.get_renderer()
    to_fig = fig.transFigure.inverted()
    top = max(  # above every panel's titles, not only its frame
        to_fig.transform((0, ax.get_tightbbox(renderer).y1))[1]
        for ax in fig.axes
        if ax.get_visible()
    )
    kw = {"loc": "lower center", "bbox_to_anchor": (0.5, top), "borderaxespad": 0.1, **kw}
    return fig.legend(handles, labels, ncol=ncol or min(len(labels), 4), **kw)


def save(fig, directory: str | Path, name: str, dpi: int = 100) -> list[Path]:
    """Write figures/<name>.png and .pdf under directory, in the shared style; close the figure.

    Before writing: log axes get their ticks tidied (`tidy_log_axis`) and text smaller than
    MIN_FONT is raised to it. dpi 100 keeps a PNG small enough to commit as a reference figure.
    """
    out = Path(directory) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    fig.canvas.draw()  # final limits and ticks
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                tidy_log_axis(axis)
    for text in fig.findobj(Text):
        if text.get_text() and text.get_fontsize() < MIN_FONT:
            text.set_fontsize(MIN_FONT)
    try:
        for p in paths:
            fig.savefig(p, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
        restore = getattr(fig, "_sigjax_restore", None)
        if restore is not None:
            matplotlib.rcParams.update(restore)
    return paths


def tidy_log_axis(axis) -> None:
    """Major labels at powers of ten, or at 1, 2, 5 × 10^k when fewer than two powers of ten
    are in view; no minor labels (matplotlib labels minor ticks on short log axes, and those
    labels collide)."""
    lo, hi = sorted(axis.get_view_interval())
    if not (lo > 0 and np.isfinite(hi)):
        return
    axis.set_minor_formatter(ticker.NullFormatter())
    decades = np.floor(np.log10(hi) + 1e-9) - np.ceil(np.log10(lo) - 1e-9) + 1
    if decades >= 2:
        return
    axis.set_major_locator(ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ticker.FuncFormatter(_plain))


def _plain(v: float, _pos=None) -> str:
    """0.05, 2, 500; 2×10⁻⁵ beyond [10⁻³, 10⁴)."""
    if v <= 0:
        return ""
    if 1e-3 <= v < 1e4:
        return f"{v:g}"
    e = int(np.floor(np.log10(v)))
    m = v / 10.0**e
    return f"${m:g}\\times10^{{{e}}}$" if abs(m - 1) > 1e-9 else f"$10^{{{e}}}$"


def _style_active() -> bool:
    return all(matplotlib.rcParams[k] == v for k, v in STYLE.items())


def finite_or(values, fill):
    arr = np.asarray(values, dtype=float)
    return np.where(np.isfinite(arr), arr, fill)
