"""tts_lib.noise against Monte Carlo with noisy labels and against SGD (fixed seeds, SE-based tolerances)."""

import math

import pytest
import torch

from tts_lib import noise, tasks, theory
from tts_lib.lsa import StructuredLSA
from tts_lib.prompts import sample_prompts
from tts_lib.train import TrainConfig, TrainTask, train_lsa

D = 5
EYE = torch.eye(D, dtype=torch.float64)


def _noisy_cot_mc(G, cov, m, K, sd, num, seed):
    """Brute force: simulate labels with noise and run ŵ ← ŵ − G(Ŝŵ − b)."""
    pr = sample_prompts(cov, m, num, seed=seed, noise_std=sd)
    S, b = pr.emp_cov(), pr.emp_corr().unsqueeze(-1)
    w_hat, errs = torch.zeros_like(b), [(pr.w**2).sum(-1)]
    for _ in range(K):
        w_hat = w_hat - G @ (S @ w_hat - b)
        errs.append(((w_hat.squeeze(-1) - pr.w) ** 2).sum(-1))
    return torch.stack(errs, -1)


def test_noisy_precond_moments_and_sgd():
    lam, n, sd = tasks.power_law_cov(D, 1.0, trace=D), 5, 2.0
    G = noise.noisy_precond(lam, n, sd)
    # the two moments of the derivation, by Monte Carlo
    pr = sample_prompts(lam, n, 200_000, seed=4, noise_std=sd)
    b = pr.emp_corr()
    Ewb = pr.w.T @ b / pr.batch
    Ebb = b.T @ b / pr.batch
    torch.testing.assert_close(Ewb, lam, atol=0.03, rtol=0)
    expected_bb = lam @ theory.gamma(lam, n) + sd**2 / n * lam
    assert float((Ebb - expected_bb).abs().max() / expected_bb.abs().max()) < 0.03
    torch.testing.assert_close(G, torch.linalg.inv(theory.gamma(lam, n) + sd**2 / n * EYE))
    # SGD on noisy training labels learns the shifted preconditioner, not Γ⁻¹
    model = StructuredLSA(D)
    lr = 0.9 * 2 / float(torch.linalg.eigvalsh(expected_bb).max())
    cfg = TrainConfig(train_steps=400, batch_size=256, lr=lr, seed=1, progress=False)
    train_lsa(model, TrainTask(lam, n, noise_std=sd), cfg)
    rel = float(torch.linalg.matrix_norm(model.precond.detach() - G) / torch.linalg.matrix_norm(G))
    rel_clean = float(
        torch.linalg.matrix_norm(theory.lsa_precond(lam, n) - G) / torch.linalg.matrix_norm(G)
    )
    assert rel < 0.03 and rel_clean > 0.3, (rel, rel_clean)


def test_zero_noise_keeps_seeded_training_unchanged():
    lam = tasks.power_law_cov(D, 1.0, trace=D)
    cfg = TrainConfig(train_steps=5, batch_size=16, lr=0.1, seed=3, progress=False)
    a, b = StructuredLSA(D), StructuredLSA(D)
    train_lsa(a, TrainTask(lam, 5), cfg)
    train_lsa(b, TrainTask(lam, 5, noise_std=0.0), cfg)
    assert torch.equal(a.v31, b.v31)
    with pytest.raises(ValueError, match="noise_std"):
        train_lsa(StructuredLSA(D), TrainTask(lam, 5, noise_std=-1.0), cfg)


def test_conditional_curves_match_simulated_labels():
    G, m, K, sd = theory.lsa_precond(EYE, 5), 4 * D, 8, 0.7
    brute = _noisy_cot_mc(G, EYE, m, K, sd, 20_000, seed=3)
    bias, nz = noise.conditional_error_curves(G, EYE, m, K, sd, 20_000, seed=1)
    cond = bias + nz
    se = (brute.var(0) / brute.shape[0] + cond.var(0) / cond.shape[0]).sqrt()
    assert ((brute.mean(0) - cond.mean(0)).abs() <= 4 * se + 1e-12).all()
    # Rao–Blackwellised: smaller spread than simulating labels and w
    assert (cond.std(0)[1:] < brute.std(0)[1:]).all()


def test_noise_term_exact_at_one_step_and_first_order_at_large_m(skewed_cov):
    G = theory.lsa_precond(skewed_cov, 10)
    sig = tasks.power_law_cov(4, 0.5, trace=4.0)
    sd, K = 0.8, 8
    for m in (12, 160):
        _, nz = noise.conditional_error_curves(G, sig, m, K, sd, 20_000, seed=m)
        fo = noise.noise_term_curve(G, sig, K, m, sd)
        assert fo[0] == 0 and (nz[:, 0] == 0).all()
        se1 = float(nz[:, 1].std() / nz.shape[0] ** 0.5)
        assert abs(float(nz[:, 1].mean() - fo[1])) <= 4 * se1  # exact at k = 1, any m
        if m == 160:  # first order in 1/m: within 5% for m = 40d
            assert ((nz.mean(0)[1:] - fo[1:]).abs() / fo[1:] < 0.05).all()


def test_noise_term_tends_to_least_squares_variance():
    m, sd = 8 * D, 1.3
    G = theory.lsa_precond(EYE, 50)  # gσ ≈ 1.8, ρ ≈ −0.79: ŵ_k → least squares
    _, nz = noise.conditional_error_curves(G, 2 * EYE, m, 40, sd, 20_000, seed=2)
    limit = noise.ls_noise_limit(2 * EYE, m, sd)
    assert math.isclose(limit, sd**2 * (D / 2) / (m - D - 1))
    se = float(nz[:, -1].std() / nz.shape[0] ** 0.5)
    assert abs(float(nz[:, -1].mean()) - limit) <= 4 * se
    # the first-order formula's limit is σ² tr Σ⁻¹/m instead: off by m/(m−d−1)
    fo = noise.noise_term_curve(G, 2 * EYE, 40, m, sd)
    assert math.isclose(float(fo[-1]) * m / (m - D - 1), limit, rel_tol=1e-3)  # ρ^40 ≈ 1e-4 left


def test_skill_curves_are_the_commuting_case():
    lam = tasks.power_law_cov(D, 1.0, trace=D)
    sig_ev = torch.tensor([0.5, 1.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    G = theory.lsa_precond(lam, 7)
    bias, nz = noise.skill_noise_curves(torch.diagonal(G), sig_ev, 12, 30, 0.9)
    torch.testing.assert_close(bias.sum(-1), theory.error_curve(G, torch.diag(sig_ev), 12))
    torch.testing.assert_close(nz.sum(-1), noise.noise_term_curve(G, torch.diag(sig_ev), 12, 30, 0.9))


@pytest.mark.parametrize(("rho", "tau"), [(0.5, 0.01), (0.9, 0.05), (0.3, 2.0), (0.99, 1e-4)])
def test_best_steps_one_skill_is_the_argmin(rho, tau):
    k_cont, k_int = noise.best_steps_one_skill(rho, tau)
    ks = torch.arange(0, 5000, dtype=torch.float64)
    err = rho ** (2 * ks) + tau * (1 - rho**ks) ** 2
    assert k_int == int(err.argmin())
    assert math.isclose(rho**k_cont, tau / (1 + tau), rel_tol=1e-9)


def test_isotropic_closed_form_k_star_matches_the_curve():
    n, m, sd = 5, 20 * D, 1.0
    G = theory.lsa_precond(EYE, n)
    rho, tau = 1 - float(G[0, 0]), sd**2 / m
    bias, nz = noise.skill_noise_curves(torch.diagonal(G), torch.ones(D, dtype=torch.float64), 60, m, sd)
    assert noise.best_steps_one_skill(rho, tau)[1] == int((bias + nz).sum(-1).argmin())


def test_marchenko_pastur_nodes_moments():
    q = 0.25
    s, w = noise.marchenko_pastur_nodes(q)
    for f, expected in ((s**0, 1.0), (s, 1.0), (s**2, 1 + q), (1 / s, 1 / (1 - q))):
        assert math.isclose(float((f * w).sum()), expected, rel_tol=1e-9)


@pytest.mark.parametrize(("m_over_d", "tol"), [(4, 0.08), (32, 0.02)])
def test_isotropic_curves_against_monte_carlo(m_over_d, tol):
    n, sd, K = 5, 1.0, 30
    m = m_over_d * D
    G = theory.lsa_precond(EYE, n)
    bias, nz = noise.conditional_error_curves(G, EYE, m, K, sd, 8000, seed=m)
    mc = (bias + nz).mean(0)
    b_mp, n_mp = noise.isotropic_error_curves(float(G[0, 0]), D, m, K, sd)
    mp = b_mp + n_mp
    assert abs(float(mp.min() / mc.min()) - 1) < tol
    # stopping where the Marchenko–Pastur curve says loses under `tol` against the MC optimum
    assert float(mc[int(mp.argmin())] / mc.min()) - 1 < tol
    # the population closed form (m → ∞ bias) stops far too early at m = 4d
    pb, pn = noise.skill_noise_curves(torch.diagonal(G), torch.ones(D, dtype=torch.float64), K, m, sd)
    k_pop = int((pb + pn).sum(-1).argmin())
    if m_over_d == 4:
        assert k_pop < int(mc.argmin()) - 3 and float(mc[k_pop] / mc.min()) > 1.2


def test_bad_inputs():
    with pytest.raises(ValueError, match="noise_std"):
        noise.noisy_precond(EYE, 5, -0.1)
    with pytest.raises(ValueError, match="test_len"):
        noise.ls_noise_limit(EYE, D + 1, 1.0)
    with pytest.raises(ValueError, match="rho"):
        noise.best_steps_one_skill(1.2, 0.1)
    with pytest.raises(ValueError, match="ratio"):
        noise.marchenko_pastur_nodes(1.5)
    with pytest.raises(ValueError, match="test_eigvals"):
        noise.skill_noise_curves(torch.ones(3), torch.zeros(3), 4, 10, 1.0)


def test_bounded_and_clear_on_extreme_inputs():
    # tau below the smallest normal float: k° from ln(1 + τ) − ln τ, no OverflowError
    k_cont, k_int = noise.best_steps_one_skill(0.5, 1e-310)
    expected = (math.log1p(1e-310) - math.log(1e-310)) / math.log(2)  # ln(1 + 1/τ)/ln(1/ρ)
    assert math.isfinite(k_cont) and abs(k_cont - expected) < 1e-9 * expected
    assert k_int in (math.floor(k_cont), math.ceil(k_cont))
    # zero training covariance and zero noise: no preconditioner exists (was LinAlgError)
    zero = torch.zeros(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"train_cov.*noise_std"):
        noise.noisy_precond(zero, 5, 0.0)
    assert torch.allclose(noise.noisy_precond(zero, 5, 1.0), 5 * torch.eye(3, dtype=torch.float64))
    # a divergent preconditioner over many steps: a clear error instead of silent inf/NaN
    eye3 = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"max_steps.*spectral radius"):
        noise.noise_term_curve(3 * eye3, eye3, 1000, 20, 1.0)
    assert bool(torch.isfinite(noise.noise_term_curve(3 * eye3, eye3, 50, 20, 1.0)).all())
