"""The shared metrics and the one evaluation interface (LSA and GPT-2 alike)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tts_lib.gpt2 import build_model, cot_rollout
from tts_lib.gpt2_train import preset
from tts_lib.lsa import StructuredLSA
from tts_lib.metrics import (
    cot_squared_errors,
    mean_se,
    rel_frobenius,
    rise_after_min,
    squared_errors,
    steps_to_reach,
    z_score,
)
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


def test_squared_errors_of_one_estimate_per_prompt() -> None:
    g = torch.Generator().manual_seed(1)
    w_hat = torch.randn(20, 3, generator=g, dtype=torch.float64)
    w = torch.randn(20, 3, generator=g, dtype=torch.float64)
    np.testing.assert_allclose(squared_errors(w_hat, w).numpy(), ((w_hat - w) ** 2).sum(-1).numpy())
    assert torch.equal(squared_errors(w_hat, w), squared_errors(w_hat[:, None], w)[:, 0])


def test_steps_to_reach() -> None:
    curves = np.array([[4.0, 2.0, 0.5, 0.1], [4.0, 3.0, 3.0, 3.0], [0.2, 0.1, 0.1, 0.1]])
    np.testing.assert_array_equal(steps_to_reach(curves, 1.0), [2.0, np.inf, 0.0])
    np.testing.assert_array_equal(steps_to_reach(curves, 1.0, never=4), [2.0, 4.0, 0.0])
    assert steps_to_reach(curves[0], 2.0) == 1.0 and np.ndim(steps_to_reach(curves[0], 2.0)) == 0


def test_z_score_and_rise_after_min() -> None:
    g = np.random.default_rng(0)
    samples = g.normal(1.0, 2.0, size=10_000)
    assert abs(z_score(samples, 1.0)) < 4 and z_score(samples, 1.5) < -10
    # curves that fall to a minimum at k = 2 and rise after it, per prompt with noise
    base = np.array([4.0, 2.0, 1.0, 1.5, 3.0])
    errors = base + 0.1 * g.normal(size=(500, 5))
    k_min, rise, rise_se = rise_after_min(errors, 4)
    assert k_min == 2 and abs(rise - 2.0) < 4 * rise_se and rise_se < 0.02
    with pytest.raises(ValueError, match="k_to"):
        rise_after_min(errors, 5)


def test_rel_frobenius() -> None:
    b = torch.eye(3, dtype=torch.float64)
    assert rel_frobenius(b, b) == 0.0
    assert abs(rel_frobenius(2 * b, b) - 1.0) < 1e-12


def test_one_interface_for_lsa_and_gpt2() -> None:
    """cot_squared_errors evaluates both model families on the same given prompts."""
    cov = power_law_cov(3, 1.0, trace=3.0)
    pr = sample_prompts(cov, 8, 16, seed=1)
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
