"""Training the LSA on single-step prompts (no CoT during training).

Loss: ``½ E‖ŵ1 − w‖²`` over fresh prompts, ``ŵ1`` the model's prediction from ``ŵ0 = 0``.
A run draws every batch from one seeded CPU generator, so the same seed gives the same
run on the same machine. A task mixture trains on prompts whose task ``ℓ`` (covariance
``Λ_ℓ``, context length ``n_ℓ``) is drawn with probability ``π_ℓ``.
"""

from __future__ import annotations

import math
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
from .prompts import _cov_sqrt, _draw_prompts


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN/inf or blew up; lower the learning rate.

    Defined in Chapter 3.
    """


#: most optimisation steps of one :func:`train_lsa` run
MAX_TRAIN_STEPS = 1_000_000


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
    lr_schedule: str = "cosine"  # "constant" or "cosine" (see ``_lr_factor``)
    final_lr_frac: float = 0.0  # the cosine decays to this fraction of lr (0: to zero)
    seed: int = 0
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


def _as_tasks(tasks: TrainTask | Sequence[TrainTask], dim: int) -> list[TrainTask]:
    if isinstance(tasks, TrainTask):
        tasks = [tasks]
    elif isinstance(tasks, (list, tuple)):
        tasks = list(tasks)
    else:
        raise InputTypeError(f"`tasks` must be a TrainTask or a list of them, got {type(tasks).__name__}")
    if not tasks:
        raise ValueError("`tasks` must contain at least one TrainTask")
    out = []
    for i, t in enumerate(tasks):
        if not isinstance(t, TrainTask):
            raise ValueError(f"`tasks[{i}]` must be a TrainTask(cov, context_len, weight)")
        cov = check_cov(t.cov, f"tasks[{i}].cov", dim=dim)
        n = check_pos_int(t.context_len, f"tasks[{i}].context_len")
        weight = check_real(t.weight, f"tasks[{i}].weight", minimum=0.0)
        noise_std = check_real(t.noise_std, f"tasks[{i}].noise_std", minimum=0.0)
        out.append(TrainTask(cov, n, weight, noise_std))
    if sum(t.weight for t in out) <= 0:
        raise ValueError("`tasks` weights must have a positive sum")
    return out


def _diverged(loss: float, first_loss: float) -> bool:
    """The LSA trainers' divergence rule: a NaN/inf loss, or one 1e6 times its first value."""
    return not math.isfinite(loss) or loss > 1e6 * max(first_loss, 1e-12)


def _lr_factor(
    step: int, train_steps: int, lr_schedule: str, *, warmup: int = 0, final_lr_frac: float = 0.0
) -> float:
    """The learning-rate multiplier at optimiser step ``step`` (both trainers use it).

    ``warmup`` linear warm-up steps, then ``"constant"`` (1) or ``"cosine"``: from 1 down to
    ``final_lr_frac`` at step ``train_steps``. The LSA trainers decay to 0 (no warm-up);
    the GPT-2 trainer warms up for 200 steps and decays to 10 % (a choice of ours, for Adam).
    Unchecked: the trainers check their configurations first.
    """
    if warmup and step < warmup:
        return (step + 1) / warmup
    if lr_schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(train_steps - warmup, 1)
    cos = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return final_lr_frac + (1.0 - final_lr_frac) * cos


def _check_run(
    model: Any, config: TrainConfig | None
) -> tuple[TrainConfig, int, int, float, int]:
    """Check a trainer's ``model`` and ``config``; return (config, train_steps, batch, lr, log_every)."""
    if not isinstance(model, LinearSelfAttention):
        raise InputTypeError(f"`model` must be a StructuredLSA or FullLSA, got {type(model).__name__}")
    if config is not None and not isinstance(config, TrainConfig):
        hint = " (use TrainConfig(**config))" if isinstance(config, dict) else ""
        raise InputTypeError(f"`config` must be a TrainConfig or None, got {type(config).__name__}{hint}")
    cfg = config or TrainConfig()
    train_steps = check_pos_int(cfg.train_steps, "config.train_steps", maximum=MAX_TRAIN_STEPS)
    batch = check_pos_int(cfg.batch_size, "config.batch_size")
    lr = check_positive(cfg.lr, "config.lr")
    log_every = check_pos_int(cfg.log_every, "config.log_every")
    if not isinstance(cfg.progress, bool):
        raise InputTypeError(f"`config.progress` must be True or False, got {cfg.progress!r}")
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"`config.lr_schedule` must be 'constant' or 'cosine', got {cfg.lr_schedule!r}")
    check_real(cfg.final_lr_frac, "config.final_lr_frac", minimum=0.0, maximum=1.0)
    return cfg, train_steps, batch, lr, log_every


def _scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, train_steps: int) -> Any:
    """The LambdaLR of ``_lr_factor`` for an LSA trainer's checked ``cfg``."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: _lr_factor(s, train_steps, cfg.lr_schedule, final_lr_frac=cfg.final_lr_frac)
    )


def train_lsa(
    model: LinearSelfAttention,
    tasks: TrainTask | Sequence[TrainTask],
    config: TrainConfig | None = None,
    *,
    track: Callable[[LinearSelfAttention], float] | None = None,
) -> History:
    """Train ``model`` in place on fresh prompts; returns the :class:`History`.

    Args:
        model: a :class:`~tts_lib.lsa.StructuredLSA` or :class:`~tts_lib.lsa.FullLSA`;
            prompts are created on the model's device and dtype.
        tasks: one :class:`TrainTask` or a mixture of them.
        config: :class:`TrainConfig`.
        track: optional ``model -> float`` recorded every ``config.log_every`` steps
            (e.g. the distance of the learned preconditioner to ``Γ⁻¹``).

    Raises:
        TrainingDivergedError: when the loss becomes NaN/inf or exceeds 1e6 × its start.

    Defined in Chapter 3.
    """
    cfg, train_steps, batch, lr, log_every = _check_run(model, config)
    if track is not None and not callable(track):
        raise InputTypeError(f"`track` must be a function model -> float or None, got {type(track).__name__}")
    task_list = _as_tasks(tasks, model.dim)
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"`model` has dtype {dtype}; train in float32 or float64 (model.double())")
    for t in task_list:
        check_memory(batch * t.context_len * model.dim, "config.batch_size", what="one batch of prompts")
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    elif cfg.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        raise ValueError(f"`config.optimizer` must be 'sgd' or 'adam', got {cfg.optimizer!r}")
    sched = _scheduler(opt, cfg, train_steps)

    gen = make_generator(cfg.seed, "config.seed")
    # validated once (by _as_tasks); the square roots once per task, not every step
    roots = {id(t): _cov_sqrt(t.cov.detach().to("cpu", torch.float64)) for t in task_list}
    probs = torch.tensor([t.weight for t in task_list], dtype=torch.float64)
    probs = probs / probs.sum()
    hist = History()
    first_loss = None
    for step in tqdm(range(train_steps), disable=not cfg.progress, desc="train LSA", leave=False):
        if len(task_list) == 1:
            counts = [batch]
        else:
            idx = torch.multinomial(probs, batch, replacement=True, generator=gen)
            counts = torch.bincount(idx, minlength=len(task_list)).tolist()
        loss = torch.zeros((), device=device, dtype=dtype)
        for task, count in zip(task_list, counts, strict=True):
            if count == 0:
                continue
            pr = _draw_prompts(
                roots[id(task)], task.context_len, count, gen, device, dtype, task.noise_std
            )
            w_hat = model.predict(pr)
            loss = loss + 0.5 * ((w_hat - pr.w) ** 2).sum() / batch
        value = float(loss.detach())
        if first_loss is None:
            first_loss = value
        if _diverged(value, first_loss):
            if cfg.optimizer == "sgd" and isinstance(model, StructuredLSA):
                hint = (
                    "for SGD on the structured LSA two limits apply: "
                    "theory.max_stable_lr(train_cov, context_len) for full-batch gradient descent, "
                    f"and the smaller theory.max_stable_lr_sgd(train_cov, context_len, {batch}) for "
                    f"minibatches of {batch} (about a fifth of the full-batch limit at batch 1)"
                )
            elif cfg.optimizer == "sgd":
                hint = "the full LSA's loss is not quadratic, so no closed-form limit applies: try 10x smaller"
            else:
                hint = "Adam's step is about config.lr per parameter whatever the gradient: try 10x smaller"
            raise TrainingDivergedError(
                f"training diverged at step {step} (loss {value:.3g}, started at {first_loss:.3g}); "
                f"lower config.lr (now {lr:g}) — {hint}"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hist.losses.append(value)
        if track is not None and (step % log_every == 0 or step == train_steps - 1):
            with torch.no_grad():
                hist.steps.append(step)
                metric = check_real(track(model), "track(model)")  # a finite number per log step
                hist.metric.append(metric)
    return hist
