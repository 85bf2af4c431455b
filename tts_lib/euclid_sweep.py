"""Chapter 10's experiments: the training runs, their checkpoints, one command for all.

::

    python -m tts_lib.euclid_sweep --out book/checkpoints --seed 0 1 2      # everything
    python -m tts_lib.euclid_sweep --out DIR --seed 0 --only cot direct     # a subset

Experiments (``EXPERIMENTS``; every model is a :class:`~tts_lib.lm.TinyLM` of
:data:`MODEL`, trained on the train half of :func:`~tts_lib.euclid.split_pairs`):

* ``cot`` — GCD traces with the written steps, chain-length bins drawn equally often;
* ``direct`` — the same problems, answer only (same steps and batch: the same problems);
* ``noq3`` — like ``cot`` without every pair whose chain has a step with quotient 3;
* ``short`` — chains of 1–3 steps only, as many loss tokens as ``cot`` (more steps);
* ``base`` — the pretraining mixture: half GCD traces, half polynomial-root traces,
  half as many steps as ``cot``;
* ``ft_gcd`` / ``ft_poly`` — ``base`` fine-tuned on GCD traces (aligned) or on
  polynomial-root traces only (misaligned), the same number of steps each.

A checkpoint is ``euclid_<experiment>_seed<s>.pt`` (state_dict) and ``.json`` (manifest:
configurations, the parent checkpoint's sha256 for fine-tunes, seed, loss curve, timing,
library versions, the command, the weights' ``sha256`` and a ``digest`` over the whole
manifest, as in Chapter 7).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ._checks import InputTypeError, check_device, check_path, check_pos_int
from .euclid import VOCAB, TaskMix, make_sampler, mean_completion_tokens, split_pairs
from .gpt2_checkpoint import (
    MAX_MANIFEST_BYTES,
    check_pinned_manifest,
    check_stem,
    library_versions,
    manifest_digest,
    sha256_file,
)
from .lm import LMConfig, LMTrainConfig, LMTrainResult, TinyLM, build_lm, train_lm

__all__ = [
    "EXPERIMENTS",
    "FORMAT",
    "MODEL",
    "Experiment",
    "checkpoint_stem",
    "load_lm_checkpoint",
    "run_experiment",
    "save_lm_checkpoint",
    "verify_lm_checkpoint",
]

FORMAT = "tts_lib.lm/1"
#: the model of every experiment (our choice: 110k parameters, about 0.05 s a step on one thread)
MODEL = LMConfig(vocab_size=len(VOCAB), width=64, layers=2, heads=2, max_len=128)
#: the held-out split every experiment shares
SPLIT = {"test_frac": 0.25, "seed": 0}
STEPS = 4000
#: prompts per step (our choice, sized for a shared 2-core machine)
BATCH = 32
REQUIRED = ("format", "checkpoint", "sha256", "digest", "config", "experiment", "seed")


@dataclass(frozen=True)
class Experiment:
    """One training run: its data, its schedule and, for a fine-tune, its parent.

    Defined in Chapter 10.
    """

    name: str
    mix: TaskMix
    train: LMTrainConfig
    parent: str | None = None


def _experiments(steps: int = STEPS) -> dict[str, Experiment]:
    base_cfg = LMTrainConfig(train_steps=steps, batch_size=BATCH)
    train_pairs, _ = split_pairs(**SPLIT)
    full, short = TaskMix(), TaskMix(bins=("1", "2", "3"))
    ratio = mean_completion_tokens(full, train_pairs) / mean_completion_tokens(short, train_pairs)
    ft = LMTrainConfig(train_steps=steps // 4, batch_size=BATCH, lr=1e-3, warmup=20)
    return {
        "cot": Experiment("cot", full, base_cfg),
        "direct": Experiment("direct", TaskMix(cot=False), base_cfg),
        "noq3": Experiment("noq3", TaskMix(exclude_quotients=(3,)), base_cfg),
        "short": Experiment("short", short, replace(base_cfg, train_steps=round(steps * ratio))),
        "base": Experiment("base", TaskMix(gcd_weight=0.5, poly_weight=0.5), replace(base_cfg, train_steps=steps // 2)),
        "ft_gcd": Experiment("ft_gcd", full, ft, parent="base"),
        "ft_poly": Experiment("ft_poly", TaskMix(gcd_weight=0.0, poly_weight=1.0), ft, parent="base"),
    }


EXPERIMENTS: dict[str, Experiment] = _experiments()


def checkpoint_stem(experiment: str, seed: int) -> str:
    """``euclid_<experiment>_seed<seed>``.

    Defined in Chapter 10.
    """
    if not isinstance(experiment, str) or experiment not in EXPERIMENTS:
        raise ValueError(f"`experiment` must be one of {tuple(EXPERIMENTS)}, got {experiment!r}")
    return f"euclid_{experiment}_seed{check_pos_int(seed, 'seed', minimum=0)}"


def save_lm_checkpoint(
    model: TinyLM,
    out_dir: str | Path,
    stem: str,
    *,
    experiment: Experiment,
    result: LMTrainResult,
    parent_sha256: str | None = None,
    command: str | None = None,
) -> Path:
    """Write ``<stem>.pt`` and its manifest ``<stem>.json``; returns the manifest path.

    Defined in Chapter 10.
    """
    if not isinstance(model, TinyLM):
        raise TypeError(f"`model` must be a TinyLM, got {type(model).__name__}")
    if any(t.device.type == "meta" for t in model.parameters()):
        raise ValueError("`model` has weights on the meta device (no data); there is nothing to save")
    out = check_path(out_dir, "out_dir")
    stem = check_stem(stem)
    if not isinstance(experiment, Experiment):
        raise InputTypeError(f"`experiment` must be an Experiment (e.g. EXPERIMENTS['cot']), got {experiment!r:.80}")
    if not isinstance(result, LMTrainResult) or not result.losses:
        raise InputTypeError(f"`result` must be the LMTrainResult of train_lm (with losses), got {result!r:.80}")
    if parent_sha256 is not None and not (isinstance(parent_sha256, str)
                                          and re.fullmatch(r"[0-9a-f]{64}", parent_sha256)):
        raise ValueError(f"`parent_sha256` must be None or 64 hex digits (the parent's sha256), got {parent_sha256!r}")
    if command is not None and not isinstance(command, str):
        raise InputTypeError(f"`command` must be None or the command line as a str, got {type(command).__name__}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    if any(not torch.isfinite(v).all() for v in state.values()):
        raise ValueError("the model has non-finite weights; not saving a broken checkpoint")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"`out_dir`={str(out_dir)!r} cannot be created ({err.strerror}); "
                         "pass a writable folder") from err
    pt = out / f"{stem}.pt"
    torch.save(state, pt)
    block = 25
    losses = result.losses
    curve = [sum(losses[i : i + block]) / len(losses[i : i + block]) for i in range(0, len(losses), block)]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "checkpoint": pt.name,
        "sha256": sha256_file(pt),
        "experiment": experiment.name,
        "config": {"model": asdict(model.config), "train": asdict(experiment.train), "mix": asdict(experiment.mix)},
        "split": SPLIT,
        "parent": experiment.parent,
        "parent_sha256": parent_sha256,
        "seed": result.seed,
        "device": result.device,
        "wall_s": round(result.wall_s, 3),
        "ms_per_step": round(result.ms_per_step, 3),
        "loss_tokens": result.tokens,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "first_loss": result.losses[0],
        "final_loss": sum(result.losses[-block:]) / len(result.losses[-block:]),
        "loss_curve_block": block,
        "loss_curve": curve,
        "versions": library_versions(),
        "command": command,
    }
    manifest["digest"] = manifest_digest(manifest)
    path = out / f"{stem}.json"
    path.write_text(json.dumps(manifest, indent=1, allow_nan=False) + "\n")
    return path


def verify_lm_checkpoint(path: str | Path, *, registry: bool = True) -> tuple[dict[str, Any], Path]:
    """Check a manifest (fields, digest) and its weights' sha256; returns ``(manifest, pt)``.

    ``registry``: a manifest named like a committed course checkpoint must be byte-identical to
    the one whose sha256 the library pins (``tts_lib._checkpoint_registry``), so an edited
    manifest with a recomputed ``digest`` is refused; checkpoints you train yourself (other
    names, or ``registry=False``) are checksummed, not signed.

    Defined in Chapter 10.
    """
    if not isinstance(registry, bool):
        raise InputTypeError(f"`registry` must be True or False, got {registry!r}")
    mpath = check_path(path, "path")
    if not mpath.name:
        raise ValueError(f"`path` must name a manifest file, got {path!r}")
    mpath = mpath.with_suffix(".json")
    if not mpath.is_file():
        raise ValueError(f"`path`: no manifest {mpath}; pass the .json written by tts_lib.euclid_sweep")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise ValueError(f"{mpath}: larger than {MAX_MANIFEST_BYTES} bytes: not a manifest")
    raw = mpath.read_bytes()
    if registry:
        check_pinned_manifest(mpath, raw)
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{mpath}: not a JSON manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{mpath}: field `format` must be {FORMAT!r}")
    for name in REQUIRED:
        if name not in manifest:
            raise ValueError(f"{mpath}: missing field `{name}`")
    if manifest_digest(manifest) != manifest["digest"]:
        raise ValueError(f"{mpath}: field `digest` does not match the manifest's content: it was edited; retrain")
    name = manifest["checkpoint"]
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".pt"):
        raise ValueError(f"{mpath}: field `checkpoint` must be a .pt file name in its folder, got {name!r}")
    pt = mpath.parent / name
    if pt.is_symlink() or not pt.is_file():
        raise ValueError(f"{mpath}: field `checkpoint`: file {pt} is missing")
    if sha256_file(pt) != manifest["sha256"]:
        raise ValueError(f"{mpath}: field `sha256`: the weights file {pt.name} was changed; retrain with the command")
    return manifest, pt


def load_lm_checkpoint(
    path: str | Path, *, device: torch.device | str | None = None, registry: bool = True
) -> tuple[TinyLM, dict[str, Any]]:
    """Load a verified checkpoint (eval mode); ``(model, manifest)``. ``registry`` as in
    :func:`verify_lm_checkpoint`.

    Defined in Chapter 10.
    """
    device = check_device(device) if device is not None else None
    manifest, pt = verify_lm_checkpoint(path, registry=registry)
    try:
        cfg = LMConfig(**manifest["config"]["model"])
    except (TypeError, ValueError, KeyError) as err:
        raise ValueError(f"{pt.with_suffix('.json')}: field `config`: {err}") from err
    model = TinyLM(cfg).to(torch.float32)  # float32 whatever the default dtype
    state = torch.load(pt, map_location="cpu", weights_only=True)
    want = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(want):
        raise ValueError(f"{pt}: the keys do not match the configuration")
    for k, v in want.items():
        if state[k].shape != v.shape or not torch.isfinite(state[k]).all():
            raise ValueError(f"{pt}: key `{k}` has the wrong shape or non-finite values")
    model.load_state_dict(state)
    model.eval()
    return model.to(device) if device is not None else model, manifest


def run_experiment(
    name: str,
    seed: int,
    out_dir: str | Path,
    *,
    command: str | None = None,
    progress: bool = False,
) -> Path:
    """Train one experiment's model for one seed (a fine-tune loads its parent from
    ``out_dir``) and write its checkpoint; returns the manifest path.

    Defined in Chapter 10.
    """
    if not isinstance(name, str) or name not in EXPERIMENTS:
        raise ValueError(f"`name` must be one of {tuple(EXPERIMENTS)}, got {name!r}")
    seed = check_pos_int(seed, "seed", minimum=0)  # every argument checked before minutes of training
    check_path(out_dir, "out_dir")
    if command is not None and not isinstance(command, str):
        raise InputTypeError(f"`command` must be None or the command line as a str, got {type(command).__name__}")
    if not isinstance(progress, bool):
        raise InputTypeError(f"`progress` must be True or False, got {progress!r}")
    exp = EXPERIMENTS[name]
    train_pairs, _ = split_pairs(**SPLIT)
    parent_sha = None
    if exp.parent is not None:
        # the parent was just (re)trained by this sweep: checksummed, not yet pinned
        model, parent = load_lm_checkpoint(
            Path(out_dir) / f"{checkpoint_stem(exp.parent, seed)}.json", registry=False
        )
        parent_sha = parent["sha256"]
        model.train()
    else:
        model = build_lm(MODEL, seed=seed)
    data_seed = seed if exp.parent is None else 1000 + seed
    sampler = make_sampler(exp.mix, train_pairs)
    result = train_lm(model, sampler, exp.train, seed=data_seed, progress=progress, desc=name)
    return save_lm_checkpoint(
        model, out_dir, checkpoint_stem(name, seed), experiment=exp, result=result, parent_sha256=parent_sha,
        command=command,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m tts_lib.euclid_sweep --out DIR [--seed ...] [--only ...]``: retrain the
    chapter's models; bad arguments exit with status 2 (argparse).

    Defined in Chapter 10.
    """
    parser = argparse.ArgumentParser(prog="python -m tts_lib.euclid_sweep", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the checkpoints")
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=tuple(EXPERIMENTS), default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(check_pos_int(args.threads, "threads"))
    names = args.only or list(EXPERIMENTS)
    for parent in {EXPERIMENTS[n].parent for n in names} - {None}:
        if parent not in names and not all(
            (Path(args.out) / f"{checkpoint_stem(parent, s)}.json").is_file() for s in args.seed
        ):
            parser.error(f"fine-tunes need their parent {parent!r}: add it to --only or train it first")
    order = sorted(names, key=lambda n: EXPERIMENTS[n].parent is not None)  # parents first
    for seed in args.seed:
        for name in order:
            cmd = f"python -m tts_lib.euclid_sweep --out {shlex.quote(args.out)} --seed {seed} --only {name}"
            t0 = time.perf_counter()
            path = run_experiment(name, seed, args.out, command=cmd)
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
