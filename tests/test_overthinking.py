"""tts_lib.overthinking against tts_lib.theory, Monte Carlo and trained models (fixed seeds)."""

import math

import pytest
import torch

from tts_lib import overthinking as ot
from tts_lib import tasks, theory
from tts_lib.lsa import StructuredLSA
from tts_lib.train import TrainConfig, TrainTask, train_lsa

D = 5
SIG = tasks.isotropic_cov(D)


def test_power_law_spectra_match_tasks():
    alphas = torch.tensor([0.0, 0.5, 1.0, 2.5])
    spec = tasks.power_law_spectra(D, alphas, trace=D)
    assert spec.shape == (4, D)
    for a, row in zip(alphas.tolist(), spec, strict=True):
        torch.testing.assert_close(row, torch.diagonal(tasks.power_law_cov(D, a, trace=D)))


@pytest.mark.parametrize("n", [3, 20, 150])
def test_ratios_and_curves_match_theory(n):
    lam = tasks.power_law_cov(D, 1.0, trace=D)
    ev = torch.diagonal(lam)
    torch.testing.assert_close(theory.skill_gammas(ev, n), torch.diagonal(theory.gamma(lam, n)))
    curve = ot.diag_error_curves(ev, n, torch.ones(D), 40)
    torch.testing.assert_close(curve, theory.cot_error_curve(lam, n, SIG, 40), rtol=1e-10, atol=1e-12)


def test_commuting_spectra_recovers_rotated_skills():
    q = tasks.random_rotation(D, seed=4)
    lam = tasks.power_law_cov(D, 1.0, trace=D, rotation=q)
    sig = tasks.diag_cov([3.0, 0.5, 1.0, 1.0, 2.0], rotation=q)
    lv, sv = tasks.commuting_spectra(lam, sig)
    torch.testing.assert_close(lv, torch.diagonal(tasks.power_law_cov(D, 1.0, trace=D)))
    torch.testing.assert_close(sv, torch.tensor([3.0, 0.5, 1.0, 1.0, 2.0], dtype=torch.float64))
    # the per-skill curve equals the matrix formula in the rotated basis
    torch.testing.assert_close(ot.diag_error_curves(lv, 30, sv, 12), theory.cot_error_curve(lam, 30, sig, 12))
    with pytest.raises(ValueError, match="do not commute"):
        tasks.commuting_spectra(lam, tasks.power_law_cov(D, 1.0))


def test_phase_diagram_matches_theory_on_a_grid():
    alphas = torch.linspace(0.0, 3.0, 13)
    ns = torch.tensor([2, 5, 10, 20, 40, 60, 80, 89, 90, 120, 200, 500, 2000])
    spec = tasks.power_law_spectra(D, alphas, trace=D)
    pd = ot.phase_diagram(spec[:, None, :], ns[None, :], torch.ones(D))
    assert pd.overthinks.shape == (13, 13)
    crit = ot.critical_context_len(spec, torch.ones(D))
    assert torch.equal(pd.overthinks, ns[None, :] > crit[:, None])
    assert pd.overthinks.any() and not pd.overthinks.all()
    assert not pd.overthinks[0].any()  # α = 0: Λ = Σ never overthinks
    for i in range(0, 13, 2):
        for j in range(0, 13, 3):
            lam = tasks.power_law_cov(D, float(alphas[i]), trace=D)
            n = int(ns[j])
            assert bool(pd.overthinks[i, j]) == theory.overthinks(lam, n, SIG)
            r = theory.spectral_radius(theory.lsa_precond(lam, n), SIG)
            assert math.isclose(float(pd.radius[i, j]), r, rel_tol=1e-9)
            if pd.overthinks[i, j]:
                k_star = int(pd.best_steps[i, j])
                assert k_star == theory.best_num_steps(lam, n, SIG, max_steps=k_star + 50)
                best = theory.cot_error(lam, n, SIG, k_star)
                assert math.isclose(float(pd.best_error[i, j]), best, rel_tol=1e-9)
            else:
                assert math.isinf(float(pd.best_steps[i, j]))


def test_phase_diagram_finds_late_minima_exactly():
    """Just past the boundary k* is large; the bisection must agree with a brute-force argmin."""
    ev = torch.diagonal(tasks.power_law_cov(D, 1.0, trace=D))
    n_c = float(ot.critical_context_len(ev, torch.ones(D)))
    n = math.floor(n_c) + 1
    pd = ot.phase_diagram(ev, n, torch.ones(D))
    k_star = int(pd.best_steps)
    assert k_star > 5
    curve = ot.diag_error_curves(ev, n, torch.ones(D), 3 * k_star)
    assert int(curve.argmin()) == k_star
    assert (curve[k_star + 1 :].diff() > 0).all()  # convex: rises for ever after k*


def test_critical_length_is_the_2_gamma_condition():
    ev = torch.diagonal(tasks.power_law_cov(D, 1.0, trace=D))
    n_c = float(ot.critical_context_len(ev, torch.ones(D)))
    below, above = math.floor(n_c), math.floor(n_c) + 1
    assert not ot.overthinking_skills(ev, below, torch.ones(D)).any()
    mask = ot.overthinking_skills(ev, above, torch.ones(D))
    assert mask.tolist() == [False] * (D - 1) + [True]  # only the weakest skill
    assert math.isinf(float(ot.critical_context_len(ev, ev)))  # Σ = Λ never


def test_missing_skill_trained_vs_formula():
    ev = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0], dtype=torch.float64)
    lam = tasks.diag_cov(ev)
    n = 40  # tr Λ = 5, ridge value n/tr = 8 on the missing skill: ratio 8 > 2
    r_formula = ot.skill_ratios(ev, n, torch.ones(D), "formula")
    r_trained = ot.skill_ratios(ev, n, torch.ones(D), "trained")
    assert math.isclose(float(r_formula[-1]), n / 5.0)
    assert float(r_trained[-1]) == 0.0
    torch.testing.assert_close(r_formula[:-1], r_trained[:-1])
    # per-direction errors of the two preconditioners
    per_t = theory.per_direction_error(theory.trained_precond(lam, n), SIG, 10)
    per_f = theory.per_direction_error(theory.lsa_precond(lam, n), SIG, 10)
    torch.testing.assert_close(per_t.sum(-1), theory.error_curve(theory.trained_precond(lam, n), SIG, 10))
    torch.testing.assert_close(per_t[:, -1], torch.ones(11, dtype=torch.float64))
    assert per_f[-1, -1] > 1e10
    pd_t = ot.phase_diagram(ev, n, torch.ones(D), "trained")
    pd_f = ot.phase_diagram(ev, n, torch.ones(D), "formula")
    assert not bool(pd_t.overthinks) and float(pd_t.best_error) == 1.0
    assert bool(pd_f.overthinks)
    assert math.isinf(float(ot.critical_context_len(ev, torch.ones(D), "trained")))
    assert math.isclose(float(ot.critical_context_len(ev, torch.ones(D), "formula")), 2 * 5.0 / 1.0)


def test_per_direction_error_matches_monte_carlo():
    lam = tasks.power_law_cov(D, 1.0, trace=D, rotation=tasks.random_rotation(D, seed=1))
    G = theory.lsa_precond(lam, 30)
    per = theory.per_direction_error(G, SIG, 6)
    torch.testing.assert_close(per.sum(-1), theory.error_curve(G, SIG, 6))
    # Monte Carlo over w ~ N(0, I) of the population iteration (Ŝ = Σ): e_k = −M^k w
    w = torch.randn(200_000, D, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    M = torch.eye(D, dtype=torch.float64) - G @ SIG
    e = -w
    for _ in range(3):
        e = e @ M.T
    sq = e**2
    mean, se = sq.mean(0), sq.std(0) / sq.shape[0] ** 0.5
    assert ((mean - per[3]).abs() <= 4 * se).all()
    assert (se < 0.01 * per[3]).all()  # the check has teeth


def test_trained_on_a_singular_cov_keeps_the_missing_column_zero():
    """SGD from zero: no gradient reaches V31's column of a missing skill (x has no component there)."""
    ev = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0], dtype=torch.float64)
    lam = tasks.diag_cov(ev)
    n = 10
    model = StructuredLSA(D)
    cfg = TrainConfig(train_steps=150, batch_size=256, lr=0.9 * theory.max_stable_lr(lam, n), progress=False, seed=1)
    train_lsa(model, TrainTask(lam, n), cfg)
    G = model.precond.detach()
    assert float(G[:, -1].abs().max()) < 1e-12  # zero to float precision (exactly 0 on our CPUs)
    target = theory.trained_precond(lam, n)
    assert float((G - target).norm() / target.norm()) < 0.03


def test_bad_input_raises():
    with pytest.raises(ValueError, match="precond"):
        ot.skill_ratios(torch.ones(3), 5, torch.ones(3), precond="magic")
    with pytest.raises(ValueError, match="test_eigvals"):
        ot.skill_ratios(torch.ones(3), 5, torch.ones(4))
    with pytest.raises(ValueError, match="context_lens"):
        ot.skill_ratios(torch.ones(3), 0, torch.ones(3))
    with pytest.raises(ValueError, match="context_lens"):
        ot.phase_diagram(torch.ones(4, 3), torch.ones(5) * 3, torch.ones(3))
    with pytest.raises(ValueError, match="train_eigvals"):
        ot.diag_error_curves(-torch.ones(3), 5, torch.ones(3), 4)
    with pytest.raises(ValueError, match="zero spectrum"):
        ot.critical_context_len(torch.zeros(3), torch.ones(3))


def test_divergent_diag_curve_is_refused_where_it_overflows():
    """An overthinking skill with (1 − r)² = a > 1 overflows float64 past k = log(1.8e308)/log(a)."""
    ev = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    a = float(((1 - ot.skill_ratios(ev, 6, 1e4 * ev)) ** 2).max())
    k_over = math.ceil(math.log(torch.finfo(torch.float64).max) / math.log(a))
    assert bool(torch.isfinite(ot.diag_error_curves(ev, 6, 1e4 * ev, k_over - 1)).all())
    with pytest.raises(ValueError, match=rf"overflows torch.float64 at step k = {k_over} \(`max_steps`=400\); "
                                         rf"lower `max_steps` to at most {k_over - 1}.*\(1 − r_i\)²"):
        ot.diag_error_curves(ev, 6, 1e4 * ev, 400)
    # phase_diagram still finds k* of the same curve (no overflow in the sign of the increment)
    assert bool(ot.phase_diagram(ev, 6, 1e4 * ev).overthinks)
