"""cot_training.stable_lr_at_zero: the vectorised Hessian equals the d² × d² polarisation of the
quadratic form (the reference it replaced) and is fast at d = 20 (it took 58 s there, issue 29)."""

from __future__ import annotations

import time

import pytest
import torch

from tts_lib import cot_training as ct
from tts_lib import tasks


def _reference_lr(lam: torch.Tensor, n: int, k: int) -> float:
    d = lam.shape[0]
    basis = torch.eye(d * d, dtype=torch.float64).reshape(d * d, d, d)
    q = [ct.hessian_at_zero_quadratic_form(lam, n, k, basis[i]) for i in range(d * d)]
    H = torch.empty(d * d, d * d, dtype=torch.float64)
    for i in range(d * d):
        H[i, i] = q[i]
        for j in range(i + 1, d * d):
            H[i, j] = H[j, i] = (ct.hessian_at_zero_quadratic_form(lam, n, k, basis[i] + basis[j]) - q[i] - q[j]) / 2
    return 2.0 / float(torch.linalg.eigvalsh(H).max())


@pytest.mark.parametrize("k", [1, 2, 5])
def test_vectorised_hessian_equals_the_polarisation(k):
    lam = tasks.power_law_cov(4, 1.0, trace=4.0, rotation=tasks.random_rotation(4, seed=1))
    assert ct.stable_lr_at_zero(lam, 7, k) == pytest.approx(_reference_lr(lam, 7, k), rel=1e-12)


def test_stable_lr_at_zero_is_fast_and_bounded():
    t0 = time.perf_counter()
    lr = ct.stable_lr_at_zero(torch.eye(20, dtype=torch.float64), 20, 3)
    assert time.perf_counter() - t0 < 5.0  # was 58 s (d⁴/2 Python calls); about 0.1 s now
    assert lr > 0
    with pytest.raises(ValueError, match="MAX_HESSIAN_DIM"):
        ct.stable_lr_at_zero(torch.eye(ct.MAX_HESSIAN_DIM + 1, dtype=torch.float64), 20, 3)
