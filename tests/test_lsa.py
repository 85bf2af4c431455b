import pytest
import torch

from tts_lib import lsa, tasks, theory
from tts_lib.prompts import sample_prompts


def _pseudo_newton(G: torch.Tensor, prompts, num_steps: int) -> torch.Tensor:
    S, w = prompts.emp_cov(), prompts.w
    w_hat, out = torch.zeros_like(w), [torch.zeros_like(w)]
    for _ in range(num_steps):
        w_hat = w_hat - (G @ S @ (w_hat - w).unsqueeze(-1)).squeeze(-1)
        out.append(w_hat)
    return torch.stack(out, 1)


def test_embedding_layout():
    p = sample_prompts(tasks.isotropic_cov(2), 3, 1, seed=0)
    w0 = torch.tensor([[0.5, -1.0]], dtype=torch.float64)
    Z = lsa.embed(p.X, p.y, w0)[0]
    assert Z.shape == (6, 4)
    torch.testing.assert_close(Z[:2, :3], p.X[0].T)
    torch.testing.assert_close(Z[2, :3], p.y[0])
    assert Z[3:, :3].abs().max() == 0 and Z[:3, 3].abs().max() == 0
    torch.testing.assert_close(Z[3:5, 3], w0[0])
    assert Z[5, 3] == 1


def test_forward_pass_is_gamma_inverse_times_moment(skewed_cov):
    model = lsa.StructuredLSA.from_theory(skewed_cov, 10)
    p = sample_prompts(skewed_cov, 15, 32, seed=1)
    G = theory.lsa_precond(skewed_cov, 10)
    torch.testing.assert_close(model.predict(p), (G @ p.emp_corr().unsqueeze(-1)).squeeze(-1))
    torch.testing.assert_close(model.precond, G)


def test_predict_is_the_attention_forward_pass_with_its_gradients(skewed_cov):
    """predict() uses the Gram-matrix form; it equals the last column of f(Z0), gradients included."""
    model = lsa.StructuredLSA(4, init_scale=0.3, seed=2)
    p = sample_prompts(skewed_cov, 40, 16, seed=7)
    fast = model.predict(p)
    full = model.weight_slot(model(lsa.embed(p.X, p.y), p.context_len))[:, :, -1]
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-12)
    (g_fast,) = torch.autograd.grad(((fast - p.w) ** 2).sum(), model.v31)
    (g_full,) = torch.autograd.grad(((full - p.w) ** 2).sum(), model.v31)
    torch.testing.assert_close(g_fast, g_full, rtol=1e-10, atol=1e-12)


def test_cot_equals_fast_path_and_pseudo_newton(skewed_cov, iso_cov):
    model = lsa.StructuredLSA.from_theory(skewed_cov, 10)
    p = sample_prompts(iso_cov, 25, 16, seed=2)
    real = model.cot(p, 6)
    torch.testing.assert_close(real, model.cot_fast(p, 6), rtol=0, atol=1e-10)
    torch.testing.assert_close(real, model.cot(p, 6, use_cache=True), rtol=0, atol=1e-10)
    with pytest.raises(TypeError, match="`use_cache` must be True or False"):
        model.cot(p, 6, use_cache="yes")
    torch.testing.assert_close(real, _pseudo_newton(model.precond, p, 6), rtol=0, atol=1e-10)


def test_full_lsa_cot_paths_agree():
    model = lsa.FullLSA(3, init_std=0.3, seed=4)
    p = sample_prompts(tasks.isotropic_cov(3), 9, 8, seed=3)
    torch.testing.assert_close(model.cot(p, 5), model.cot_fast(p, 5), rtol=1e-9, atol=1e-9)


def test_mismatched_key_query_scale_biases_cot(skewed_cov):
    c, a = 1.0, 2.0
    model = lsa.StructuredLSA(4, c=c, a=a)
    with torch.no_grad():
        model.v31.copy_(-theory.lsa_precond(skewed_cov, 50) / a)
    p = sample_prompts(skewed_cov, 400, 8, seed=5)
    last = model.cot_fast(p, 200)[:, -1]
    torch.testing.assert_close(last, (c / a) * p.w, rtol=1e-6, atol=1e-6)


def test_w13_gets_no_gradient_from_zero_start(skewed_cov):
    model = lsa.FullLSA(4, init_std=0.1, seed=0)
    p = sample_prompts(skewed_cov, 10, 64, seed=6)
    loss = ((model.predict(p) - p.w) ** 2).mean()
    loss.backward()
    d = 4
    assert model.w.grad[:d, d + 1 : 2 * d + 1].abs().max() == 0  # W13: weight-slot keys are 0
    assert model.w.grad[:d, 2 * d + 1].abs().max() > 0  # other blocks do get gradient


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, p: m.predict(sample_prompts(tasks.isotropic_cov(3), 5, 2, seed=0)), "d=3"),
        (lambda m, p: m.cot(p, -1), "num_steps"),
        (lambda m, p: m(torch.zeros(2, 5, 3, dtype=torch.float64), 3), "`Z`"),
        (lambda m, p: lsa.embed(p.X, p.y[:, :2]), "`X`"),
        (lambda m, p: lsa.embed(p.X, p.y, torch.zeros(1, 4)), "`w0`"),
        (lambda m, p: lsa.StructuredLSA(0), "dim"),
    ],
)
def test_bad_input(skewed_cov, call, match):
    model = lsa.StructuredLSA(4)
    p = sample_prompts(skewed_cov, 5, 2, seed=0)
    with pytest.raises(ValueError, match=match):
        call(model, p)


@pytest.mark.parametrize(("c", "a"), [(1.0, None), (0.7, 1.3)])
def test_structured_predict_closed_form_equals_the_generic_path(skewed_cov, c, a):
    """From ŵ0 = 0, predict() is −(c/N)·V31·Xᵀy: same losses and gradients as the attention path."""
    model = lsa.StructuredLSA(4, c=c, a=a, init_scale=0.4, seed=5)
    p = sample_prompts(skewed_cov, 25, 64, seed=9)
    fast = model.predict(p)
    torch.testing.assert_close(fast, -(c / 25) * (p.X.transpose(1, 2) @ p.y.unsqueeze(-1)).squeeze(-1) @ model.v31.T)
    loss_fast = 0.5 * ((fast - p.w) ** 2).sum() / 64
    (g_fast,) = torch.autograd.grad(loss_fast, model.v31)
    generic = lsa.LinearSelfAttention.predict(model, p)  # the Gram-matrix (cot_fast) path
    loss_gen = 0.5 * ((generic - p.w) ** 2).sum() / 64
    (g_gen,) = torch.autograd.grad(loss_gen, model.v31)
    torch.testing.assert_close(loss_fast, loss_gen, rtol=1e-13, atol=0)
    torch.testing.assert_close(g_fast, g_gen, rtol=1e-12, atol=1e-14)
    # a non-zero start estimate takes the generic path and still matches one CoT step
    w0 = torch.randn(64, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(model.predict(p, w0), model.cot(p, 1, w0)[:, 1])
