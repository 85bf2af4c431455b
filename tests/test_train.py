import math

import pytest
import torch

from tts_lib import lsa, tasks, theory
from tts_lib.train import TrainConfig, TrainingDivergedError, TrainTask, train_lsa


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_trained_structured_lsa_reaches_gamma_inverse(alpha):
    cov = tasks.power_law_cov(5, alpha, trace=5.0)
    n = 20
    target = theory.lsa_precond(cov, n)
    model = lsa.StructuredLSA(5, init_scale=0.01, seed=1)
    cfg = TrainConfig(train_steps=200, batch_size=1024, lr=0.5 * theory.max_stable_lr(cov, n), seed=0, progress=False)
    hist = train_lsa(model, TrainTask(cov, n), cfg, track=lambda m: _rel(m.precond.detach(), target))
    assert _rel(model.precond.detach(), target) < 0.02
    assert hist.metric[-1] < 0.1 * hist.metric[0]
    # the final loss is the optimum ½ E‖ŵ1 − w‖² of Theorem 3.1 (test prompts of n examples)
    optimum = 0.5 * theory.cot_error(cov, n, cov, 1, test_len=n)
    assert abs(sum(hist.losses[-50:]) / 50 - optimum) < 0.05 * optimum


def test_same_seed_same_run():
    cov = tasks.power_law_cov(3, 1.0)
    cfg = TrainConfig(train_steps=20, batch_size=64, lr=0.05, seed=7, progress=False)
    runs = []
    for _ in range(2):
        model = lsa.StructuredLSA(3)
        runs.append(train_lsa(model, TrainTask(cov, 8), cfg).losses)
    assert runs[0] == runs[1]


def test_mixture_training_reaches_p_q_inverse():
    lam1 = tasks.power_law_cov(4, 1.5, trace=4.0, rotation=tasks.random_rotation(4, seed=0))
    lam2 = tasks.isotropic_cov(4)
    mix = [TrainTask(lam1, 5, 0.7), TrainTask(lam2, 30, 0.3)]
    target = theory.multitask_precond([lam1, lam2], [5, 30], [0.7, 0.3])
    lr = 0.5 * min(theory.max_stable_lr(lam1, 5), theory.max_stable_lr(lam2, 30))
    model = lsa.StructuredLSA(4)
    train_lsa(model, mix, TrainConfig(train_steps=400, batch_size=1024, lr=lr, seed=2, progress=False))
    assert _rel(model.precond.detach(), target) < 0.03
    wrong = torch.linalg.inv(0.7 * theory.gamma(lam1, 5) + 0.3 * theory.gamma(lam2, 30))
    assert _rel(model.precond.detach(), wrong) > 3 * _rel(model.precond.detach(), target)


def test_step_size_condition():
    cov = tasks.power_law_cov(4, 1.0, trace=4.0)
    n = 10
    lr_max = theory.max_stable_lr(cov, n)
    const = dict(batch_size=2048, lr_schedule="constant", seed=0, progress=False)
    model = lsa.StructuredLSA(4)
    train_lsa(model, TrainTask(cov, n), TrainConfig(train_steps=150, lr=0.9 * lr_max, **const))
    assert _rel(model.precond.detach(), theory.lsa_precond(cov, n)) < 0.1
    with pytest.raises(TrainingDivergedError, match="lower config.lr"):
        train_lsa(lsa.StructuredLSA(4), TrainTask(cov, n), TrainConfig(train_steps=2000, lr=1.3 * lr_max, **const))


def test_minibatch_step_size_limit():
    """max_stable_lr is the full-batch limit; SGD at batch B has the smaller mean-square limit."""
    cov = tasks.power_law_cov(4, 1.0, trace=4.0)
    n = 20
    full = theory.max_stable_lr(cov, n)
    limits = [theory.max_stable_lr_sgd(cov, n, b) for b in (1, 4, 64, 10**6)]
    assert limits == sorted(limits) and limits[-1] <= full
    assert abs(limits[-1] / full - 1) < 1e-4  # B -> ∞: the full-batch limit
    assert 0.15 < limits[0] / full < 0.3  # batch 1: about a fifth of it
    assert abs(theory.max_stable_lr_sgd(cov, n, 1, seed=1) / limits[0] - 1) < 0.03  # MC estimate
    const = dict(batch_size=1, lr_schedule="constant", progress=False)
    model = lsa.StructuredLSA(4)
    train_lsa(model, TrainTask(cov, n), TrainConfig(train_steps=2000, lr=0.5 * limits[0], seed=1, **const))
    assert _rel(model.precond.detach(), theory.lsa_precond(cov, n)) < 0.4  # stable (SGD noise remains)
    with pytest.raises(TrainingDivergedError, match="max_stable_lr_sgd"):  # batch 1 at 0.5·η_max
        train_lsa(lsa.StructuredLSA(4), TrainTask(cov, n),
                  TrainConfig(train_steps=4000, lr=0.5 * full, seed=1, **const))


@pytest.mark.parametrize(
    ("model", "optimizer", "hint"),
    [
        (lambda: lsa.StructuredLSA(3), "sgd", "max_stable_lr"),
        (lambda: lsa.StructuredLSA(3), "adam", "Adam"),
        (lambda: lsa.FullLSA(3, init_std=1.0), "sgd", "full LSA"),
    ],
)
def test_divergence_message_fits_the_run(model, optimizer, hint):
    cfg = TrainConfig(train_steps=300, batch_size=16, lr=1e4, optimizer=optimizer, lr_schedule="constant",
                      progress=False)
    with pytest.raises(TrainingDivergedError, match="lower config.lr") as info:
        train_lsa(model(), TrainTask(tasks.isotropic_cov(3), 5), cfg)
    assert hint in str(info.value)
    if hint != "max_stable_lr":  # the SGD limit of the structured LSA says nothing about these runs
        assert "max_stable_lr" not in str(info.value)


def test_nan_loss_stops_with_a_clear_error():
    model = lsa.StructuredLSA(3)
    with torch.no_grad():
        model.v31.fill_(math.nan)
    with pytest.raises(TrainingDivergedError, match="diverged at step 0"):
        train_lsa(model, TrainTask(tasks.isotropic_cov(3), 5), TrainConfig(train_steps=3, progress=False))


@pytest.mark.parametrize(
    ("tasks_arg", "cfg", "match"),
    [
        ([], TrainConfig(), "at least one"),
        (TrainTask(tasks.isotropic_cov(2), 5), TrainConfig(), r"must be \(3, 3\)"),
        (TrainTask(tasks.isotropic_cov(3), 0), TrainConfig(), "context_len"),
        (TrainTask(tasks.isotropic_cov(3), 5), TrainConfig(lr=0.0), "config.lr"),
        (TrainTask(tasks.isotropic_cov(3), 5), TrainConfig(optimizer="lbfgs"), "optimizer"),
        (TrainTask(tasks.isotropic_cov(3), 5), TrainConfig(train_steps=0), "train_steps"),
        (TrainTask(tasks.isotropic_cov(3), 5), TrainConfig(final_lr_frac=2.0), "final_lr_frac"),
        (TrainTask(tasks.isotropic_cov(3), 5), TrainConfig(lr_schedule="step"), "lr_schedule"),
        ([TrainTask(tasks.isotropic_cov(3), 5, 0.0)], TrainConfig(), "positive sum"),
    ],
)
def test_bad_arguments(tasks_arg, cfg, match):
    with pytest.raises(ValueError, match=match):
        train_lsa(lsa.StructuredLSA(3), tasks_arg, cfg)


def test_inputs_are_validated_once_not_every_step(monkeypatch):
    """Public functions check, private kernels trust: a training run checks the covariance
    (eigvalsh: by the task check and by its prompt sampler) and takes its square root (an
    eigh) once per run, whatever its length; one cot_error_curve call checks its two
    covariances once each."""
    from tts_lib import lsa, tasks, theory, train

    calls = {"eigvalsh": 0, "eigh": 0}
    for name in calls:
        original = getattr(torch.linalg, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch.linalg, name, counted)
    cov = tasks.power_law_cov(4, 1.0, trace=4.0)
    counts = []
    for steps in (3, 30):
        calls.update(eigvalsh=0, eigh=0)
        cfg = train.TrainConfig(train_steps=steps, batch_size=8, lr=1e-3, progress=False)
        train.train_lsa(lsa.StructuredLSA(4), train.TrainTask(cov, 6), cfg)
        counts.append(dict(calls))
    assert counts[0] == counts[1] and counts[0]["eigh"] == 1 and counts[0]["eigvalsh"] <= 2, counts
    calls.update(eigvalsh=0, eigh=0)
    theory.cot_error_curve(cov, 6, tasks.isotropic_cov(4), 10)
    assert calls["eigvalsh"] == 2, calls


def test_one_learning_rate_schedule_for_both_trainers() -> None:
    """``trainer.lr_factor``: the LSA default decays to 0, the GPT-2 default warms up and ends
    at 10 %; the LSA trainer's optimiser follows it."""
    from tts_lib.gpt2_train import GPT2TrainConfig
    from tts_lib.trainer import lr_factor as _lr_factor

    assert _lr_factor(0, 100, "cosine") == 1.0 and _lr_factor(100, 100, "cosine") == 0.0
    assert abs(_lr_factor(50, 100, "cosine") - 0.5) < 1e-12
    g = GPT2TrainConfig(train_steps=1000, warmup=200)
    f = [_lr_factor(s, 1000, g.lr_schedule, warmup=200, final_lr_frac=g.final_lr_frac) for s in (0, 199, 200, 1000)]
    assert abs(f[0] - 1 / 200) < 1e-12 and f[1] == 1.0 and f[2] == 1.0 and abs(f[3] - 0.1) < 1e-12
    assert _lr_factor(500, 1000, "constant", final_lr_frac=0.5) == 1.0
    # the LSA trainer follows it: a cosine that ends at 100 % is the constant schedule
    def run(**kw):
        cfg = TrainConfig(train_steps=30, batch_size=16, lr=0.05, seed=4, progress=False, **kw)
        return train_lsa(lsa.StructuredLSA(3), TrainTask(tasks.isotropic_cov(3), 5), cfg).losses

    assert run(lr_schedule="cosine", final_lr_frac=1.0) == run(lr_schedule="constant")
    assert run(lr_schedule="cosine", final_lr_frac=0.0) != run(lr_schedule="constant")
