"""tts_lib.finite_data: the fitted preconditioner against gradient descent and the 1/N theory against Monte Carlo."""

import math
import time

import pytest
import torch

from tts_lib import finite_data as fd
from tts_lib import tasks, theory
from tts_lib.lsa import StructuredLSA
from tts_lib.prompts import sample_prompts

D = 5
EYE = torch.eye(D, dtype=torch.float64)
LAM = tasks.power_law_cov(D, 1.0, trace=D)  # chapter 5's training task, n_c ≈ 88 against Σ = I
N_CTX = 60


@pytest.fixture(scope="module")
def dm() -> fd.DeltaMethod:
    return fd.delta_method(LAM, N_CTX, EYE, 3, num_moment_prompts=200_000, seed=1)


def test_fit_is_the_empirical_risk_minimiser():
    pr = sample_prompts(LAM, 10, 40, seed=2, noise_std=0.5)
    G = fd.fit_precond(pr)
    model = StructuredLSA(D)
    with torch.no_grad():
        model.v31.copy_(-G)
    loss = 0.5 * ((model.predict(pr) - pr.w) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, model.v31)
    assert float(grad.abs().max()) < 1e-10
    # full-batch gradient descent on the fixed set converges to it
    gd = StructuredLSA(D)
    opt = torch.optim.SGD(gd.parameters(), lr=0.5 / float(torch.linalg.eigvalsh(
        pr.emp_corr().T @ pr.emp_corr() / pr.batch).max()))
    for _ in range(3000):
        opt.zero_grad()
        (0.5 * ((gd.predict(pr) - pr.w) ** 2).sum() / pr.batch).backward()
        opt.step()
    assert float((gd.precond.detach() - G).abs().max()) < 1e-6


def test_mean_and_covariance_of_the_fit_match_delta_method(dm):
    N, sets = 400, 1000
    torch.testing.assert_close(dm.precond, theory.lsa_precond(LAM, N_CTX))
    r = fd.mc_fitted(LAM, N_CTX, N, EYE, 3, sets, seed=7)
    dev = (r.precond - dm.precond).reshape(sets, -1) * N  # N (G_N − G)
    se = dev.std(0) / sets**0.5
    assert ((dev.mean(0) - dm.mean_shift.reshape(-1)).abs() <= 4 * se + 0.02 * dm.mean_shift.abs().max()).all()
    var_mc = (r.precond - dm.precond).reshape(sets, -1).var(0) * N
    var_th = torch.diagonal(dm.cov)
    assert ((var_mc / var_th - 1).abs() < 0.15).all()


@pytest.mark.parametrize("k", [1, 3])
def test_error_coefficient_against_monte_carlo(dm, k):
    N, sets = 200, 1500
    r = fd.mc_fitted(LAM, N_CTX, N, EYE, k, sets, seed=11)
    excess = (r.errors[:, k] - dm.error[k]) * N
    se = float(excess.std() / sets**0.5)
    assert abs(float(excess.mean() - dm.error_coef[k])) <= 4 * se + 0.1 * float(dm.error_coef[k])
    assert float(dm.error_coef[k]) > 0  # finite data always costs test error here


def test_overthinking_probability_against_monte_carlo(dm):
    assert theory.spectral_radius(dm.precond, EYE) < 1  # the population model does not overthink
    probs = []
    for N in (50, 100, 200):
        r = fd.mc_fitted(LAM, N_CTX, N, EYE, 1, 1500, seed=N)
        p_mc, p_th = r.overthink_fraction, dm.overthink_probability(N)
        se = math.sqrt(p_mc * (1 - p_mc) / 1500 + p_th * (1 - p_th) / 20_000)
        assert abs(p_mc - p_th) < 3 * se, (N, p_mc, p_th)
        assert abs(dm.overthink_probability(N, method="linearised") - p_mc) < 0.03  # close at d = 5
        probs.append(p_mc)
    assert probs[0] > probs[1] > probs[2] > 0.02


#: (d, n, N, training sets, moment prompts): issue 22's d = 10 setting and a d = 20 one, both
#: below the population overthinking threshold (λ_i ∝ 1/i, tr Λ = d, Σ = I)
#: At d = 20 the Gaussian is measurably low for N of a few d (N = 80: 0.50 against 0.66;
#: N = 160: 0.109 against 0.156 ± 0.016); N = 240 is the smallest tried within 3 SE.
HIGH_D = [(10, 50, 50, 1000, 100_000), (10, 50, 100, 1000, 100_000), (20, 60, 240, 500, 40_000)]


@pytest.mark.parametrize(("d", "n", "N", "sets", "moments"), HIGH_D)
def test_overthinking_probability_in_higher_dimension(d, n, N, sets, moments):
    lam, eye = tasks.power_law_cov(d, 1.0, trace=float(d)), torch.eye(d, dtype=torch.float64)
    dmd = fd.delta_method(lam, n, eye, 1, num_moment_prompts=moments, seed=1)
    assert theory.spectral_radius(dmd.precond, eye) < 1
    p_mc = fd.mc_fitted(lam, n, N, eye, 1, sets, seed=N + d).overthink_fraction
    p_th = dmd.overthink_probability(N, num_draws=10_000)
    se = math.sqrt(p_mc * (1 - p_mc) / sets + p_th * (1 - p_th) / 10_000)
    assert abs(p_mc - p_th) < 3 * se, (p_mc, p_th, se)
    # the linearised eigenvalues are far too low here (issue 22: 0.38 vs 0.54 at d = 10, N = 50)
    assert dmd.overthink_probability(N, method="linearised") < p_mc - (5 if d == 10 else 3) * se


def test_delta_method_bounded_work_and_memory():
    # d = 10, n = 150 was refused because the memory check looked at one 50,000-prompt chunk
    lam10 = tasks.power_law_cov(10, 1.0, trace=10.0)
    out = fd.delta_method(lam10, 150, torch.eye(10, dtype=torch.float64), 2, num_moment_prompts=2000)
    assert out.error_coef.shape == (3,)
    # max_steps at its maximum runs (derivatives by recursion, not an O(k²) autograd graph)
    t0 = time.perf_counter()
    big = fd.delta_method(LAM, N_CTX, EYE, fd.MAX_DELTA_STEPS, num_moment_prompts=1000)
    assert time.perf_counter() - t0 < 60 and bool(torch.isfinite(big.error_coef).all())
    with pytest.raises(ValueError, match=r"num_moment_prompts.*MAX_FLOPS.*lower `num_moment_prompts`"):
        fd.delta_method(LAM, N_CTX, EYE, 3, num_moment_prompts=10**9)
    with pytest.raises(ValueError, match=r"num_sets.*num_train.*MAX_FLOPS"):
        fd.mc_fitted(LAM, N_CTX, 1000, EYE, 2, 10**6)


def test_error_coefficients_equal_autograd(dm):
    d, K = D, 3
    f = lambda g: theory.error_curve(g.reshape(d, d), EYE, K)  # noqa: E731
    g0 = dm.precond.reshape(-1).clone()
    grad = torch.autograd.functional.jacobian(f, g0)
    hess = torch.autograd.functional.jacobian(
        lambda x: torch.autograd.functional.jacobian(f, x, create_graph=True), g0)
    ref = grad @ dm.mean_shift.reshape(-1) + 0.5 * (hess * dm.cov).sum((-1, -2))
    torch.testing.assert_close(dm.error_coef, ref, rtol=1e-10, atol=1e-10)


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_train"):
        fd.mc_fitted(LAM, N_CTX, 3, EYE, 2, 10)
    with pytest.raises(ValueError, match="positive definite"):
        fd.mc_fitted(tasks.diag_cov(torch.tensor([1.0, 0.0], dtype=torch.float64)), 5, 4,
                     torch.eye(2, dtype=torch.float64), 2, 10)
    with pytest.raises(ValueError, match="training prompts"):
        fd.fit_precond(sample_prompts(LAM, 5, 3, seed=0))
