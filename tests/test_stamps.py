import copy
import shutil

import nbformat
import pytest

from conftest import FIXTURE, ROOT
from repro.harness import catalog, stamps


@pytest.fixture
def tiny():
    nb = nbformat.read(ROOT / FIXTURE, as_version=4)
    stamps.stamp(nb, seconds=1.5)
    return nb


def test_dependencies_follow_the_import_graph():
    files = stamps.dependencies(["from repro.dynamics_pde_operators import deeponet"])
    assert {"repro/__init__.py", "repro/dynamics_pde_operators/__init__.py",
            "repro/dynamics_pde_operators/deeponet.py", "repro/dynamics_pde_operators/operator_data.py",
            "repro/core/models.py", "repro/core/train.py", "repro/core/activations.py"} <= set(files)
    assert not any(f.startswith(("repro/harness/", "repro/normalization/")) for f in files)


@pytest.mark.parametrize("source, module", [
    ("import repro.core.stats", "repro/core/stats.py"),
    ("from repro.core import plots, train", "repro/core/plots.py"),
    ("from repro.core.stats import loglog_slope", "repro/core/stats.py"),
    ("from repro.normalization import weight_norm as wn", "repro/normalization/weight_norm.py"),
    ("%matplotlib inline\nfrom repro.core import data", "repro/core/data.py"),
])
def test_import_forms(source, module):
    assert module in stamps.dependencies([source])


def test_a_fresh_stamp_is_fresh_and_records_the_time(tiny):
    assert stamps.staleness(tiny) == []
    assert tiny.metadata["repro"]["smoke_seconds"] == 1.5
    assert set(tiny.metadata["repro"]["packages"]) == set(stamps.NUMERIC_PACKAGES)


@pytest.mark.parametrize("edit, reason", [
    (lambda nb: setattr(nb.cells[4], "source", nb.cells[4].source + "\nvalues = values / 2"), "code cells changed"),
    (lambda nb: setattr(nb.cells[4], "source", nb.cells[4].source + "\nfrom repro.core import stats"),
     "now also depends on lib/repro/core/stats.py"),
    (lambda nb: nb.metadata["repro"]["modules"].update({"repro/core/claims.py": "0" * 16}),
     "lib/repro/core/claims.py changed"),
    (lambda nb: nb.metadata["repro"]["packages"].update(torch="1.0"), "torch is"),
    (lambda nb: nb.metadata.pop("repro"), "no stamp"),
])
def test_staleness_names_what_changed(tiny, edit, reason):
    nb = copy.deepcopy(tiny)
    edit(nb)
    assert any(reason in r for r in stamps.staleness(nb)), stamps.staleness(nb)


def test_a_comment_or_a_rewrapped_line_stales_nothing(tiny):
    nb = copy.deepcopy(tiny)
    cell = nb.cells[4]
    assert "\n" in cell.source.strip()
    cell.source = "# a new comment\n" + cell.source.replace("\n", "  # and a note\n", 1)
    assert stamps.staleness(nb) == []
    assert stamps.code_digest("x = f(1,\n      2)  # why") == stamps.code_digest("x = f(1, 2)")
    assert stamps.code_digest("%timeit f()\nx = 1") != stamps.code_digest("x = 1")


def test_a_comment_added_to_a_module_stales_nothing(tmp_path):
    lib = tmp_path / "repro"
    shutil.copytree(stamps.LIB, lib, ignore=shutil.ignore_patterns("__pycache__"))
    before = stamps.dependencies(["from repro.core import stats"], lib)
    stats = lib / "core" / "stats.py"
    stats.write_text(stats.read_text() + "\n# a comment\n")
    assert stamps.dependencies(["from repro.core import stats"], lib) == before


def notebooks_staled_by_editing(tmp_path, module: str) -> set[str]:
    lib = tmp_path / "repro"
    shutil.copytree(stamps.LIB, lib, ignore=shutil.ignore_patterns("__pycache__"))
    (lib / module).write_text((lib / module).read_text() + "\n_EDITED = True\n")
    return {p.slug for p in catalog.with_notebooks()
            if stamps.staleness(nbformat.read(p.notebook_path, as_version=4), lib)}


def test_committed_notebooks_are_fresh():
    stale = {p.slug: stamps.staleness(nbformat.read(p.notebook_path, as_version=4))
             for p in catalog.with_notebooks()}
    assert {slug: reasons for slug, reasons in stale.items() if reasons} == {}


def test_editing_the_deeponet_module_stales_exactly_its_notebook(tmp_path):
    assert notebooks_staled_by_editing(tmp_path, "dynamics_pde_operators/deeponet.py") == {"deeponet"}


def test_editing_the_command_line_stales_no_notebook(tmp_path):
    assert notebooks_staled_by_editing(tmp_path, "harness/cli.py") == set()


def test_editing_a_core_module_stales_its_users_only(tmp_path):
    staled = notebooks_staled_by_editing(tmp_path, "core/stats.py")
    notebooks = {p.slug: nbformat.read(p.notebook_path, as_version=4) for p in catalog.with_notebooks()}
    direct = {slug for slug, nb in notebooks.items()
              if "repro.core.stats" in "".join(c.source for c in nb.cells if c.cell_type == "code")}
    # its direct users (and users through their theme's modules: deeponet) are staled; notebooks
    # that use it by no path, such as Deep Sets and SELU, are not
    assert direct and direct | {"deeponet"} <= staled
    assert not staled & {"deep-sets", "self-normalizing-neural-networks", "convergent-learning"}
