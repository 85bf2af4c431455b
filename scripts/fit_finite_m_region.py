"""One-off: where is the first-order finite-m expansion within 5% of Monte Carlo?

Runs ``theory.mc_test_error`` (Wishart Ŝ, w averaged exactly) on the grid of issue 12
(d = 10, Σ = Λ, isotropic and λ_i ∝ 1/i spectra with tr Λ = d, n ∈ {10, 20, 50, 100},
m ∈ {50, 200, 1000}, k ≤ 20) and writes, per cell and k, the MC mean, its standard
error, the raw expansion and the relative error. ``tests/test_finite_m.py`` checks the
library's rule (``theory.first_order_valid_steps``) on a subset of this grid.

    python scripts/fit_finite_m_region.py [--prompts 100000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json

from tts_lib import tasks, theory

D, K = 10, 20
SPECTRA = {"iso": lambda: tasks.isotropic_cov(D), "1/i": lambda: tasks.power_law_cov(D, 1.0, trace=float(D))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=100_000)
    ap.add_argument("--json", default="finite_m_grid.json")
    args = ap.parse_args()
    rows = []
    for name, make in SPECTRA.items():
        lam = make()
        for n in (10, 20, 50, 100):
            G = theory.lsa_precond(lam, n)
            for m in (50, 200, 1000):
                v = theory.mc_test_error(G, lam, m, K, args.prompts, seed=1000 * n + m)
                mean, se = v.mean(0), v.std(0) / len(v) ** 0.5
                fo = theory._first_order_curve(G, lam, K, m)
                rel = (fo - mean) / mean
                k_rule = theory.first_order_valid_steps(G, lam, m, K)
                rows.append(dict(spectrum=name, n=n, m=m, mean=mean.tolist(), se=se.tolist(),
                                 median=v.median(0).values.tolist(), first_order=fo.tolist(),
                                 rel=rel.tolist(), k_rule=int(k_rule)))
                ok = [k for k in range(K + 1) if abs(rel[k]) <= 0.05]
                k_true = next((k - 1 for k in range(K + 1) if k not in ok), K)
                print(f"{name:4s} n={n:3d} m={m:4d}  k_true={k_true:2d} k_rule={int(k_rule):2d}  "
                      + " ".join(f"{100 * float(r):+.1f}" for r in rel[2:11]), flush=True)
    with open(args.json, "w") as f:
        json.dump(rows, f)


if __name__ == "__main__":
    main()
