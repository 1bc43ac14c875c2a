import math

import pytest
import torch

from repro.representation_learning import point_clouds


def _radius(p):
    return p[..., :2].norm(dim=-1)


def _on_pyramid(p, tol):
    x, y, z = p.unbind(-1)
    base = (z + 1).abs() < tol
    side = (torch.maximum(x.abs(), y.abs()) - (1 - z) / 2).abs() < tol
    return (base & (x.abs() <= 1 + tol) & (y.abs() <= 1 + tol)) | side


def _stretched(p, height):
    return p / torch.tensor([1.0, 1.0, height], dtype=p.dtype)


# the implicit equation of each solid's surface: True for points on it, to a tolerance
ON_SURFACE = {
    "sphere": lambda p, tol: (p.norm(dim=-1) - 1).abs() < tol,
    "spheroid": lambda p, tol: (_stretched(p, 0.6).norm(dim=-1) - 1).abs() < tol,
    "cube": lambda p, tol: (p.abs().amax(-1) - 1).abs() < tol,
    "box": lambda p, tol: (_stretched(p, 0.5).abs().amax(-1) - 1).abs() < tol,
    "cylinder": lambda p, tol: (((_radius(p) - 1).abs() < tol) & (p[..., 2].abs() <= 1 + tol))
    | (((p[..., 2].abs() - 1).abs() < tol) & (_radius(p) <= 1 + tol)),
    "cone": lambda p, tol: ((_radius(p) - (1 - p[..., 2]) / 2).abs() < tol)
    | (((p[..., 2] + 1).abs() < tol) & (_radius(p) <= 1 + tol)),
    "pyramid": _on_pyramid,
    "torus": lambda p, tol: ((_radius(p) - 1) ** 2 + p[..., 2] ** 2 - 0.4 ** 2).abs() < tol,
}


@pytest.mark.parametrize("name", sorted(point_clouds.SHAPES))
def test_points_lie_on_the_surface(name):
    p = point_clouds.SHAPES[name](4, 500, torch.Generator().manual_seed(0))
    assert p.shape == (4, 500, 3)
    assert ON_SURFACE[name](p, 1e-9).all()


def test_faces_are_sampled_by_area():
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    cyl = point_clouds.cylinder(1, n, gen)[0]
    side = ((_radius(cyl) - 1).abs() < 1e-9).double().mean().item()
    assert abs(side - 2 / 3) < 0.005  # side area 4 pi of 6 pi
    cone = point_clouds.cone(1, n, gen)[0]
    side = ((cone[:, 2] + 1).abs() > 1e-9).double().mean().item()
    assert abs(side - math.sqrt(5) / (1 + math.sqrt(5))) < 0.005
    cube = point_clouds.cube(1, n, gen)[0]
    faces = torch.stack([(cube[:, a] == s) for a in range(3) for s in (-1.0, 1.0)]).double().mean(1)
    torch.testing.assert_close(faces, torch.full((6,), 1 / 6, dtype=torch.float64), atol=0.005, rtol=0)


def test_sample_rotates_about_z_only():
    # with no noise and no stretch, rotating about z keeps every point's radius and height
    x, y = point_clouds.sample(64, 200, generator=torch.Generator().manual_seed(1), noise=0.0, stretch=0.0)
    assert x.shape == (64, 200, 3) and x.dtype == torch.float32 and y.shape == (64,)
    names = list(point_clouds.SHAPES)
    for cloud, label in zip(x.double(), y):
        name = names[label]
        if name in ("sphere", "spheroid", "cylinder", "cone", "torus"):
            assert ON_SURFACE[name](cloud, 1e-5).all()  # to float32 rounding
    assert set(y.tolist()) == set(range(len(names)))


def test_sample_is_reproducible_and_noisy():
    a, ya = point_clouds.sample(10, 50, generator=torch.Generator().manual_seed(3))
    b, yb = point_clouds.sample(10, 50, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(ya, yb)
    clean, _ = point_clouds.sample(10, 50, generator=torch.Generator().manual_seed(3), noise=0.0)
    assert not torch.equal(a, clean)


def test_errors():
    with pytest.raises(ValueError, match="n_points"):
        point_clouds.sample(3, 0)
