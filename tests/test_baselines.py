"""tts_lib.baselines: estimators against their definitions, closed forms against Monte Carlo."""

from __future__ import annotations

import pytest
import torch

from tts_lib import baselines, tasks, theory
from tts_lib.lsa import StructuredLSA
from tts_lib.prompts import sample_prompts

D = 4


def _skewed() -> torch.Tensor:
    """d = 4, λ_i ∝ 1/i, trace 4, rotated (so nothing is diagonal by accident)."""
    return tasks.power_law_cov(D, 1.0, trace=float(D), rotation=tasks.random_rotation(D, seed=3))


def _mean_se(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x.mean(0), x.std(0) / x.shape[0] ** 0.5


# --------------------------------------------------------------------------- estimators


def test_least_squares_is_exact_without_noise_when_n_at_least_d():
    pr = sample_prompts(_skewed(), 6, 500, seed=0)
    torch.testing.assert_close(baselines.least_squares(pr), pr.w, atol=1e-9, rtol=0)


def test_min_norm_least_squares_interpolates_and_lies_in_the_span():
    pr = sample_prompts(_skewed(), 2, 300, seed=1)
    w_hat = baselines.least_squares(pr)
    torch.testing.assert_close((pr.X @ w_hat.unsqueeze(-1)).squeeze(-1), pr.y, atol=1e-9, rtol=0)
    # in the row span of X: the residual after projecting onto span{x_i} is zero
    P = torch.linalg.pinv(pr.X) @ pr.X
    torch.testing.assert_close((P @ w_hat.unsqueeze(-1)).squeeze(-1), w_hat, atol=1e-9, rtol=0)


def test_ridge_matches_normal_equations_and_tends_to_min_norm():
    pr = sample_prompts(_skewed(), 3, 50, seed=2)
    r = 0.3
    w_hat = baselines.least_squares(pr, ridge=r)
    lhs = (pr.X.transpose(1, 2) @ pr.X) / 3 + r * torch.eye(D, dtype=torch.float64)
    torch.testing.assert_close(lhs @ w_hat.unsqueeze(-1), (pr.X.transpose(1, 2) @ pr.y.unsqueeze(-1)) / 3)
    torch.testing.assert_close(baselines.least_squares(pr, ridge=1e-9), baselines.least_squares(pr), atol=1e-6, rtol=0)


def test_precond_step_is_the_lsa_forward_pass():
    lam, n = _skewed(), 7
    pr = sample_prompts(lam, n, 200, seed=4)
    model = StructuredLSA.from_theory(lam, n)
    w0 = torch.randn(200, D, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            baselines.precond_step(pr, theory.lsa_precond(lam, n), w0), model.predict(pr, w0), atol=1e-10, rtol=0
        )


def test_gd_step_definition():
    pr = sample_prompts(_skewed(), 5, 20, seed=5)
    w0 = torch.ones(20, D, dtype=torch.float64)
    resid = pr.y - (pr.X @ w0.unsqueeze(-1)).squeeze(-1)
    expected = w0 + 0.7 * (pr.X.transpose(1, 2) @ resid.unsqueeze(-1)).squeeze(-1) / 5
    torch.testing.assert_close(baselines.gd_step(pr, 0.7, w0), expected)


# --------------------------------------------------------------------------- closed forms


def test_one_step_error_matches_theory_for_the_lsa():
    lam = _skewed()
    for n, m in [(5, 5), (10, 30)]:
        G = theory.lsa_precond(lam, n)
        assert baselines.one_step_error(G, lam, m) == pytest.approx(theory.cot_error(lam, n, lam, 1, m), rel=1e-12)
        assert baselines.one_step_error(G, lam, None) == pytest.approx(theory.cot_error(lam, n, lam, 1), rel=1e-12)
    # at m = n the LSA is the best one-step preconditioner: error d − tr(Γ⁻¹Λ)
    n = 8
    G = theory.lsa_precond(lam, n)
    assert baselines.one_step_error(G, lam, n) == pytest.approx(D - float(torch.trace(G @ lam)), rel=1e-12)


@pytest.mark.parametrize("noise_std", [0.0, 1.5])
def test_one_step_error_matrix_matches_monte_carlo(noise_std):
    lam, m = _skewed(), 6
    G = torch.randn(D, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 0.3  # not symmetric
    pr = sample_prompts(lam, m, 100_000, seed=8, noise_std=noise_std)
    e = baselines.precond_step(pr, G) - pr.w
    outer = e.unsqueeze(-1) * e.unsqueeze(-2)
    mean, se = _mean_se(outer)
    expected = baselines.one_step_error_matrix(G, lam, m, noise_std)
    assert ((mean - expected).abs() <= 4 * se).all()
    # a wrong noise level is detected
    if noise_std > 0:
        wrong = baselines.one_step_error(G, lam, m, 0.0)
        tot_mean, tot_se = _mean_se((e**2).sum(-1))
        assert abs(float(tot_mean) - wrong) > 4 * float(tot_se)


def test_per_skill_error_matches_monte_carlo_and_sums_to_total():
    lam, n = _skewed(), 10
    G = theory.lsa_precond(lam, n)
    M = baselines.one_step_error_matrix(G, lam, n)
    ps = tasks.per_skill_error(M, lam)
    assert float(ps.sum()) == pytest.approx(baselines.one_step_error(G, lam, n), rel=1e-12)
    pr = sample_prompts(lam, n, 100_000, seed=9)
    coords = tasks.to_skills(baselines.precond_step(pr, G) - pr.w, lam)
    mean, se = _mean_se(coords**2)
    assert ((mean - ps).abs() <= 4 * se).all()
    # the one-step LSA is biased towards strong skills: the weakest skill has the largest error
    assert ps[-1] > ps[0]


def test_best_step_size_minimises_the_closed_form_and_monte_carlo():
    lam, m, s = _skewed(), 6, 0.3
    eta = baselines.best_step_size(lam, m, s)
    eye = torch.eye(D, dtype=torch.float64)
    f = [baselines.one_step_error(e * eye, lam, m, s) for e in (0.9 * eta, eta, 1.1 * eta)]
    assert f[1] < f[0] and f[1] < f[2]
    # exact quadratic: d − 2η tr Σ + η² (tr E[S²] + σ² tr Σ / m)
    q = float(torch.trace(theory.moment_sas(lam, m, eye))) + s**2 * D / m
    assert f[1] == pytest.approx(D - 2 * eta * D + eta**2 * q, rel=1e-12)
    pr = sample_prompts(lam, m, 100_000, seed=10, noise_std=s)
    err = ((baselines.gd_step(pr, eta) - pr.w) ** 2).sum(-1)
    assert abs(float(err.mean()) - f[1]) <= 4 * float(err.std() / err.numel() ** 0.5)
    assert baselines.best_step_size(lam, None) == pytest.approx(D / float(torch.trace(lam @ lam)), rel=1e-12)


def test_least_squares_error_noiseless_matches_monte_carlo():
    lam = _skewed()
    for m in (1, 2, 3):
        pr = sample_prompts(lam, m, 50_000, seed=11 + m)
        err = ((baselines.least_squares(pr) - pr.w) ** 2).sum(-1)
        mean, se = _mean_se(err)
        assert baselines.least_squares_error(lam, m) == D - m
        assert abs(float(mean) - (D - m)) <= 4 * float(se)
    assert baselines.least_squares_error(lam, 9) == 0.0
    singular = tasks.power_law_cov(D, 1.0, num_skills=2)
    assert baselines.least_squares_error(singular, 9) == D - 2


def test_least_squares_error_with_noise_matches_monte_carlo():
    lam, m, s = _skewed(), 20, 0.5
    pr = sample_prompts(lam, m, 100_000, seed=15, noise_std=s)
    err = ((baselines.least_squares(pr) - pr.w) ** 2).sum(-1)
    expected = s**2 * float(torch.linalg.inv(lam).trace()) / (m - D - 1)
    assert baselines.least_squares_error(lam, m, s) == pytest.approx(expected, rel=1e-12)
    assert abs(float(err.mean()) - expected) <= 4 * float(err.std() / err.numel() ** 0.5)
    assert baselines.least_squares_error(lam, D + 1, s) == float("inf")


# --------------------------------------------------------------------------- input checks


def test_bad_input_raises_value_error_naming_the_argument():
    lam = _skewed()
    pr = sample_prompts(lam, 3, 4, seed=0)
    with pytest.raises(ValueError, match="ridge"):
        baselines.least_squares(pr, ridge=-1.0)
    with pytest.raises(ValueError, match="prompts"):
        baselines.least_squares(pr.X)
    with pytest.raises(ValueError, match="precond"):
        baselines.precond_step(pr, torch.eye(3))
    with pytest.raises(ValueError, match="w0"):
        baselines.precond_step(pr, torch.eye(D), torch.zeros(3, D))
    with pytest.raises(ValueError, match="noise_std"):
        baselines.one_step_error(torch.eye(D), lam, 3, noise_std=-0.1)
    with pytest.raises(ValueError, match="test_len"):
        baselines.one_step_error(torch.eye(D), lam, 0)
    with pytest.raises(ValueError, match="test_len"):
        baselines.least_squares_error(lam, 2, noise_std=0.1)
    with pytest.raises(ValueError, match="error_matrix"):
        tasks.per_skill_error(torch.eye(3), lam)
    with pytest.raises(ValueError, match="vectors"):
        tasks.to_skills(torch.ones(3), lam)
