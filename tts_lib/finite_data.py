"""Finite pretraining data: the LSA fitted on N training prompts instead of the population.

With ``ŵ1 = G b`` (``G = −c·V31``, ``b = Xᵀy/n``) the empirical loss over N prompts,
``½ Σ_p ‖G b_p − w_p‖² / N``, is a least-squares problem in ``G``; gradient descent from
any start converges to its minimiser (for ``N >= d`` prompts in general position)

    G_N = A_N B_N⁻¹,   A_N = (1/N) Σ_p w_p b_pᵀ,   B_N = (1/N) Σ_p b_p b_pᵀ,

the plug-in estimate of the population optimum ``G = E[w bᵀ] E[b bᵀ]⁻¹`` (``Γ⁻¹`` without
label noise). This module gives Monte Carlo over training sets (:func:`mc_fitted`) and a
delta-method theory to order ``1/N`` (:func:`delta_method`): with ``r = w − G b``,

    G_N − G = R_N B_N⁻¹,   R_N = (1/N) Σ_p r_p b_pᵀ,  E R_N = 0,

so ``G_N ≈ G + R_N B⁻¹ − R_N B⁻¹ δB B⁻¹``; its mean is
``G − (1/N) E[r (bᵀB⁻¹b) bᵀ] B⁻¹`` and its covariance ``Cov(vec(r bᵀ B⁻¹))/N``. For the
test error ``f(G) = ‖(I − GΣ)^k‖_F²`` (``m → ∞``) this gives
``E f(G_N) ≈ f(G) + (∇f·μ + ½ tr(H C))/N``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ._checks import (
    MAX_BYTES,
    MAX_STEPS,
    InputTypeError,
    check_cov,
    check_memory,
    check_pos_int,
    check_real,
    check_same_device,
    make_generator,
)
from .noise import MAX_NOISE_STD, noisy_precond
from .prompts import Prompts, cov_sqrt, sample_prompts
from .theory import error_curve

#: most prompts one Monte Carlo call draws (a bound on its run time, checked before it starts)
MAX_PROMPTS = 10**9
#: largest ``max_steps`` of :func:`delta_method` (its second derivatives cost O(k d⁵) flops)
MAX_DELTA_STEPS = 1000
#: most floating-point operations one call of :func:`mc_fitted` or :func:`delta_method` may
#: plan (about a few minutes on one laptop core); larger requests are refused before they start
MAX_FLOPS = 2e11
#: most prompts a moment chunk of :func:`delta_method` holds
DELTA_CHUNK = 50_000
#: routes of :meth:`DeltaMethod.overthink_probability`
OVERTHINK_METHODS = ("auto", "monte_carlo", "gaussian", "linearised")
#: ``method="auto"`` of :meth:`DeltaMethod.overthink_probability` uses the Gaussian ``G_N``
#: only where it was measured within Monte Carlo error: ``d <= GAUSSIAN_MAX_DIM``,
#: ``n >= GAUSSIAN_MIN_CONTEXT_PER_D · d``, ``N >= GAUSSIAN_MIN_N_PER_D · d`` and no label
#: noise; direct Monte Carlo everywhere else
GAUSSIAN_MAX_DIM = 10
GAUSSIAN_MIN_CONTEXT_PER_D = 5
GAUSSIAN_MIN_N_PER_D = 8
#: most float64 values one Monte Carlo chunk of the overthinking probability draws (about 32 MB)
MC_CHUNK_VALUES = 4_000_000


def fit_precond(prompts: Prompts) -> torch.Tensor:
    """Least-squares fit ``G_N = (Σ_p w_p b_pᵀ)(Σ_p b_p b_pᵀ)⁻¹`` on one training set, shape (d, d).

    The minimiser of the empirical single-step LSA loss (what gradient descent on a fixed
    training set converges to). Needs at least ``d`` prompts.

    Defined in Chapter 8.
    """
    if not isinstance(prompts, Prompts):
        raise InputTypeError(f"`prompts` must be a tts_lib.prompts.Prompts batch (one training set), "
                             f"got {type(prompts).__name__}")
    if prompts.batch < prompts.dim:
        raise ValueError(f"`prompts` must hold at least d = {prompts.dim} training prompts to fit G, "
                         f"got {prompts.batch}")
    if not all(bool(torch.isfinite(t).all()) for t in (prompts.X, prompts.y, prompts.w)):
        raise ValueError("`prompts` contain NaN or inf features, labels or weights; pass finite prompts")
    try:
        G = _fit(prompts.emp_corr()[None], prompts.w[None])[0]
    except torch.linalg.LinAlgError as err:
        raise ValueError("`prompts` give a singular Σ_p b_p b_pᵀ (degenerate features); draw more prompts") from err
    if not bool(torch.isfinite(G).all()):
        raise ValueError("`prompts` give a non-finite fit (ill-conditioned Σ_p b_p b_pᵀ); rescale or draw more")
    return G


def _fit(b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Batched fit: ``b``, ``w`` of shape (sets, N, d) -> G_N of shape (sets, d, d)."""
    A = w.transpose(-1, -2) @ b
    B = b.transpose(-1, -2) @ b
    return torch.linalg.solve(B, A.transpose(-1, -2)).transpose(-1, -2)  # A B⁻¹ (B symmetric)


def _check_inputs(train_cov: Any, test_cov: Any) -> tuple[torch.Tensor, torch.Tensor]:
    lam = check_cov(train_cov, "train_cov")
    sig = check_cov(test_cov, "test_cov", dim=lam.shape[0], dtype=lam.dtype)
    check_same_device(train_cov=lam, test_cov=sig)
    if torch.linalg.eigvalsh(lam).min() <= 0:
        raise ValueError("`train_cov` must be positive definite (every skill present in training)")
    return lam, sig


def _spectral_radius(G: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(sig.shape[0], dtype=sig.dtype, device=sig.device)
    return torch.linalg.eigvals(eye - G @ sig).abs().amax(-1)


@dataclass
class FittedSets:
    """Monte Carlo over training sets: one fitted ``G_N`` per set and what it does at test time.

    ``precond``: (sets, d, d); ``errors``: population test error ``‖(I − G_N Σ)^k‖_F²``,
    (sets, max_steps + 1); ``radius``: spectral radius of ``I − G_N Σ``, (sets,).

    Defined in Chapter 8.
    """

    precond: torch.Tensor
    errors: torch.Tensor
    radius: torch.Tensor

    @property
    def overthink_fraction(self) -> float:
        """Fraction of training sets whose fitted model overthinks (radius > 1)."""
        return float((self.radius > 1).double().mean())


def mc_fitted(
    train_cov: Any,
    context_len: int,
    num_train: int,
    test_cov: Any,
    max_steps: int,
    num_sets: int,
    *,
    noise_std: float = 0.0,
    seed: int = 0,
    chunk_prompts: int = 20_000,
) -> FittedSets:
    """Draw ``num_sets`` training sets of ``N = num_train`` prompts, fit ``G_N`` on each.

    Prompts have ``n = context_len`` examples from ``N(0, Λ)`` (label noise ``noise_std``).
    Returns a :class:`FittedSets` with the population (``m → ∞``) test error curve of each
    fitted model on ``Σ = test_cov`` and its spectral radius.

    Defined in Chapter 8.
    """
    lam, sig = _check_inputs(train_cov, test_cov)
    d = lam.shape[0]
    n = check_pos_int(context_len, "context_len")
    N = check_pos_int(num_train, "num_train", minimum=d)
    K = check_pos_int(max_steps, "max_steps", minimum=0, maximum=MAX_STEPS)
    sets = check_pos_int(num_sets, "num_sets")
    s = check_real(noise_std, "noise_std", minimum=0.0, maximum=MAX_NOISE_STD)
    gen = make_generator(check_pos_int(seed, "seed", minimum=0))
    chunk_prompts = check_pos_int(chunk_prompts, "chunk_prompts")
    check_memory(4 * n * d, "context_len", what="one training prompt")
    check_memory(4 * N * (n + 1) * d, "num_train", what="one training set")
    if sets * N > MAX_PROMPTS:
        raise ValueError(f"`num_sets` × `num_train` = {sets * N} prompts exceeds the limit {MAX_PROMPTS:.0e} "
                         "(tts_lib.finite_data.MAX_PROMPTS); lower `num_sets`")
    flops = sets * N * (n + 2) * d * d + sets * (K + 2) * d**3
    if flops > MAX_FLOPS:
        raise ValueError(f"`num_sets`={sets} training sets of `num_train`={N} prompts (n = {n}, d = {d}) need "
                         f"about {flops:.1e} flops, beyond the limit {MAX_FLOPS:.0e} "
                         "(tts_lib.finite_data.MAX_FLOPS, a few minutes on one core); lower `num_sets` or `num_train`")
    check_memory(4 * sets * d * d, "num_sets", what=f"{sets} fitted preconditioners")
    per_chunk = max(1, chunk_prompts // N)
    check_memory(4 * min(per_chunk, sets) * N * (n + 1) * d, "chunk_prompts", what="one chunk of prompts")
    Gs = []
    for start in range(0, sets, per_chunk):
        c = min(per_chunk, sets - start)
        pr = sample_prompts(lam, n, c * N, seed=gen, dtype=lam.dtype, noise_std=s)
        d = lam.shape[0]
        Gs.append(_fit(pr.emp_corr().reshape(c, N, d), pr.w.reshape(c, N, d)))
    G = torch.cat(Gs)
    return FittedSets(G, error_curve(G, sig, K), _spectral_radius(G, sig))


class OverthinkEstimate(float):
    """An overthinking probability (the float itself) with how it was computed.

    ``se``: its Monte Carlo standard error ``√(p(1 − p)/samples)`` (sampling only; 0 for the
    linearised route, and 0 when no sample overthinks, where ``p < 3/samples`` at 95 %);
    ``method``: ``"monte_carlo"``, ``"gaussian"`` or ``"linearised"``; ``samples``: training
    sets or Gaussian draws. Arithmetic on it gives plain floats.

    Defined in Chapter 8.
    """

    se: float
    method: str
    samples: int

    def __new__(cls, probability: float, *, se: float, method: str, samples: int) -> OverthinkEstimate:
        out = super().__new__(cls, probability)
        out.se, out.method, out.samples = float(se), method, int(samples)
        return out

    def __getnewargs_ex__(self) -> tuple[tuple[float], dict[str, Any]]:  # pickle and copy
        return (float(self),), {"se": self.se, "method": self.method, "samples": self.samples}

    @classmethod
    def _binomial(cls, hits: int, samples: int, method: str) -> OverthinkEstimate:
        p = hits / samples
        return cls(p, se=math.sqrt(p * (1 - p) / samples), method=method, samples=samples)

    @property
    def probability(self) -> float:
        return float(self)

    def __repr__(self) -> str:
        return (f"OverthinkEstimate({float(self):.4g}, se={self.se:.2g}, method={self.method!r}, "
                f"samples={self.samples})")


@dataclass
class DeltaMethod:
    """Order-1/N theory of the fitted preconditioner (see the module docstring).

    ``precond``: population ``G`` (d, d); ``mean_shift``: ``μ`` with ``E G_N ≈ G + μ/N``;
    ``cov``: ``C`` with ``Cov(vec G_N) ≈ C/N`` (d², d²), row-major ``vec``;
    ``error``: ``f_k(G)`` (max_steps + 1,); ``error_coef``: ``a_k`` with
    ``E f_k(G_N) ≈ f_k(G) + a_k/N``; ``train_cov``, ``context_len``, ``noise_std``: the
    training prompts' distribution (for direct Monte Carlo over training sets).

    Defined in Chapter 8.
    """

    precond: torch.Tensor
    mean_shift: torch.Tensor
    cov: torch.Tensor
    error: torch.Tensor
    error_coef: torch.Tensor
    test_cov: torch.Tensor
    train_cov: torch.Tensor | None = None
    context_len: int | None = None
    noise_std: float = 0.0

    def expected_error(self, num_train: int) -> torch.Tensor:
        """``f_k(G) + a_k/N`` for k = 0..max_steps."""
        N = check_pos_int(num_train, "num_train")
        return self.error + self.error_coef / N

    def overthink_probability(self, num_train: int, *, method: str = "auto", num_sets: int = 4000,
                              num_draws: int = 20_000, seed: int = 0) -> OverthinkEstimate:
        """P(ρ(I − G_N Σ) > 1): the probability that ``G_N`` fitted on N prompts overthinks.

        Returns an :class:`OverthinkEstimate` (a float, the probability, that also carries its
        standard error ``se``, the ``method`` used and the number of ``samples``). Routes:

        * ``"monte_carlo"``: ``num_sets`` training sets of N prompts, each fitted exactly
          (:func:`fit_precond`'s least squares) and its spectral radius taken; the prompts'
          ``(b, w)`` are drawn by :func:`_draw_fit_inputs` (exact in distribution, O(n + d²) per
          prompt instead of :func:`mc_fitted`'s O(n d²)). No approximation; SE
          ``√(p(1 − p)/num_sets)``. Needs the object from :func:`delta_method`.
        * ``"gaussian"`` (named approximation): ``vec G_N ~ N(vec G + vec μ/N, C/N)``, the delta
          method's mean and covariance, ``num_draws`` draws, exact spectral radius of each. Its
          ``se`` counts only the draws, not its bias. Measured against direct Monte Carlo
          (8000 training sets; λ_i ∝ 1/i, tr Λ = d, Σ = I, σ = 0):

          - d = 5, n = 60: within 3 % at N = 20–200 (N = 25: 0.421 against 0.409 ± 0.006);
          - d = 10, n = 50: 4–6 % low for N <= 5d (N = 50: 0.518 against 0.550 ± 0.006,
            z = −4.9), within 1.2 SE at N = 8d–40d;
          - d = 20, n = 60: 15–28 % low at every N tried, 3d–16d (N = 80: 0.507 against
            0.631 ± 0.005; N = 160: 0.106 against 0.144 ± 0.004, z = −8.5; N = 320: 0.0041
            against 0.0055 ± 0.0008);
          - short training prompts: d = 5, n = 15: 37–72 % low (N = 20: 0.034 against
            0.064 ± 0.003); d = 10, n = 20: 59–76 % low (N = 25: 0.075 against 0.278 ± 0.006).

          Its error grows as the training context n falls towards d (n = 12d, 5d, 3d, 2d above).
        * ``"linearised"`` (cheap named approximation, :meth:`_linearised`): first-order
          eigenvalues treated as independent; ``se`` is 0 (no sampling). Lower still: at
          d = 20, n = 60, N = 160 it gives 0.016 against 0.144.
        * ``"auto"`` (default): ``"gaussian"`` inside the range where it was measured within
          Monte Carlo error (``d <=`` :data:`GAUSSIAN_MAX_DIM`, ``n >=``
          :data:`GAUSSIAN_MIN_CONTEXT_PER_D` ``· d``, ``N >=`` :data:`GAUSSIAN_MIN_N_PER_D`
          ``· d``, ``σ = 0``), ``"monte_carlo"`` everywhere else.

        Work beyond :data:`MAX_FLOPS` is refused before it starts (lower ``num_sets`` or
        ``num_draws``).

        Defined in Chapter 8.
        """
        N = check_pos_int(num_train, "num_train")
        if method not in OVERTHINK_METHODS:
            raise ValueError(f"`method` must be one of {', '.join(map(repr, OVERTHINK_METHODS))}, got {method!r}")
        sets = check_pos_int(num_sets, "num_sets", minimum=10, maximum=MAX_PROMPTS)
        draws = check_pos_int(num_draws, "num_draws", minimum=10, maximum=10**8)
        gen = make_generator(check_pos_int(seed, "seed", minimum=0))
        d = self.precond.shape[0]
        if method == "auto":
            method = "gaussian" if self._gaussian_validated(N) else "monte_carlo"
        if method == "linearised":
            return OverthinkEstimate(self._linearised(N), se=0.0, method="linearised", samples=0)
        if method == "monte_carlo":
            return self._monte_carlo(N, sets, gen)
        check_memory(3 * min(draws, 4096) * d * d, "num_draws", what="one chunk of preconditioner draws")
        if draws * (d**3 + d**4) > MAX_FLOPS:
            raise ValueError(f"`num_draws`={draws} draws of a {d}×{d} preconditioner exceed the work limit "
                             f"{MAX_FLOPS:.0e} flops (tts_lib.finite_data.MAX_FLOPS); lower `num_draws`")
        ev, U = torch.linalg.eigh((self.cov + self.cov.T) / 2)
        root = U * ev.clamp_min(0).sqrt() / math.sqrt(N)  # C/N = root rootᵀ
        mean = (self.precond + self.mean_shift / N).reshape(-1)
        hits = 0
        for start in range(0, draws, 4096):
            b = min(4096, draws - start)
            z = torch.randn(b, d * d, generator=gen, dtype=self.cov.dtype)
            G = (mean + z @ root.T).reshape(b, d, d)
            hits += int((_spectral_radius(G, self.test_cov) > 1).sum())
        return OverthinkEstimate._binomial(hits, draws, "gaussian")

    def _gaussian_validated(self, N: int) -> bool:
        """Whether (d, n, N, σ) lies where the Gaussian route was measured within MC error."""
        d, n = self.precond.shape[0], self.context_len
        return (n is not None and self.noise_std == 0 and d <= GAUSSIAN_MAX_DIM
                and n >= GAUSSIAN_MIN_CONTEXT_PER_D * d and N >= GAUSSIAN_MIN_N_PER_D * d)

    def _monte_carlo(self, N: int, sets: int, gen: torch.Generator) -> OverthinkEstimate:
        """Direct Monte Carlo over ``sets`` fitted training sets of N prompts (no approximation)."""
        if self.train_cov is None or self.context_len is None:
            raise ValueError("`method`='monte_carlo' needs the training distribution: build this DeltaMethod "
                             "with tts_lib.finite_data.delta_method, or pass method='gaussian'")
        lam, n, s = self.train_cov, self.context_len, self.noise_std
        d = lam.shape[0]
        if N < d:
            raise ValueError(f"`num_train` must be at least d = {d} prompts to fit G_N, got {N}")
        per_set = N * (2 * n + 4 * d + 2)  # float64 values drawn or held per training set
        check_memory(per_set, "num_train", what="one training set's draws")
        flops = sets * N * (20 * (2 * n + 2 * d) + 6 * d * d) + sets * 30 * d**3
        if sets * N > MAX_PROMPTS or flops > MAX_FLOPS:
            raise ValueError(f"`num_sets`={sets} training sets of `num_train`={N} prompts (n = {n}, d = {d}) need "
                             f"about {flops:.1e} flops, beyond the limit {MAX_FLOPS:.0e} "
                             "(tts_lib.finite_data.MAX_FLOPS, a few minutes on one core); lower `num_sets`")
        root = cov_sqrt(lam.detach().to("cpu", torch.float64))
        sig = self.test_cov.detach().to("cpu", torch.float64)
        per_chunk = max(1, MC_CHUNK_VALUES // per_set)
        hits = 0
        for start in range(0, sets, per_chunk):
            c = min(per_chunk, sets - start)
            b, w = _draw_fit_inputs(root, n, s, c * N, gen)
            G = _fit(b.reshape(c, N, d), w.reshape(c, N, d))
            hits += int((_spectral_radius(G, sig) > 1).sum())
        return OverthinkEstimate._binomial(hits, sets, "monte_carlo")

    def _linearised(self, N: int) -> float:
        """Cheap approximation of P(ρ(I − G_N Σ) > 1): linearised eigenvalues, treated as independent.

        Each eigenvalue ``μ_i`` of ``GΣ`` (simple, real) moves to first order by
        ``δμ_i = u_iᵀ δG Σ v_i / (u_iᵀ v_i)`` (left/right eigenvectors ``u_i``, ``v_i``),
        Gaussian with mean ``u_iᵀ μ Σ v_i/(N u_iᵀv_i)`` and variance from ``C/N``; overthinking
        needs some ``μ_i + δμ_i`` outside ``[0, 2]``. Measured error (λ_i ∝ 1/i, Σ = I): close
        at d = 5, but at d = 10, n = 50 it gives 0.38 / 0.20 / 0.017 at N = 50 / 100 / 400
        against Monte Carlo 0.54 / 0.30 / 0.031, where ``method="gaussian"`` (the same Gaussian
        with the exact spectral radius) is within a few per cent.
        """
        GS = self.precond @ self.test_cov
        mu, V = torch.linalg.eig(GS)
        mu, V = mu.real, V.real
        U = torch.linalg.inv(V).T  # columns: left eigenvectors with u_iᵀ v_i = 1
        d = mu.shape[0]
        p_inside = 1.0
        for i in range(d):
            # δμ = u_iᵀ δG (Σ v_i) = <δG, u_i (Σ v_i)ᵀ>
            L = torch.outer(U[:, i], self.test_cov @ V[:, i]).reshape(-1)
            mean = float(mu[i] + L @ self.mean_shift.reshape(-1) / N)
            sd = math.sqrt(max(float(L @ self.cov @ L) / N, 1e-300))
            p_inside *= _phi((2 - mean) / sd) - _phi((0 - mean) / sd)
        return 1.0 - p_inside


def _draw_fit_inputs(root: torch.Tensor, n: int, noise_std: float, count: int,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` independent prompts' ``(b, w)``, each (count, d), without drawing ``X``.

    Exact in distribution: with ``x_i = Λ^{1/2} z_i``, ``v = Λ^{1/2} w = |v| u`` and
    ``t = Z v + ε``, ``n b = Λ^{1/2} Zᵀ t``. Along ``u``, ``(Zu)·t = |v| c + σ√c h``
    (``c = |Zu|² ~ χ²_n``, ``h ~ N(0, 1)``); across ``u`` the columns of ``Z`` are independent of
    ``t``, so ``(I − uuᵀ) Zᵀ t = |t| (I − uuᵀ) g`` with ``g ~ N(0, I_d)`` and
    ``|t|² = |v|² c + 2|v|σ√c h + σ²(h² + e)``, ``e ~ χ²_{n−1}``. Costs ``O(n + d²)`` per
    prompt instead of ``O(n d²)``. ``root``: the (d, d) float64 CPU ``Λ^{1/2}``.
    """
    d = root.shape[0]
    f64 = torch.float64
    w = torch.randn(count, d, generator=gen, dtype=f64)
    v = w @ root
    a = v.norm(dim=-1, keepdim=True)
    u = v / a.clamp_min(1e-300)
    c = torch.randn(count, n, generator=gen, dtype=f64).square().sum(-1, keepdim=True)
    g = torch.randn(count, d, generator=gen, dtype=f64)
    if noise_std > 0:
        h = torch.randn(count, 1, generator=gen, dtype=f64)
        e = torch.randn(count, n - 1, generator=gen, dtype=f64).square().sum(-1, keepdim=True)
        along = a * c + noise_std * c.sqrt() * h
        t_norm = (a * a * c + 2 * noise_std * a * c.sqrt() * h + noise_std**2 * (h * h + e)).sqrt()
    else:
        along, t_norm = a * c, a * c.sqrt()
    zt = u * along + t_norm * (g - u * (u * g).sum(-1, keepdim=True))  # Zᵀ t
    return zt @ root / n, w


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def delta_method(
    train_cov: Any,
    context_len: int,
    test_cov: Any,
    max_steps: int,
    *,
    noise_std: float = 0.0,
    num_moment_prompts: int = 200_000,
    seed: int = 0,
) -> DeltaMethod:
    """Order-1/N coefficients; the prompt moments ``E[r bᵀ…]`` are averaged over single prompts.

    ``G`` is the closed form :func:`tts_lib.noise.noisy_precond` (``Γ⁻¹`` when
    ``noise_std = 0``), ``B = E[b bᵀ] = Λ(Γ + σ²/n I)``; the fourth- and sixth-order moments
    in ``μ = −E[r (bᵀB⁻¹b) bᵀ] B⁻¹`` and ``C = E[vec(r bᵀB⁻¹) vec(r bᵀB⁻¹)ᵀ]`` are
    estimated from ``num_moment_prompts`` independent prompts (one pass, no training sets);
    the first and second directional derivatives of ``f_k`` come from a recursion in k
    (``_error_coef``, O(k d⁵) flops; the prompt moments are accumulated in chunks that each
    fit the memory budget). Work beyond :data:`MAX_FLOPS` is refused before it starts.

    Defined in Chapter 8.
    """
    lam, sig = _check_inputs(train_cov, test_cov)
    n = check_pos_int(context_len, "context_len")
    K = check_pos_int(max_steps, "max_steps", minimum=0, maximum=MAX_DELTA_STEPS)
    s = check_real(noise_std, "noise_std", minimum=0.0, maximum=MAX_NOISE_STD)
    P = check_pos_int(num_moment_prompts, "num_moment_prompts", minimum=100, maximum=MAX_PROMPTS)
    d = lam.shape[0]
    seed = check_pos_int(seed, "seed", minimum=0)
    check_memory(4 * (n + 1) * d, "context_len", what="one prompt")
    chunk = max(1, min(DELTA_CHUNK, MAX_BYTES // (8 * 4 * (n + 1) * d + 8 * 3 * d * d)))  # per chunk, not per call
    check_memory(4 * d**4, "train_cov", what="the (d², d²) moment and covariance matrices")
    flops = P * ((n + 2) * d * d + 2 * d**4)
    if flops > MAX_FLOPS:
        raise ValueError(f"`num_moment_prompts`={P} prompts (n = {n}, d = {d}) need about {flops:.1e} flops, "
                         f"beyond the limit {MAX_FLOPS:.0e} (tts_lib.finite_data.MAX_FLOPS, a few minutes on one "
                         "core); lower `num_moment_prompts`")
    deriv_flops = 6 * (K + 1) * (d * d + 1) * d**3
    if deriv_flops > MAX_FLOPS:
        raise ValueError(f"`max_steps`={K} at d = {d}: the second derivatives need about {deriv_flops:.1e} flops, "
                         f"beyond the limit {MAX_FLOPS:.0e} (tts_lib.finite_data.MAX_FLOPS); lower `max_steps`")
    check_memory(6 * (d * d + 1) * d * d, "train_cov", what="the d² directional derivatives")
    G = noisy_precond(lam, n, s)
    B = lam @ (torch.linalg.inv(G))
    B = (B + B.T) / 2
    Binv = torch.linalg.inv(B)
    gen = make_generator(seed)
    mu_acc = torch.zeros(d, d, dtype=lam.dtype)
    C_acc = torch.zeros(d * d, d * d, dtype=lam.dtype)
    for start in range(0, P, chunk):
        c = min(chunk, P - start)
        pr = sample_prompts(lam, n, c, seed=gen, dtype=lam.dtype, noise_std=s)
        b, w = pr.emp_corr(), pr.w
        r = w - b @ G.T
        q = ((b @ Binv) * b).sum(-1)  # bᵀB⁻¹b
        mu_acc += (r * q[:, None]).T @ b
        xi = (r[:, :, None] * (b @ Binv)[:, None, :]).reshape(c, d * d)  # r (B⁻¹b)ᵀ
        C_acc += xi.T @ xi
    mu = -(mu_acc / P) @ Binv
    C = C_acc / P
    coef = _error_coef(G, sig, K, mu, C)
    return DeltaMethod(G, mu, C, error_curve(G, sig, K), coef, sig, lam, n, s)


def _error_coef(G: torch.Tensor, sig: torch.Tensor, K: int, mu: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``a_k = ∇f_k·μ + ½ tr(H_k C)`` for ``f_k(G) = ‖(I − GΣ)^k‖_F²``, k = 0..K, without autograd.

    Along ``G + tV`` (``E = −VΣ``): ``(M + tE)^k = P_k + t D_k + t² Q_k + …`` with
    ``D_k = M D_{k−1} + E P_{k−1}`` and ``Q_k = M Q_{k−1} + E D_{k−1}``, so
    ``f' = 2⟨P_k, D_k⟩`` and ``f'' = 2‖D_k‖² + 4⟨P_k, Q_k⟩``. ``tr(H C) = Σ_e f''`` along
    ``V_e = √c_e v_e`` (eigenvectors of ``C``); one batch of d² + 1 directions.
    """
    d = sig.shape[0]
    ev, U = torch.linalg.eigh((C + C.T) / 2)
    V = (U * ev.clamp_min(0).sqrt()).T.reshape(d * d, d, d)  # rows: √c_e v_e
    E = -torch.cat([mu[None], V]) @ sig  # (d² + 1, d, d); first: the mean shift
    eye = torch.eye(d, dtype=sig.dtype)
    M = eye - G @ sig
    P = eye.expand_as(E)
    D = torch.zeros_like(E)
    Q = torch.zeros_like(E)
    coef = [torch.zeros((), dtype=sig.dtype)]
    for _ in range(K):
        P, D, Q = M @ P, M @ D + E @ P, M @ Q + E @ D
        first = 2 * (P[0] * D[0]).sum()
        second = 2 * (D[1:] ** 2).sum() + 4 * (P[1:] * Q[1:]).sum()
        coef.append(first + 0.5 * second)
    return torch.stack(coef)
