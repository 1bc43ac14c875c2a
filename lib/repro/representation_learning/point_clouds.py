"""Synthetic point clouds: points sampled on the surfaces of a few solids, a stand-in, generated
in code, for the ModelNet40 point clouds of Zaheer et al. (2017, Sec. 4.1.3).

Each solid is centred at the origin and about 2 units across. `sample` draws a labelled set of
clouds: a class, points on its surface, a random rotation about the vertical (z) axis, a small
random stretch of each axis and Gaussian noise on every point.
"""
from __future__ import annotations

import math

import torch

from ..core.validation import check_int

TORUS_RADII = (1.0, 0.4)  # distance of the tube's centre from the axis, radius of the tube


def _uniform(shape, generator, low=0.0, high=1.0):
    return torch.rand(shape, generator=generator) * (high - low) + low


def _signs(shape, generator):
    return torch.randint(0, 2, shape, generator=generator).double() * 2 - 1


def sphere(n, k, generator):
    """Uniform on the unit sphere."""
    v = torch.randn(n, k, 3, generator=generator, dtype=torch.float64)
    return v / v.norm(dim=-1, keepdim=True)


def cube(n, k, generator):
    """Uniform on the surface of [-1, 1]^3: a face (an axis and a sign), then a point on it."""
    p = _uniform((n, k, 3), generator, -1.0, 1.0).double()
    axis = torch.randint(0, 3, (n, k, 1), generator=generator)
    return p.scatter(-1, axis, _signs((n, k, 1), generator))


def cylinder(n, k, generator):
    """Uniform on a closed cylinder of radius 1 and height 2: the side has 2/3 of the area."""
    theta = _uniform((n, k), generator, 0.0, 2 * math.pi).double()
    side = _uniform((n, k), generator) < 2 / 3
    r = torch.where(side, 1.0, _uniform((n, k), generator).double().sqrt())
    z = torch.where(side, _uniform((n, k), generator, -1.0, 1.0).double(), _signs((n, k), generator))
    return torch.stack([r * theta.cos(), r * theta.sin(), z], -1)


def cone(n, k, generator):
    """Uniform on a closed cone, apex (0, 0, 1), base of radius 1 at z = -1."""
    theta = _uniform((n, k), generator, 0.0, 2 * math.pi).double()
    slant = math.sqrt(5.0)  # side area pi * slant against the base's pi
    side = _uniform((n, k), generator) < slant / (1 + slant)
    r = _uniform((n, k), generator).double().sqrt()  # the side's radius grows linearly from the apex
    z = torch.where(side, 1 - 2 * r, -1.0)
    return torch.stack([r * theta.cos(), r * theta.sin(), z], -1)


def pyramid(n, k, generator):
    """Uniform on a square pyramid, base [-1, 1]^2 at z = -1, apex (0, 0, 1): faces by area."""
    area = torch.tensor([4.0] + [math.sqrt(5.0)] * 4)
    face = torch.multinomial(area, n * k, replacement=True, generator=generator).view(n, k)
    corners = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]], dtype=torch.float64)
    side = (face - 1).clamp(min=0)
    low = -torch.ones(n, k, 1, dtype=torch.float64)
    v1, v2 = torch.cat([corners[side], low], -1), torch.cat([corners[(side + 1) % 4], low], -1)
    apex = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    a = _uniform((n, k, 1), generator).double().sqrt()
    b = _uniform((n, k, 1), generator).double()
    triangle = apex + a * (v1 - apex) + a * b * (v2 - v1)  # uniform on the triangle (apex, v1, v2)
    base = torch.cat([_uniform((n, k, 2), generator, -1.0, 1.0).double(), low], -1)
    return torch.where((face == 0)[..., None], base, triangle)


def torus(n, k, generator):
    """A torus about the z axis with radii TORUS_RADII, uniform in its two angles (not in area)."""
    big, small = TORUS_RADII
    theta = _uniform((n, k), generator, 0.0, 2 * math.pi).double()
    phi = _uniform((n, k), generator, 0.0, 2 * math.pi).double()
    ring = big + small * phi.cos()
    return torch.stack([ring * theta.cos(), ring * theta.sin(), small * phi.sin()], -1)


def _flattened(solid, height):
    def sample(n, k, generator):
        return solid(n, k, generator) * torch.tensor([1.0, 1.0, height], dtype=torch.float64)
    sample.__doc__ = f"{solid.__name__}, its height scaled by {height}"
    return sample


SHAPES = {"sphere": sphere, "spheroid": _flattened(sphere, 0.6), "cube": cube, "box": _flattened(cube, 0.5),
          "cylinder": cylinder, "cone": cone, "pyramid": pyramid, "torus": torus}


def sample(n: int, n_points: int, *, generator: torch.Generator | None = None, noise: float = 0.05,
           stretch: float = 0.1, shapes: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` labelled point clouds of `n_points` points each: (points (n, n_points, 3) float32,
    labels (n,) indexing `shapes`, SHAPES by default). Each cloud is rotated by a uniform angle
    about the z axis, each of its axes stretched by a factor drawn from [1 - stretch, 1 + stretch],
    and every coordinate gets Gaussian noise of standard deviation `noise`.
    Introduced in: notebooks/representation-learning/deep-sets.ipynb"""
    check_int("n", n)
    check_int("n_points", n_points)
    shapes = SHAPES if shapes is None else shapes
    labels = torch.randint(0, len(shapes), (n,), generator=generator)
    points = torch.empty(n, n_points, 3, dtype=torch.float64)
    for c, solid in enumerate(shapes.values()):
        idx = (labels == c).nonzero().squeeze(1)
        if len(idx):
            points[idx] = solid(len(idx), n_points, generator)
    points = points * _uniform((n, 1, 3), generator, 1 - stretch, 1 + stretch).double()
    angle = _uniform((n,), generator, 0.0, 2 * math.pi).double()
    cos, sin, zero, one = (angle.cos(), angle.sin(), torch.zeros(n, dtype=torch.float64),
                           torch.ones(n, dtype=torch.float64))
    rotation = torch.stack([torch.stack([cos, -sin, zero], -1), torch.stack([sin, cos, zero], -1),
                            torch.stack([zero, zero, one], -1)], 1)  # (n, 3, 3)
    points = points @ rotation.transpose(1, 2)
    points = points + noise * torch.randn(points.shape, generator=generator, dtype=torch.float64)
    return points.float(), labels
