import yaml

from conftest import ROOT
from repro.harness import catalog, check, scaffold


def test_the_repository_passes_its_own_check():
    assert check.problems() == []


def test_toc_lists_every_notebook():
    files = check.toc_files()
    assert files[0] == "book/index"
    assert {p.notebook.removesuffix(".ipynb") for p in catalog.with_notebooks()} <= set(files)


def test_a_broken_checkout_is_reported(tmp_path):
    for name in ("data", "book", "notebooks"):
        (tmp_path / name).symlink_to(ROOT / name)
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    toc["parts"][1]["chapters"].append({"file": "notebooks/normalization/missing"})
    (tmp_path / "_toc.yml").write_text(yaml.safe_dump(toc))
    problems = check.problems(tmp_path)
    assert ("_toc.yml", "notebooks/normalization/missing is not a notebook of data/papers.yaml") in problems


def test_register_adds_catalog_entry_and_toc_part(tmp_path):
    papers_file, toc_file = tmp_path / "papers.yaml", tmp_path / "_toc.yml"
    papers_file.write_text((ROOT / "data" / "papers.yaml").read_text())
    toc_file.write_text((ROOT / "_toc.yml").read_text())
    paper = catalog.find(5)
    scaffold.register(paper, "notebooks/other/x.ipynb", papers_file, toc_file)
    rows = {r["id"]: r for r in yaml.safe_load(papers_file.read_text())}
    assert rows[5]["notebook"] == "notebooks/other/x.ipynb"
    assert papers_file.read_text().startswith("# The collection's catalog")
    toc = yaml.safe_load(toc_file.read_text())
    assert toc["parts"][-1]["caption"] == "References"
    assert {"file": "notebooks/other/x"} in toc["parts"][-2]["chapters"]
