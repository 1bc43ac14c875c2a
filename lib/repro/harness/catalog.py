"""The collection's catalog, `data/papers.yaml`: every paper, its status and its notebook."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from . import checkout

CATALOG = "data/papers.yaml"  # in the checkout
STATUSES = ("reproduced", "partly reproduced", "not reproduced", "planned", "out of scope")
THEMES = {
    "normalization": "Normalization and signal propagation",
    "normalizing-flows": "Normalizing flows",
    "optimization": "Optimization",
    "infinite-width-kernels": "Infinite width and kernels",
    "generalization-theory": "Generalization theory",
    "representation-learning": "Representation learning",
    "attention-transformers": "Attention and transformers",
    "generative-diffusion": "Generative models and diffusion",
    "dynamics-pde-operators": "Dynamics, PDEs and operators",
    "bayesian-gp": "Bayesian methods and Gaussian processes",
    "statistics-testing": "Statistics and testing",
    "reinforcement-learning": "Reinforcement learning",
    "fairness-robustness": "Fairness and robustness",
    "geometry-manifolds": "Geometry and manifolds",
    "other": "Other topics",
}


class UnknownPaper(LookupError):
    """A paper that is not in the catalog."""


@dataclass(frozen=True)
class Paper:
    id: int
    slug: str
    title: str
    theme: str
    tier: str
    status: str
    authors: str | None = None
    year: int | None = None
    link: str | None = None
    reason: str | None = None
    notebook: str | None = None

    @property
    def notebook_path(self) -> Path | None:
        return checkout.root() / self.notebook if self.notebook else None


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[Paper, ...]:
    rows = yaml.safe_load(path.read_text())
    return tuple(Paper(**row) for row in rows)


def papers(path: Path | None = None) -> tuple[Paper, ...]:
    """Every paper of the catalog (`path`, default the checkout's data/papers.yaml)."""
    return _load(Path(path) if path else checkout.root() / CATALOG)


def find(key: str | int, path: Path | None = None) -> Paper:
    """A paper by catalog id or slug; an unknown one raises UnknownPaper with close matches."""
    all_papers = papers(path)
    text = str(key).strip()
    for p in all_papers:
        if text == p.slug or (text.isdigit() and int(text) == p.id):
            return p
    slugs = [p.slug for p in all_papers]
    close = difflib.get_close_matches(text, slugs, n=3, cutoff=0.5)
    close += [s for s in slugs if text and text in s and s not in close][:3]
    hint = f"; did you mean: {', '.join(close)}?" if close else "; `repro list` shows them all"
    raise UnknownPaper(f"unknown paper {text!r}{hint}")


def with_notebooks(path: Path | None = None) -> list[Paper]:
    return [p for p in papers(path) if p.notebook]
