"""The trainer core: what every training loop of the library shares.

:func:`tts_lib.train.train_lsa`, :func:`tts_lib.cot_training.train_lsa_cot`,
:func:`tts_lib.gpt2_trainer.train_gpt2` and Chapter 10's :func:`tts_lib.lm.train_lm` own their
model, loss and data (the first three draw prompts with a :class:`tts_lib.prompts.PromptSampler`)
and hand each step's loss to one :class:`OptimizerStep`, which owns the rest:

* the optimiser (:data:`OPTIMIZERS`: plain SGD, Adam, or AdamW with weight decay on the
  weight matrices only, as nanoGPT);
* the learning-rate schedule (:func:`lr_factor`: optional linear warm-up, then constant or
  a cosine decay to ``final_lr_frac``);
* one divergence rule (:data:`DIVERGENCE_FACTOR`): a NaN/inf loss, or one above
  ``DIVERGENCE_FACTOR`` times the first step's loss, stops the run with a
  :class:`TrainingDivergedError` whose message says what to lower;
* optional gradient-norm clipping.

The order of one step is fixed (value, divergence check, zero the gradients, backward, clip,
learning rate of this step, optimiser step), so a seed gives the same losses whichever
trainer runs it (``tests/test_trainer.py`` pins losses recorded before the trainers
shared this core).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from ._checks import InputTypeError, check_pos_int, check_positive, check_real

#: the optimisers a trainer may use (``torch.optim.SGD`` without momentum, ``torch.optim.Adam``,
#: ``torch.optim.AdamW``)
OPTIMIZERS = ("sgd", "adam", "adamw")
#: the learning-rate schedules of :func:`lr_factor`
LR_SCHEDULES = ("constant", "cosine")
#: the divergence rule: a loss above this multiple of the first step's loss (or NaN/inf)
DIVERGENCE_FACTOR = 1e6


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN/inf or blew up; lower the learning rate.

    Defined in Chapter 3.
    """


def lr_factor(
    step: int, train_steps: int, lr_schedule: str, *, warmup: int = 0, final_lr_frac: float = 0.0
) -> float:
    """The learning-rate multiplier at optimiser step ``step`` (0-based) of ``train_steps``.

    ``warmup`` linear warm-up steps, then ``"constant"`` (1) or ``"cosine"``: from 1 down to
    ``final_lr_frac`` at step ``train_steps``. The LSA trainers decay to 0 (no warm-up);
    the GPT-2 trainer warms up for 200 steps and decays to 10 % (a choice of ours, for Adam).

    Defined in Chapter 3.
    """
    step = check_pos_int(step, "step", minimum=0)
    train_steps = check_pos_int(train_steps, "train_steps")
    lr_schedule = check_schedule(lr_schedule, "lr_schedule")
    warmup = check_pos_int(warmup, "warmup", minimum=0)
    final_lr_frac = check_real(final_lr_frac, "final_lr_frac", minimum=0.0, maximum=1.0)
    return _lr_factor(step, train_steps, lr_schedule, warmup, final_lr_frac)


def _lr_factor(step: int, train_steps: int, lr_schedule: str, warmup: int, final_lr_frac: float) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if lr_schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(train_steps - warmup, 1)
    cos = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return final_lr_frac + (1.0 - final_lr_frac) * cos


def check_schedule(lr_schedule: Any, name: str = "lr_schedule") -> str:
    """``lr_schedule`` if it is one of :data:`LR_SCHEDULES` (a ValueError naming ``name`` otherwise).

    Defined in Chapter 3.
    """
    if not isinstance(lr_schedule, str) or lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"`{name}` must be 'constant' or 'cosine', got {lr_schedule!r}")
    return lr_schedule


def check_optimizer(optimizer: Any, name: str = "optimizer") -> str:
    """``optimizer`` if it is one of :data:`OPTIMIZERS` (a ValueError naming ``name`` otherwise).

    Defined in Chapter 3.
    """
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(f"`{name}` must be 'sgd', 'adam' or 'adamw', got {optimizer!r}")
    return optimizer


def diverged(loss: float, first_loss: float) -> bool:
    """The divergence rule: ``loss`` is NaN/inf or above ``DIVERGENCE_FACTOR × first_loss``.

    Defined in Chapter 3.
    """
    for name, value in (("loss", loss), ("first_loss", first_loss)):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputTypeError(f"`{name}` must be a number (a loss), got {value!r}")
    loss = float(loss)
    first_loss = float(first_loss)
    return not math.isfinite(loss) or loss > DIVERGENCE_FACTOR * max(first_loss, 1e-12)


class OptimizerStep:
    """The optimiser, the schedule and the divergence rule of one training run.

    Args:
        params: the parameters to train.
        lr: peak learning rate (> 0).
        train_steps: the run's length (for the cosine schedule).
        optimizer: ``"sgd"``, ``"adam"`` or ``"adamw"``.
        weight_decay: AdamW's decoupled weight decay, applied to the parameters with two or
            more dimensions (weight matrices, embeddings), not to biases and layer norms.
        betas: Adam's and AdamW's moment decay rates (torch's default ``(0.9, 0.999)``).
        lr_schedule: ``"constant"`` or ``"cosine"``; ``warmup`` and ``final_lr_frac`` as in
            :func:`lr_factor`.
        grad_clip: clip the gradient norm to this value before each step (None: never).
        what: the run's name in the divergence message (e.g. ``"GPT-2 training"``).
        advice: what the divergence message tells the user to do (e.g. which ``lr`` to lower).

    Call it once per step with the step's loss: it returns the loss as a float (or the
    ``value`` given, e.g. a loss averaged over processes) and raises
    :class:`TrainingDivergedError` instead of stepping when the rule fires.

    Defined in Chapter 3.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        train_steps: int,
        optimizer: str = "sgd",
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        lr_schedule: str = "constant",
        warmup: int = 0,
        final_lr_frac: float = 0.0,
        grad_clip: float | None = None,
        what: str = "training",
        advice: str = "lower the learning rate",
    ) -> None:
        try:
            self.params = list(params)
        except TypeError as err:
            raise InputTypeError(
                f"`params` must be an iterable of parameters (model.parameters()), got {params!r}"
            ) from err
        if not self.params or not all(isinstance(p, torch.Tensor) for p in self.params):
            raise InputTypeError("`params` must be a non-empty iterable of parameters (model.parameters())")
        self.lr = check_positive(lr, "lr")
        self.train_steps = check_pos_int(train_steps, "train_steps")
        self.lr_schedule = check_schedule(lr_schedule)
        self.warmup = check_pos_int(warmup, "warmup", minimum=0)
        self.final_lr_frac = check_real(final_lr_frac, "final_lr_frac", minimum=0.0, maximum=1.0)
        self.grad_clip = None if grad_clip is None else check_positive(grad_clip, "grad_clip")
        if not isinstance(what, str) or not isinstance(advice, str):
            raise InputTypeError("`what` and `advice` must be strings")
        self.what, self.advice = what, advice
        self.optimizer = _optimizer(self.params, self.lr, check_optimizer(optimizer), weight_decay, betas)
        self.first_loss: float | None = None

    def factor(self, step: int) -> float:
        """The learning-rate multiplier of step ``step`` (:func:`lr_factor` of this run)."""
        step = check_pos_int(step, "step", minimum=0)
        return _lr_factor(step, self.train_steps, self.lr_schedule, self.warmup, self.final_lr_frac)

    def __call__(self, step: int, loss: torch.Tensor, value: float | None = None) -> float:
        """Check ``loss`` (a 0-d tensor) against the divergence rule, back-propagate it and step."""
        value = float(loss.detach()) if value is None else float(value)
        if self.first_loss is None:
            self.first_loss = value
        if diverged(value, self.first_loss):
            raise TrainingDivergedError(
                f"{self.what} diverged at step {step} (loss {value:.3g}, started at {self.first_loss:.3g}; "
                f"rule: NaN/inf or > {DIVERGENCE_FACTOR:g}× the first); {self.advice}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * self.factor(step)
        self.optimizer.step()
        return value


def _optimizer(
    params: list[torch.Tensor], lr: float, name: str, weight_decay: Any, betas: Any
) -> torch.optim.Optimizer:
    """torch's optimiser ``name``; AdamW decays the parameters with ``ndim ≥ 2`` only."""
    weight_decay = check_real(weight_decay, "weight_decay", minimum=0.0, maximum=10.0)
    if weight_decay and name != "adamw":
        raise ValueError(f"`weight_decay` needs optimizer='adamw', got optimizer={name!r}")
    if not (isinstance(betas, tuple) and len(betas) == 2):
        raise InputTypeError(f"`betas` must be a pair of floats such as (0.9, 0.999), got {betas!r}")
    betas = tuple(check_real(b, "betas", minimum=0.0, maximum=1.0) for b in betas)
    if max(betas) == 1.0:
        raise ValueError(f"`betas` must lie in [0, 1), got {betas!r}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)
