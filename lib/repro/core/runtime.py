"""Resolve a preset, seed everything, choose the device and the thread count.

Every notebook starts with
`cfg = repro.setup(preset, seed, device, presets=PRESETS, overrides=overrides)`.
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from . import presets as presets_mod

# On the 2-core CPU machines this collection runs on, torch's default of one thread per core made a
# small MLP training step about 50x slower than one thread (45 ms against 0.8 ms on an idle machine),
# and a 4-layer width-256 MLP step on a batch of 128 4x slower (17 ms against 4.0 ms, measured with
# other jobs running): the models here are too small to amortise the threads' synchronisation. So
# CPU runs use one thread unless the caller asks otherwise.
CPU_THREADS = 1


@dataclass(frozen=True)
class Config:
    """The resolved configuration of a run: the preset's settings (with any overrides), seed,
    device and threads."""

    preset: str
    seed: int
    device: torch.device
    threads: int
    values: dict = field(default_factory=dict)
    overridden: dict = field(default_factory=dict)  # setting -> the preset's own value
    started: float = field(default_factory=time.time, compare=False)

    def __getattr__(self, name):
        values = object.__getattribute__(self, "values")
        if name in values:
            return values[name]
        raise AttributeError(
            f"preset {self.preset!r} has no value {name!r}; it has: {', '.join(sorted(values))}"
        )

    def __getitem__(self, name):
        return self.values[name]

    def as_dict(self) -> dict:
        return {"preset": self.preset, "seed": self.seed, "device": str(self.device),
                "threads": self.threads, **self.values}

    def __str__(self):
        rows = []
        for k, v in self.as_dict().items():
            note = f"  (overridden; the preset says {self.overridden[k]!r})" if k in self.overridden else ""
            rows.append(f"{k:>12} = {v!r}{note}" if isinstance(v, str) else f"{k:>12} = {v}{note}")
        return "\n".join(rows)


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` is CUDA when present, else the CPU; `cpu` and `cuda[:N]` are taken as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device == {device!r}, must be 'auto', 'cpu' or 'cuda[:N]'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device == {device!r} but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed == {seed!r}, must be a non-negative int")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(preset: str = "smoke", seed: int = 0, device: str = "auto", presets: dict | None = None,
          overrides: dict | None = None, threads: int | None = None, quiet: bool = False) -> Config:
    """Resolve the preset and apply `overrides` (any of its settings, type-checked), seed
    everything, pick device and threads, and print the configuration.

    Introduced in: notebooks/normalization/self-normalizing-neural-networks.ipynb
    """
    values = presets_mod.resolve(preset, presets if presets is not None else {preset: {}}, overrides)
    overridden = {k: presets[preset][k] for k in overrides or {}}
    dev = resolve_device(device)
    seed_everything(seed)
    if dev.type == "cpu":
        threads = CPU_THREADS if threads is None else threads
        torch.set_num_threads(threads)
        # Deterministic kernels make a CPU run repeatable bit for bit: one seed, one results file.
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        threads = torch.get_num_threads() if threads is None else threads
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    cfg = Config(preset=preset, seed=seed, device=dev, threads=threads, values=values,
                 overridden=overridden)
    if not quiet:
        print(cfg)
    return cfg
