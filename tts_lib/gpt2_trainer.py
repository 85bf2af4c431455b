"""Training of the GPT-2 regressor: the loop (single process or DistributedDataParallel under
``torchrun``), on the trainer core (:mod:`tts_lib.trainer`). Its configurations and presets
live in :mod:`tts_lib.gpt2_config`.

Command line: ``python -m tts_lib.gpt2_train`` (:mod:`tts_lib.gpt2_train`, on top of this
module; it also re-exports the names of this one, ``from tts_lib.gpt2_train import train_gpt2``).

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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import (
    InputTypeError,
    as_tensor,
    check_cov,
    check_device,
    check_memory,
    check_pos_int,
    make_generator,
)
from .gpt2 import GPT2Regressor
from .gpt2_config import PRESETS as PRESETS  # re-exported: `gpt2_train.preset(...)` and friends keep working
from .gpt2_config import TRAIN_COVS as TRAIN_COVS
from .gpt2_config import Curriculum as Curriculum
from .gpt2_config import GPT2TrainConfig, TrainResult
from .gpt2_config import config_from_dict as config_from_dict
from .gpt2_config import preset as preset
from .prompts import PromptSampler
from .theory import lsa_precond
from .trainer import OptimizerStep, TrainingDivergedError

__all__ = [
    "TrainStep",
    "TrainingDivergedError",
    "newton_targets",
    "sample_starts",
    "train_gpt2",
]

# --------------------------------------------------------------------------- the loop


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
    w = as_tensor(w, "w")
    if w.ndim != 2:
        raise ValueError(f"`w` must have shape (batch, d), got {tuple(w.shape)}")
    if not isinstance(cfg, GPT2TrainConfig):
        raise InputTypeError(f"`cfg` must be a GPT2TrainConfig, got {type(cfg).__name__}")
    return _sample_starts(w, cfg, make_generator(seed, "seed"))


def _sample_starts(w: torch.Tensor, cfg: GPT2TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Unchecked :func:`sample_starts` (the training loop's call)."""
    b, d = w.shape
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


class TrainStep:
    """One optimiser step of :func:`train_gpt2`: draw the prompts and starts (one CPU
    generator), the targets, forward (``unroll`` times), the loss (averaged over processes
    under DDP); the :class:`~tts_lib.trainer.OptimizerStep` does the rest (divergence rule,
    backward, clipping, schedule, Adam). ``tts_lib.bench`` times this same step.

    Defined in Chapter 7.
    """

    def __init__(
        self, model: GPT2Regressor, cov: Any, cfg: GPT2TrainConfig, seed: int | torch.Generator = 0,
        rank: int = 0, world: int = 1,
    ) -> None:
        if not isinstance(model, GPT2Regressor):
            raise InputTypeError(f"`model` must be a GPT2Regressor, got {type(model).__name__}")
        if not isinstance(cfg, GPT2TrainConfig):
            raise InputTypeError(f"`cfg` must be a GPT2TrainConfig, got {type(cfg).__name__}")
        world = check_pos_int(world, "world")
        rank = check_pos_int(rank, "rank", minimum=0, maximum=world - 1)
        if cfg.batch_size % world:
            raise ValueError(
                f"`batch_size`={cfg.batch_size} must be divisible by the number of processes (`world`={world})"
            )
        self.model, self.cfg, self.world = model, cfg, world
        # prompts are drawn on the CPU in float64 (the same data on every device and process)
        self.sampler = PromptSampler(check_cov(cov, "cov", dim=model.config.dim), seed=seed,
                                     device="cpu", dtype=torch.float64)
        self.cov = self.sampler.cov
        share = cfg.batch_size // world
        self.rows = slice(rank * share, (rank + 1) * share)
        ref = model.read_in.weight
        self.dev, self.dtype = ref.device, ref.dtype
        self.net: nn.Module = _Predict(model)
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.dev.index] if self.dev.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=ids)
        self.optimizer = OptimizerStep(
            model.parameters(), lr=cfg.lr, train_steps=cfg.train_steps, optimizer="adam",
            lr_schedule=cfg.lr_schedule, warmup=cfg.warmup, final_lr_frac=cfg.final_lr_frac,
            grad_clip=cfg.grad_clip, what="GPT-2 training",
            advice=(f"lower `lr` (now {cfg.lr:g}; Adam here trains at 1e-4–3e-3), keep `grad_clip` on, "
                    "or check the weights for NaN"),
        )
        self.preconds: dict[tuple[int, int], torch.Tensor] = {}
        self.d_act, self.n_act = model.config.dim, cfg.context_len

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Step ``step``'s global batch, on the CPU in float64: ``X`` (b, n, d), ``y`` (b, n),
        the starts ``w0`` (b, d) and the targets (b, d); inactive coordinates are zero."""
        cfg, d = self.cfg, self.model.config.dim
        d_act, n_act = cfg.curriculum.at(step, d, cfg.context_len) if cfg.curriculum else (d, cfg.context_len)
        self.d_act, self.n_act = d_act, n_act
        pr = self.sampler.draw(n_act, cfg.batch_size, noise_std=cfg.label_noise, dim=d_act)
        X, w = F.pad(pr.X, (0, d - d_act)), F.pad(pr.w, (0, d - d_act))
        w0 = _sample_starts(w, cfg, self.sampler.generator)
        if cfg.target != "newton":
            return X, pr.y, w0, w
        if (d_act, n_act) not in self.preconds:
            p = lsa_precond(self.cov[:d_act, :d_act], n_act)
            self.preconds[d_act, n_act] = F.pad(p, (0, d - d_act, 0, d - d_act))
        return X, pr.y, w0, _newton_targets(X, pr.y, w0, self.preconds[d_act, n_act])

    def loss(self, X: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean of ``‖ŵ_j − target‖²/d`` over the ``unroll`` steps of this process's rows."""
        X, y, target, w0 = (t[self.rows].to(device=self.dev, dtype=self.dtype) for t in (X, y, target, w0))
        w_next = self.net(X, y, w0)
        loss = F.mse_loss(w_next, target)
        for _ in range(self.cfg.unroll - 1):  # loss on every step of the unrolled chain
            w_next = self.net(X, y, w_next)
            loss = loss + F.mse_loss(w_next, target)
        return loss / self.cfg.unroll

    def __call__(self, step: int) -> float:
        """Run step ``step``; return its (global-batch) loss."""
        loss = self.loss(*self.batch(step))
        value = None
        if self.world > 1:
            import torch.distributed as dist

            total = loss.detach().clone()
            dist.all_reduce(total)
            value = total.item() / self.world
        return self.optimizer(step, loss, value)


def _check_train_args(
    model: Any, cov: Any, cfg: Any, seed: Any, device: Any, progress: Any, desc: Any
) -> tuple[int, torch.device | None, torch.Tensor]:
    """:func:`train_gpt2`'s checks, before anything moves or allocates: the checked seed, device
    and CPU float64 covariance."""
    if not isinstance(model, GPT2Regressor):
        raise InputTypeError(f"`model` must be a GPT2Regressor, got {type(model).__name__}")
    if not isinstance(cfg, GPT2TrainConfig):
        raise InputTypeError(f"`cfg` must be a GPT2TrainConfig, got {type(cfg).__name__}")
    seed = check_pos_int(seed, "seed", minimum=0)
    device = check_device(device)
    if not isinstance(progress, bool):
        raise InputTypeError(f"`progress` must be True or False, got {progress!r}")
    if not isinstance(desc, str):
        raise InputTypeError(f"`desc` must be a string, got {type(desc).__name__}")
    cov_t = check_cov(cov, "cov", dim=model.config.dim).detach().to("cpu", torch.float64)
    tokens = model.layout.num_data_tokens(cfg.context_len) + 1
    mc = model.config
    check_memory(  # activations kept for backward: ~16 numbers per token, width and layer, plus attention
        cfg.unroll * cfg.batch_size * mc.layers * tokens * (16 * mc.width + 2 * mc.heads * tokens),
        "batch_size", what=f"the activations of one training step ({cfg.batch_size} prompts of {tokens} tokens)",
        itemsize=model.read_in.weight.element_size(),
    )
    most = model.layout.max_examples(model.config.max_context)
    if most is not None and cfg.context_len > most:
        raise ValueError(f"`context_len`={cfg.context_len} exceeds the model's max_context={model.config.max_context}")
    return seed, device, cov_t


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
        cov: (d, d) training covariance Λ (e.g. ``tasks.named_cov("skewed2", d)``); under a
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
            :data:`tts_lib.trainer.DIVERGENCE_FACTOR` (1e6) × its first value (lower ``lr``).

    Defined in Chapter 7.
    """
    from tqdm.auto import tqdm

    seed, device, cov_t = _check_train_args(model, cov, cfg, seed, device, progress, desc)
    if device is not None:
        model.to(device)
    dev = model.read_in.weight.device
    rank, world = _world()
    step_fn = TrainStep(model, cov_t, cfg, seed, rank, world)  # checks that `world` divides the batch
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
