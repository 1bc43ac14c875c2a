import json

import pytest

from repro.core import provenance


def test_package_versions_and_commit():
    versions = provenance.package_versions()
    assert versions["torch"].startswith("2.") and set(versions) == set(provenance.PACKAGES)
    assert provenance.package_versions(["no-such-package-xyz"])["no-such-package-xyz"] is None
    commit = provenance.git_commit()
    assert commit is None or len(commit.split("+")[0]) == 40


def test_git_commit_outside_a_repository(tmp_path):
    assert provenance.git_commit(tmp_path) is None


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "out" / "r.json"
    provenance.write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    class Unserialisable:
        def __str__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        provenance.write_json_atomic(path, {"a": Unserialisable()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
