"""The library's layers (DESIGN.md): core imports no theme; a theme imports core only; nothing but the
harness imports the harness; every theme package is named after a folder of notebooks/."""
from pathlib import Path

import pytest

from conftest import ROOT
from repro.harness import catalog, stamps

LIB = ROOT / "lib" / "repro"
THEMES = {path.name for path in LIB.iterdir() if path.is_dir() and (path / "__init__.py").exists()} \
    - {"core", "harness"}


def layer(module: str) -> str:
    """'core', 'harness', a theme, or 'root' for the package's own __init__ and its names."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in THEMES | {"core", "harness"} else "root"


def violation(source: str, target: str) -> str | None:
    """What is wrong with the file `source` (relative to lib/repro) importing the module `target`."""
    src = source.split("/")[0] if "/" in source else "root"
    dst = layer(target)
    if dst == "harness" and src != "harness":
        return f"only the harness imports the harness: {source} imports {target}"
    if src == "core" and dst not in ("core", "root"):
        return f"core imports no theme: {source} imports {target}"
    if src in THEMES and dst not in ("core", "root", src):
        return f"a theme imports repro.core only: {source} imports {target}"
    return None


def imports(path: Path) -> set[str]:
    """The repro modules imported by one file, read by the harness's own import-graph reader."""
    module = "repro." + ".".join(path.relative_to(LIB).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    return stamps.imported_modules(path.read_text(), package)


EDGES = [(path.relative_to(LIB).as_posix(), target) for path in sorted(LIB.rglob("*.py"))
         for target in sorted(imports(path))]


@pytest.mark.parametrize("source, target", EDGES)
def test_imports_respect_the_layers(source, target):
    assert violation(source, target) is None


@pytest.mark.parametrize("source, target", [
    ("core/models.py", "repro.normalization.weight_norm"),
    ("normalization/weight_norm.py", "repro.optimization.adam"),
    ("optimization/adam.py", "repro.harness.execute"),
    ("core/claims.py", "repro.harness.pages"),
])
def test_a_forbidden_import_is_caught(source, target):
    assert violation(source, target) is not None


def test_the_graph_is_read_from_the_sources():
    edges = set(EDGES)
    assert ("normalization/weight_norm.py", "repro.core.models") in edges
    assert ("harness/pages.py", "repro.core.claims") in edges


def test_theme_packages_are_named_after_notebook_folders():
    folders = {p.name.replace("-", "_") for p in (ROOT / "notebooks").iterdir() if p.is_dir()}
    assert THEMES == folders
    assert THEMES <= {t.replace("-", "_") for t in catalog.THEMES}
