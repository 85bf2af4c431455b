"""Evaluate base, aligned and misaligned SmolLM2 on the held-out GCD problems (Chapter 11).

Writes, under ``--out``:
* ``generations_<model>.jsonl`` (``generations_base.jsonl``,
  ``generations_aligned_seed0_step60.jsonl``, ...): one line per problem: operands,
  answer, Euclid rows, the generated text, its length in tokens, whether it finished, the
  parsed answer, correctness, graded steps and the mean log-probability of the reference
  solution.
* ``live_subset.json``: the first ``--live`` problems generated one at a time (batch 1,
  ``--live-tokens`` new tokens) by each model: the text the chapter re-generates and asserts.
* ``evaluation.json``: the command, settings, seconds and machine.

    OMP_NUM_THREADS=1 nice -n 10 python scripts/smollm_evaluate.py --num 128 --max-new-tokens 128 \\
        --live-tokens 40 --models aligned_seed0_step60 misaligned_seed0_step60

(Chapter 11's settings; its base model was evaluated with ``--models base`` and the same
settings, its seed-1 adapters with ``--models aligned_seed1_step60 misaligned_seed1_step60``.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from tts_lib import smollm


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["base", "aligned_seed0_step60", "misaligned_seed0_step60"],
                    help="'base' and/or adapter folders under --out, such as aligned_seed0_step60")
    ap.add_argument("--num", type=int, default=smollm.EVAL_SIZE)
    ap.add_argument("--max-new-tokens", type=int, default=160)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--logprob-num", type=int, default=None,
                    help="score the reference solution's likelihood on the first N problems (default: all)")
    ap.add_argument("--live", type=int, default=3)
    ap.add_argument("--live-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="book/checkpoints/smollm2")
    ap.add_argument("--suffix", default="", help="suffix of live_subset/evaluation .json (parallel runs)")
    ap.add_argument("--wait", action="store_true", help="load the model, then wait for the adapters to appear")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    problems = smollm.heldout_problems(args.num)
    model, tok = smollm.load_model()
    adapters = {m: out / m for m in args.models if m != "base"}
    while args.wait and not all((p / "adapter_model.safetensors").is_file() for p in adapters.values()):
        time.sleep(20)  # the fine-tunes save these; loading the model meanwhile saves time
    time.sleep(5 if args.wait else 0)
    net = smollm.load_adapters(model, adapters) if adapters else model
    live_path = out / f"live_subset{args.suffix}.json"
    live = json.loads(live_path.read_text()) if live_path.exists() else {}
    record = {}
    for name in args.models:
        t0 = time.perf_counter()
        ctx = smollm.use_adapter(net, name) if adapters else torch.no_grad()
        with ctx:
            gens = smollm.generate(net, tok, [p.question for p in problems], max_new_tokens=args.max_new_tokens,
                                   batch_size=args.batch_size, progress=True)
            gen_s = time.perf_counter() - t0
            n_lp = len(problems) if args.logprob_num is None else min(args.logprob_num, len(problems))
            logp = list(smollm.completion_logprob(net, tok, problems[:n_lp], batch_size=args.batch_size))
            logp += [float("nan")] * (len(problems) - n_lp)
            few = problems[:args.live]
            live[name] = {"problems": [p.operands for p in few], "max_new_tokens": args.live_tokens,
                          "texts": [smollm.generate(net, tok, [p.question], max_new_tokens=args.live_tokens,
                                                    batch_size=1)[0]["text"] for p in few]}
        fname = out / ("generations_base.jsonl" if name == "base" else f"generations_{name}.jsonl")
        with fname.open("w") as f:
            for i, (p, g, lp) in enumerate(zip(problems, gens, logp, strict=True)):
                parsed = smollm.parse_answer(g["text"])
                row = {"id": i, "a": p.operands[0], "b": p.operands[1], "gcd": int(p.answer),
                       "euclid_steps": p.steps, "text": g["text"], "num_tokens": g["num_tokens"],
                       "finished": g["finished"], "parsed": parsed, "correct": parsed == int(p.answer),
                       **{f"steps_{k}": v for k, v in smollm.check_steps(g["text"], *p.operands).items()},
                       "ref_logprob": None if lp != lp else round(float(lp), 4)}
                f.write(json.dumps(row) + "\n")
        acc = sum(smollm.parse_answer(g["text"]) == int(p.answer) for p, g in zip(problems, gens, strict=True))
        record[name] = {"generate_seconds": round(gen_s, 1), "total_seconds": round(time.perf_counter() - t0, 1),
                        "accuracy": acc / len(problems)}
        print(name, record[name], flush=True)
        live_path.write_text(json.dumps(live, indent=1) + "\n")
    meta_path = out / f"evaluation{args.suffix}.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    meta.setdefault("runs", []).append({
        "command": "OMP_NUM_THREADS=1 nice -n 10 python " + shlex.join(["scripts/smollm_evaluate.py", *sys.argv[1:]]),
        "num_problems": len(problems), "max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size,
        "models": record,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "device": "cpu",
                    "note": "shared 2-core VM, other jobs running (nice 10)"},
    })
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    main()
