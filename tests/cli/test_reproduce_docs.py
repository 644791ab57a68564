"""scripts/reproduce_docs.py: marked doc regions are regenerated from (fake) study runs."""

import importlib.util
import sys
from pathlib import Path

import pytest
import xarray as xr

from sigjax.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reproduce_docs", ROOT / "scripts/reproduce_docs.py")
rd = importlib.util.module_from_spec(spec)
sys.modules["reproduce_docs"] = rd
spec.loader.exec_module(rd)

DOC = """# Notes

Intro text stays.

<!-- reproduce: sigmoid_convergence --set train.steps=50 | table=table.md#2 -->
| old | table |
|---|---|
| 1 | 2 |

Made by `sigjax run sigmoid_convergence --set train.steps=50` at commit 0000000.
<!-- /reproduce -->

Between the regions.

<!-- reproduce: sigmoid_convergence --set train.steps=50 | table=none | figures=curve:sc_curve -->
<!-- /reproduce -->

<!-- reproduce: phase_diagram -->
stale
<!-- /reproduce -->
Tail.
"""


class FakeRunner:
    """Writes what a study run would: table.md (caption, table, note), results.nc carrying a
    commit, figures/curve.png; counts the runs per command."""

    def __init__(self, value: str = "0.5", commit: str = "abcdef0123456789+dirty"):
        self.value, self.commit, self.calls = value, commit, []

    def __call__(self, args, out: Path) -> None:
        self.calls.append(args)
        (out / "figures").mkdir(parents=True)
        table = f"Caption of {args[0]}.\n\n| a | b |\n|---|---|\n| {self.value} | x |\n\nNote.\n"
        (out / "table.md").write_text(table)
        xr.Dataset(attrs={"git_commit": self.commit}).to_netcdf(out / "results.nc")
        (out / "figures" / "curve.png").write_bytes(f"png {self.value}".encode())


def _root(tmp_path: Path, text: str = DOC) -> Path:
    (tmp_path / "docs").mkdir(parents=True)
    (tmp_path / "docs" / "notes.md").write_text(text)
    return tmp_path


def test_regions_are_replaced_by_the_runs_table_and_figures(tmp_path):
    root = _root(tmp_path)
    runner = FakeRunner()
    changed = rd.reproduce(root, runner, log=lambda m: None)
    # one run per distinct command, in the order the docs name them
    assert runner.calls == [
        ("sigmoid_convergence", "--set", "train.steps=50"),
        ("phase_diagram",),
    ]
    expected = DOC.replace(
        "| old | table |\n|---|---|\n| 1 | 2 |\n\n"
        "Made by `sigjax run sigmoid_convergence --set train.steps=50` at commit 0000000.",
        "| a | b |\n|---|---|\n| 0.5 | x |\n\n"
        "Made by `sigjax run sigmoid_convergence --set train.steps=50` at commit abcdef0+dirty.",
    )
    expected = expected.replace(
        "table=none | figures=curve:sc_curve -->\n",
        "table=none | figures=curve:sc_curve -->\n"
        "Made by `sigjax run sigmoid_convergence --set train.steps=50` at commit abcdef0+dirty.\n",
    )
    expected = expected.replace(
        "stale\n",
        "Caption of phase_diagram.\n\n| a | b |\n|---|---|\n| 0.5 | x |\n\nNote.\n\n"
        "Made by `sigjax run phase_diagram` at commit abcdef0+dirty.\n",
    )
    assert (root / "docs/notes.md").read_text() == expected
    assert (root / "docs/figures/sc_curve.png").read_bytes() == b"png 0.5"
    assert changed == ["docs/notes.md", "docs/figures/sc_curve.png"]
    # a new commit with the same numbers changes nothing (the older commit made them too)
    assert rd.reproduce(root, FakeRunner(commit="1234567abc"), log=lambda m: None) == []
    assert (root / "docs/notes.md").read_text() == expected


def test_check_detects_a_change_and_writes_nothing(tmp_path, capsys):
    root = _root(tmp_path)
    assert rd.main([], FakeRunner(), root) == 0
    before = (root / "docs/notes.md").read_text()
    assert rd.main(["--check"], FakeRunner(commit="feedbeef"), root) == 0
    assert "up to date" in capsys.readouterr().out
    assert rd.main(["--check"], FakeRunner(value="0.6"), root) == 1
    out = capsys.readouterr().out
    assert "would change: docs/notes.md, docs/figures/sc_curve.png" in out
    assert (root / "docs/notes.md").read_text() == before
    assert (root / "docs/figures/sc_curve.png").read_bytes() == b"png 0.5"
    # --only: the other study's region is left alone even when its run would differ
    assert rd.main(["--only", "phase_diagram"], FakeRunner(value="0.7"), root) == 0
    text = (root / "docs/notes.md").read_text()
    assert "| 0.7 | x |" in text and "| 0.5 | x |" in text


def test_unknown_study_is_a_one_line_error(tmp_path, capsys):
    root = _root(tmp_path, DOC.replace("reproduce: phase_diagram", "reproduce: no_such_study"))
    runner = FakeRunner()
    assert rd.main([], runner, root) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("reproduce_docs: error: docs/notes.md:18: unknown study 'no_such_study'")
    assert runner.calls == []  # refused before anything ran
    assert rd.main(["--only", "nope"], runner, _root(tmp_path / "b")) == 2
    assert capsys.readouterr().err.startswith("reproduce_docs: error: unknown study 'nope'")


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- reproduce: phase_diagram -->\nx\n", "without <!-- /reproduce -->"),
        ("x\n<!-- /reproduce -->\n", "/reproduce without a start"),
        (
            "<!-- reproduce: phase_diagram -->\n<!-- reproduce: phase_diagram -->\n"
            "<!-- /reproduce -->\n",
            "nest",
        ),
        ("<!-- reproduce: phase_diagram | tabel=x -->\n<!-- /reproduce -->\n", "unknown marker"),
        ("<!-- reproduce: phase_diagram | table=t.md#0 -->\n<!-- /reproduce -->\n", "N or N-M"),
        ("<!-- reproduce: -->\n<!-- /reproduce -->\n", "names no study"),
    ],
)
def test_malformed_markers_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        rd.find_regions(text, "doc.md")


def test_select_parts():
    text = "caption\n\n| t |\n|---|\n\n\nnote one\nnote two\n"
    assert rd.select_parts(text, (2, 2)) == "| t |\n|---|"
    assert rd.select_parts(text, (2, 3)) == "| t |\n|---|\n\nnote one\nnote two"
    assert rd.select_parts(text, None) == text.strip()
    with pytest.raises(UserError, match="3 parts, not 4"):
        rd.select_parts(text, (4, 4))


def test_the_repositorys_markers_name_known_studies_and_figures():
    import experiments

    regions = [r for p in rd.docs_of(ROOT) for r in rd.find_regions(p.read_text(), str(p))]
    rd.check_studies(regions, experiments.STUDIES)
    quoted = {r.study for r in regions}
    assert {"sigmoid_convergence", "phase_diagram", "gradient_propagation"} <= quoted
    shown = "".join(p.read_text() for p in rd.docs_of(ROOT))
    for r in regions:  # every figure a marker copies is one the docs show
        for _, dst in r.figures:
            assert f"figures/{dst}.png" in shown, dst


def test_keep_leaves_the_run_directories_and_never_reuses_one(tmp_path):
    root = _root(tmp_path / "repo")
    keep = tmp_path / "kept"
    rd.reproduce(root, FakeRunner(), log=lambda m: None, keep=keep)
    # one directory per distinct command, each holding what its run wrote
    assert sorted(p.name for p in keep.iterdir()) == ["run0", "run1"]
    assert (keep / "run0" / "figures" / "curve.png").read_bytes() == b"png 0.5"
    with pytest.raises(UserError, match="run0 exists"):
        rd.reproduce(root, FakeRunner(), log=lambda m: None, keep=keep)
