import pytest
import torch

from tts_lib import tasks
from tts_lib.prompts import sample_prompts


def test_shapes_labels_and_determinism(skewed_cov):
    p = sample_prompts(skewed_cov, 7, 5, seed=11)
    assert p.X.shape == (5, 7, 4) and p.y.shape == (5, 7) and p.w.shape == (5, 4)
    torch.testing.assert_close(p.y, (p.X @ p.w.unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(p.emp_corr(), (p.emp_cov() @ p.w.unsqueeze(-1)).squeeze(-1))
    q = sample_prompts(skewed_cov, 7, 5, seed=11)
    assert torch.equal(p.X, q.X) and torch.equal(p.w, q.w)
    r = sample_prompts(skewed_cov, 7, 5, seed=12)
    assert not torch.equal(p.X, r.X)


def test_moments_match_the_population(skewed_cov):
    p = sample_prompts(skewed_cov, 50, 4000, seed=0)
    S = p.emp_cov()
    mean, se = S.mean(0), S.std(0) / S.shape[0] ** 0.5
    assert ((mean - skewed_cov).abs() <= 4 * se + 1e-12).all()
    w_cov = p.w.T @ p.w / p.batch
    assert (w_cov - torch.eye(4, dtype=torch.float64)).abs().max() < 0.1


def test_noise_and_float32_and_missing_skill():
    cov = tasks.power_law_cov(3, 1.0, num_skills=2)
    p = sample_prompts(cov, 10, 64, seed=1, noise_std=0.5, dtype=torch.float32)
    assert p.X.dtype == torch.float32
    assert p.X[..., 2].abs().max() == 0  # the missing skill never appears in the data
    resid = p.y - (p.X @ p.w.unsqueeze(-1)).squeeze(-1)
    assert 0.4 < float(resid.std()) < 0.6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"context_len": 0, "batch": 2}, "context_len"),
        ({"context_len": 2, "batch": 0}, "batch"),
        ({"context_len": 2.5, "batch": 2}, "context_len"),
        ({"context_len": 2, "batch": 2, "noise_std": -1.0}, "noise_std"),
        ({"context_len": 2, "batch": 2, "w": torch.zeros(3, 4)}, "`w`"),
    ],
)
def test_bad_arguments(iso_cov, kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_prompts(iso_cov, **kwargs)


def test_bad_covariance(iso_cov):
    with pytest.raises(ValueError, match="positive semi-definite"):
        sample_prompts(-iso_cov, 3, 2)
