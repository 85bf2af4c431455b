"""Every closed form of tts_lib.theory against Monte Carlo (fixed seeds, tolerances from the SE)."""

import math

import pytest
import torch

from tts_lib import tasks, theory
from tts_lib.prompts import sample_prompts

EYE4 = torch.eye(4, dtype=torch.float64)


def _mc_mean_se(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return samples.mean(0), samples.std(0) / samples.shape[0] ** 0.5


def test_gamma_formula(skewed_cov):
    n = 7
    g = theory.gamma(skewed_cov, n)
    torch.testing.assert_close(g, (1 + 1 / n) * skewed_cov + torch.trace(skewed_cov) / n * EYE4)
    torch.testing.assert_close(theory.lsa_precond(skewed_cov, n) @ g, EYE4)


@pytest.mark.parametrize("symmetric", [True, False])
def test_moment_identity_matches_monte_carlo(skewed_cov, symmetric):
    n = 6
    A = torch.randn(4, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    if symmetric:
        A = A + A.T
    S = sample_prompts(skewed_cov, n, 200_000, seed=0).emp_cov()
    mean, se = _mc_mean_se(S @ A @ S)
    expected = theory.moment_sas(skewed_cov, n, A)
    assert ((mean - expected).abs() <= 5 * se).all()
    if symmetric:  # the form quoted in the brief
        alt = (n + 1) / n * skewed_cov @ A @ skewed_cov + torch.trace(A @ skewed_cov) / n * skewed_cov
        torch.testing.assert_close(expected, alt)


def test_second_moment_is_lambda_gamma(skewed_cov):
    n = 9
    torch.testing.assert_close(theory.moment_sas(skewed_cov, n, EYE4), skewed_cov @ theory.gamma(skewed_cov, n))


def test_gamma_inverse_minimises_the_one_step_loss(skewed_cov):
    """Γ⁻¹ is the stationary point: the MC gradient of ½E‖(I − G S) w‖² vanishes there."""
    n = 8
    G = theory.lsa_precond(skewed_cov, n).requires_grad_(True)
    S = sample_prompts(skewed_cov, n, 100_000, seed=3).emp_cov()
    loss = 0.5 * ((EYE4 - G @ S) ** 2).sum((-1, -2)).mean()
    (grad,) = torch.autograd.grad(loss, G)
    # the gradient at a perturbed point is much larger
    G2 = (1.1 * G.detach()).requires_grad_(True)
    (grad2,) = torch.autograd.grad(0.5 * ((EYE4 - G2 @ S) ** 2).sum((-1, -2)).mean(), G2)
    assert grad.norm() < 0.05 * grad2.norm()


def test_one_step_finite_m_formula_is_exact(skewed_cov, iso_cov):
    n, m = 10, 12
    G = theory.lsa_precond(skewed_cov, n)
    errs = theory.mc_error_curve(G, iso_cov, m, 1, 400_000, seed=1)[:, 1]
    mean, se = _mc_mean_se(errs)
    closed = theory.cot_error(skewed_cov, n, iso_cov, 1, test_len=m)
    assert abs(float(mean) - closed) < 4 * float(se)
    # and it is the brief's formula
    Gs = G @ iso_cov
    brief = float(
        ((EYE4 - Gs) ** 2).sum()
        + (torch.trace(G @ iso_cov @ iso_cov @ G) + torch.trace(iso_cov) * torch.trace(G @ iso_cov @ G)) / m
    )
    assert math.isclose(closed, brief, rel_tol=1e-12)


def test_population_k_step_formula_matches_the_iteration(skewed_cov, iso_cov):
    """With Ŝ = Σ exactly, MC over w of the iteration equals ‖(I − GΣ)^k‖_F²."""
    G = theory.lsa_precond(skewed_cov, 5)
    w = torch.randn(200_000, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w_hat = torch.zeros_like(w)
    curve = theory.error_curve(G, iso_cov, 6)
    for k in range(1, 7):
        w_hat = w_hat - (w_hat - w) @ (G @ iso_cov).T
        mean, se = _mc_mean_se(((w_hat - w) ** 2).sum(-1))
        assert abs(float(mean) - float(curve[k])) < 4 * float(se)
    # commuting case: Σ_i (1 − σ_i/γ_i)^{2k} (Remark 4.1)
    lam = tasks.power_law_cov(4, 1.0, trace=4.0)
    gam = torch.diagonal(theory.gamma(lam, 5))
    expected = torch.stack([((1 - 1 / gam) ** (2 * k)).sum() for k in range(7)])
    torch.testing.assert_close(theory.cot_error_curve(lam, 5, iso_cov, 6), expected)


def test_first_order_finite_m_expansion_against_monte_carlo():
    """k ≥ 2 at finite m: the residual MC − first-order is second order (shrinks ~4× when m ×4)."""
    cov = tasks.power_law_cov(3, 1.0, trace=3.0)
    test = tasks.isotropic_cov(3)
    G = theory.lsa_precond(cov, 10)
    pop = theory.error_curve(G, test, 4)
    residual = {}
    for m in (60, 240):
        first = theory._first_order_curve(G, test, 4, m)  # raw expansion (k = 4 is outside its region)
        # ‖(I − GŜ)^k‖_F², k = 1..4: MC over Ŝ with w averaged exactly; Ŝ drawn from its Wishart
        # law (Bartlett, tested against sampled prompts in test_finite_m), not from 200 000 prompts
        mean, se = _mc_mean_se(theory.mc_test_error(G, test, m, 4, 200_000, seed=m)[:, 1:])
        assert abs(float(mean[0] - first[1])) < 4 * float(se[0])  # k = 1: exact
        residual[m] = (mean[1:] - first[2:]).abs()
        assert ((mean[1:] - first[2:]).abs() < 0.5 * (mean[1:] - pop[2:]).abs()).all()  # much better than m=∞
    assert (residual[240] < residual[60] / 2.5).all()


def test_error_curve_is_batched(skewed_cov, iso_cov):
    Gs = torch.stack([theory.lsa_precond(skewed_cov, n) for n in (3, 9)])
    batched = theory.error_curve(Gs, iso_cov, 5, test_len=400)
    for i, n in enumerate((3, 9)):
        torch.testing.assert_close(batched[i], theory.cot_error_curve(skewed_cov, n, iso_cov, 5, test_len=400))


def test_min_context_len_is_the_smallest(skewed_cov):
    for k in (1, 2, 5):
        n = theory.min_context_len(skewed_cov, k, 0.05)
        assert theory.cot_error(skewed_cov, n, skewed_cov, k) <= 0.05
        if n > 1:
            assert theory.cot_error(skewed_cov, n - 1, skewed_cov, k) > 0.05
    ns = [theory.min_context_len(skewed_cov, k, 0.05) for k in range(1, 8)]
    assert ns == sorted(ns, reverse=True) and ns[0] > 3 * ns[-1]  # more steps, less context


def test_min_context_len_unreachable():
    with pytest.raises(ValueError, match="unreachable"):
        theory.min_context_len(tasks.isotropic_cov(3), 0, 0.1)
    with pytest.raises(ValueError, match="unreachable"):  # one missing skill: error ≥ 1
        theory.min_context_len(tasks.power_law_cov(3, 1.0, num_skills=2), 3, 0.5)


def test_overthinking_condition(iso_cov):
    # never when Σ = Λ
    for seed in range(5):
        lam = tasks.power_law_cov(4, 2.0, rotation=tasks.random_rotation(4, seed))
        assert not theory.overthinks(lam, 50, lam)
    # skewed training, isotropic test, long context: σ_i > 2γ_i for the weakest skill
    lam = tasks.power_law_cov(4, 1.0, trace=4.0)
    gam = torch.diagonal(theory.gamma(lam, 1000))
    assert (iso_cov.diagonal() > 2 * gam).any()
    assert theory.overthinks(lam, 1000, iso_cov)
    curve = theory.cot_error_curve(lam, 1000, iso_cov, 300)
    k_star = theory.best_num_steps(lam, 1000, iso_cov, 300)
    assert 0 < k_star < 300 and curve[300] > 10 * curve[k_star]
    # a short training context does not overthink here, and the error keeps falling
    assert not theory.overthinks(lam, 5, iso_cov)
    c5 = theory.cot_error_curve(lam, 5, iso_cov, 300)
    assert (c5[1:] <= c5[:-1] + 1e-12).all()


def test_paper_bounds_hold_and_are_tight_for_isotropic(skewed_cov, iso_cov):
    for cov in (skewed_cov, iso_cov):
        for n in (2, 10, 40):
            for k in (1, 3, 8):
                exact = theory.cot_error(cov, n, cov, k)
                assert exact <= theory.scaling_bound(cov, n, k) * (1 + 1e-9)
            for m in (5, 50):
                assert theory.cot_error(cov, n, cov, 1, test_len=m) <= theory.no_cot_bound(cov, n, m)
    for n, k in ((3, 2), (20, 5)):
        assert math.isclose(theory.cot_error(iso_cov, n, iso_cov, k), theory.scaling_bound(iso_cov, n, k), rel_tol=1e-9)
    n_suff = theory.sufficient_context_len(skewed_cov, 3, 0.01)
    assert math.isclose(theory.scaling_bound(skewed_cov, 1, 3), theory.scaling_bound(skewed_cov, 1, 3))
    assert theory.cot_error(skewed_cov, math.ceil(n_suff), skewed_cov, 3) <= 0.01


def test_multitask_and_trained_preconditioners(skewed_cov, iso_cov):
    torch.testing.assert_close(theory.multitask_precond([skewed_cov], [7]), theory.lsa_precond(skewed_cov, 7))
    # mixture: stationary point of the mixture loss Σ π_ℓ ‖I − G S_ℓ‖² (population form)
    pi = torch.tensor([0.3, 0.7], dtype=torch.float64)
    G = theory.multitask_precond([skewed_cov, iso_cov], [5, 20], pi)
    pairs = zip(pi, [skewed_cov, iso_cov], [5, 20], strict=True)
    grad = sum(p * (-lam + G @ lam @ theory.gamma(lam, n)) for p, lam, n in pairs)
    assert grad.abs().max() < 1e-10
    wrong = torch.linalg.inv(pi[0] * theory.gamma(skewed_cov, 5) + pi[1] * theory.gamma(iso_cov, 20))
    assert (G - wrong).norm() > 0.01 * G.norm()
    # batched weights
    both = theory.multitask_precond([skewed_cov, iso_cov], [5, 20], torch.stack([pi, pi.flip(0)]))
    torch.testing.assert_close(both[0], G)
    # missing skill: zero row and column in what GD from zero learns, ridge value in Γ⁻¹
    lam = tasks.power_law_cov(3, 1.0, num_skills=2, trace=3.0)
    tp = theory.trained_precond(lam, 10)
    assert tp[2].abs().max() < 1e-12 and tp[:, 2].abs().max() < 1e-12
    assert math.isclose(float(theory.lsa_precond(lam, 10)[2, 2]), 10 / 3.0, rel_tol=1e-12)


def test_max_stable_lr(skewed_cov):
    lr = theory.max_stable_lr(skewed_cov, 5)
    lg = skewed_cov @ theory.gamma(skewed_cov, 5)
    assert math.isclose(lr, 2 / float(torch.linalg.eigvalsh(lg).max()), rel_tol=1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda c: theory.gamma(c, 0), "context_len"),
        (lambda c: theory.cot_error(c, 5, c, -1), "num_steps"),
        (lambda c: theory.cot_error(c, 5, c, 2, test_len=0), "test_len"),
        (lambda c: theory.cot_error(c, 5, torch.eye(3), 2), "test_cov"),
        (lambda c: theory.cot_error(c[:, :3], 5, c, 2), "square"),
        (lambda c: theory.min_context_len(c, 2, 0.0), "eps"),
        (lambda c: theory.min_context_len(c, 2, -1.0), "eps"),
        (lambda c: theory.overthinks(c, 5, c + torch.triu(torch.ones(4, 4), 1)), "symmetric"),
        (lambda c: theory.error_curve(torch.eye(3), c, 2), "precond"),
        (lambda c: theory.multitask_precond([c, c], [5]), "context_lens"),
        (lambda c: theory.multitask_precond([c, c], [5, 5], [1.0, -1.0]), "non-negative"),
        (lambda c: theory.cot_error(c.float(), 5, torch.full((4, 4), float("nan")), 1), "NaN"),
    ],
)
def test_bad_input_is_rejected(skewed_cov, call, match):
    with pytest.raises(ValueError, match=match):
        call(skewed_cov)


def test_device_mismatch_message():
    """The shared device check names both arguments (real CUDA tensors: tests/test_gpu.py)."""
    from types import SimpleNamespace

    from tts_lib._checks import check_same_device

    a, b = SimpleNamespace(device=torch.device("cpu")), SimpleNamespace(device=torch.device("cuda", 0))
    with pytest.raises(ValueError, match="`precond` on cpu, `test_cov` on cuda:0"):
        check_same_device(precond=a, test_cov=b)


def test_mc_error_curve_on_given_prompts_matches_its_own_draw():
    """``prompts=`` runs the Monte Carlo on given prompts: the same numbers as drawing them."""
    lam = tasks.power_law_cov(4, 1.0, trace=4.0)
    G = theory.lsa_precond(lam, 10)
    drawn = theory.mc_error_curve(G, lam, 12, 5, 64, seed=3)
    given = sample_prompts(lam, 12, 64, seed=3)
    torch.testing.assert_close(theory.mc_error_curve(G, lam, 12, 5, 64, prompts=given), drawn)
    with pytest.raises(ValueError, match="`prompts` hold 64 prompts of 12 examples"):
        theory.mc_error_curve(G, lam, 20, 5, 64, prompts=given)


def test_divergent_curves_are_refused_at_the_step_that_overflows():
    """A divergent preconditioner over many steps: a named error, never inf (one rule, _checks)."""
    lam = tasks.power_law_cov(3, 1.0, trace=3.0)
    G = 100 * theory.lsa_precond(lam, 6)  # spectral radius of I − GΛ about 67
    rho = float(torch.linalg.eigvals(torch.eye(3, dtype=lam.dtype) - G @ lam).abs().max())
    k_over = math.ceil(math.log(torch.finfo(torch.float64).max) / (2 * math.log(rho)))  # ρ^(2k) > 1.8e308
    curve = theory.error_curve(G, lam, k_over - 2)  # below the overflow: finite
    assert bool(torch.isfinite(curve).all()) and curve[-1] > 1e300
    for call, near in ((lambda: theory.error_curve(G, lam, 500), True),
                       (lambda: theory.error_curve(torch.stack([G / 100, G]), lam, 500), True),
                       (lambda: theory.per_direction_error(G, lam, 500), True),
                       (lambda: theory.first_order_correction(G, lam, 500), True),
                       (lambda: theory.cot_error_curve(lam, 6, 1e4 * lam, 500), False)):
        with pytest.raises(ValueError, match=r"overflows torch.float64 at step k = \d+ \(`max_steps`=500\); "
                                             r"lower `max_steps` to at most \d+") as err:
            call()
        k = int(str(err.value).split("step k = ")[1].split(" ")[0])
        assert not near or k_over - 3 <= k <= k_over + 1, str(err.value)  # the step it overflowed
    with pytest.raises(ValueError, match="spectral radius of I − GΣ is 66.9"):
        theory.error_curve(G, lam, 500)
    with pytest.raises(ValueError, match="float32 at step k = 11.*float64 reaches further"):
        theory.error_curve(G.float(), lam.float(), 500)
