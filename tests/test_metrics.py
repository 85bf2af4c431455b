"""The shared metrics and the one evaluation interface (LSA and GPT-2 alike)."""

from __future__ import annotations

import numpy as np
import torch

from tts_lib.gpt2 import build_model, cot_rollout, preset
from tts_lib.lsa import StructuredLSA
from tts_lib.metrics import cot_squared_errors, mean_se, rel_frobenius, squared_errors
from tts_lib.prompts import sample_prompts
from tts_lib.tasks import power_law_cov


def test_squared_errors_and_mean_se_match_numpy() -> None:
    g = torch.Generator().manual_seed(0)
    it, w = torch.randn(50, 4, 3, generator=g), torch.randn(50, 3, generator=g)
    err = squared_errors(it, w)
    want = ((it.numpy() - w.numpy()[:, None]) ** 2).sum(-1)
    np.testing.assert_allclose(err.numpy(), want, rtol=1e-6)
    mean, se = mean_se(err)
    np.testing.assert_allclose(mean, want.mean(0), rtol=1e-6)
    np.testing.assert_allclose(se, want.std(0, ddof=1) / np.sqrt(50), rtol=1e-6)
    seeds = np.array([[1.0, 2.0], [3.0, 5.0], [2.0, 2.0]])  # per-seed curves: SE over seeds
    np.testing.assert_allclose(mean_se(seeds)[1], seeds.std(0, ddof=1) / np.sqrt(3))


def test_rel_frobenius() -> None:
    b = torch.eye(3, dtype=torch.float64)
    assert rel_frobenius(b, b) == 0.0
    assert abs(rel_frobenius(2 * b, b) - 1.0) < 1e-12


def test_one_interface_for_lsa_and_gpt2() -> None:
    """cot_squared_errors evaluates both model families on the same given prompts."""
    cov = power_law_cov(3, 1.0, trace=3.0)
    pr = sample_prompts(cov, 8, 16, generator=1)
    lsa = StructuredLSA.from_theory(cov, 8)
    err = cot_squared_errors(lsa, pr, 3)
    with torch.no_grad():
        want = ((lsa.cot(pr, 3) - pr.w[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(err, want.double())
    model = build_model(preset("tiny")[0], seed=0)
    err_gpt = cot_squared_errors(model, pr, 3)
    it = cot_rollout(model, pr.X.float(), pr.y.float(), 3)
    torch.testing.assert_close(err_gpt, squared_errors(it, pr.w))
    assert err_gpt.shape == err.shape == (16, 4) and err_gpt.dtype == torch.float64
    # the GPT-2's cot takes the rollout's options
    hist = model.cot(pr, 3, keep_history=True, use_cache=False)
    torch.testing.assert_close(hist, cot_rollout(model, pr.X.float(), pr.y.float(), 3, keep_history=True))
