"""The shared figure style: colours, print size, fonts, log-axis ticks, PNG + PDF."""

import itertools

import matplotlib
import numpy as np
import pytest

from sigjax.analysis import plotting
from sigjax.nn import activations


def test_every_builtin_activation_has_its_own_colour():
    cols = [plotting.color(a) for a in activations.BUILTIN]
    assert len(set(cols)) == len(activations.BUILTIN)
    # a name without a colour gets one no built-in activation uses, by index
    others = {plotting.color("my_activation", i) for i in range(len(plotting.OTHER))}
    assert len(others) == len(plotting.OTHER) and not others & set(cols)
    # Okabe–Ito for the activations every study compares
    for a in ("sigmoid", "centred_sigmoid", "tanh", "relu", "softsign", "erf", "identity"):
        assert plotting.color(a) in plotting.OKABE_ITO.values()


def test_shades_run_light_to_dark_around_the_colour():
    base = matplotlib.colors.to_rgb(plotting.color("tanh"))
    s = plotting.shades("tanh", 3)
    lum = [sum(c) for c in s]
    assert lum[0] > lum[1] > lum[2]
    assert np.allclose(s[1], [v + 0.05 * (1 - v) for v in base], atol=1e-9)  # 5 % white
    assert plotting.shades("tanh", 1) == [base]


def _overlaps(labels) -> list:
    boxes = [t.get_window_extent() for t in labels if t.get_visible() and t.get_text()]
    return [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]


@pytest.mark.parametrize("lo, hi", [(0.01, 0.61), (0.03, 0.9), (40.0, 900.0), (1e-4, 10.0)])
def test_log_axes_label_without_overlap(tmp_path, lo, hi):
    fig, axes = plotting.subplots(1, 3, size=(2.35, 1.65))  # a narrow panel, as in the studies
    ax = axes[0, 2]
    x = np.geomspace(lo, hi, 6)
    ax.plot(x, x[::-1], "o-")
    ax.set(xscale="log", yscale="log")
    plotting.save(fig, tmp_path, "log")
    for axis in (ax.xaxis, ax.yaxis):
        labels = [*axis.get_ticklabels(minor=False), *axis.get_ticklabels(minor=True)]
        view = sorted(axis.get_view_interval())
        shown = [
            t
            for t, v in zip(axis.get_majorticklabels(), axis.get_majorticklocs(), strict=True)
            if t.get_text() and view[0] <= v <= view[1]
        ]
        assert len(shown) >= 2, [t.get_text() for t in shown]  # the axis can be read
        assert not any(t.get_text() for t in axis.get_minorticklabels())
        assert _overlaps(labels) == []


def test_subplots_draws_at_print_size_and_save_restores(tmp_path):
    before = matplotlib.rcParams["font.size"]
    fig, axes = plotting.subplots(2, 4, size=(3.0, 2.0))
    w, h = fig.get_size_inches()
    assert w == pytest.approx(plotting.TEXT_WIDTH) and h == pytest.approx(4.0 * 7.0 / 12.0)
    assert matplotlib.rcParams["font.size"] == plotting.STYLE["font.size"]
    axes[0, 0].set_xlabel("label")
    small = axes[0, 0].text(0.5, 0.5, "tiny", fontsize=4)
    paths = plotting.save(fig, tmp_path, "grid")
    assert [p.name for p in paths] == ["grid.png", "grid.pdf"]
    assert axes[0, 0].xaxis.label.get_fontsize() == plotting.STYLE["axes.labelsize"]
    assert small.get_fontsize() == plotting.MIN_FONT
    assert b"/FontFile2" in paths[1].read_bytes()  # TrueType text embedded in the PDF
    assert matplotlib.rcParams["font.size"] == before
    fig, _ = plotting.subplots(1, 2, size=(2.0, 1.5))  # narrow figures keep their size
    assert tuple(fig.get_size_inches()) == pytest.approx((4.0, 1.5))
    plotting.plt.close(fig)


def test_phase_diagram_contour_labels_sit_on_their_contours_apart():
    from experiments import phase_diagram

    w = np.logspace(-1, 3, 61)
    b = np.linspace(0.0, 1.0, 17)
    crit = 2.0 + 3.0 * b  # a critical line; ξ diverges on it as 2/|log10(w/w*)|
    xi = 2.0 / np.abs(np.log10(w[None, :] / crit[:, None]))
    levels = (1, 3, 10, 30)
    spots = phase_diagram.contour_label_spots(w, b, xi, levels, crit)
    # ξ = 30 runs within 0.07 decades (0.017 of the axis) of the line: too close to label
    assert {lv for *_, lv in spots} == {1, 3, 10}
    u = lambda x: (np.log10(x) + 1.0) / 4.0  # noqa: E731
    for x, y, lv in spots:
        i = int(np.argmin(np.abs(b - y)))
        assert b[i] == y
        assert 2.0 / abs(np.log10(x / crit[i])) == pytest.approx(lv, rel=0.08)  # on its contour
        assert abs(u(x) - u(crit[i])) >= 0.035  # clear of the critical line
    for (x1, y1, _), (x2, y2, _) in itertools.combinations(spots, 2):
        assert abs(u(x1) - u(x2)) >= 0.08 or abs(y1 - y2) >= 0.09
    # both sides of the line carry labels
    sides = {np.sign(u(x) - u(crit[int(np.argmin(np.abs(b - y)))])) for x, y, _ in spots}
    assert sides == {-1.0, 1.0}
