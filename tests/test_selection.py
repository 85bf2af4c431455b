"""tts_lib.selection: simplex projection, projected gradient, the QP surrogate and the exact mixture error.

References: brute-force enumeration of active sets (exact for a QP), simplex grids, the KKT
conditions, scipy's SLSQP, and the closed forms of tts_lib.theory.
"""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from tts_lib import selection as sel
from tts_lib import tasks, theory

DT = torch.float64


def _random_psd(dim: int, rank: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, rank, generator=g, dtype=DT)
    return a @ a.T / rank


def _qp_exact(H: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Brute force: min ½xᵀHx − cᵀx on the simplex by enumerating every support (small L)."""
    L = H.shape[0]
    best, best_val = None, math.inf
    for r in range(1, L + 1):
        for supp in itertools.combinations(range(L), r):
            idx = list(supp)
            Hs, cs = H[np.ix_(idx, idx)], c[idx]
            # KKT on the face: [Hs 1; 1ᵀ 0][x; -μ] = [cs; 1]
            K = torch.zeros(r + 1, r + 1, dtype=DT)
            K[:r, :r], K[:r, r], K[r, :r] = Hs, 1.0, 1.0
            rhs = torch.cat([cs, torch.ones(1, dtype=DT)])
            try:
                sol = torch.linalg.solve(K, rhs)
            except RuntimeError:
                continue
            xs = sol[:r]
            if (xs < -1e-12).any():
                continue
            x = torch.zeros(L, dtype=DT)
            x[idx] = xs.clamp_min(0)
            x = x / x.sum()
            val = float(0.5 * x @ H @ x - c @ x)
            if val < best_val - 1e-14:
                best, best_val = x, val
    return best, best_val


# --------------------------------------------------------------------------- projection and grid


def test_projection_is_the_euclidean_projection():
    g = torch.Generator().manual_seed(0)
    v = 2 * torch.randn(500, 5, generator=g, dtype=DT)
    p = sel.project_simplex(v)
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(-1), torch.ones(500, dtype=DT))
    # variational inequality <v − p, z − p> <= 0 for every z in the simplex (enough: vertices)
    vi = ((v - p).unsqueeze(1) * (torch.eye(5, dtype=DT).unsqueeze(0) - p.unsqueeze(1))).sum(-1)
    assert vi.max() < 1e-12
    # no grid point of the simplex is closer to v than p
    grid = sel.simplex_grid(5, 10)
    d_grid = torch.cdist(v, grid).min(1).values
    assert (torch.linalg.norm(v - p, dim=-1) <= d_grid + 1e-12).all()
    # points already on the simplex are fixed
    torch.testing.assert_close(sel.project_simplex(grid), grid)


def test_projection_edge_cases():
    torch.testing.assert_close(sel.project_simplex(torch.tensor([3.0], dtype=DT)), torch.ones(1, dtype=DT))
    torch.testing.assert_close(sel.project_simplex(torch.zeros(4, dtype=DT)), torch.full((4,), 0.25, dtype=DT))
    torch.testing.assert_close(
        sel.project_simplex(torch.tensor([10.0, 0.0, -3.0], dtype=DT)), torch.tensor([1.0, 0.0, 0.0], dtype=DT)
    )
    with pytest.raises(ValueError, match="`v`"):
        sel.project_simplex(torch.tensor(1.0))


def test_simplex_grid():
    grid = sel.simplex_grid(4, 20)
    assert grid.shape == (math.comb(23, 3), 4)
    assert (grid >= 0).all()
    torch.testing.assert_close(grid.sum(-1), torch.ones(len(grid), dtype=DT))
    counts = (grid * 20).round()
    torch.testing.assert_close(grid * 20, counts)
    assert len({tuple(r) for r in counts.tolist()}) == len(grid)
    assert sel.simplex_grid(1, 3).tolist() == [[1.0]]
    with pytest.raises(ValueError, match="resolution"):
        sel.simplex_grid(3, 0)


# --------------------------------------------------------------------------- the solver


@pytest.mark.parametrize("seed", range(6))
def test_projected_gradient_solves_random_qps(seed):
    L = 4
    H = _random_psd(L, 2 + seed % 3, seed) + 1e-3 * torch.eye(L, dtype=DT)  # some nearly singular
    c = torch.randn(L, generator=torch.Generator().manual_seed(100 + seed), dtype=DT)
    res = sel.minimize_on_simplex(lambda x: 0.5 * x @ H @ x - c @ x, num_tasks=L, tol=1e-12)
    x_star, v_star = _qp_exact(H, c)
    assert res.converged
    assert res.value <= v_star + 1e-9
    assert torch.allclose(res.weights, x_star, atol=1e-5)
    # KKT: equal partial derivatives on the support, larger off it
    g = H @ res.weights - c
    supp = res.weights > 1e-8
    mu = g[supp].mean()
    assert (g[supp] - mu).abs().max() < 1e-6
    assert (g[~supp] >= mu - 1e-6).all()
    assert res.kkt < 1e-7
    # a fine grid never beats it, and the best grid point is close in value
    grid = sel.simplex_grid(L, 40)
    vals = 0.5 * torch.einsum("nl,lm,nm->n", grid, H, grid) - grid @ c
    assert vals.min() >= res.value - 1e-12
    assert vals.min() - res.value < 0.05 * (vals.max() - vals.min())


def test_projected_gradient_matches_scipy_slsqp_on_a_smooth_convex_function():
    a = torch.tensor([0.3, -1.0, 0.5, 2.0, 0.0], dtype=DT)

    def f(x):
        return torch.logsumexp(3 * (x - a), 0) + (x**2).sum()

    res = sel.minimize_on_simplex(f, num_tasks=5, tol=1e-12)
    ref = minimize(
        lambda x: float(f(torch.tensor(x, dtype=DT))), np.full(5, 0.2), method="SLSQP",
        bounds=[(0, 1)] * 5, constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert ref.success
    assert res.value <= ref.fun + 1e-8
    assert np.allclose(res.weights.numpy(), ref.x, atol=1e-4)


def test_vertex_solution_and_explicit_gradient():
    c = torch.tensor([0.0, 0.0, 5.0], dtype=DT)
    res = sel.minimize_on_simplex(lambda x: (x**2).sum() - c @ x, grad=lambda x: 2 * x - c, x0=[0.5, 0.5, 0.0])
    torch.testing.assert_close(res.weights, torch.tensor([0.0, 0.0, 1.0], dtype=DT))
    assert res.kkt == 0.0


def test_kkt_residual():
    assert sel.kkt_residual([0.0, 1.0], [1.0, 0.0]) == 0.0  # vertex with a larger partial off the support
    assert sel.kkt_residual([0.5, 0.5], [1.0, 0.0]) > 0.4  # interior point, unequal partials
    with pytest.raises(ValueError, match="same length"):
        sel.kkt_residual([0.5, 0.5], [1.0])


def test_grid_search_batches_and_ignores_nan():
    calls = []

    def f(p):
        calls.append(p.shape)
        out = ((p - torch.tensor([0.2, 0.3, 0.5], dtype=DT)) ** 2).sum(-1)
        out[0] = float("nan")
        return out

    res = sel.grid_search(f, 3, 10)
    assert calls == [(66, 3)]
    torch.testing.assert_close(res.weights, torch.tensor([0.2, 0.3, 0.5], dtype=DT))
    with pytest.raises(ValueError, match=r"\(N,\) values"):
        sel.grid_search(lambda p: p, 3, 4)


def test_bad_starting_point():
    with pytest.raises(ValueError, match="not finite"):
        sel.minimize_on_simplex(lambda x: torch.log(x[0] - 1), num_tasks=2)
    with pytest.raises(ValueError, match="num_tasks"):
        sel.minimize_on_simplex(lambda x: x.sum())


# --------------------------------------------------------------------------- objectives


def _covs(d: int = 5):
    rot = tasks.random_rotation(d, seed=1)
    return [
        tasks.power_law_cov(d, 0.2, 3, trace=d),
        tasks.power_law_cov(d, 1.0, trace=d, rotation=rot),
        tasks.isotropic_cov(d),
    ], tasks.power_law_cov(d, 1.2, trace=d, rotation=tasks.random_rotation(d, seed=2))


def test_qp_matrices_reproduce_the_objective():
    covs, sig = _covs()
    H, b, c = sel.qp_matrices(covs, sig)
    assert torch.linalg.eigvalsh(H).min() > -1e-10  # convex
    pis = sel.simplex_grid(3, 7)
    eye = torch.eye(5, dtype=DT)
    direct = torch.stack([
        torch.linalg.norm(eye - torch.linalg.solve(sig, sum(p * C for p, C in zip(pi, covs, strict=True)))) ** 2
        for pi in pis
    ])
    torch.testing.assert_close(sel.qp_objective(pis, covs, sig), direct)
    torch.testing.assert_close(torch.einsum("nl,lm,nm->n", pis, H, pis) - 2 * pis @ b + c, direct)


def test_qp_weights_is_the_exact_minimiser():
    covs, sig = _covs()
    H, b, _ = sel.qp_matrices(covs, sig)
    res = sel.qp_weights(covs, sig, tol=1e-12)
    x_star, _ = _qp_exact(2 * H, 2 * b)
    assert torch.allclose(res.weights, x_star, atol=1e-6)
    grid_best = sel.grid_search(lambda p: sel.qp_objective(p, covs, sig), 3, 50)
    assert res.value <= grid_best.value + 1e-12


def test_qp_needs_a_positive_definite_target():
    covs, _ = _covs()
    with pytest.raises(ValueError, match="positive definite"):
        sel.qp_matrices(covs, tasks.power_law_cov(5, 1.0, 4))


def test_mixture_error_matches_theory_error_curve():
    covs, sig = _covs()
    ns = [4, 10, 30]
    pis = torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype=DT)
    ks = [0, 1, 2, 3, 5, 8, 13]
    curve = theory.error_curve(theory.multitask_precond(covs, ns, pis), sig, 13)
    got = sel.mixture_error(pis, covs, ns, sig, ks, chunk=2)
    torch.testing.assert_close(got, curve[:, ks])
    torch.testing.assert_close(sel.mixture_error(pis[0], covs, ns, sig, 5), curve[0, 5])
    # unnormalised weights mean the same mixture
    torch.testing.assert_close(sel.mixture_error(3 * pis, covs, ns, sig, ks), got)
    # a single task is the one-task trained model of Theorem 3.1
    torch.testing.assert_close(
        sel.mixture_error([0.0, 1.0, 0.0], covs, ns, sig, [1, 6]),
        theory.cot_error_curve(covs[1], ns[1], sig, 6)[[1, 6]],
    )


def test_mixture_error_in_commuting_case_and_missing_skills():
    """Diagonal tasks: g_i = Σπλ / Σπλγ per skill; a skill no task covers keeps error 1 for every k."""
    d = 6
    lam_a = tasks.diag_cov([3.0, 2.0, 1.0, 0.0, 0.0, 0.0])
    lam_b = tasks.diag_cov([0.0, 0.0, 1.0, 2.0, 1.0, 0.0])
    sig = tasks.isotropic_cov(d)
    pi = torch.tensor([0.3, 0.7], dtype=DT)
    ns = [5, 12]
    la, lb = torch.diagonal(lam_a), torch.diagonal(lam_b)
    ga = (1 + 1 / 5) * la + la.sum() / 5
    gb = (1 + 1 / 12) * lb + lb.sum() / 12
    q = pi[0] * la * ga + pi[1] * lb * gb
    g = torch.where(q > 0, (pi[0] * la + pi[1] * lb) / q.clamp_min(1e-300), torch.zeros_like(q))
    for k in [1, 4, 9]:
        expected = ((1 - g) ** (2 * k)).sum()
        torch.testing.assert_close(sel.mixture_error(pi, [lam_a, lam_b], ns, sig, k), expected)
        assert float(sel.mixture_error(pi, [lam_a, lam_b], ns, sig, k)) >= 1.0  # direction 6 is never learned


def test_mixture_error_gradient_matches_finite_differences():
    covs, sig = _covs()
    ns = [4, 10, 30]
    pi = torch.tensor([0.2, 0.3, 0.5], dtype=DT, requires_grad=True)
    val = sel.mixture_error(pi, covs, ns, sig, 7)
    (g,) = torch.autograd.grad(val, pi)
    # derivative along the feasible direction e_0 − e_2 (stays on the simplex)
    u = torch.tensor([1.0, 0.0, -1.0], dtype=DT)
    h = 1e-6
    plus = sel.mixture_error(pi.detach() + h * u, covs, ns, sig, 7)
    minus = sel.mixture_error(pi.detach() - h * u, covs, ns, sig, 7)
    fd = (plus - minus) / (2 * h)
    assert abs(float(g @ u) - float(fd)) < 1e-5 * max(1.0, abs(float(fd)))


def test_exact_objective_minimised_from_the_grid_is_a_kkt_point():
    covs, sig = _covs()
    ns = [4, 10, 30]

    def f(p):
        return sel.mixture_error(p, covs, ns, sig, 6).log()

    start = sel.grid_search(f, 3, 20)
    res = sel.minimize_on_simplex(f, start.weights, tol=1e-10)
    assert res.value <= start.value + 1e-12
    assert res.kkt < 1e-6
    fine = sel.grid_search(f, 3, 60)
    assert res.value <= fine.value + 1e-9


def test_task_types():
    types = [sel.TaskType("easy", 0.2, 2, 10), sel.TaskType("hard", 0.8, 4, 10)]
    covs = sel.task_type_covs(types, 4, trace=4.0)
    assert [int((torch.diagonal(c) > 0).sum()) for c in covs] == [2, 4]
    torch.testing.assert_close(torch.stack([torch.trace(c) for c in covs]), torch.full((2,), 4.0, dtype=DT))
    ev = torch.diagonal(covs[1])
    torch.testing.assert_close(ev / ev[0], torch.arange(1, 5, dtype=DT) ** -0.8)
    with pytest.raises(ValueError, match="TaskType"):
        sel.task_type_covs([(0.2, 2)], 4)
    with pytest.raises(ValueError, match="trace"):
        sel.task_type_covs(types, 4, trace=-1.0)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda c, s: sel.mixture_error([0.5, -0.5, 1.0], c, [4, 4, 4], s, 3), "non-negative"),
        (lambda c, s: sel.mixture_error([0.5, 0.5], c, [4, 4, 4], s, 3), r"\(\.\.\., 3\)"),
        (lambda c, s: sel.mixture_error([0.5, 0.5, 0.0], c, [4, 4], s, 3), "context_lens"),
        (lambda c, s: sel.mixture_error([0.5, 0.5, 0.0], c, [4, 4, 4], s, [3, 2]), "increasing"),
        (lambda c, s: sel.mixture_error([0.5, 0.5, 0.0], c, [4, 4, 4], s, -1), "num_steps"),
        (lambda c, s: sel.mixture_error([0.5, 0.5, 0.0], c, [4, 4, 4], torch.eye(3), 2), "target_cov"),
        (lambda c, s: sel.qp_objective([0.5, 0.5, 0.0], [], s), "at least one"),
    ],
)
def test_bad_arguments(call, match):
    covs, sig = _covs()
    with pytest.raises(ValueError, match=match):
        call(covs, sig)
