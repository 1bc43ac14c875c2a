"""What produced a result (commit, versions, device, configuration), what it cost (wall time, peak
memory), and writing results files whole or not at all."""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "pandas", "matplotlib", "seaborn",
            "papermill", "nbclient")
ROOT = Path(__file__).resolve().parents[3]  # the checkout, for an editable install


def git_commit(root: Path = ROOT) -> str | None:
    """The commit of the checkout, with `+dirty` when it has uncommitted changes; None outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def package_versions(names=PACKAGES) -> dict:
    """{name: installed version, or None} for the distributions `names`."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB (Linux reports kilobytes, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def device_name(device) -> str:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def collect(cfg) -> dict:
    """What produced a run configured by `cfg` (a `repro.Config`): the same on every re-run of one
    seed on one machine, so that its results file is too."""
    from .. import __version__

    return {
        "commit": git_commit(),
        "lib_version": __version__,
        "packages": {"python": platform.python_version(), **package_versions()},
        "device": device_name(cfg.device),
        "preset": cfg.preset,
        "seed": cfg.seed,
        "config": cfg.as_dict(),
        "overridden": cfg.overridden,
    }


def timing(cfg) -> dict:
    """What differs between re-runs: wall time since `repro.setup`, peak memory, the time now."""
    return {"wall_time_s": round(time.time() - cfg.started, 2),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json_atomic(path, payload) -> None:
    """Write `payload` as JSON so that `path` holds either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, default=str) + "\n"  # fails here, before any file is touched
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     suffix=".tmp", delete=False) as tmp:
        try:
            tmp.write(text)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
