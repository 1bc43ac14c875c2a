import os
import subprocess
import sys

import pytest

from repro.core import cpu


def test_pinning_sets_only_what_is_unset(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx2", "fma", "sse4_2"})
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    env = {"MKL_CBWR": "COMPATIBLE"}
    added = cpu.pin_vector_dispatch(env)
    assert env["MKL_CBWR"] == "COMPATIBLE" and "MKL_CBWR" not in added
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["OPENBLAS_NUM_THREADS"] == "1"


def test_no_pinning_where_it_does_not_apply(monkeypatch):
    monkeypatch.setattr(cpu.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"sse4_2"})
    assert cpu.pin_vector_dispatch({}) == {}
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx2", "fma"})
    assert cpu.pin_vector_dispatch({cpu.NATIVE_ENV: "1"}) == {}
    monkeypatch.setattr(cpu.platform, "machine", lambda: "arm64")
    assert cpu.pin_vector_dispatch({}) == {}


@pytest.mark.skipif(not {"avx2", "fma"} <= cpu.cpu_flags(), reason="the CPU has no AVX2 and FMA")
def test_importing_repro_pins_torch_before_it_loads():
    env = {k: v for k, v in os.environ.items() if k not in cpu.PINNED}  # this process has pinned its own
    code = "import repro, torch; print(torch.backends.cpu.get_cpu_capability())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env).stdout
    assert out.strip() == "AVX2"
