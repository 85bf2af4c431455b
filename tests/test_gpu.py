"""The core checks again on CUDA (skipped where there is no GPU; see conftest.py)."""

import pytest
import torch

from tts_lib import lsa, tasks, theory
from tts_lib.prompts import sample_prompts
from tts_lib.train import TrainConfig, TrainTask, train_lsa

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def test_same_prompts_on_cpu_and_gpu():
    cov = tasks.power_law_cov(4, 1.0)
    cpu = sample_prompts(cov, 9, 16, seed=3)
    gpu = sample_prompts(cov.to(CUDA), 9, 16, seed=3)
    assert gpu.X.device.type == "cuda"
    torch.testing.assert_close(gpu.X.cpu(), cpu.X)
    torch.testing.assert_close(gpu.w.cpu(), cpu.w)


def test_theory_and_cot_on_gpu():
    cov = tasks.power_law_cov(4, 1.0, trace=4.0, device=CUDA)
    iso = tasks.isotropic_cov(4, device=CUDA)
    curve = theory.cot_error_curve(cov, 10, iso, 2, test_len=40)  # inside the region
    torch.testing.assert_close(curve.cpu(), theory.cot_error_curve(cov.cpu(), 10, iso.cpu(), 2, test_len=40))
    model = lsa.StructuredLSA.from_theory(cov, 10)
    p = sample_prompts(iso, 30, 64, seed=0)
    torch.testing.assert_close(model.cot(p, 5), model.cot_fast(p, 5), rtol=0, atol=1e-10)
    mc = theory.mc_error_curve(model.precond.detach(), iso, 40, 1, 200_000, seed=1, device=CUDA)[:, 1]
    assert abs(float(mc.mean()) - float(curve[1])) < 4 * float(mc.std() / mc.numel() ** 0.5)


def test_training_on_gpu_reaches_gamma_inverse():
    cov = tasks.power_law_cov(5, 1.0, trace=5.0, device=CUDA)
    model = lsa.StructuredLSA(5, device=CUDA)
    lr = 0.5 * theory.max_stable_lr(cov, 20)
    train_lsa(model, TrainTask(cov, 20), TrainConfig(train_steps=200, batch_size=1024, lr=lr, progress=False))
    target = theory.lsa_precond(cov, 20)
    assert float(torch.linalg.norm(model.precond.detach() - target) / torch.linalg.norm(target)) < 0.02


def test_device_mismatch_is_a_clear_error():
    cov = tasks.isotropic_cov(3)
    with pytest.raises(ValueError, match="devices"):
        theory.cot_error(cov, 5, cov.to(CUDA), 2)
    model = lsa.StructuredLSA(3, device=CUDA)
    with pytest.raises(ValueError, match="prompts.to"):
        model.predict(sample_prompts(cov, 5, 2, seed=0))
