"""Compare GPT-2 training protocols at d = 20: which makes the CoT error fall over >= 8 steps?

Each protocol trains the ``cpu20`` preset (width 64, 3 layers unless stated) on one
training covariance and context length, then runs CoT on fixed isotropic (and matched)
test prompts and writes the mean error per step to a JSON file::

    python scripts/gpt2_protocols.py --protocol newton --train-steps 2000 --out protocols.json

Protocols: ``refine`` (target w, one pass: the default trainer), ``newton`` (target: one
pseudo-Newton step of the trained LSA), ``unroll4`` (target w on each of 4 unrolled steps),
``refine_L1`` (refinement, one layer). Results are appended under the protocol's key.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from tts_lib.gpt2 import build_model, cot_rollout
from tts_lib.gpt2_train import preset, train_gpt2
from tts_lib.prompts import sample_prompts
from tts_lib.tasks import isotropic_cov, named_cov

PROTOCOLS = {
    "refine": {"target": "w"},
    "newton": {"target": "newton"},
    "unroll4": {"target": "w", "unroll": 4},
    "refine_L1": {"target": "w", "layers": 1},
    "newton_L1": {"target": "newton", "layers": 1},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), required=True)
    ap.add_argument("--train-steps", "--steps", dest="train_steps", type=int, default=2000)
    ap.add_argument("--context-len", type=int, default=20)
    ap.add_argument("--train-cov", default="isotropic")
    ap.add_argument("--m", type=int, default=40)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg, tcfg = preset(
        "cpu20", train_steps=args.train_steps, context_len=args.context_len, **PROTOCOLS[args.protocol]
    )
    model = build_model(cfg, seed=0)
    t0 = time.perf_counter()
    res = train_gpt2(model, named_cov(args.train_cov, 20), tcfg, seed=0, progress=False)
    wall = time.perf_counter() - t0
    curves = {}
    for name, cov in (("isotropic", isotropic_cov(20)), ("matched", named_cov(args.train_cov, 20))):
        pr = sample_prompts(cov, args.m, 2000, seed=123, dtype=torch.float32)
        it = cot_rollout(model, pr.X, pr.y, args.k)
        err = ((it.double() - pr.w.double()[:, None]) ** 2).sum(-1)
        curves[name] = {
            "mean": err.mean(0).tolist(),
            "se": (err.std(0) / err.shape[0] ** 0.5).tolist(),
        }
    key = f"{args.protocol}/{args.train_cov}/n{args.context_len}/steps{args.train_steps}"
    path = Path(args.out)
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = {"final_loss": res.final_loss(), "train_s": wall, "m": args.m, **curves}
    path.write_text(json.dumps(data, indent=1))
    iso = curves["isotropic"]["mean"]
    print(key, f"{wall:.0f}s loss {res.final_loss():.4f}", " ".join(f"{e:.3f}" for e in iso))


if __name__ == "__main__":
    main()
