"""tts_lib.cot_training: k-step (CoT) training of the structured LSA against its closed forms and Monte Carlo."""

import pytest
import torch

from tts_lib import cot_training as ct
from tts_lib import tasks, theory
from tts_lib.lsa import StructuredLSA
from tts_lib.prompts import sample_prompts
from tts_lib.train import TrainConfig, TrainingDivergedError, TrainTask

D, N = 5, 20
EYE = torch.eye(D, dtype=torch.float64)


def test_one_step_optimum_is_gamma_inverse():
    g1 = ct.optimal_isotropic_step(D, N, 1, num_prompts=50_000, seed=1)
    assert abs(g1 / float(theory.lsa_precond(EYE, N)[0, 0]) - 1) < 0.005
    assert ct.stable_lr_at_zero(EYE, N, 1) == pytest.approx(theory.max_stable_lr(EYE, N), rel=1e-9)


def test_optimal_step_shrinks_with_k():
    gs = [ct.optimal_isotropic_step(D, N, k, num_prompts=50_000, seed=2) for k in (1, 2, 4)]
    assert gs[0] > gs[1] > gs[2]
    assert gs[2] < float(theory.lsa_precond(EYE, N)[0, 0]) < ct.minimax_isotropic_step(D, N)


@pytest.mark.parametrize("k", [2, 3])
def test_hessian_at_zero_against_autograd(skewed_cov, k):
    n = 8
    S = sample_prompts(skewed_cov, n, 100_000, seed=3).emp_cov()
    H = torch.randn(4, 4, generator=torch.Generator().manual_seed(k), dtype=torch.float64)

    def f(t):
        return ct.kstep_loss(t * H, S, k)

    t0 = torch.zeros((), dtype=torch.float64)
    curv = float(torch.autograd.functional.hessian(f, t0))
    exact = ct.hessian_at_zero_quadratic_form(skewed_cov, n, k, H)
    assert abs(curv / exact - 1) < 0.03, (curv, exact)


def test_stable_lr_falls_like_one_over_k_squared():
    lrs = {k: ct.stable_lr_at_zero(EYE, N, k) for k in (1, 2, 4, 8)}
    for k in (2, 4, 8):
        ratio = lrs[1] / lrs[k]
        assert k * (2 * k - 1) / 1.2 < ratio < k * (2 * k - 1) * 1.2, (k, ratio)


def test_sgd_on_the_k_step_loss_finds_the_optimum():
    k = 2
    g_k = ct.optimal_isotropic_step(D, N, k, num_prompts=50_000, seed=4)
    model = StructuredLSA(D)
    cfg = TrainConfig(train_steps=300, batch_size=256, lr=0.5 * ct.stable_lr_at_zero(EYE, N, k),
                      seed=1, progress=False)
    ct.train_lsa_cot(model, TrainTask(EYE, N), k, cfg)
    G = model.precond.detach()
    assert (torch.diagonal(G) / g_k - 1).abs().max() < 0.03
    assert float((G - torch.diag(torch.diagonal(G))).abs().max()) < 0.04


def test_refinement_training_learns_gamma_inverse():
    lam = tasks.power_law_cov(D, 1.0, trace=D)
    G0 = theory.lsa_precond(lam, N)
    for s in (0.5, 2.0):
        model = StructuredLSA(D)
        lr = 0.9 * theory.max_stable_lr(lam, N) / s**2  # the loss scales with s²
        cfg = TrainConfig(train_steps=400, batch_size=256, lr=lr, seed=2, progress=False)
        ct.train_lsa_cot(model, TrainTask(lam, N), 1, cfg, start_noise=s)
        rel = float(torch.linalg.matrix_norm(model.precond.detach() - G0) / torch.linalg.matrix_norm(G0))
        assert rel < 0.03, (s, rel)


def test_too_large_learning_rate_diverges():
    k = 4
    cfg = TrainConfig(train_steps=200, batch_size=128, lr=3.0 * ct.stable_lr_at_zero(EYE, N, k),
                      lr_schedule="constant", seed=0, progress=False)
    with pytest.raises(TrainingDivergedError, match="k²"):
        ct.train_lsa_cot(StructuredLSA(D), TrainTask(EYE, N), k, cfg)


def test_bad_inputs():
    cfg = TrainConfig(train_steps=1, batch_size=4, progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        ct.train_lsa_cot(StructuredLSA(D), TrainTask(EYE, N), 0, cfg)
    with pytest.raises(ValueError, match="start_noise"):
        ct.train_lsa_cot(StructuredLSA(D), TrainTask(EYE, N), 1, cfg, start_noise=-1)
    with pytest.raises(ValueError, match="TrainTask"):
        ct.train_lsa_cot(StructuredLSA(D), EYE, 1, cfg)
    with pytest.raises(ValueError, match="S"):
        ct.kstep_loss(EYE, EYE, 2)
