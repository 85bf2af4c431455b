"""Train a GPT-2 regressor from the command line; save and load verified checkpoints.

Usage::

    python -m tts_lib.gpt2_train --preset cpu --device cpu --seed 0 --out book/checkpoints \\
        [--steps N] [--train-cov isotropic|skewed|skewed2] [--layout compact|interleaved] \\
        [--context-len N] [--start-zero-prob P] [--label-noise S]

writes ``DIR/<stem>.pt`` (the ``state_dict``, via ``torch.save``) and ``DIR/<stem>.json``
(the manifest: configs, seed, steps, losses, library versions, sha256 of the ``.pt`` file
and the exact command). :func:`load_checkpoint` loads with ``weights_only=True``, checks
the sha256 and refuses a checkpoint whose configuration differs from the requested one.

Training covariances: ``isotropic`` is ``Λ = I_d``; ``skewed`` has eigenvalues
``λ_i ∝ 1/i`` normalised to ``tr Λ = d`` (the covariance spectrum itself is ``1/i``,
not ``1/i²`` as in Garg et al.'s square-root convention); ``skewed2`` has ``λ_i ∝ 1/i²``,
``tr Λ = d`` (the covariance of Garg et al.'s "skewed" setting). All are diagonal.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ._checks import check_pos_int
from .gpt2 import (
    PRESETS,
    GPT2Regressor,
    GPT2RegressorConfig,
    GPT2TrainConfig,
    TrainResult,
    build_model,
    config_from_dict,
    num_parameters,
    preset,
    train_gpt2,
)
from .tasks import isotropic_cov, power_law_cov

MANIFEST_FORMAT = "tts_lib.gpt2/1"
TRAIN_COVS = ("isotropic", "skewed", "skewed2")


def train_cov_matrix(name: str, dim: int) -> torch.Tensor:
    """The named training covariance (float64, (dim, dim)): ``isotropic``, ``skewed`` (λ_i ∝ 1/i,
    tr = d) or ``skewed2`` (λ_i ∝ 1/i², tr = d)."""
    dim = check_pos_int(dim, "dim")
    if name == "isotropic":
        return isotropic_cov(dim)
    if name == "skewed":
        return power_law_cov(dim, 1.0, trace=float(dim))
    if name == "skewed2":
        return power_law_cov(dim, 2.0, trace=float(dim))
    raise ValueError(f"`train_cov` must be one of {TRAIN_COVS}, got {name!r}")


def checkpoint_stem(
    preset_name: str, cfg: GPT2RegressorConfig, train_cfg: GPT2TrainConfig, train_cov: str, seed: int
) -> str:
    """File stem such as ``gpt2_cpu_compact_isotropic_n20_seed0``.

    A depth or width other than the preset's adds ``_L<layers>`` / ``_W<width>``, a start
    distribution other than the default adds ``_zp<start_zero_prob>`` (``_zp1``: trained from
    ``ŵ0 = 0`` only), label noise adds ``_noise<label_noise>``.
    """
    stem = f"gpt2_{preset_name}_{cfg.layout}_{train_cov}_n{train_cfg.context_len}"
    if preset_name in PRESETS:
        base = PRESETS[preset_name][0]
        if cfg.layers != base.layers:
            stem += f"_L{cfg.layers}"
        if cfg.width != base.width:
            stem += f"_W{cfg.width}"
    if train_cfg.start_zero_prob != GPT2TrainConfig.start_zero_prob:
        stem += f"_zp{train_cfg.start_zero_prob:g}"
    if train_cfg.label_noise:
        stem += f"_noise{train_cfg.label_noise:g}"
    return f"{stem}_seed{seed}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a checkpoint depends on."""
    import numpy
    import transformers

    try:
        from importlib.metadata import version

        tts = version("tts_lib")
    except Exception:  # not installed as a distribution
        tts = "unknown"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "tts_lib": tts,
    }


def _loss_curve(losses: list[float], block: int = 50) -> list[float]:
    return [sum(losses[i : i + block]) / len(losses[i : i + block]) for i in range(0, len(losses), block)]


def save_checkpoint(
    model: GPT2Regressor,
    out_dir: str | Path,
    stem: str,
    *,
    train_cfg: GPT2TrainConfig,
    train_cov: str,
    result: TrainResult,
    preset_name: str | None = None,
    command: str | None = None,
) -> Path:
    """Write ``<stem>.pt`` (state_dict) and ``<stem>.json`` (manifest) into ``out_dir``.

    Returns the manifest path.
    """
    if train_cov not in TRAIN_COVS:
        raise ValueError(f"`train_cov` must be one of {TRAIN_COVS}, got {train_cov!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pt = out / f"{stem}.pt"
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    torch.save(state, pt)
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "checkpoint": pt.name,
        "sha256": sha256_file(pt),
        "preset": preset_name,
        "config": {"model": asdict(model.config), "train": asdict(train_cfg)},
        "train_cov": train_cov,
        "seed": result.seed,
        "steps": result.steps,
        "device": result.device,
        "wall_s": round(result.wall_s, 3),
        "ms_per_step": round(result.ms_per_step, 3),
        "num_parameters": num_parameters(model),
        "final_loss": result.final_loss(),
        "first_loss": result.losses[0],
        "loss_curve_block": 50,
        "loss_curve": _loss_curve(result.losses, 50),
        "versions": library_versions(),
        "command": command,
    }
    path = out / f"{stem}.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k}: checkpoint {a.get(k)!r} vs requested {b.get(k)!r}" for k in keys if a.get(k) != b.get(k)]


def load_checkpoint(
    path: str | Path,
    *,
    expected: GPT2RegressorConfig | None = None,
    expected_train: GPT2TrainConfig | None = None,
    train_cov: str | None = None,
    device: torch.device | str | None = None,
) -> tuple[GPT2Regressor, dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint` (eval mode).

    Args:
        path: the manifest ``.json`` or the ``.pt`` file next to it.
        expected: the model configuration the caller wants; a checkpoint with any other
            configuration is refused.
        expected_train: likewise for the training configuration (``steps`` included).
        train_cov: likewise for the training covariance name.
        device: where to put the model.

    Returns:
        ``(model, manifest)``.

    Raises:
        ValueError: missing files, sha256 mismatch (file changed since it was written) or
            configuration mismatch.
    """
    p = Path(path)
    manifest_path = p.with_suffix(".json")
    if not manifest_path.is_file():
        raise ValueError(f"no manifest {manifest_path}; pass the .json written by tts_lib.gpt2_train")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{manifest_path} is not a {MANIFEST_FORMAT} manifest (format={manifest.get('format')!r})")
    pt = manifest_path.parent / manifest["checkpoint"]
    if not pt.is_file():
        raise ValueError(f"checkpoint file {pt} named in {manifest_path.name} is missing")
    digest = sha256_file(pt)
    if digest != manifest["sha256"]:
        raise ValueError(
            f"sha256 of {pt.name} is {digest[:12]}…, the manifest says {manifest['sha256'][:12]}…: the file "
            f"was changed or corrupted; retrain with the command in the manifest"
        )
    cfg, train_cfg = config_from_dict(manifest["config"])
    problems: list[str] = []
    if expected is not None:
        problems += _diff(asdict(cfg), asdict(expected))
    if expected_train is not None:
        # the parsed configuration (fields added to the library later take their defaults)
        problems += _diff(asdict(train_cfg) if train_cfg is not None else {}, asdict(expected_train))
    if train_cov is not None and manifest.get("train_cov") != train_cov:
        problems.append(f"train_cov: checkpoint {manifest.get('train_cov')!r} vs requested {train_cov!r}")
    if problems:
        raise ValueError(
            f"checkpoint {pt.name} does not match the requested configuration ("
            + "; ".join(problems)
            + f"); retrain with: {manifest.get('command')} adjusted, or request its configuration"
        )
    state = torch.load(pt, map_location="cpu", weights_only=True)
    model = GPT2Regressor(cfg)
    model.load_state_dict(state)
    model.to(device=device)
    model.eval()
    return model, manifest


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tts_lib.gpt2_train", description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--train-cov", choices=TRAIN_COVS, default="isotropic")
    ap.add_argument("--layout", choices=("compact", "interleaved"), default=None)
    ap.add_argument("--context-len", type=int, default=None, help="training n (default: the preset's)")
    ap.add_argument("--layers", type=int, default=None, help="transformer blocks (default: the preset's)")
    ap.add_argument("--width", type=int, default=None, help="hidden size (default: the preset's)")
    ap.add_argument("--start-zero-prob", type=float, default=None, help="share of starts at ŵ0 = 0 (1: zero only)")
    ap.add_argument("--label-noise", type=float, default=None, help="label noise std of the training prompts")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--stem", default=None, help="file stem (default: derived from the configuration)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda requested but no CUDA device is available; use --device cpu")
    if args.threads is not None:
        torch.set_num_threads(check_pos_int(args.threads, "threads"))
    override_names = ("steps", "layout", "context_len", "layers", "width", "start_zero_prob", "label_noise")
    overrides: dict[str, Any] = {k: getattr(args, k) for k in override_names if getattr(args, k) is not None}
    model_cfg, train_cfg = preset(args.preset, **overrides)
    cov = train_cov_matrix(args.train_cov, model_cfg.dim)
    model = build_model(model_cfg, seed=args.seed, device=args.device)
    print(f"{args.preset}: {num_parameters(model):,} parameters, {model_cfg}, {train_cfg}", flush=True)
    result = train_gpt2(
        model,
        cov,
        train_cfg,
        seed=args.seed,
        device=args.device,
        progress=not args.no_progress,
        desc=f"{args.preset}/{model_cfg.layout}/{args.train_cov}",
    )
    stem = args.stem or checkpoint_stem(args.preset, model_cfg, train_cfg, args.train_cov, args.seed)
    command = "python -m tts_lib.gpt2_train " + shlex.join(argv)
    path = save_checkpoint(
        model,
        args.out,
        stem,
        train_cfg=train_cfg,
        train_cov=args.train_cov,
        result=result,
        preset_name=args.preset,
        command=command,
    )
    print(
        f"final loss {result.final_loss():.4g} (first {result.losses[0]:.4g}), "
        f"{result.ms_per_step:.1f} ms/step, {result.wall_s:.1f} s; wrote {path}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
