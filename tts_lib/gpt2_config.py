"""GPT-2 training configurations and presets (no training code: checkpoints load with this).

:class:`GPT2TrainConfig` (the protocol of :func:`tts_lib.gpt2_trainer.train_gpt2`, with its
optional :class:`Curriculum`), the named presets :data:`PRESETS` and :func:`preset` (a
model and a training configuration each), :func:`config_from_dict` (a manifest's configs)
and :class:`TrainResult` (what a run returns and a manifest records). The model's own
configuration, :class:`~tts_lib.gpt2.GPT2RegressorConfig`, lives with the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from ._checks import InputTypeError, check_pos_int, check_real
from .gpt2 import GPT2RegressorConfig
from .tasks import NAMED_COVS

__all__ = [
    "Curriculum",
    "GPT2TrainConfig",
    "MAX_BATCH",
    "MAX_LR",
    "MAX_TRAIN_STEPS",
    "PRESETS",
    "TARGETS",
    "TRAIN_COVS",
    "TrainResult",
    "config_from_dict",
    "preset",
]

TRAIN_COVS = tuple(NAMED_COVS)  # the names of tasks.NAMED_COVS
#: training targets of one pass (see GPT2TrainConfig.target)
TARGETS = ("w", "newton")
#: bounded work: most optimiser steps / prompts per step one configuration may ask for
MAX_TRAIN_STEPS = 100_000_000
MAX_BATCH = 1 << 20
#: largest accepted learning rate (Adam moves every weight by about lr per step: beyond
#: this a float32 model is garbage after one step, and lr·grad may overflow)
MAX_LR = 1e3

def _real(value: Any, name: str, *, low: float, high: float | None = None, low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (``(low, high]`` if ``low_open``): ``_checks.check_real``."""
    return check_real(value, name, minimum=low, maximum=high, open_min=low_open)


def _int(value: Any, name: str, *, minimum: int = 1, maximum: int = MAX_TRAIN_STEPS) -> int:
    return check_pos_int(value, name, minimum=minimum, maximum=maximum)


# --------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class Curriculum:
    """Garg et al.'s curriculum: active dimension and context length grow every ``every`` steps.

    At step ``t`` the prompts use ``min(dim, dim_start + (t // every) * dim_step)`` active
    coordinates (the others of ``x`` and ``w`` are zero; the covariance is the leading block)
    and ``min(context_len, n_start + (t // every) * n_step)`` examples.

    Defined in Chapter 7.
    """

    dim_start: int = 5
    dim_step: int = 1
    n_start: int = 11
    n_step: int = 2
    every: int = 2000

    def __post_init__(self) -> None:
        for name in ("dim_start", "n_start", "every"):
            _int(getattr(self, name), name)
        for name in ("dim_step", "n_step"):
            _int(getattr(self, name), name, minimum=0)

    def at(self, step: int, dim: int, context_len: int) -> tuple[int, int]:
        """Active ``(dim, context_len)`` at ``step``."""
        step = check_pos_int(step, "step", minimum=0)
        dim = check_pos_int(dim, "dim")
        context_len = check_pos_int(context_len, "context_len")
        stage = step // self.every
        return (
            min(dim, self.dim_start + stage * self.dim_step),
            min(context_len, self.n_start + stage * self.n_step),
        )


@dataclass(frozen=True)
class GPT2TrainConfig:
    """Training protocol of :func:`train_gpt2`.

    Attributes:
        context_len: examples per training prompt ``n`` (final value under a curriculum).
        train_steps: optimiser steps (fixed; no early stopping; at most ``MAX_TRAIN_STEPS``).
        batch_size: prompts per step (the global batch under DDP; at most ``MAX_BATCH``).
        lr: Adam learning rate (peak value when a schedule is used; in ``(0, MAX_LR]``).
        lr_schedule: ``"constant"`` or ``"cosine"`` (decay to ``final_lr_frac · lr``), both
            after ``warmup`` linear warm-up steps (the schedule of :class:`tts_lib.train.TrainConfig`).
        warmup: warm-up steps.
        final_lr_frac: where the cosine ends, as a fraction of ``lr`` (10 %: our choice).
        grad_clip: clip the gradient norm to this value (None: no clipping).
        start_zero_prob: probability that a prompt starts from ``ŵ0 = 0``.
        start_noise_min, start_noise_max: range of the log-uniform noise level ``σ`` of
            the other starts ``ŵ0 = w + σ ε``.
        curriculum: optional :class:`Curriculum` on ``d`` and ``n``.
        label_noise: standard deviation of Gaussian label noise in the training prompts,
            ``y_i = <w, x_i> + label_noise · ξ_i`` (0: noiseless, as in the paper).
        target: what one pass is trained to output from ``ŵ0``: ``"w"`` (the task vector:
            refinement training) or ``"newton"`` (one step of the trained LSA's
            pseudo-Newton iteration, ``ŵ0 + Γ⁻¹ Xᵀ(y − X ŵ0)/n`` with Γ of the training
            covariance and ``n``; see :func:`newton_targets`).
        unroll: CoT steps unrolled in training (``target="w"`` only): the loss is the mean
            of ``‖ŵ_j − w‖²/d`` over ``j = 1..unroll``, back-propagated through the chain.

    Defined in Chapter 7.
    """

    context_len: int = 20
    train_steps: int = 6000
    batch_size: int = 64
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    warmup: int = 200
    final_lr_frac: float = 0.1
    grad_clip: float | None = 1.0
    start_zero_prob: float = 0.25
    start_noise_min: float = 0.01
    start_noise_max: float = 1.5
    curriculum: Curriculum | None = None
    label_noise: float = 0.0
    target: str = "w"
    unroll: int = 1

    def __post_init__(self) -> None:
        _int(self.context_len, "context_len", maximum=1_000_000)
        _int(self.train_steps, "train_steps")
        _int(self.batch_size, "batch_size", maximum=MAX_BATCH)
        _int(self.warmup, "warmup", minimum=0)
        _real(self.lr, "lr", low=0.0, high=MAX_LR, low_open=True)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"`lr_schedule` must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        _real(self.final_lr_frac, "final_lr_frac", low=0.0, high=1.0)
        if self.grad_clip is not None:
            _real(self.grad_clip, "grad_clip", low=0.0, low_open=True)
        _real(self.start_zero_prob, "start_zero_prob", low=0.0, high=1.0)
        lo = _real(self.start_noise_min, "start_noise_min", low=0.0, low_open=True)
        hi = _real(self.start_noise_max, "start_noise_max", low=0.0, low_open=True)
        if lo > hi:
            raise ValueError(f"`start_noise_min` ({lo}) must be <= `start_noise_max` ({hi})")
        if self.curriculum is not None and not isinstance(self.curriculum, Curriculum):
            raise InputTypeError(f"`curriculum` must be a Curriculum or None, got {type(self.curriculum).__name__}")
        _real(self.label_noise, "label_noise", low=0.0)
        if self.target not in TARGETS:
            raise ValueError(f"`target` must be one of {TARGETS}, got {self.target!r}")
        _int(self.unroll, "unroll", maximum=64)
        if self.unroll > 1 and self.target != "w":
            raise ValueError(f"`unroll`={self.unroll} needs target='w' (a Newton target is one step)")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"`{where}` must be a dict of {cls.__name__} fields, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"`{where}` has unknown field(s) {unknown}; valid: {sorted(names)}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`{where}`: {err}") from err


def config_from_dict(data: Any) -> tuple[GPT2RegressorConfig, GPT2TrainConfig | None]:
    """The configs from their plain-JSON view ``{"model": asdict(model_cfg), "train":
    asdict(train_cfg)}`` (a manifest's ``config``); a missing ``model`` or a bad field is a
    ValueError.

    Defined in Chapter 7.
    """
    if not isinstance(data, dict):
        raise ValueError(f"`data` must be a dict with keys 'model' (and 'train'), got {type(data).__name__}")
    if "model" not in data:
        raise ValueError("`data` lacks the field 'model' (the architecture); expected {'model': {...}, 'train': {...}}")
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ValueError(f"`data` has unknown field(s) {unknown}; expected 'model' and 'train'")
    model_cfg = _build(GPT2RegressorConfig, data["model"], "model")
    train_cfg = None
    if data.get("train") is not None:
        t = dict(data["train"]) if isinstance(data["train"], dict) else data["train"]
        if isinstance(t, dict) and t.get("curriculum") is not None:
            t["curriculum"] = _build(Curriculum, t["curriculum"], "train.curriculum")
        train_cfg = _build(GPT2TrainConfig, t, "train")
    return model_cfg, train_cfg


PRESETS: dict[str, tuple[GPT2RegressorConfig, GPT2TrainConfig]] = {
    # for tests: trains in a few seconds
    "tiny": (
        GPT2RegressorConfig(dim=3, width=32, layers=2, heads=2, max_context=16),
        GPT2TrainConfig(context_len=8, train_steps=150, batch_size=32, lr=3e-3, warmup=10),
    ),
    # for the chapter on a CPU: about two minutes
    "cpu": (
        GPT2RegressorConfig(dim=5, width=64, layers=3, heads=2, max_context=64),
        GPT2TrainConfig(context_len=20, train_steps=5000, batch_size=64, lr=1e-3, warmup=200),
    ),
    # chapter 7 at the paper's d = 20 on a CPU: width 64, 3 layers (about 150k parameters,
    # ~50 ms per step on one thread), trained on one pseudo-Newton step (target "newton"):
    # our choices of scale and protocol (see scripts/gpt2_protocols.py and chapter 7)
    "cpu20": (
        GPT2RegressorConfig(dim=20, width=64, layers=3, heads=2, max_context=64),
        GPT2TrainConfig(context_len=20, train_steps=3000, batch_size=64, lr=1e-3, warmup=200, target="newton"),
    ),
    # the paper's model (Garg et al. scale, ~9.5M parameters), Adam 1e-4, batch 64, Garg's
    # curriculum on d and n: GPU only. The step count (Garg's 500k) and the refinement starts
    # (the defaults above) are our choices; the paper does not state them.
    "paper": (
        GPT2RegressorConfig(dim=20, width=256, layers=12, heads=8, layout="interleaved", max_context=64),
        GPT2TrainConfig(
            context_len=40,
            train_steps=500_000,
            batch_size=64,
            lr=1e-4,
            lr_schedule="constant",
            warmup=0,
            curriculum=Curriculum(dim_start=5, dim_step=1, n_start=11, n_step=2, every=2000),
        ),
    ),
}


def preset(name: str, **overrides: Any) -> tuple[GPT2RegressorConfig, GPT2TrainConfig]:
    """The ``(model, train)`` configs of a preset (``tiny``, ``cpu``, ``paper``).

    Keyword overrides go to whichever config has the field, e.g.
    ``preset("cpu", layout="interleaved", context_len=30, train_steps=100)``.

    Defined in Chapter 7.
    """
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"`name` must be one of {sorted(PRESETS)}, got {name!r}")
    model_cfg, train_cfg = PRESETS[name]
    model_fields = set(GPT2RegressorConfig.__dataclass_fields__)
    train_fields = set(GPT2TrainConfig.__dataclass_fields__)
    unknown = set(overrides) - model_fields - train_fields
    if unknown:
        raise ValueError(f"unknown override(s) {sorted(unknown)}; valid: {sorted(model_fields | train_fields)}")
    model_cfg = replace(model_cfg, **{k: v for k, v in overrides.items() if k in model_fields})
    train_cfg = replace(train_cfg, **{k: v for k, v in overrides.items() if k in train_fields})
    return model_cfg, train_cfg


@dataclass
class TrainResult:
    """Output of :func:`train_gpt2`: per-step losses (‖ŵ1 − w‖²/d averaged over the global batch).

    Defined in Chapter 7.
    """

    losses: list[float]
    train_steps: int
    wall_s: float
    seed: int
    device: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ms_per_step(self) -> float:
        return 1000.0 * self.wall_s / max(self.train_steps, 1)

    def final_loss(self, last: int = 100) -> float:
        """Mean loss over the last ``last`` steps."""
        if not self.losses:
            raise ValueError("this TrainResult has no losses (no step was run)")
        tail = self.losses[-check_pos_int(last, "last") :]
        return float(sum(tail) / len(tail))
