import math

import pytest
import torch

from tts_lib import tasks


def test_power_law_spectrum_trace_and_missing_skills():
    cov = tasks.power_law_cov(6, 1.5, num_skills=4, trace=3.0)
    ev = torch.diagonal(cov)
    expected = torch.tensor([i**-1.5 if i <= 4 else 0.0 for i in range(1, 7)], dtype=torch.float64)
    torch.testing.assert_close(ev, 3.0 * expected / expected.sum())
    assert math.isclose(float(torch.trace(cov)), 3.0, rel_tol=1e-12)
    assert tasks.hardness(cov) == math.inf


def test_rotation_keeps_the_spectrum_and_hardness():
    base = tasks.power_law_cov(5, 1.0)
    rot = tasks.power_law_cov(5, 1.0, rotation=tasks.random_rotation(5, seed=1))
    assert (rot - torch.diag(torch.diagonal(rot))).abs().max() > 1e-3  # really non-diagonal
    ev_rot, vecs = tasks.skills(rot)
    torch.testing.assert_close(ev_rot, torch.diagonal(base))
    torch.testing.assert_close(vecs @ torch.diag(ev_rot) @ vecs.T, rot)
    assert math.isclose(tasks.hardness(rot), tasks.hardness(base), rel_tol=1e-9)


def test_hardness_values_and_scale_invariance():
    assert math.isclose(tasks.hardness(tasks.isotropic_cov(7)), 7.0)
    cov = tasks.power_law_cov(4, 2.0)
    h = sum(i**-2.0 for i in range(1, 5)) / 4**-2.0
    assert math.isclose(tasks.hardness(cov), h, rel_tol=1e-12)
    assert math.isclose(tasks.hardness(17.0 * cov), h, rel_tol=1e-12)
    # a steeper power law is harder
    assert tasks.hardness(tasks.power_law_cov(4, 1.0)) < h


def test_random_rotation_is_orthogonal_and_seeded():
    q = tasks.random_rotation(5, seed=2)
    torch.testing.assert_close(q.T @ q, torch.eye(5, dtype=torch.float64))
    torch.testing.assert_close(q, tasks.random_rotation(5, seed=2))
    assert not torch.allclose(q, tasks.random_rotation(5, seed=3))


@pytest.mark.parametrize(
    ("cov", "match"),
    [
        (torch.ones(2, 3), "square"),
        (torch.tensor([[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (torch.tensor([[1.0, 0.0], [0.0, -1.0]]), "positive semi-definite"),
        (torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]), "NaN"),
        ("abc", "numeric"),
    ],
)
def test_bad_covariances_are_rejected(cov, match):
    with pytest.raises(ValueError, match=match):
        tasks.hardness(cov)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 0, "alpha": 1.0}, "dim"),
        ({"dim": 3, "alpha": 1.0, "num_skills": 4}, "num_skills"),
        ({"dim": 3, "alpha": 1.0, "trace": -1.0}, "trace"),
        ({"dim": 3, "alpha": float("nan")}, "alpha"),
        ({"dim": 2, "alpha": 1.0, "rotation": [[1.0, 1.0], [0.0, 1.0]]}, "orthogonal"),
        ({"dim": 2, "alpha": 1.0, "rotation": torch.eye(3)}, "rotation"),
    ],
)
def test_bad_power_law_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tasks.power_law_cov(**kwargs)
