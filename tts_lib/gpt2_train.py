"""Training a GPT-2 regressor: the command line ``python -m tts_lib.gpt2_train`` (also under
``torchrun``), on top of the GPT-2 stack, and the training names in one import (``from
tts_lib.gpt2_train import preset, train_gpt2``: the loop of :mod:`tts_lib.gpt2_trainer`, the
configurations and presets of :mod:`tts_lib.gpt2_config`). Nothing in the library imports it.

One run::

    python -m tts_lib.gpt2_train --preset cpu --device cpu --seed 0 --out book/checkpoints \\
        [--train-steps N] [--train-cov isotropic|skewed|skewed2] [--layout compact|interleaved] \\
        [--context-len N] [--layers L] [--width W] [--lr LR] [--batch-size B] \\
        [--start-zero-prob P] [--label-noise S] [--stem NAME] [--losses FILE.json]

Distributed (DistributedDataParallel; gloo on CPU, nccl on CUDA; the global batch is
split across the processes, the data stream is the single-process one)::

    torchrun --nproc_per_node 2 -m tts_lib.gpt2_train --preset cpu --out DIR

A sweep over n × seed × covariance (each run as the one-run command above, recorded in
its manifest; ``--skip-existing`` resumes, ``--dry-run`` prints the commands)::

    python -m tts_lib.gpt2_train sweep --preset cpu --context-len 20 30 40 --seed 0 1 2 \\
        --train-cov isotropic skewed2 --out DIR [--train-steps N] [any one-run option]

User errors (a bad argument, an unwritable ``--out``, ``--stem ../x``, an unknown
``--device``, a diverging run) print one line ``error: …`` and exit with status 2, before
any training where they can be known before.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from ._checks import check_device
from .gpt2 import LAYOUTS, build_model, num_parameters
from .gpt2_checkpoint import check_stem, checkpoint_stem, save_checkpoint
from .gpt2_config import PRESETS, TRAIN_COVS, preset
from .gpt2_config import Curriculum as Curriculum  # the training names in one import (see the docstring)
from .gpt2_config import GPT2TrainConfig as GPT2TrainConfig
from .gpt2_config import TrainResult as TrainResult
from .gpt2_config import config_from_dict as config_from_dict
from .gpt2_trainer import TrainStep as TrainStep
from .gpt2_trainer import newton_targets as newton_targets
from .gpt2_trainer import sample_starts as sample_starts
from .gpt2_trainer import train_gpt2
from .tasks import named_cov
from .trainer import TrainingDivergedError

__all__ = ["OVERRIDES", "PROG", "UsageError", "main", "parser", "run", "sweep"]

PROG = "python -m tts_lib.gpt2_train"
OVERRIDES = (
    "train_steps", "layout", "context_len", "layers", "width", "lr", "batch_size", "start_zero_prob",
    "label_noise",
    "target", "unroll", "heads",
)


class UsageError(ValueError):
    """A user error of the command line (printed as one line, exit status 2)."""


def parser() -> argparse.ArgumentParser:
    """The one-run argument parser of ``python -m tts_lib.gpt2_train``. Defined in Chapter 7."""
    ap = argparse.ArgumentParser(prog=PROG, description="Train a GPT-2 regressor and save a verified checkpoint.")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (under torchrun: cuda = one GPU per process)")
    ap.add_argument("--seed", type=int, default=0)
    # --steps and --batch: the format-2 spellings, kept so that recorded commands still run
    ap.add_argument("--train-steps", "--steps", dest="train_steps", type=int, default=None,
                    help="optimiser steps (default: the preset's)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--train-cov", choices=TRAIN_COVS, default="isotropic")
    ap.add_argument("--layout", choices=LAYOUTS, default=None)
    ap.add_argument("--context-len", type=int, default=None, help="training n (default: the preset's)")
    ap.add_argument("--layers", type=int, default=None, help="transformer blocks (default: the preset's)")
    ap.add_argument("--width", type=int, default=None, help="hidden size (default: the preset's)")
    ap.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: the preset's)")
    ap.add_argument("--batch-size", "--batch", dest="batch_size", type=int, default=None,
                    help="global batch (default: the preset's)")
    ap.add_argument("--start-zero-prob", type=float, default=None, help="share of starts at ŵ0 = 0 (1: zero only)")
    ap.add_argument("--label-noise", type=float, default=None, help="label noise std of the training prompts")
    ap.add_argument("--target", choices=("w", "newton"), default=None,
                    help="one pass is trained to output w (refinement) or one pseudo-Newton step")
    ap.add_argument("--unroll", type=int, default=None, help="CoT steps unrolled in training (target w)")
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default: the preset's)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--stem", default=None, help="file stem (default: derived from the configuration)")
    ap.add_argument("--losses", default=None, help="also write the per-step losses (JSON list) to this file")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def _sweep_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"{PROG} sweep", description="Train every n × seed × covariance combination.")
    ap.add_argument("--context-len", type=int, nargs="+", required=True)
    ap.add_argument("--seed", type=int, nargs="+", default=[0])
    ap.add_argument("--train-cov", choices=TRAIN_COVS, nargs="+", default=["isotropic"])
    ap.add_argument("--skip-existing", action="store_true", help="skip runs whose manifest exists")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    return ap


def _check_device(name: str) -> torch.device:
    """``--device`` through the library's one device check (:func:`tts_lib._checks.check_device`)."""
    try:
        dev = check_device(name, "--device")
    except ValueError as err:
        raise UsageError(f"--device {name!r} is not usable ({err}); use cpu, cuda or cuda:N") from err
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name!r}: only cpu and cuda are supported")
    return dev


def _check_out(out: str) -> Path:
    """Create ``out`` and prove it writable (before any training)."""
    path = Path(out)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-", delete=True):
            pass
    except OSError as err:
        raise UsageError(f"--out {out!r} is not a writable folder ({err.strerror or err})") from err
    return path


def _setup_distributed(dev: torch.device) -> tuple[int, int, torch.device]:
    """Initialise torch.distributed from torchrun's environment (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, dev
    import torch.distributed as dist

    if dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), dev


def run(argv: list[str]) -> int:
    """One training run (raises UsageError / TrainingDivergedError / ValueError on user errors).

    Defined in Chapter 7.
    """
    args = parser().parse_args(argv)
    dev = _check_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    overrides: dict[str, Any] = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    try:
        model_cfg, train_cfg = preset(args.preset, **overrides)
        if args.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {args.seed}")
        stem = args.stem or checkpoint_stem(args.preset, model_cfg, train_cfg, args.train_cov, args.seed)
        check_stem(stem)
    except (TypeError, ValueError) as err:
        raise UsageError(str(err)) from err
    out = _check_out(args.out)
    if args.losses is not None:
        _check_out(str(Path(args.losses).parent or "."))
    rank, world, dev = _setup_distributed(dev)
    if train_cfg.batch_size % world:
        raise UsageError(f"--batch-size {train_cfg.batch_size} must be divisible by the {world} processes")
    cov = named_cov(args.train_cov, model_cfg.dim)
    model = build_model(model_cfg, seed=args.seed, device=dev)
    if rank == 0:
        print(f"{args.preset}: {num_parameters(model):,} parameters, {world} process(es), {model_cfg}, {train_cfg}")
    result = train_gpt2(
        model,
        cov,
        train_cfg,
        seed=args.seed,
        device=dev,
        progress=not args.no_progress,
        desc=f"{args.preset}/{model_cfg.layout}/{args.train_cov}",
    )
    if rank == 0:
        command = f"{PROG} " + shlex.join(argv)
        path = save_checkpoint(
            model,
            out,
            stem,
            train_cfg=train_cfg,
            train_cov=args.train_cov,
            result=result,
            preset_name=args.preset,
            command=command,
        )
        if args.losses is not None:
            Path(args.losses).write_text(json.dumps(result.losses) + "\n")
        print(
            f"final loss {result.final_loss():.4g} (first {result.losses[0]:.4g}), "
            f"{result.ms_per_step:.1f} ms/step, {result.wall_s:.1f} s; wrote {path}",
            flush=True,
        )
    return 0


def sweep(argv: list[str]) -> int:
    """``sweep``: one run per (train_cov, context_len, seed), the other options passed on.

    Defined in Chapter 7.
    """
    sargs, rest = _sweep_parser().parse_known_args(argv)
    bad = [a for a in rest if a.split("=")[0] in ("--context-len", "--seed", "--train-cov", "--stem", "--losses")]
    if bad:
        raise UsageError(f"sweep: {bad[0]} cannot be passed on to the single runs")
    base = parser().parse_args(rest)  # validates the passed-on options once
    for cov, n, seed in itertools.product(sargs.train_cov, sargs.context_len, sargs.seed):
        one = [*rest, "--train-cov", cov, "--context-len", str(n), "--seed", str(seed)]
        if sargs.dry_run:
            print(f"{PROG} " + shlex.join(one))
            continue
        if sargs.skip_existing:
            overrides = {k: getattr(base, k) for k in OVERRIDES if getattr(base, k) is not None}
            m_cfg, t_cfg = preset(base.preset, **{**overrides, "context_len": n})
            if (Path(base.out) / f"{checkpoint_stem(base.preset, m_cfg, t_cfg, cov, seed)}.json").exists():
                print(f"exists, skipped: {shlex.join(one)}")
                continue
        run(one)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0, or 2 after a one-line ``error: …``).

    Defined in Chapter 7.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "sweep":
            return sweep(argv[1:])
        return run(argv)
    except (UsageError, TrainingDivergedError, ValueError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    raise SystemExit(main())
