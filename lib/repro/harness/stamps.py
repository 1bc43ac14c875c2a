"""Stamps: what a notebook's stored outputs depend on, recorded when they are produced.

A stamp covers the notebook's code cells, its parameters, the `repro` modules it imports (followed
through the import graph, read from the sources) and the versions of the packages that change
numbers. Editing a module therefore stales only the notebooks that import it, and `staleness`
says which file or version changed. Code is hashed by its syntax tree, so that rewrapping a line
or editing a comment, which cannot change a result, stales nothing.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import time
import warnings
from pathlib import Path

import repro

from ..core.claims import SWEEPS
from ..core.provenance import package_versions
from . import checkout, contract

LIB = Path(repro.__file__).resolve().parent          # the package whose modules are stamped
NUMERIC_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn")
KEY = "repro"                                         # the stamp's key in the notebook's metadata


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _python(source: str) -> str:
    """The source without IPython's line magics and shell escapes, which `ast` cannot read."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def code_digest(source: str) -> str:
    """Digest of what a source does: its syntax tree (magics kept as text), not its layout or its
    comments; a source that does not parse is digested as it is written."""
    magics = [line.strip() for line in source.splitlines() if line.lstrip().startswith(("%", "!"))]
    with warnings.catch_warnings():  # a notebook's "\Omega" in a plain string is its own business
        warnings.simplefilter("ignore")
        try:
            tree = ast.dump(ast.parse(_python(source)))
        except SyntaxError:
            return digest(source.encode())
    return digest("\n".join([*magics, tree]).encode())


def code_hash(nb) -> str:
    """Hash of the code cells: what a reader could change to change the outputs."""
    return digest("\0".join(code_digest(c.source) for c in contract.code_cells(nb)).encode())


def module_file(name: str, lib: Path = LIB) -> Path | None:
    """The file of module `name` (repro, repro.core.models, ...), or None when there is none."""
    parts = name.split(".")[1:]
    base = lib.joinpath(*parts)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(source: str, package: str = "", lib: Path = LIB) -> set[str]:
    """The `repro` modules a source imports: `import repro.x`, `from repro import x` (x a module
    or a name of the package), relative imports resolved against `package`."""
    found = set()
    with warnings.catch_warnings():  # a notebook's "\Omega" in a plain string is its own business
        warnings.simplefilter("ignore")
        tree = ast.parse(_python(source))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return {m for m in found if (m == "repro" or m.startswith("repro.")) and module_file(m, lib)}


@functools.lru_cache(maxsize=None)
def _module(path: Path, mtime_ns: int, size: int, package: str, lib: Path) -> tuple[frozenset, str]:
    """(the modules a library file imports, its digest): read once while the file is unchanged,
    which makes checking hundreds of notebooks cheap."""
    source = path.read_text()
    return frozenset(imported_modules(source, package, lib)), code_digest(source)


def dependencies(sources, lib: Path = LIB) -> dict[str, str]:
    """{file: digest} of every `repro` file that code made of `sources` runs on import, as paths
    relative to the library's parent (repro/core/models.py, ...): the modules it imports, their
    packages' __init__ files, and so on through the import graph."""
    todo = set().union(*(imported_modules(s, lib=lib) for s in sources)) if sources else set()
    files = {}
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo |= {".".join(parts[:i]) for i in range(1, len(parts))}   # parent packages run first
        path = module_file(name, lib)
        package = name if path.name == "__init__.py" else ".".join(parts[:-1])
        info = path.stat()
        imports, files[path.relative_to(lib.parent).as_posix()] = _module(
            path, info.st_mtime_ns, info.st_size, package, lib)
        todo |= imports - seen
    return dict(sorted(files.items()))


@functools.lru_cache(maxsize=None)
def numeric_versions() -> dict:
    return package_versions(NUMERIC_PACKAGES)


def sweep_digest(nb) -> str | None:
    """The digest of the sweep recorded for the notebook (its claims table shows the seed counts),
    or None when it names no slug or has no record."""
    slug = contract.claims_slug(nb)
    path = checkout.root() / SWEEPS / f"{slug}.json" if slug else None
    return digest(path.read_bytes()) if path and path.is_file() else None


def current(nb, lib: Path = LIB, sweep: bool = True) -> dict:
    """What the notebook's outputs would depend on if it ran now (with `sweep`, its recorded sweep)."""
    now = {"code": code_hash(nb), "parameters": contract.parameters(nb),
           "modules": dependencies([c.source for c in contract.code_cells(nb)], lib),
           "packages": numeric_versions()}
    return {**now, "sweep": sweep_digest(nb)} if sweep else now


def stamp(nb, *, seconds: float | None = None, preset: str = "smoke", seed: int = 0,
          peak_memory_mb: float | None = None, device: str | None = None) -> dict:
    """Record in the notebook's metadata what produced its outputs, how long they took, the
    kernel's peak memory and the device they ran on."""
    record = {**current(nb), "preset": preset, "seed": seed, "smoke_seconds": seconds,
              "peak_memory_mb": peak_memory_mb, "device": device,
              "executed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    nb.metadata[KEY] = record
    return record


def changes(then: dict, now: dict, what: str = "its outputs") -> list[str]:
    """What differs between two stamps, in words (empty: nothing)."""
    reasons = []
    if then.get("code") != now["code"]:
        reasons.append("its code cells changed")
    if then.get("parameters") != now["parameters"]:
        reasons.append("its parameters changed")
    old, new = then.get("modules", {}), now["modules"]
    reasons += [f"lib/{f} changed" for f in sorted(set(old) & set(new)) if old[f] != new[f]]
    reasons += [f"it now also depends on lib/{f}" for f in sorted(set(new) - set(old))]
    reasons += [f"it no longer depends on lib/{f}" for f in sorted(set(old) - set(new))]
    reasons += [f"{name} is {version}, {what} came from {then.get('packages', {}).get(name)}"
                for name, version in now["packages"].items() if then.get("packages", {}).get(name) != version]
    if "sweep" in now and then.get("sweep") != now["sweep"]:
        reasons.append("its recorded sweep changed")
    return reasons


def staleness(nb, lib: Path = LIB) -> list[str]:
    """Why the stored outputs no longer follow from the notebook and the library (empty: fresh)."""
    record = nb.metadata.get(KEY)
    if not record or "modules" not in record:
        return ["no stamp: its outputs were not produced by `repro refresh`"]
    return changes(record, current(nb, lib))
