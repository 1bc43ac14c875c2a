from pathlib import Path

import pytest

from repro.harness import catalog

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = "tests/fixtures/tiny.ipynb"


@pytest.fixture
def tiny_paper():
    """A paper whose notebook is the tiny fixture: executes in a few seconds."""
    return catalog.Paper(id=999, slug="tiny", title="Tiny", theme="other", tier="A",
                         status="planned", link="https://example.org", notebook=FIXTURE)
