"""tts_lib.finite_data: the fitted preconditioner against gradient descent and the 1/N theory against Monte Carlo."""

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
        assert abs(p_mc - p_th) < 0.03, (N, p_mc, p_th)
        probs.append(p_mc)
    assert probs[0] > probs[1] > probs[2] > 0.02


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_train"):
        fd.mc_fitted(LAM, N_CTX, 3, EYE, 2, 10)
    with pytest.raises(ValueError, match="positive definite"):
        fd.mc_fitted(tasks.diag_cov(torch.tensor([1.0, 0.0], dtype=torch.float64)), 5, 4,
                     torch.eye(2, dtype=torch.float64), 2, 10)
    with pytest.raises(ValueError, match="training prompts"):
        fd.fit_precond(sample_prompts(LAM, 5, 3, seed=0))
