"""Training of the GPT-2 regressor: configs, curriculum, presets, the loop (single process or
DistributedDataParallel under ``torchrun``).

Command line (the entry point stays ``python -m tts_lib.gpt2_train``; the CLI itself is
:mod:`tts_lib.gpt2_cli`)::

    python -m tts_lib.gpt2_train --preset cpu --seed 0 --out book/checkpoints [options]
    torchrun --nproc_per_node 2 -m tts_lib.gpt2_train --preset cpu --out DIR   # DDP, gloo on CPU
    python -m tts_lib.gpt2_train sweep --preset cpu --context-len 20 30 40 --seed 0 1 2 \\
        --train-cov isotropic skewed2 --out DIR                              # n × seed × covariance

Training protocol (why CoT helps here)
--------------------------------------
A model trained only from ``ŵ0 = 0`` sees its own estimates as out-of-distribution
input and gets *worse* under CoT, an artefact unrelated to the paper's overthinking.
:func:`train_gpt2` therefore makes refining an estimate part of the task: each training
prompt gets one query token whose starting estimate is ``ŵ0 = 0`` with probability
``start_zero_prob`` and otherwise ``ŵ0 = w + σ ε`` with ``ε ~ N(0, I_d)`` and ``σ``
drawn log-uniformly in ``[start_noise_min, start_noise_max]`` per prompt; the target is
always ``w`` and the loss is the mean squared error per coordinate ``‖ŵ1 − w‖² / d``.
Training is single-step (no unrolling), as in the paper's LSA.

Distributed training: with a ``torch.distributed`` process group of ``P`` processes every
process draws the *same* global batch from the same seeded CPU generator (the
single-process data stream) and trains on its contiguous share of ``batch / P`` prompts;
DDP averages the gradients, so the run equals the single-process run up to float
round-off (``tests/test_gpt2_ddp.py`` checks 2 gloo processes against one).

Training covariances: ``isotropic`` is ``Λ = I_d``; ``skewed`` has eigenvalues
``λ_i ∝ 1/i`` normalised to ``tr Λ = d``; ``skewed2`` has ``λ_i ∝ 1/i²``, ``tr Λ = d``
(the covariance of Garg et al.'s "skewed" setting, whose square-root factor is ``1/i``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import as_tensor, check_cov, check_pos_int, make_generator
from .gpt2 import GPT2Regressor, GPT2RegressorConfig
from .prompts import _cov_sqrt, _draw_prompts
from .tasks import NAMED_COVS, named_cov
from .theory import lsa_precond
from .train import TrainingDivergedError, _lr_factor  # one error class for every trainer of the library

__all__ = [
    "Curriculum",
    "GPT2TrainConfig",
    "PRESETS",
    "TRAIN_COVS",
    "TrainResult",
    "TrainingDivergedError",
    "config_from_dict",
    "config_to_dict",
    "preset",
    "newton_targets",
    "sample_starts",
    "train_cov_matrix",
    "train_gpt2",
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
#: divergence rule: stop when the loss exceeds this multiple of the first step's loss
DIVERGENCE_FACTOR = 1e3

def _real(value: Any, name: str, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (``(low, high]`` if ``low_open``); bools refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    if isinstance(value, complex):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < low or (low_open and v == low) or v > high:
        left = "(" if low_open else "["
        raise ValueError(f"`{name}` must be a finite number in {left}{low:g}, {high:g}], got {value!r}")
    return v


def _int(value: Any, name: str, *, minimum: int = 1, maximum: int = MAX_TRAIN_STEPS) -> int:
    v = check_pos_int(value, name, minimum=minimum)
    if v > maximum:
        raise ValueError(f"`{name}` must be <= {maximum} (bounded work), got {v}")
    return v


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
            raise TypeError(f"`curriculum` must be a Curriculum or None, got {type(self.curriculum).__name__}")
        _real(self.label_noise, "label_noise", low=0.0)
        if self.target not in TARGETS:
            raise ValueError(f"`target` must be one of {TARGETS}, got {self.target!r}")
        _int(self.unroll, "unroll", maximum=64)
        if self.unroll > 1 and self.target != "w":
            raise ValueError(f"`unroll`={self.unroll} needs target='w' (a Newton target is one step)")


def config_to_dict(model_cfg: GPT2RegressorConfig, train_cfg: GPT2TrainConfig | None = None) -> dict[str, Any]:
    """Plain-JSON view of the configs (for manifests).

    Defined in Chapter 7.
    """
    out: dict[str, Any] = {"model": asdict(model_cfg)}
    if train_cfg is not None:
        out["train"] = asdict(train_cfg)
    return out


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
    """Inverse of :func:`config_to_dict`; a missing ``model`` or a bad field is a ValueError.

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


def train_cov_matrix(name: str, dim: int) -> torch.Tensor:
    """The named training covariance (float64, (dim, dim)) of :data:`tts_lib.tasks.NAMED_COVS`:
    ``isotropic``, ``skewed`` (λ_i ∝ 1/i, tr = d) or ``skewed2`` (λ_i ∝ 1/i², tr = d).

    Defined in Chapter 7.
    """
    dim = check_pos_int(dim, "dim")
    if not isinstance(name, str) or name not in NAMED_COVS:
        raise ValueError(f"`train_cov` must be one of {TRAIN_COVS}, got {name!r}")
    return named_cov(name, dim)


# --------------------------------------------------------------------------- the loop


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


def sample_starts(
    w: torch.Tensor, cfg: GPT2TrainConfig, seed: int | torch.Generator | None = None
) -> torch.Tensor:
    """Training starting estimates for targets ``w`` (batch, d), drawn on the CPU.

    ``seed``: an int, or a CPU ``torch.Generator`` to continue its stream (the training loop
    passes its one generator).

    ``ŵ0 = 0`` with probability ``cfg.start_zero_prob``, else ``w + σ ε`` with ``ε ~ N(0, I)``
    and ``log σ`` uniform on ``[log start_noise_min, log start_noise_max]`` (one σ per prompt).

    Defined in Chapter 7.
    """
    b, d = w.shape
    generator = make_generator(seed, "seed")
    w_cpu = w.detach().to("cpu", torch.float64)
    lo, hi = math.log(cfg.start_noise_min), math.log(cfg.start_noise_max)
    sigma = torch.exp(lo + (hi - lo) * torch.rand(b, 1, generator=generator, dtype=torch.float64))
    noisy = w_cpu + sigma * torch.randn(b, d, generator=generator, dtype=torch.float64)
    zero = torch.rand(b, 1, generator=generator, dtype=torch.float64) < cfg.start_zero_prob
    return torch.where(zero, torch.zeros_like(noisy), noisy).to(device=w.device, dtype=w.dtype)


def newton_targets(
    X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, precond: torch.Tensor
) -> torch.Tensor:
    """One pseudo-Newton step of the trained LSA from ``w0``: ``w0 + P Xᵀ(y − X w0)/n``.

    Shapes: X (batch, n, d), y (batch, n), w0 (batch, d), precond P = Γ⁻¹ (d, d);
    returns (batch, d).

    Defined in Chapter 7.
    """
    X = as_tensor(X, "X")
    y, w0, precond = (as_tensor(v, name, device=X.device, dtype=X.dtype)
                      for v, name in ((y, "y"), (w0, "w0"), (precond, "precond")))
    if X.ndim != 3:
        raise ValueError(f"`X` must have shape (batch, n, d), got {tuple(X.shape)}")
    b, n, d = X.shape
    for name, value, shape in (("y", y, (b, n)), ("w0", w0, (b, d)), ("precond", precond, (d, d))):
        if tuple(value.shape) != shape:
            raise ValueError(f"`{name}` must have shape {shape} to match `X`, got {tuple(value.shape)}")
    return _newton_targets(X, y, w0, precond)


def _newton_targets(X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, precond: torch.Tensor) -> torch.Tensor:
    """Unchecked :func:`newton_targets` (the training loop's call)."""
    resid = y - torch.einsum("bnd,bd->bn", X, w0)
    grad = torch.einsum("bnd,bn->bd", X, resid) / X.shape[1]
    return w0 + grad @ precond.T


class _Predict(nn.Module):
    """The training call as a module, so that DistributedDataParallel can wrap it."""

    def __init__(self, model: GPT2Regressor) -> None:
        super().__init__()
        self.model = model

    def forward(self, X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor) -> torch.Tensor:
        return self.model._predict(X, y, w0)


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _Step:
    """One optimiser step of :func:`train_gpt2`: draw the prompts and starts (one CPU
    generator), set the learning rate, forward (``unroll`` times), loss, divergence check,
    backward, clipping, Adam. ``tts_lib.bench`` times this same step."""

    def __init__(
        self, model: GPT2Regressor, cov: torch.Tensor, cfg: GPT2TrainConfig, seed: int,
        rank: int = 0, world: int = 1,
    ) -> None:
        self.model, self.cov, self.cfg, self.world = model, cov, cfg, world
        share = cfg.batch_size // world
        self.rows = slice(rank * share, (rank + 1) * share)
        ref = model.read_in.weight
        self.dev, self.dtype = ref.device, ref.dtype
        self.net: nn.Module = _Predict(model)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.dev.index] if self.dev.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=ids)
        self.g = make_generator(seed)
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        self.preconds: dict[tuple[int, int], torch.Tensor] = {}
        self.roots: dict[int, torch.Tensor] = {}
        self.first: float | None = None
        self.d_act, self.n_act = model.config.dim, cfg.context_len

    def __call__(self, step: int) -> float:
        """Run step ``step``; return its (global-batch) loss."""
        cfg, cov, d = self.cfg, self.cov, self.model.config.dim
        d_act, n_act = cfg.curriculum.at(step, d, cfg.context_len) if cfg.curriculum else (d, cfg.context_len)
        self.d_act, self.n_act = d_act, n_act
        if d_act not in self.roots:  # the covariance was checked once; its root once per d
            self.roots[d_act] = _cov_sqrt(cov[:d_act, :d_act])
        pr = _draw_prompts(self.roots[d_act], n_act, cfg.batch_size, self.g, None, torch.float64, cfg.label_noise)
        X, w = pr.X, pr.w
        if d_act < d:
            X = F.pad(X, (0, d - d_act))
            w = F.pad(w, (0, d - d_act))
        w0 = sample_starts(w, cfg, self.g)
        target = w
        if cfg.target == "newton":
            if (d_act, n_act) not in self.preconds:
                p = lsa_precond(cov[:d_act, :d_act], n_act)
                self.preconds[d_act, n_act] = F.pad(p, (0, d - d_act, 0, d - d_act))
            target = _newton_targets(X, pr.y, w0, self.preconds[d_act, n_act])
        X, y, target, w0 = (t[self.rows].to(device=self.dev, dtype=self.dtype) for t in (X, pr.y, target, w0))
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr * _lr_factor(
                step, cfg.train_steps, cfg.lr_schedule, warmup=cfg.warmup, final_lr_frac=cfg.final_lr_frac
            )
        w_next = self.net(X, y, w0)
        loss = F.mse_loss(w_next, target)
        for _ in range(cfg.unroll - 1):  # loss on every step of the unrolled chain
            w_next = self.net(X, y, w_next)
            loss = loss + F.mse_loss(w_next, target)
        loss = loss / cfg.unroll
        if self.world > 1:
            import torch.distributed as dist

            total = loss.detach().clone()
            dist.all_reduce(total)
            value = total.item() / self.world
        else:
            value = loss.item()
        if self.first is None:
            self.first = value
        if not math.isfinite(value) or value > DIVERGENCE_FACTOR * max(self.first, 1e-12):
            raise TrainingDivergedError(
                f"GPT-2 training diverged at step {step}: loss {value:.3g}, first loss {self.first:.3g} "
                f"(rule: NaN/inf or > {DIVERGENCE_FACTOR:g}× the first); lower `lr` (now {cfg.lr:g}; "
                f"Adam here trains at 1e-4–3e-3), keep `grad_clip` on, or check the weights for NaN"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        return value


def train_gpt2(
    model: GPT2Regressor,
    cov: Any,
    cfg: GPT2TrainConfig,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str = "GPT-2",
) -> TrainResult:
    """Train ``model`` in place with Adam on fresh prompts (see the module docstring).

    Under an initialised ``torch.distributed`` process group (``torchrun``) the model is
    wrapped in DistributedDataParallel and every process trains on its share of the
    global batch ``cfg.batch_size`` (which the number of processes must divide).

    Args:
        model: a :class:`~tts_lib.gpt2.GPT2Regressor` (moved to ``device``).
        cov: (d, d) training covariance Λ (e.g. ``train_cov_matrix("skewed2", d)``); under a
            curriculum the leading block is used.
        cfg: :class:`GPT2TrainConfig` (steps, batch, lr, start distribution, curriculum).
        seed: seeds the prompt and start generator (a CPU generator: same data on every
            device and in every process).
        device: where to train (default: the model's device).
        progress: show a tqdm progress bar (process 0 only).

    Returns:
        :class:`TrainResult` with the loss history (global-batch losses).

    Raises:
        TrainingDivergedError: if the loss becomes NaN/inf or exceeds
            ``DIVERGENCE_FACTOR`` × its first value (lower ``lr``).

    Defined in Chapter 7.
    """
    from tqdm.auto import tqdm

    if not isinstance(model, GPT2Regressor):
        raise TypeError(f"`model` must be a GPT2Regressor, got {type(model).__name__}")
    if not isinstance(cfg, GPT2TrainConfig):
        raise TypeError(f"`cfg` must be a GPT2TrainConfig, got {type(cfg).__name__}")
    seed = check_pos_int(seed, "seed", minimum=0)
    d = model.config.dim
    cov_t = check_cov(cov, "cov", dim=d).detach().to("cpu", torch.float64)
    most = model.layout.max_examples(model.config.max_context)
    if most is not None and cfg.context_len > most:
        raise ValueError(f"`context_len`={cfg.context_len} exceeds the model's max_context={model.config.max_context}")
    if device is not None:
        model.to(torch.device(device))
    dev = model.read_in.weight.device
    rank, world = _world()
    if cfg.batch_size % world:
        raise ValueError(
            f"`batch_size`={cfg.batch_size} must be divisible by the number of processes ({world})"
        )
    step_fn = _Step(model, cov_t, cfg, seed, rank, world)
    model.train()
    losses: list[float] = []
    bar = tqdm(range(cfg.train_steps), desc=desc, disable=not progress or rank != 0, mininterval=1.0)
    t0 = time.perf_counter()
    for step in bar:
        value = step_fn(step)
        losses.append(value)
        if progress and rank == 0 and step % 50 == 0:
            bar.set_postfix(loss=f"{value:.4f}", d=step_fn.d_act, n=step_fn.n_act, refresh=False)
    wall = time.perf_counter() - t0
    bar.close()
    model.eval()
    return TrainResult(
        losses=losses, train_steps=cfg.train_steps, wall_s=wall, seed=seed, device=str(dev), extra={"world_size": world}
    )


if __name__ == "__main__":  # python -m tts_lib.gpt2_train: the CLI
    from tts_lib.gpt2_cli import main as _main

    raise SystemExit(_main())
