"""Expected k-step error at finite test context m, with its heavy tail under control.

For a fixed preconditioner ``G`` and a test prompt of ``m`` examples from ``N(0, Σ)``
(``Ŝ`` its empirical covariance, ``M̂ = I − GŜ``) the error of ``k`` CoT steps with label
noise ``σ`` is, given ``Ŝ`` (exact in ``w ~ N(0, I)`` and the noise; Chapter 8)

    e_k(Ŝ) = ‖M̂^k‖_F²  +  (σ²/m) tr(A_k Ŝ A_kᵀ),   A_k = Σ_{j<k} M̂^j G.

A prompt whose ``GŜ`` has an eigenvalue beyond 2 diverges like ``ρ(M̂)^{2k}``. Such prompts
are rare (about 1e-7 per prompt at d = 5, m = 4d for the trained isotropic step) but at large
``k`` they carry most of ``E e_k``: a sample mean over a few thousand prompts then contains
none of them and reports a stable number that is not the expectation. This module computes
the expectation instead:

* :func:`exact_error_curves` — exact, when ``Σ^{1/2} G Σ^{1/2} = c·I`` (e.g. the isotropic
  task ``Λ = Σ = I`` with ``G = Γ⁻¹``). Then ``M̂ = Σ^{-1/2}(I − cW)Σ^{1/2}`` with
  ``W = Σ^{-1/2}ŜΣ^{-1/2}`` a white Wishart matrix over ``m``, and the error depends on
  ``W``'s eigenvalues ``λ_a`` (law: ``∝ Π_{a<b}|λ_a − λ_b| Π λ_a^{(m−d−1)/2} e^{−mλ_a/2}``)
  and on its Haar-distributed eigenvectors. Averaging the eigenvectors (Weingarten,
  degree 2) leaves ``E p₂`` and ``E p₁²`` with ``p_r = Σ_a f(λ_a)^r``, ``f = (1 − cλ)^k``,
  and the noise term needs ``E Σ_a h(λ_a)``, ``h = (1 − (1 − cλ)^k)²/λ``. Both come from de
  Bruijn's Pfaffian: ``E Π_a (1 + t φ(λ_a)) = Pf A(t) / Pf A(0)`` with
  ``A_ij(t) = ∬ sign(y − x) p_i(x) p_j(y) ω(x) ω(y) (1 + tφ(x))(1 + tφ(y))`` (one extra
  row and column ``∫ p_i ω (1 + tφ)`` for odd ``d``), so
  ``E Σ_a φ(λ_a) = ½ tr(A₀⁻¹A₁)`` (``A(t) = A₀ + tA₁ + t²A₂``) and
  ``E Σ_{a≠b} φ(λ_a)φ(λ_b) = tr(A₀⁻¹A₂) − ½ tr((A₀⁻¹A₁)²) + (½ tr(A₀⁻¹A₁))²``. The
  polynomials ``p_i`` are orthonormal Laguerre polynomials of the weight (conditioning), the
  integrals a trapezoid rule in ``v = √y`` with one Richardson step. Restricting ``ω`` to
  ``cλ < 2`` gives the divergence probability ``1 − Pf A_T / Pf A`` and the means over
  convergent prompts exactly.
* :func:`tail_mc_error_curves` — any ``G``, ``Σ``: importance sampling. The standard
  Gaussian data matrix ``Z`` (``X = Σ^{1/2} Z``) is drawn from a mixture of ``N(0, s_j²)``
  (``s₀ = 1``, the defensive component, and larger scales that reach the divergent tail);
  the likelihood ratio ``1 / Σ_j α_j s_j^{−dm} exp(½(1 − 1/s_j²)‖Z‖²)`` is exact and at
  most ``1/α₀``. Returns the mean with its standard error, and the divergence probability.
* :func:`prompt_summary` — plain Monte Carlo for what a sample can measure well: the
  median, the fraction of divergent prompts and the mean over convergent prompts.

Defined in Chapter 8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._checks import (
    MAX_STEPS,
    as_tensor,
    check_memory,
    check_pos_int,
    check_precond,
    check_real,
)

#: largest ``max_steps`` of the exact route (one loop over k, each O(d² × nodes))
MAX_EXACT_STEPS = 2000
#: most prompts one Monte Carlo call of this module draws (bounds its run time)
MAX_PROMPTS = 10**8
#: largest dimension of the exact route (the Laguerre basis of degree d loses accuracy beyond)
MAX_EXACT_DIM = 40
#: largest test context of the exact route (its quadrature is checked against the exact k = 1
#: error to 1e-6 relative up to here; at m = 10⁷ the 1/m term is already off by a factor 2)
MAX_EXACT_TEST_LEN = 10**6
#: relative tolerance for ``Σ^{1/2} G Σ^{1/2} = c·I`` in :func:`exact_error_curves`
SCALAR_TOL = 1e-8


def _sigma(noise_std: Any) -> float:
    return check_real(noise_std, "noise_std", minimum=0.0, maximum=1e100)


# --------------------------------------------------------------------------- the Pfaffian machinery


class _Grid:
    """Nodes ``v`` (``y = v² = mλ/2``) with the weight ``y^α e^{−y}`` and trapezoid weights.

    ``a`` holds the orthonormal Laguerre polynomials times the normalised weight and the
    Jacobian ``dy = 2v dv``, shape (d, Q); ``stop``: use only the first ``stop`` nodes
    (every eigenvalue below the node ``stop − 1``).
    """

    def __init__(self, dim: int, test_len: int, v: np.ndarray):
        self.d = dim
        alpha = (test_len - dim - 1) / 2
        y = v * v
        with np.errstate(divide="ignore"):
            logv = np.log(v)
        logw = math.log(2.0) + (2 * alpha + 1) * logv - y - math.lgamma(alpha + 1)
        if 2 * alpha + 1 == 0:
            logw[0] = math.log(2.0) - math.lgamma(alpha + 1)
        w = np.exp(logw)
        P = np.empty((dim, v.size))  # orthonormal L_n^(α)(y) for the weight y^α e^{−y}/Γ(α+1)
        prev, cur = np.zeros_like(y), np.ones_like(y)
        for n in range(dim):
            lognorm = 0.5 * (math.lgamma(n + alpha + 1) - math.lgamma(n + 1) - math.lgamma(alpha + 1))
            P[n] = cur / math.exp(lognorm)
            prev, cur = cur, ((2 * n + 1 + alpha - y) * cur - (n + alpha) * prev) / (n + 1)
        self.lam = 2 * y / test_len  # eigenvalues of W = ZZᵀ/m at the nodes
        self.a = P * w
        self.h = float(v[1] - v[0])

    def _weights(self, stop: int) -> np.ndarray:
        tw = np.full(stop, self.h)
        tw[0] = tw[-1] = 0.5 * self.h
        return tw

    def skew(self, F: np.ndarray, G: np.ndarray, stop: int) -> np.ndarray:
        """``M_ij = ∬ sign(y − x) F_i(x) G_j(y)`` over the first ``stop`` nodes; (..., d, Q) inputs."""
        F, G = F[..., :stop], G[..., :stop]
        cum = np.zeros_like(F)
        cum[..., 1:] = np.cumsum(0.5 * self.h * (F[..., 1:] + F[..., :-1]), -1)
        C = 2 * cum - cum[..., -1:]
        return np.einsum("...iq,...jq->...ij", C * self._weights(stop), G)

    def trap(self, F: np.ndarray, stop: int) -> np.ndarray:
        return F[..., :stop] @ self._weights(stop)

    def matrices(self, phi: np.ndarray | None, stop: int) -> tuple[np.ndarray, ...]:
        """``A₀`` or, for functions ``φ`` (K, Q) on the nodes, ``A₁``, ``A₂`` (K, d', d')."""
        a = self.a
        if phi is None:
            return (self._augment(self.skew(a, a, stop), self.trap(a, stop)),)
        af = a[None] * phi[:, None, :]
        A1 = self.skew(af, a[None], stop) + self.skew(a[None], af, stop)
        A2 = self.skew(af, af, stop)
        return (self._augment(A1, self.trap(af, stop)),
                self._augment(A2, np.zeros(A2.shape[:-1])))

    def _augment(self, A: np.ndarray, col: np.ndarray) -> np.ndarray:
        if self.d % 2 == 0:
            return A
        d = self.d
        out = np.zeros(A.shape[:-2] + (d + 1, d + 1))
        out[..., :d, :d], out[..., :d, d], out[..., d, :d] = A, col, -col
        return out


def _richardson(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    return (4 * fine - coarse) / 3


class _WishartStats:
    """Linear and pair statistics of the eigenvalues of ``W = ZZᵀ/m`` (``Z`` d×m standard).

    Two trapezoid rules (``v`` and every other node of it) and one Richardson step. ``stop``:
    only configurations whose eigenvalues all lie below node ``stop − 1`` (``None``: all).
    """

    def __init__(self, dim: int, test_len: int, v: np.ndarray, stop: int | None):
        self.fine = _Grid(dim, test_len, v)
        self.coarse = _Grid(dim, test_len, v[::2])
        self.stop = v.size if stop is None else stop
        self.lam = self.fine.lam
        self.A0 = _richardson(self.fine.matrices(None, self.stop)[0],
                              self.coarse.matrices(None, (self.stop + 1) // 2)[0])
        self.A0inv = np.linalg.inv(self.A0)

    def moments(self, phi: np.ndarray, pair: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """``E Σ_a φ(λ_a)`` and (if ``pair``) ``E Σ_{a≠b} φ(λ_a)φ(λ_b)``, for each row of ``φ`` (K, Q)."""
        A1f, A2f = self.fine.matrices(phi, self.stop)
        A1c, A2c = self.coarse.matrices(phi[:, ::2], (self.stop + 1) // 2)
        B1 = self.A0inv @ _richardson(A1f, A1c)
        first = 0.5 * np.trace(B1, axis1=-2, axis2=-1)
        if not pair:
            return first, None
        B2 = self.A0inv @ _richardson(A2f, A2c)
        second = (np.trace(B2, axis1=-2, axis2=-1) - 0.5 * np.einsum("kij,kji->k", B1, B1) + first**2)
        return first, second


def _log_ratio_pf(num: np.ndarray, den: np.ndarray) -> float:
    """``log(Pf num / Pf den)`` for two skew matrices with positive Pfaffians."""
    sign, logdet = np.linalg.slogdet(np.linalg.solve(den, num))
    if sign <= 0:
        raise FloatingPointError("the Pfaffian ratio is not positive: the quadrature failed")
    return 0.5 * logdet


def _v_max(dim: int, test_len: int, step: float, max_steps: int) -> float:
    """Where the largest integrand (weight × polynomials × (1 − cλ)^{4k}) is e^{−60} of its peak."""
    alpha = (test_len - dim - 1) / 2
    v = np.linspace(1e-6, 50 + 10 * math.sqrt(test_len + 8 * max_steps + 4 * dim), 200_001)
    lam = 2 * v * v / test_len
    env = (2 * alpha + 1 + 4 * dim) * np.log(v) - v * v
    env = env + 4 * max_steps * np.log(np.maximum(1.0, np.abs(1 - step * lam)))
    top = int(np.argmax(env))
    beyond = np.nonzero(env[top:] < env[top] - 60)[0]
    if beyond.size == 0:
        raise ValueError("`max_steps` is too large for the quadrature of the exact route; lower it")
    return float(v[top + beyond[0]])


# --------------------------------------------------------------------------- exact route


@dataclass
class ExpectedError:
    """Expected k-step error at finite m, with what its heavy tail hides.

    ``bias``, ``noise``: ``E‖M̂^k‖_F²`` and the noise term, shape (max_steps + 1,);
    ``divergence_prob``: ``P(ρ(I − GŜ) > 1)`` per prompt; ``conv_bias``, ``conv_noise``:
    the same means over the convergent prompts only (``E[· | ρ ≤ 1]``). For the Monte
    Carlo route, ``*_se`` hold standard errors (zero for the exact route).

    Defined in Chapter 8.
    """

    bias: torch.Tensor
    noise: torch.Tensor
    divergence_prob: float
    conv_bias: torch.Tensor | None = None
    conv_noise: torch.Tensor | None = None
    bias_se: torch.Tensor | None = None
    noise_se: torch.Tensor | None = None
    total_se: torch.Tensor | None = None
    divergence_se: float = 0.0

    @property
    def total(self) -> torch.Tensor:
        """Bias plus noise term, shape (max_steps + 1,)."""
        return self.bias + self.noise

    @property
    def conv_total(self) -> torch.Tensor | None:
        """Mean over convergent prompts of bias plus noise (exact route only)."""
        return None if self.conv_bias is None else self.conv_bias + self.conv_noise


def scalar_step(precond: Any, test_cov: Any) -> float | None:
    """``c`` if ``Σ^{1/2} G Σ^{1/2} = c·I`` (within :data:`SCALAR_TOL`), else ``None``.

    Defined in Chapter 8.
    """
    G, sig = check_precond(precond, test_cov)
    if G.ndim != 2:
        raise ValueError("`precond` must be a single (d, d) matrix")
    ev, U = torch.linalg.eigh(sig.double())
    if float(ev.min()) <= 1e-12 * float(ev.max()):
        return None
    root = (U * ev.sqrt()) @ U.T
    B = root @ G.double() @ root
    c = float(torch.trace(B)) / B.shape[0]
    if c <= 0:
        return None
    eye = torch.eye(B.shape[0], dtype=torch.float64)
    return c if float((B - c * eye).abs().max()) <= SCALAR_TOL * c else None


def exact_error_curves(
    precond: Any,
    test_cov: Any,
    test_len: int,
    max_steps: int,
    noise_std: float = 0.0,
    *,
    num_nodes: int = 4097,
) -> ExpectedError:
    """Exact ``E e_k`` (bias and noise term) for ``G`` with ``Σ^{1/2} G Σ^{1/2} = c·I``, ``m >= d``.

    From de Bruijn's Pfaffian over the Wishart eigenvalues and a Haar average of the
    eigenvectors (module docstring); no sampling. Also exact: the divergence probability
    ``P(c λ_max(W) > 2)`` and the means over convergent prompts. For any other ``G`` use
    :func:`tail_mc_error_curves`. ``num_nodes``: quadrature nodes (the coarse rule of the
    Richardson step; the fine one has twice as many).

    Returns an :class:`ExpectedError` (float64 tensors of shape (max_steps + 1,)).

    Defined in Chapter 8.
    """
    G, sig = check_precond(precond, test_cov)
    d = sig.shape[0]
    m = check_pos_int(test_len, "test_len", maximum=MAX_EXACT_TEST_LEN)
    K = check_pos_int(max_steps, "max_steps", minimum=0, maximum=MAX_EXACT_STEPS)
    s = _sigma(noise_std)
    num_nodes = check_pos_int(num_nodes, "num_nodes", minimum=257, maximum=200_001)
    if d > MAX_EXACT_DIM:
        raise ValueError(f"`test_cov` is {d}×{d}: the exact route is limited to d <= {MAX_EXACT_DIM} "
                         "(tts_lib.finite_m.MAX_EXACT_DIM); use tail_mc_error_curves")
    if m < d:
        raise ValueError(f"`test_len` must be >= d = {d} for the exact route (Ŝ singular below), got {m}; "
                         "use tail_mc_error_curves")
    c = scalar_step(G, sig)
    if c is None:
        raise ValueError("`precond` is not c·Σ⁻¹ (Σ^{1/2} G Σ^{1/2} ≠ c·I with c > 0): the exact route does "
                         "not apply; use tts_lib.finite_m.tail_mc_error_curves (importance sampling)")
    check_memory(8 * (d + 1) ** 2 * 2 * num_nodes, "num_nodes", what="the quadrature arrays")
    v, stop = _nodes(d, m, c, K, num_nodes)
    full = _WishartStats(d, m, v, None)
    conv = _WishartStats(d, m, v, stop)
    p_div = max(float(-math.expm1(_log_ratio_pf(conv.A0, full.A0))), 0.0) if stop < v.size else 0.0
    sig64 = sig.double()
    tr_sig, tr_inv = float(torch.trace(sig64)), float(torch.trace(torch.linalg.inv(sig64)))
    isotropic = d == 1 or abs(tr_sig * tr_inv - d * d) <= 1e-12 * d * d
    lam = full.lam
    ks = np.arange(K + 1)[:, None]
    f = (1 - c * lam[None, :]) ** ks  # (K+1, Q)
    safe = np.where(lam > 0, lam, 1.0)
    hk = np.where(lam > 0, (1 - f) ** 2 / safe, 0.0)
    out = []
    for stats in (full, conv):
        bias, noise = [], []
        for sl in _chunks(K + 1, max(1, 2_000_000 // (d * d * v.size))):
            e_p2 = stats.moments(f[sl] ** 2, pair=False)[0]
            if isotropic:  # Σ ∝ I: ‖M̂^k‖² = tr f(W)²
                bias.append(e_p2)
            else:
                _, e_pair = stats.moments(f[sl], pair=True)
                e_p1sq = e_p2 + e_pair
                diag = (2 * e_p2 + e_p1sq) / (d * (d + 2))
                off = (d * e_p2 - e_p1sq) / (d * (d - 1) * (d + 2))
                bias.append(d * diag + off * (tr_sig * tr_inv - d))
            noise.append(s * s / m * tr_inv * stats.moments(hk[sl], pair=False)[0] / d)
        out.append((torch.from_numpy(np.concatenate(bias)), torch.from_numpy(np.concatenate(noise))))
    (b, n), (cb, cn) = out
    if stop >= v.size:  # no divergent prompt within reach of the quadrature
        cb, cn = b.clone(), n.clone()
    zero = torch.zeros(K + 1, dtype=torch.float64)
    return ExpectedError(b, n, p_div, cb, cn, zero, zero.clone(), zero.clone(), 0.0)


def _chunks(total: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, total)) for i in range(0, total, size)]


def _nodes(dim: int, test_len: int, step: float, max_steps: int, num_nodes: int) -> tuple[np.ndarray, int]:
    """Fine nodes in ``v`` (an odd count, the coarse rule every other one) with a node at the
    divergence threshold ``cλ = 2`` when it lies inside; returns (nodes, nodes up to the cut)."""
    v_max = _v_max(dim, test_len, step, max_steps)
    v_cut = math.sqrt(test_len / step)  # λ = 2v²/m = 2/c
    intervals = 2 * (num_nodes - 1)
    if v_cut >= v_max:
        return np.linspace(0.0, v_max, intervals + 1), intervals + 1
    below = max(2, 2 * round(intervals * v_cut / v_max / 2))
    h = v_cut / below
    above = 2 * math.ceil((v_max - v_cut) / h / 2)
    return np.arange(below + above + 1) * h, below + 1


# --------------------------------------------------------------------------- Monte Carlo


def _per_prompt(G: torch.Tensor, S: torch.Tensor, K: int, s: float, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-prompt bias ``‖M̂^k‖²`` and noise ``(σ²/m) tr(A_k Ŝ A_kᵀ)``, each (b, K+1)."""
    eye = torch.eye(S.shape[-1], dtype=S.dtype)
    M = eye - G @ S
    P, A = eye.expand_as(M), torch.zeros_like(M)
    bias, noise = [], []
    for _ in range(K + 1):
        bias.append((P * P).sum((-1, -2)))
        noise.append(s * s / m * torch.einsum("bij,bjl,bil->b", A, S, A) if s > 0
                     else torch.zeros(S.shape[0], dtype=S.dtype))
        A = A + P @ G
        P = P @ M
    return torch.stack(bias, -1), torch.stack(noise, -1)


def _radius(G: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(S.shape[-1], dtype=S.dtype)
    return torch.linalg.eigvals(eye - G @ S).abs().amax(-1)


def _checked(precond: Any, test_cov: Any, test_len: Any, max_steps: Any, num_prompts: Any,
             noise_std: Any, chunk: Any) -> tuple[torch.Tensor, torch.Tensor, int, int, int, float, int]:
    G, sig = check_precond(precond, test_cov)
    if G.ndim != 2:
        raise ValueError("`precond` must be a single (d, d) matrix for Monte Carlo")
    d = sig.shape[0]
    m = check_pos_int(test_len, "test_len")
    K = check_pos_int(max_steps, "max_steps", minimum=0, maximum=MAX_STEPS)
    P = check_pos_int(num_prompts, "num_prompts", minimum=2, maximum=MAX_PROMPTS)
    s = _sigma(noise_std)
    chunk = check_pos_int(chunk, "chunk")
    work = P * (K + 1) * d**3 + P * d * d * m
    if work > 5e12:
        raise ValueError(f"`num_prompts`={P} × (`max_steps`+1)={K + 1} × d³ + prompts × d²m is about "
                         f"{work:.1e} flops (limit 5e12, hours on a laptop); lower `num_prompts` or `max_steps`")
    b = min(chunk, P)
    check_memory(b * d * m + 4 * b * d * d + 2 * b * (K + 1), "chunk", what=f"one chunk of {b} prompts")
    return G.double(), sig.double(), d, m, K, s, P


def _log_eig_const(d: int, m: int, test_len: int) -> float:
    """log of the constant ``C`` of the ordered eigenvalue density ``C Π_{a<b}(λ_a − λ_b) Π λ^α e^{−Mλ/2}``
    of ``ZZᵀ/M`` for ``Z`` of shape d × m, ``α = (m − d − 1)/2``, ``M = test_len``."""
    if d == 0:
        return 0.0
    alpha = (m - d - 1) / 2
    log_gamma_d = lambda a: d * (d - 1) / 4 * math.log(math.pi) + sum(  # noqa: E731
        math.lgamma(a - j / 2) for j in range(d))
    log_k = d * d / 2 * math.log(math.pi) - d * m / 2 * math.log(2) - log_gamma_d(m / 2) - log_gamma_d(d / 2)
    return log_k + (d + d * (d - 1) / 2 + d * alpha) * math.log(test_len)


def _spike_scales(c_top: float, c_mean: float, d: int, m: int, K: int) -> list[float]:
    """Spike sizes ``s²`` (geometric, ratio about 1.4) from the divergence threshold to where
    ``(cλ − 1)^{2K} λ^α e^{−mλ/2}`` peaks (about ``1/c + 4K/m``)."""
    lo = min(2.0 / c_top, (1 + math.sqrt(d / m)) ** 2)
    hi = 1.3 * max(2.0 / c_top, 1.0 / c_mean + 4.0 * K / m, lo * 1.5)
    num = min(12, max(3, math.ceil(math.log(hi / lo) / math.log(1.4)) + 1))
    return list(np.geomspace(lo, hi, num))


def _spiked_wishart(
    rng: np.random.Generator, b: int, d: int, m: int, spikes: np.ndarray, defensive: float
) -> np.ndarray:
    """``b`` draws of ``W`` (b, d, d) from :func:`tail_mc_error_curves`' proposal: with
    probability ``defensive`` a white Wishart ``ZZᵀ/m``, otherwise one eigenvalue
    ``s² χ²_m/m`` (``s²`` drawn from ``spikes``), the other ``d − 1`` those of a
    (d − 1) × (m − 1) white Wishart, and Haar eigenvectors."""
    spiked = rng.random(b) >= defensive
    Z = rng.standard_normal((b, d, m))
    W = Z @ Z.transpose(0, 2, 1) / m
    ns = int(spiked.sum())
    if ns:
        Zs = rng.standard_normal((ns, d - 1, m - 1))
        mu = np.linalg.eigvalsh(Zs @ Zs.transpose(0, 2, 1) / m) if d > 1 else np.zeros((ns, 0))
        top = spikes[rng.integers(spikes.size, size=ns)] * rng.chisquare(m, size=ns) / m
        lam_s = np.concatenate([top[:, None], mu], -1)
        Q, R = np.linalg.qr(rng.standard_normal((ns, d, d)))
        Q = Q * np.sign(np.diagonal(R, axis1=1, axis2=2))[:, None, :]  # Haar
        W[spiked] = (Q * lam_s[:, None, :]) @ Q.transpose(0, 2, 1)
    return W


def _log_spike_ratio(lam: np.ndarray, m: int, spikes: np.ndarray, log_cc: float) -> np.ndarray:
    """``log q/p`` of the spiked part per prompt, ``lam`` (b, d) the eigenvalues:
    ``log_cc + log Σ_a r(λ_a) / (w(λ_a) Π_{b≠a}|λ_a − λ_b|)`` with ``log_cc = log C'/C``
    (:func:`tail_mc_error_curves`); ``r`` is the mixture of ``s² χ²_m / m`` densities."""
    d = lam.shape[-1]
    shape = m / 2
    parts = [shape * np.log(shape / v) - math.lgamma(shape) + (shape - 1) * np.log(lam) - shape * lam / v
             for v in spikes]
    stack = np.stack(parts, -1)
    top = stack.max(-1, keepdims=True)
    log_r = (top + np.log(np.exp(stack - top).mean(-1, keepdims=True)))[..., 0]
    diff = np.abs(lam[:, :, None] - lam[:, None, :]) + np.eye(d)
    log_terms = log_r - ((m - d - 1) / 2 * np.log(lam) - m * lam / 2) - np.log(diff).sum(-1)
    top_t = log_terms.max(-1)
    return log_cc + top_t + np.log(np.exp(log_terms - top_t[:, None]).sum(-1))


def tail_mc_error_curves(
    precond: Any,
    test_cov: Any,
    test_len: int,
    max_steps: int,
    num_prompts: int,
    noise_std: float = 0.0,
    *,
    spikes: tuple[float, ...] | None = None,
    defensive: float = 0.3,
    seed: int = 0,
    chunk: int = 8192,
) -> ExpectedError:
    """Importance-sampled ``E e_k`` for any ``G``, ``Σ`` (``m >= d``): mean, standard error, divergence probability.

    Write ``Ŝ = Σ^{1/2} W Σ^{1/2}`` with ``W = U diag(λ) Uᵀ`` a white Wishart matrix over
    ``m``: ``U`` is Haar and independent of the eigenvalues ``λ``, whose density is
    ``C Π_{a<b}|λ_a − λ_b| Π w(λ_a)``, ``w(λ) = λ^{(m−d−1)/2} e^{−mλ/2}``. A divergent
    prompt has one eigenvalue far beyond the spectral edge. The proposal draws, with
    probability ``defensive``, a plain prompt and otherwise a *spiked* one: one eigenvalue
    from ``r`` (a mixture of ``s² χ²_m/m`` over ``spikes`` ``s²``), the other ``d − 1`` from
    the same ensemble one size smaller (eigenvalues of ``Z'Z'ᵀ/m``, ``Z'`` of shape
    (d − 1) × (m − 1)), ``U`` from Haar. Its density ratio is exact,

        q/p = defensive + (1 − defensive) (C'/C) Σ_a r(λ_a) / (w(λ_a) Π_{b≠a}|λ_a − λ_b|),

    and the weight ``p/q`` is at most ``1/defensive``: unbiased, never worse than plain Monte
    Carlo by more than that factor in variance, and it samples the divergent tail at its own
    scale. ``spikes``: default from the divergence threshold ``2/c`` (``c`` the largest
    eigenvalue of ``Σ^{1/2}GΣ^{1/2}``) to where the k-step error's tail peaks.

    Returns an :class:`ExpectedError` with ``bias_se``, ``noise_se``, ``total_se`` and
    ``divergence_se`` (standard errors over prompts); ``conv_*`` are not estimated.

    Defined in Chapter 8.
    """
    G, sig, d, m, K, s, P = _checked(precond, test_cov, test_len, max_steps, num_prompts, noise_std, chunk)
    if m < d:
        raise ValueError(f"`test_len` must be >= d = {d} for the spiked proposal, got {m}; use prompt_summary")
    alpha0 = check_real(defensive, "defensive", minimum=0.0, maximum=1.0, open_min=True)
    ev, U0 = torch.linalg.eigh(sig)
    root = (U0 * ev.clamp_min(0).sqrt()) @ U0.T
    if spikes is None:
        B = root @ G @ root
        eig_b = torch.linalg.eigvals(B).real
        c_top, c_mean = float(eig_b.max()), float(eig_b.mean())
        if c_top <= 0 or c_mean <= 0:
            raise ValueError("`precond` has no positive eigenvalue on Σ: pass `spikes` explicitly")
        spikes = tuple(_spike_scales(c_top, c_mean, d, m, K))
    sp = np.array([check_real(v, f"spikes[{i}]", minimum=0.0, maximum=1e6, open_min=True)
                   for i, v in enumerate(spikes)])
    if sp.size == 0 and alpha0 < 1:
        raise ValueError("`spikes` is empty but `defensive` < 1; pass spike sizes or defensive=1")
    log_cc = _log_eig_const(d - 1, m - 1, m) - _log_eig_const(d, m, m)
    rng = np.random.default_rng(check_pos_int(seed, "seed", minimum=0))
    sums = {key: torch.zeros(K + 1, dtype=torch.float64) for key in ("b", "n", "t", "b2", "n2", "t2")}
    div1 = div2 = 0.0
    for start in range(0, P, chunk):
        W = _spiked_wishart(rng, min(chunk, P - start), d, m, sp, alpha0)
        lam = np.clip(np.linalg.eigvalsh(W), 1e-300, None)
        log_ratio = _log_spike_ratio(lam, m, sp, log_cc)
        wgt = torch.from_numpy(1.0 / (alpha0 + (1 - alpha0) * np.exp(np.minimum(log_ratio, 700.0))))
        S = root @ torch.from_numpy(W) @ root
        bias, noise = _per_prompt(G, S, K, s, m)
        for key, val in (("b", bias), ("n", noise), ("t", bias + noise)):
            wv = wgt[:, None] * val
            sums[key] += wv.sum(0)
            sums[key + "2"] += (wv * wv).sum(0)
        dv = wgt * (_radius(G, S) > 1).double()
        div1 += float(dv.sum())
        div2 += float((dv * dv).sum())

    def mean_se(key: str) -> tuple[torch.Tensor, torch.Tensor]:
        mu = sums[key] / P
        var = (sums[key + "2"] / P - mu * mu).clamp_min(0) * P / (P - 1)
        return mu, (var / P).sqrt()

    (mb, sb), (mn, sn), (_, st) = mean_se("b"), mean_se("n"), mean_se("t")
    p = div1 / P
    p_se = math.sqrt(max(div2 / P - p * p, 0.0) / (P - 1))
    return ExpectedError(mb, mn, p, None, None, sb, sn, st, p_se)


@dataclass
class PromptSummary:
    """Plain Monte Carlo over test prompts: what a sample measures well.

    ``median``: median of ``e_k`` over prompts (max_steps + 1,); ``divergence_frac``: the
    fraction of prompts with ``ρ(I − GŜ) > 1`` and its binomial standard error;
    ``conv_mean``, ``conv_se``: mean of ``e_k`` over the convergent prompts and its standard
    error; ``sample_mean``: the plain mean of these prompts (not the expectation when the
    tail is heavy). ``errors``: the per-prompt ``e_k``, (num_prompts, max_steps + 1).

    Defined in Chapter 8.
    """

    median: torch.Tensor
    divergence_frac: float
    divergence_se: float
    conv_mean: torch.Tensor
    conv_se: torch.Tensor
    sample_mean: torch.Tensor
    errors: torch.Tensor


def prompt_summary(
    precond: Any,
    test_cov: Any,
    test_len: int,
    max_steps: int,
    num_prompts: int,
    noise_std: float = 0.0,
    *,
    seed: int = 0,
    chunk: int = 8192,
) -> PromptSummary:
    """Median, divergence fraction and mean over convergent prompts of ``e_k`` (plain Monte Carlo).

    ``e_k`` is exact in ``w`` and the label noise given each prompt's ``Ŝ`` (module docstring).

    Defined in Chapter 8.
    """
    G, sig, d, m, K, s, P = _checked(precond, test_cov, test_len, max_steps, num_prompts, noise_std, chunk)
    check_memory(2 * P * (K + 1), "num_prompts", what=f"the ({P}, {K + 1}) per-prompt errors")
    ev, U = torch.linalg.eigh(sig)
    root = (U * ev.clamp_min(0).sqrt()) @ U.T
    rng = np.random.default_rng(check_pos_int(seed, "seed", minimum=0))
    errs, div = [], []
    for start in range(0, P, chunk):
        b = min(chunk, P - start)
        X = root @ torch.from_numpy(rng.standard_normal((b, d, m)))
        S = X @ X.transpose(-1, -2) / m
        bias, noise = _per_prompt(G, S, K, s, m)
        errs.append(bias + noise)
        div.append(_radius(G, S) > 1)
    e, dv = torch.cat(errs), torch.cat(div)
    frac = float(dv.double().mean())
    conv = e[~dv]
    n_conv = conv.shape[0]
    conv_mean = conv.mean(0) if n_conv else torch.full((K + 1,), math.nan, dtype=torch.float64)
    conv_se = conv.std(0) / math.sqrt(n_conv) if n_conv > 1 else torch.full_like(conv_mean, math.nan)
    median = torch.from_numpy(np.median(e.numpy(), 0))  # mean of the two middle values
    return PromptSummary(median, frac, math.sqrt(max(frac * (1 - frac), 1 / P) / P), conv_mean,
                         conv_se, e.mean(0), e)


def isotropic_power_mean(steps: Any, dim: int, test_len: int, power: int, *, num_nodes: int = 2049) -> torch.Tensor:
    """Exact ``E Σ_j (1 − g s_j)^power`` over the eigenvalues ``s_j`` of ``Ŝ`` (``Σ = I``), per step ``g``.

    ``Ŝ`` is the empirical covariance of ``test_len`` standard Gaussian examples in ``dim``
    dimensions. With ``power = 2k`` this is twice the k-step loss ``L_k(gI)`` of Chapter 9
    on isotropic training prompts of that length, exactly (no sampling), for a whole grid of
    ``g`` at once. ``steps``: 1-D, shape (G,); returns shape (G,).

    Defined in Chapter 9.
    """
    g = as_tensor(steps, "steps", dtype=torch.float64).cpu()
    if g.ndim != 1 or g.numel() < 1 or not bool(torch.isfinite(g).all()) or bool((g <= 0).any()):
        raise ValueError("`steps` must be a 1-D array of positive finite step sizes g")
    d = check_pos_int(dim, "dim", maximum=MAX_EXACT_DIM)
    m = check_pos_int(test_len, "test_len", minimum=d, maximum=MAX_EXACT_TEST_LEN)
    p = check_pos_int(power, "power", minimum=0, maximum=2 * MAX_EXACT_STEPS)
    num_nodes = check_pos_int(num_nodes, "num_nodes", minimum=257, maximum=200_001)
    if g.numel() > 10_000:
        raise ValueError(f"`steps` has {g.numel()} entries; pass at most 10000 (one quadrature row each)")
    v_max = max(_v_max(d, m, float(c), (p + 1) // 2) for c in (float(g.min()), float(g.max())))
    v = np.linspace(0.0, v_max, 2 * num_nodes - 1)
    stats = _WishartStats(d, m, v, None)
    phi = (1 - g.numpy()[:, None] * stats.lam[None, :]) ** p
    out = [stats.moments(phi[sl], pair=False)[0] for sl in _chunks(phi.shape[0], max(1, 2_000_000 // (d * d * v.size)))]
    return torch.from_numpy(np.concatenate(out))
