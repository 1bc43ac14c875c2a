"""Pin the CPU's vector kernels to one instruction set, so that more machines compute the same digits.

torch, MKL, oneDNN, OpenBLAS and NumPy each pick kernels for the newest vector instructions the CPU
has (AVX-512 here, AVX2 elsewhere); the kernels round differently, training runs drift apart, and
two machines print different numbers for one seed. On an x86-64 CPU with AVX2 and FMA (Intel since
2013, AMD since 2015), `pin_vector_dispatch` makes all five use their AVX2 kernels, one thread in
the BLAS libraries, before they are imported. Measured on the 2-core AVX-512 machine that builds
the book: the eleven smoke notebooks took 203 s pinned against 207 s unpinned (no measurable cost).

Whether a pinned run gives the same digits on CPUs of other makers could not be checked here; the
checks of the collection compare verdicts, not digits, and do not rely on it. Set
REPRO_NATIVE_DISPATCH=1 to keep each library's own choice. Nothing here imports numpy or torch.
"""
from __future__ import annotations

import os
import platform

NATIVE_ENV = "REPRO_NATIVE_DISPATCH"
# The names NumPy gives its AVX-512 dispatch targets: 2.4 and later, then 2.0 to 2.3 (unknown
# names are ignored, so both sets can be given).
NUMPY_AVX512 = ("X86_V4 AVX512_ICL AVX512_SPR "
                "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX AVX512_CNL AVX512FP16")
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",        # torch's own kernels
    "MKL_CBWR": "AVX2",                   # MKL: conditional numerical reproducibility at AVX2
    "ONEDNN_MAX_CPU_ISA": "AVX2",         # oneDNN's convolutions
    "OPENBLAS_CORETYPE": "Haswell",       # OpenBLAS (NumPy, SciPy): the AVX2 kernels
    "OPENBLAS_NUM_THREADS": "1",          # a BLAS sum's order depends on the number of threads
    "NPY_DISABLE_CPU_FEATURES": NUMPY_AVX512,
}


def cpu_flags() -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def pin_vector_dispatch(environ=os.environ) -> dict:
    """Set the variables of PINNED that are not set already, on an x86-64 Linux CPU with AVX2 and
    FMA, unless REPRO_NATIVE_DISPATCH is set. Returns what it set. Must run before numpy and torch
    are imported to take full effect."""
    if environ.get(NATIVE_ENV) or platform.machine().lower() not in ("x86_64", "amd64") \
            or not {"avx2", "fma"} <= cpu_flags():
        return {}
    added = {k: v for k, v in PINNED.items() if k not in environ}
    environ.update(added)
    return added
