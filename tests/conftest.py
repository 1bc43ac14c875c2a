from pathlib import Path

import pytest
import torch

from repro.harness import catalog

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = "tests/fixtures/tiny.ipynb"


@pytest.fixture
def tiny_paper():
    """A paper whose notebook is the tiny fixture: executes in a few seconds."""
    return catalog.Paper(id=999, slug="tiny", title="Tiny", theme="other", tier="A",
                         status="planned", link="https://example.org", notebook=FIXTURE)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """torch on one thread, as `repro.setup` runs notebooks on a CPU: the models of the tests are too
    small to gain from a second thread, and on a loaded machine it made a 1 s test take 33 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def float64():
    """float64 as torch's default dtype inside a test (tight tolerances such as invertibility to
    1e-10), restored afterwards; a test module opts in with `pytestmark`."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)
