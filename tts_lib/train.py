"""Training the LSA on single-step prompts (no CoT during training).

Loss: ``½ E‖ŵ1 − w‖²`` over fresh prompts, ``ŵ1`` the model's prediction from ``ŵ0 = 0``.
A run draws every batch from one seeded CPU generator (``seed=``, or ``TrainConfig.seed`` when
it is None), so the same seed gives the same run on the same machine. The optimiser, the
schedule and the divergence rule are the trainer core's (:mod:`tts_lib.trainer`), the prompts a
:class:`~tts_lib.prompts.PromptSampler`'s; this module owns the LSA's loss and task mixture.
A task mixture trains on prompts whose task ``ℓ`` (covariance ``Λ_ℓ``, context length ``n_ℓ``)
is drawn with probability ``π_ℓ``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ._checks import (
    FLOAT_DTYPES,
    InputTypeError,
    check_cov,
    check_memory,
    check_pos_int,
    check_positive,
    check_real,
    make_generator,
)
from .lsa import LinearSelfAttention, StructuredLSA
from .prompts import PromptSampler
from .trainer import OptimizerStep, TrainingDivergedError, check_optimizer, check_schedule

__all__ = [
    "MAX_TRAIN_STEPS",
    "History",
    "TrainConfig",
    "TrainTask",
    "TrainingDivergedError",
    "check_run",
    "check_tasks",
    "optimizer_step",
    "train_lsa",
]


#: most optimisation steps of one :func:`train_lsa` run
MAX_TRAIN_STEPS = 1_000_000
#: largest label-noise standard deviation of a :class:`TrainTask`
MAX_NOISE_STD = 1e100


@dataclass
class TrainTask:
    """One training task: feature covariance, context length, mixture weight, label noise std.

    Defined in Chapter 3.
    """

    cov: Any
    context_len: int
    weight: float = 1.0
    noise_std: float = 0.0


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_lsa`.

    Defined in Chapter 3.
    """

    train_steps: int = 1000
    batch_size: int = 512
    lr: float = 0.1
    optimizer: str = "sgd"  # "sgd" or "adam"
    lr_schedule: str = "cosine"  # "constant" or "cosine" (see ``trainer.lr_factor``)
    final_lr_frac: float = 0.0  # the cosine decays to this fraction of lr (0: to zero)
    seed: int = 0  # the run's seed when the trainer's own ``seed=`` is None
    log_every: int = 10
    progress: bool = True


@dataclass
class History:
    """Loss per step and the tracked metric every ``log_every`` steps.

    Defined in Chapter 3.
    """

    losses: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)


def check_tasks(tasks: TrainTask | Sequence[TrainTask], dim: int, name: str = "tasks") -> list[TrainTask]:
    """One :class:`TrainTask` or a non-empty list of them, each checked against dimension ``dim``
    (covariance, context length, weight, label noise): returned as a list of checked copies.

    Defined in Chapter 3.
    """
    dim = check_pos_int(dim, "dim")
    if isinstance(tasks, TrainTask):
        tasks = [tasks]
    elif isinstance(tasks, (list, tuple)):
        tasks = list(tasks)
    else:
        raise InputTypeError(f"`{name}` must be a TrainTask or a list of them, got {type(tasks).__name__}")
    if not tasks:
        raise ValueError(f"`{name}` must contain at least one TrainTask")
    out = []
    for i, t in enumerate(tasks):
        where = f"{name}[{i}]" if len(tasks) > 1 or name == "tasks" else name
        if not isinstance(t, TrainTask):
            raise ValueError(f"`{where}` must be a TrainTask(cov, context_len, weight)")
        cov = check_cov(t.cov, f"{where}.cov", dim=dim)
        n = check_pos_int(t.context_len, f"{where}.context_len")
        weight = check_real(t.weight, f"{where}.weight", minimum=0.0)
        noise_std = check_real(t.noise_std, f"{where}.noise_std", minimum=0.0, maximum=MAX_NOISE_STD)
        out.append(TrainTask(cov, n, weight, noise_std))
    if sum(t.weight for t in out) <= 0:
        raise ValueError(f"`{name}` weights must have a positive sum")
    return out


def check_run(
    model: Any, config: TrainConfig | None, seed: int | torch.Generator | None = None
) -> tuple[TrainConfig, torch.Generator]:
    """Check an LSA trainer's ``model`` (float32/float64), ``config`` (every field) and ``seed``;
    return the checked config (the default :class:`TrainConfig` when None) and the run's CPU
    generator: from ``seed`` when given, else from ``config.seed``.

    Defined in Chapter 3.
    """
    if not isinstance(model, LinearSelfAttention):
        raise InputTypeError(f"`model` must be a StructuredLSA or FullLSA, got {type(model).__name__}")
    dtype = next(model.parameters()).dtype
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"`model` has dtype {dtype}; train in float32 or float64 (model.double())")
    if config is not None and not isinstance(config, TrainConfig):
        hint = " (use TrainConfig(**config))" if isinstance(config, dict) else ""
        raise InputTypeError(f"`config` must be a TrainConfig or None, got {type(config).__name__}{hint}")
    cfg = config or TrainConfig()
    checked = TrainConfig(
        train_steps=check_pos_int(cfg.train_steps, "config.train_steps", maximum=MAX_TRAIN_STEPS),
        batch_size=check_pos_int(cfg.batch_size, "config.batch_size"),
        lr=check_positive(cfg.lr, "config.lr"),
        optimizer=check_optimizer(cfg.optimizer, "config.optimizer"),
        lr_schedule=check_schedule(cfg.lr_schedule, "config.lr_schedule"),
        final_lr_frac=check_real(cfg.final_lr_frac, "config.final_lr_frac", minimum=0.0, maximum=1.0),
        seed=cfg.seed,
        log_every=check_pos_int(cfg.log_every, "config.log_every"),
        progress=cfg.progress,
    )
    if not isinstance(cfg.progress, bool):
        raise InputTypeError(f"`config.progress` must be True or False, got {cfg.progress!r}")
    gen = make_generator(cfg.seed, "config.seed") if seed is None else make_generator(seed, "seed")
    return checked, gen


def optimizer_step(model: LinearSelfAttention, cfg: TrainConfig, *, what: str, advice: str) -> OptimizerStep:
    """The :class:`~tts_lib.trainer.OptimizerStep` of an LSA run with the checked config ``cfg``
    (the schedule decays to ``cfg.final_lr_frac``; no warm-up, no clipping).

    Defined in Chapter 3.
    """
    if not isinstance(model, torch.nn.Module):
        raise InputTypeError(f"`model` must be an LSA (torch.nn.Module), got {type(model).__name__}")
    if not isinstance(cfg, TrainConfig):
        raise InputTypeError(f"`cfg` must be a TrainConfig, got {type(cfg).__name__}")
    return OptimizerStep(
        model.parameters(), lr=cfg.lr, train_steps=cfg.train_steps, optimizer=cfg.optimizer,
        lr_schedule=cfg.lr_schedule, final_lr_frac=cfg.final_lr_frac, what=what, advice=advice,
    )


def _divergence_advice(model: LinearSelfAttention, cfg: TrainConfig) -> str:
    """What to lower when ``train_lsa`` diverges, by optimiser and model."""
    if cfg.optimizer == "sgd" and isinstance(model, StructuredLSA):
        hint = (
            "for SGD on the structured LSA two limits apply: "
            "theory.max_stable_lr(train_cov, context_len) for full-batch gradient descent, "
            f"and the smaller theory.max_stable_lr_sgd(train_cov, context_len, {cfg.batch_size}) for "
            f"minibatches of {cfg.batch_size} (about a fifth of the full-batch limit at batch 1)"
        )
    elif cfg.optimizer == "sgd":
        hint = "the full LSA's loss is not quadratic, so no closed-form limit applies: try 10x smaller"
    else:
        hint = "Adam's step is about config.lr per parameter whatever the gradient: try 10x smaller"
    return f"lower config.lr (now {cfg.lr:g}) — {hint}"


def _mixture_counts(probs: torch.Tensor, batch: int, gen: torch.Generator) -> list[int]:
    """How many of ``batch`` prompts each task gets this step (one multinomial draw)."""
    if len(probs) == 1:
        return [batch]
    idx = torch.multinomial(probs, batch, replacement=True, generator=gen)
    return torch.bincount(idx, minlength=len(probs)).tolist()


def train_lsa(
    model: LinearSelfAttention,
    tasks: TrainTask | Sequence[TrainTask],
    config: TrainConfig | None = None,
    *,
    track: Callable[[LinearSelfAttention], float] | None = None,
    seed: int | torch.Generator | None = None,
) -> History:
    """Train ``model`` in place on fresh prompts; returns the :class:`History`.

    Args:
        model: a :class:`~tts_lib.lsa.StructuredLSA` or :class:`~tts_lib.lsa.FullLSA`;
            prompts are created on the model's device and dtype.
        tasks: one :class:`TrainTask` or a mixture of them.
        config: :class:`TrainConfig`.
        track: optional ``model -> float`` recorded every ``config.log_every`` steps
            (e.g. the distance of the learned preconditioner to ``Γ⁻¹``).
        seed: an int, or a CPU ``torch.Generator`` to continue its stream; when None,
            ``config.seed`` (so ``TrainConfig(seed=s)`` and ``seed=s`` give the same run).

    Raises:
        TrainingDivergedError: when the loss becomes NaN/inf or exceeds 1e6 × its start.

    Defined in Chapter 3.
    """
    cfg, gen = check_run(model, config, seed)
    if track is not None and not callable(track):
        raise InputTypeError(f"`track` must be a function model -> float or None, got {type(track).__name__}")
    task_list = check_tasks(tasks, model.dim)
    param = next(model.parameters())
    batch = cfg.batch_size
    for t in task_list:
        check_memory(batch * t.context_len * model.dim, "config.batch_size", what="one batch of prompts")
    step_fn = optimizer_step(model, cfg, what="training", advice=_divergence_advice(model, cfg))
    # one sampler per task, all drawing from the run's one generator
    samplers = [PromptSampler(t.cov, seed=gen, device=param.device, dtype=param.dtype) for t in task_list]
    probs = torch.tensor([t.weight for t in task_list], dtype=torch.float64)
    probs = probs / probs.sum()
    hist = History()
    for step in tqdm(range(cfg.train_steps), disable=not cfg.progress, desc="train LSA", leave=False):
        counts = _mixture_counts(probs, batch, gen)
        loss = torch.zeros((), device=param.device, dtype=param.dtype)
        for task, sampler, count in zip(task_list, samplers, counts, strict=True):
            if count == 0:
                continue
            pr = sampler.draw(task.context_len, count, noise_std=task.noise_std)
            loss = loss + 0.5 * ((model.predict(pr) - pr.w) ** 2).sum() / batch
        hist.losses.append(step_fn(step, loss))
        if track is not None and (step % cfg.log_every == 0 or step == cfg.train_steps - 1):
            with torch.no_grad():
                hist.steps.append(step)
                hist.metric.append(check_real(track(model), "track(model)"))  # finite, per log step
    return hist
