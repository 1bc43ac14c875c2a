import yaml

from conftest import ROOT
from repro import check, scaffold


def test_the_repository_passes_its_own_check():
    assert check.problems() == []


def test_toc_lists_every_notebook():
    files = check.toc_files()
    assert files[0] == "book/index"
    assert "notebooks/normalization/weight-normalization" in files


def test_register_adds_catalog_entry_and_toc_part(tmp_path, monkeypatch):
    from repro import catalog

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
