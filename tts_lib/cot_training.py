"""Training the structured LSA *with* a chain of thought: the k-step loss.

The paper trains on one step (``k = 1``) and runs CoT only at test time. Here the
training loss is the error after ``k`` steps of the model's own iteration,

    L_k(G) = ½ E‖ŵ_k − w‖² = ½ E‖(I − G S)^k (ŵ_0 − w)‖²,   G = −c·V31,

with ``S`` the empirical covariance of a training prompt (``n`` examples from ``N(0, Λ)``).
For ``k = 1`` the optimum is ``Γ⁻¹`` (Theorem 3.1); for ``k >= 2`` it is a different
preconditioner ``G_k``. In the isotropic case ``G = g·I``, ``Λ = I`` the loss is
``½ E Σ_j (1 − g s_j)^{2k}`` over the eigenvalues ``s_j`` of ``S``: a convex function of
``g`` whose minimiser moves, as ``k`` grows, from ``E s/E s²`` towards the value that
equalises the contraction at both ends of the spectrum (a minimax, Chebyshev-like choice).

Curvature: along one skill ``d²/dg² (1 − gs)^{2k} = 2k(2k − 1) s² (1 − gs)^{2k−2}``, i.e.
``∝ k² ρ^{2k−2}`` with ``ρ = 1 − gs`` the current contraction factor. At ``G = 0``
(``ρ = 1``) the Hessian of ``L_k`` is, as a quadratic form in ``G``,
``k² E‖GS‖_F² + k(k − 1) E tr((GS)²)``: the stable learning rate from zero falls like ``1/k²``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._checks import (
    MAX_STEPS,
    InputTypeError,
    as_tensor,
    check_cov,
    check_memory,
    check_pos_int,
    check_real,
)
from .lsa import StructuredLSA
from .prompts import PromptSampler, sample_prompts
from .train import History, TrainConfig, TrainTask, check_run, check_tasks, optimizer_step


def _square(value: Any, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """A finite (d, d) matrix with entries below ``finfo.max**0.25`` (so k-step products stay finite)."""
    kw = {} if like is None else dict(device=like.device, dtype=like.dtype)
    t = as_tensor(value, name, **kw)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"`{name}` must be a square (d, d) matrix, got shape {tuple(t.shape)}")
    if like is not None and t.shape != like.shape:
        raise ValueError(f"`{name}` must be {tuple(like.shape)} to match `train_cov`, got {tuple(t.shape)}")
    big = torch.finfo(t.dtype).max ** 0.25
    if t.numel() and float(t.detach().abs().max()) > big:
        raise ValueError(f"`{name}` has entries up to {float(t.abs().max()):.3g}, beyond {big:.1e}; rescale it")
    return t


def train_lsa_cot(
    model: StructuredLSA,
    task: TrainTask,
    num_steps: int,
    config: TrainConfig | None = None,
    *,
    start_noise: float = 0.0,
    seed: int | torch.Generator | None = None,
) -> History:
    """Train ``model`` in place on the k-step loss ``½ E‖ŵ_k − w‖²`` (CoT during training).

    Each step draws fresh prompts from ``task`` and runs the model's own chain of thought
    (:meth:`~tts_lib.lsa.LinearSelfAttention.cot_fast`) for ``k = num_steps`` steps
    from ``ŵ_0 = 0`` or, with ``start_noise = s > 0``, from ``ŵ_0 = w + s·N(0, I)`` (the
    refinement training of chapter 7). Gradients flow through all k steps. SGD or Adam
    with the schedule of :class:`~tts_lib.train.TrainConfig`; ``seed`` as in
    :func:`~tts_lib.train.train_lsa` (``config.seed`` when None).

    Raises:
        TrainingDivergedError: when the loss becomes NaN/inf or exceeds 1e6 × its start.

    Defined in Chapter 9.
    """
    cfg, gen = check_run(model, config, seed)
    k = check_pos_int(num_steps, "num_steps", maximum=MAX_STEPS)
    if not isinstance(task, TrainTask):
        raise InputTypeError(f"`task` must be a TrainTask(cov, context_len), got {type(task).__name__}")
    start_noise = check_real(start_noise, "start_noise", minimum=0.0)
    (task,) = check_tasks(task, model.dim, name="task")
    batch, n = cfg.batch_size, task.context_len
    check_memory(batch * (n + 1) * model.dim, "config.batch_size", what="one batch of prompts")
    check_memory(batch * (k + 1) * (2 * model.dim + 2) * 2, "num_steps", what=f"{k + 1} CoT iterates")
    param = next(model.parameters())
    advice = (f"lower config.lr (now {cfg.lr:g}): the curvature grows like k², "
              "see cot_training.stable_lr_at_zero")
    step_fn = optimizer_step(model, cfg, what="k-step training", advice=advice)
    sampler = PromptSampler(task.cov, seed=gen, device=param.device, dtype=param.dtype)
    hist = History()
    for step in range(cfg.train_steps):
        pr = sampler.draw(n, batch, noise_std=task.noise_std)
        w0 = None
        if start_noise > 0:
            xi = torch.randn(batch, model.dim, generator=gen, dtype=torch.float64)
            w0 = pr.w + start_noise * xi.to(device=param.device, dtype=param.dtype)
        w_k = model.cot_fast(pr, k, w0)[:, k]
        hist.losses.append(step_fn(step, 0.5 * ((w_k - pr.w) ** 2).sum() / batch))
    return hist


def kstep_loss(precond: torch.Tensor, S: torch.Tensor, num_steps: int) -> torch.Tensor:
    """``½ mean_p ‖(I − G S_p)^k‖_F²``: the k-step loss given prompt covariances ``S`` (P, d, d).

    The expectation over ``w ~ N(0, I)`` is done exactly; differentiable in ``precond``.

    Defined in Chapter 9.
    """
    G = _square(precond, "precond")
    k = check_pos_int(num_steps, "num_steps", maximum=MAX_STEPS)
    S = as_tensor(S, "S", device=G.device, dtype=G.dtype)
    if S.ndim != 3 or S.shape[-2:] != G.shape or S.shape[0] < 1:
        raise ValueError(f"`S` must be (P, d, d) with P >= 1 and d = {G.shape[-1]} as in `precond`, "
                         f"got {tuple(S.shape)}")
    big = torch.finfo(S.dtype).max ** 0.25
    if float(S.abs().max()) > big:
        raise ValueError(f"`S` has entries up to {float(S.abs().max()):.3g}, beyond {big:.1e}; rescale it")
    eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
    M = eye - G @ S
    P = torch.linalg.matrix_power(M, k)
    loss = 0.5 * (P * P).sum((-1, -2)).mean()
    if not bool(torch.isfinite(loss.detach())):
        raise ValueError(f"the k-step loss overflows {S.dtype} at `num_steps`={k}: (I − G S)^k diverges; "
                         "lower `num_steps` or rescale `precond`")
    return loss


def optimal_isotropic_step(
    dim: int, context_len: int, num_steps: int, *, num_prompts: int = 20_000, seed: int = 0
) -> float:
    """Minimiser ``g_k`` of ``E Σ_j (1 − g s_j)^{2k}`` (``Λ = I``, ``G = gI``), by Monte Carlo over ``S``.

    The eigenvalues ``s_j`` of ``num_prompts`` Wishart draws are fixed and the convex
    1-D objective is minimised by Newton's method (exact for that sample).

    Defined in Chapter 9.
    """
    d = check_pos_int(dim, "dim")
    n = check_pos_int(context_len, "context_len")
    k = check_pos_int(num_steps, "num_steps", maximum=MAX_STEPS)
    P = check_pos_int(num_prompts, "num_prompts")
    seed = check_pos_int(seed, "seed", minimum=0)
    check_memory(d * d, "dim", what="the (d, d) identity")
    check_memory(4 * n * d, "context_len", what="one prompt")
    check_memory(4 * P * (n * d + d * d), "num_prompts", what=f"{P} prompts and their covariances")
    S = sample_prompts(torch.eye(d, dtype=torch.float64), n, P, seed=seed).emp_cov()
    s = torch.linalg.eigvalsh(S).reshape(-1)
    g = float(s.mean() / (s**2).mean())  # the k = 1 optimum
    for _ in range(100):
        r = 1 - g * s
        d1 = float((-2 * k * s * r ** (2 * k - 1)).mean())
        d2 = float((2 * k * (2 * k - 1) * s**2 * r ** (2 * k - 2)).mean())
        step = d1 / d2
        g -= step
        if abs(step) < 1e-13 * abs(g):
            break
    if not math.isfinite(g):
        raise ValueError(f"Newton's method overflowed at `num_steps`={k} ((1 − g s)^(2k) exceeds float64); "
                         "lower `num_steps`")
    return g


def minimax_isotropic_step(dim: int, context_len: int) -> float:
    """``2/(s₋ + s₊) = 1/(1 + d/n)``: the step that equalises ``|1 − g s|`` at both Marchenko–Pastur edges.

    Defined in Chapter 9.
    """
    d = check_pos_int(dim, "dim")
    n = check_pos_int(context_len, "context_len")
    return 1.0 / (1.0 + d / n)


def hessian_at_zero_quadratic_form(train_cov: Any, context_len: int, num_steps: int,
                                   direction: Any) -> float:
    """``k² E‖HS‖_F² + k(k−1) E tr((HS)²)``: the second derivative of ``L_k`` at ``G = 0`` along ``H``.

    ``L_k = ½ E‖(I − GS)^k‖_F²``; along ``G = tH`` its second derivative at ``t = 0`` is this
    quadratic form (the ``½`` of ``L_k`` cancels the ``2`` of the second derivative of ``t²``).
    Uses ``E[S A S] = ΛAΛ + (ΛAᵀΛ + tr(AΛ)Λ)/n`` (exact): ``E‖HS‖² = tr(Hᵀ H E[S I S])``
    with the moment of ``A = HᵀH`` and ``E tr(HSHS) = tr(H E[S H S])``.

    Defined in Chapter 9.
    """
    from .theory import moment_sas

    lam = check_cov(train_cov, "train_cov")
    n = check_pos_int(context_len, "context_len")
    k = check_pos_int(num_steps, "num_steps")
    H = _square(direction, "direction", like=lam)
    eye = torch.eye(lam.shape[0], dtype=lam.dtype, device=lam.device)
    a = float(torch.trace(H.T @ H @ moment_sas(lam, n, eye)))
    b = float(torch.trace(H @ moment_sas(lam, n, H)))
    return k**2 * a + k * (k - 1) * b


#: largest dimension of :func:`stable_lr_at_zero` (its (d², d²) eigenproblem costs d⁶ flops)
MAX_HESSIAN_DIM = 60


def stable_lr_at_zero(train_cov: Any, context_len: int, num_steps: int) -> float:
    """Largest stable SGD step for ``L_k`` at ``G = 0``: ``2 / λ_max`` of its Hessian.

    The Hessian of :func:`hessian_at_zero_quadratic_form` as a (d², d²) matrix over
    row-major ``vec G``, from the Gaussian moments
    ``E[S_ab S_cd] = Λ_ab Λ_cd + (Λ_ac Λ_bd + Λ_ad Λ_bc)/n`` (exact, no sampling, one
    vectorised assembly): ``k² (I ⊗ E[S²]) + k(k−1) T`` with
    ``T_(ij),(kl) = E[S_jk S_li]``. It grows like ``k²``, so the step falls like ``1/k²``.

    Defined in Chapter 9.
    """
    lam = check_cov(train_cov, "train_cov")
    n = check_pos_int(context_len, "context_len")
    k = float(check_pos_int(num_steps, "num_steps", maximum=MAX_STEPS))
    d = lam.shape[0]
    if d > MAX_HESSIAN_DIM:
        raise ValueError(f"`train_cov` is {d}×{d}: the ({d * d}, {d * d}) Hessian's eigenproblem costs about "
                         f"{float(d) ** 6:.1e} flops (limit d <= {MAX_HESSIAN_DIM}, "
                         "tts_lib.cot_training.MAX_HESSIAN_DIM); use a smaller train_cov")
    check_memory(3 * d**4, "train_cov", what="the (d², d²) Hessian")
    if float(lam.abs().max()) == 0:
        raise ValueError("`train_cov` is zero: the loss is flat at G = 0 and every step is stable")
    L = lam.double()
    eye = torch.eye(d, dtype=torch.float64, device=lam.device)
    s2 = L @ L + (L @ L + torch.trace(L) * L) / n  # E[S²] = ΛΓ
    a = torch.kron(eye, s2)  # tr(H₁ E[S²] H₂ᵀ)
    # T[i, j, k, l] = E[S_jk S_li] = Λ_jk Λ_li + (Λ_jl Λ_ki + Λ_ji Λ_kl)/n
    T = (torch.einsum("jk,li->ijkl", L, L)
         + (torch.einsum("jl,ki->ijkl", L, L) + torch.einsum("ji,kl->ijkl", L, L)) / n)
    hess = k**2 * a + k * (k - 1) * T.reshape(d * d, d * d)
    return 2.0 / float(torch.linalg.eigvalsh((hess + hess.T) / 2).max())
