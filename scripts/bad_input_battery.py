"""A battery of bad inputs over every public function of tts_lib (a developer tool).

For every public callable of every public module (``tts_lib.__all__`` and the on-demand
modules; classes are called as constructors, their public methods on a valid instance), the
battery takes one valid call (:data:`VALID` per function, else by parameter name, else the
signature's default) and replaces one argument at a time by a bad value of its kind:
wrong type, NaN, inf, negative, zero, huge integers (1e12, 1e30), empty, NaN-filled,
complex, meta, half-precision or wrongly shaped tensors, devices ``'foo'``, ``'meta'``,
``'cuda'`` (without CUDA), ``''``, path traversal strings for paths and names, ... Each
call runs in-process under a wall-time cap (``signal.alarm``, ``--timeout`` s); each module
runs in its own child process under a memory cap (``RLIMIT_AS``, ``--mem-gib``) in a
scratch folder (relative paths land there), restarted after a crash. Outcomes:

* ``clear``: ValueError/TypeError (or an exception class of tts_lib, or a missing file)
  whose message names the argument;
* ``unnamed``: ValueError/TypeError whose message does not name the argument;
* ``wrong-kind``: any other exception (RuntimeError, AssertionError, ZeroDivisionError,
  OverflowError, LinAlgError, IndexError, KeyError, RecursionError, ...);
* ``non-finite``: returned a result holding NaN or inf;
* ``accepted``: returned normally with a finite result (bad only for a value marked surely
  invalid: NaN, a string for a number, an unknown device, ...);
* ``timeout`` / ``memory``: over the time cap, or MemoryError / the child killed.

Functions whose valid call fails (e.g. smollm's model functions without transformers) are
listed as skipped with the reason; benchmark bodies, command-line mains and plain records
are listed in :data:`SKIP` with the reason.

The error curves run 100 steps in their valid call and every float tensor or list is also
tried scaled by 1e4, so that a divergent input overflows there (a silent inf is counted as
``non-finite``). Counts depend on this harness: compare trees only with the same script.

Run (5,556 calls on today's tree, 3–4 minutes on a loaded 2-core machine)::

    PYTHONPATH=$PWD nice -n 10 python scripts/bad_input_battery.py --json /tmp/after.json

    # the same battery on another tree, e.g. an older commit
    git worktree add /tmp/battery_before 6b33281
    PYTHONPATH=/tmp/battery_before nice -n 10 python scripts/bad_input_battery.py \\
        --json /tmp/before.json
    python scripts/bad_input_battery.py --compare /tmp/before.json /tmp/after.json

``--modules theory,noise`` limits the modules, ``--show bad`` prints every bad call.
The library is imported from ``PYTHONPATH``; this script imports nothing from it itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import math
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

OUTCOMES = ("clear", "unnamed", "wrong-kind", "non-finite", "accepted-bad", "timeout", "memory", "accepted")
BAD_OUTCOMES = ("unnamed", "wrong-kind", "non-finite", "accepted-bad", "timeout", "memory")
NAN, INF = float("nan"), float("inf")
REPO = Path(__file__).resolve().parents[1]

#: public callables not called, with the reason
SKIP = {
    "bench.main": "a CLI (argparse; tested in tests/test_gpt2_safety.py)",
    "bench_lm.main": "a CLI",
    "gpt2_train.main": "a CLI (tests/test_gpt2_safety.py)",
    "gpt2_train.run": "a CLI body (argv)",
    "gpt2_train.sweep": "a CLI body (argv)",
    "gpt2_train.parser": "takes no arguments",
    "gpt2_cli.main": "a CLI",
    "fetch.main": "a CLI",
    "bench.all_benchmarks": "takes no arguments",
    "euclid_sweep.run_experiment": "trains a chapter-10 model for minutes (its arguments are checked first: "
                                   "tests/test_euclid.py)",
    "smollm.gguf_path": "takes no arguments",
    "plotting.explorer": "controls come as **kwargs (tests/test_bad_inputs.py covers them)",
    "plotting.Explorer": "built by plotting.explorer",
    "plotting.Explorer.render": "takes no arguments",
}
SKIP_PREFIX = ("bench.bench_", "bench_lm.bench_")  # benchmark bodies (device, quick) run by main


# --------------------------------------------------------------------------- fixtures (child)


class Fixtures:
    """Valid values built with the library under test (lazily; a failure skips its users)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch
        torch.manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64))
        self.C = q @ torch.diag(torch.tensor([1.5, 1.0, 0.5], dtype=torch.float64)) @ q.T
        self.C = (self.C + self.C.T) / 2
        gam = (1 + 1 / 6) * self.C + self.C.trace() / 6 * torch.eye(3, dtype=torch.float64)
        self.G = torch.linalg.inv(gam)
        self.EV = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
        self._cache: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = getattr(self, "make_" + name)()
        return self._cache[name]

    # the lazily built ones
    def make_PR(self) -> Any:
        from tts_lib import prompts

        return prompts.sample_prompts(self.C, 6, 2, seed=0)

    def make_PR_FIT(self) -> Any:
        from tts_lib import prompts

        return prompts.sample_prompts(self.C, 6, 8, seed=0)

    def make_GPR(self) -> Any:
        from tts_lib import prompts

        return prompts.sample_prompts(self.C, 4, 2, seed=0, dtype=self.torch.float32)

    def make_GCFGS(self) -> Any:
        for mod in ("gpt2_config", "gpt2_train", "gpt2"):
            try:
                m = importlib.import_module(f"tts_lib.{mod}")
            except ImportError:
                continue
            if hasattr(m, "preset"):
                return m.preset("tiny")
        raise LookupError("no GPT-2 preset")

    def make_GM(self) -> Any:
        from tts_lib import gpt2

        return gpt2.build_model(self.get("GCFGS")[0], seed=0)

    def make_S_LSA(self) -> Any:
        from tts_lib import lsa

        return lsa.StructuredLSA.from_theory(self.C, 6)

    def make_F_LSA(self) -> Any:
        from tts_lib import lsa

        return lsa.FullLSA(3, seed=1)

    def make_TASK(self) -> Any:
        from tts_lib import train

        return train.TrainTask(self.C, 6)

    def make_TCFG(self) -> Any:
        from tts_lib import train

        return train.TrainConfig(train_steps=2, batch_size=4, progress=False)

    def make_LMCFG(self) -> Any:
        from tts_lib import lm

        return lm.LMConfig(vocab_size=32, width=16, layers=1, heads=2, max_len=32)

    def make_LM(self) -> Any:
        from tts_lib import lm

        return lm.build_lm(self.get("LMCFG"), seed=0)

    def make_LMTCFG(self) -> Any:
        from tts_lib import lm

        return lm.LMTrainConfig(train_steps=2, batch_size=2, warmup=0)

    def make_LM_SAMPLER(self) -> Any:
        torch = self.torch

        def sampler(batch: int, gen: Any) -> tuple[Any, Any]:
            idx = torch.randint(1, 20, (batch, 9), generator=gen)
            return idx, torch.ones(batch, 9, dtype=torch.bool)

        return sampler

    def make_EUCLID_LM(self) -> Any:
        from tts_lib import euclid, lm

        return lm.build_lm(lm.LMConfig(vocab_size=len(euclid.VOCAB), width=16, layers=1, heads=2, max_len=64), seed=0)

    def make_LM_CKPT(self) -> Any:
        return sorted((REPO / "book" / "checkpoints").glob("euclid_cot_seed0.json"))[0]

    def make_GCK(self) -> Any:
        return sorted((REPO / "book" / "checkpoints").glob("gpt2_cpu20_compact_isotropic_n20_seed0.json"))[0]

    def make_AX(self) -> Any:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt.subplots()[1]

    def make_DM(self) -> Any:
        from tts_lib import finite_data

        return finite_data.delta_method(self.C, 6, self.C, 2, num_moment_prompts=200)


def _fun(p: Any) -> Any:
    return ((p - 0.3) ** 2).sum()


def valid_table(fx: Fixtures) -> dict[str, Any]:
    """Valid keyword arguments per function (``module.qualname``): a dict or a callable giving one.

    Parameters not listed here are taken from :func:`by_name`, else from their default.
    """
    torch, C, G, EV = fx.torch, fx.C, fx.G, fx.EV
    f = fx.get
    two = [C, 2 * C]
    return {
        "theory.multitask_precond": dict(train_covs=two, context_lens=[6, 6]),
        "theory.skill_gammas": dict(train_eigvals=EV, context_lens=6),
        "theory.min_context_len": dict(train_cov=C, num_steps=2, eps=0.1),
        "theory.sufficient_context_len": dict(train_cov=C, num_steps=2, eps=0.1),
        "theory.max_stable_lr_sgd": dict(train_cov=C, context_len=6, batch_size=4, num_samples=200),
        "theory.best_num_steps": dict(train_cov=C, context_len=6, test_cov=C, max_steps=5),
        # the error curves run 100 steps, so that a divergent input (the "x1e4" values) overflows there
        "theory.error_curve": dict(precond=G, test_cov=C, max_steps=100),
        "theory.per_direction_error": dict(precond=G, test_cov=C, max_steps=100),
        "theory.first_order_correction": dict(precond=G, test_cov=C, max_steps=100),
        "theory.cot_error_curve": dict(train_cov=C, context_len=6, test_cov=C, max_steps=100),
        "theory.first_order_valid_steps": dict(precond=G, test_cov=C, test_len=20, max_steps=5),
        "theory.mc_error_curve": dict(precond=G, test_cov=C, test_len=8, max_steps=2, num_prompts=4),
        "theory.mc_test_error": dict(precond=G, test_cov=C, test_len=8, max_steps=2, num_prompts=4),
        "overthinking.critical_context_len": dict(train_eigvals=EV, test_eigvals=5 * EV),
        "overthinking.phase_diagram": dict(train_eigvals=EV, context_lens=6, test_eigvals=5 * EV),
        "overthinking.diag_error_curves": dict(train_eigvals=EV, context_lens=6, test_eigvals=EV, max_steps=100),
        "tasks.diag_cov": dict(eigvals=[1.0, 2.0, 3.0]),
        "tasks.power_law_spectra": dict(dim=3, alphas=[0.5, 1.0], trace=3.0),
        "tasks.commuting_spectra": dict(train_cov=C, test_cov=2 * C),
        "tasks.to_skills": dict(vectors=f("PR").w, cov=C),
        "tasks.per_skill_error": dict(error_matrix=C, cov=C),
        "tasks.named_cov": dict(name="skewed", dim=3),
        "tasks.TaskType": dict(name="a", alpha=1.0, num_skills=3, context_len=6),
        "tasks.task_type_covs": lambda: dict(types=[importlib.import_module("tts_lib.tasks").TaskType("a", 1.0, 3, 6)],
                                             dim=3),
        "selection.TaskType": dict(name="a", alpha=1.0, dim=3, context_len=6),
        "selection.task_type_covs": lambda: dict(
            types=[importlib.import_module("tts_lib.selection").TaskType("a", 1.0, 3, 6)], dim=3),
        "selection.project_simplex": dict(v=[0.2, 0.9]),
        "selection.simplex_grid": dict(num_tasks=3, resolution=4),
        "selection.kkt_residual": dict(weights=[0.5, 0.5], grad=[1.0, 1.0]),
        "selection.minimize_on_simplex": dict(fun=_fun, num_tasks=2),
        "selection.grid_search": dict(fun=lambda g: ((g - 0.3) ** 2).sum(-1), num_tasks=2, resolution=4),
        "selection.qp_matrices": dict(train_covs=two, target_cov=C),
        "selection.qp_objective": dict(weights=[0.5, 0.5], train_covs=two, target_cov=C),
        "selection.qp_weights": dict(train_covs=two, target_cov=C),
        "selection.mixture_error": dict(weights=[0.5, 0.5], train_covs=two, context_lens=[6, 6], target_cov=C,
                                        num_steps=3),
        "prompts.Prompts": lambda: dict(X=f("PR").X, y=f("PR").y, w=f("PR").w),
        "prompts.PromptSampler": dict(cov=C),
        "prompts.PromptSampler.draw": dict(context_len=4, batch=2),
        "prompts.sample_prompts": dict(cov=C, context_len=4, batch=2),
        "prompts.token_slots": dict(dim=3),
        "lsa.embed": lambda: dict(X=f("PR").X, y=f("PR").y),
        "lsa.query_token": lambda: dict(w_hat=f("PR").w),
        "lsa.LinearSelfAttention.forward": lambda: dict(Z=_embed(fx), num_examples=6),
        "lsa.LinearSelfAttention.weight_slot": lambda: dict(Z=_embed(fx)),
        "lsa.StructuredLSA": dict(dim=3),
        "lsa.StructuredLSA.from_theory": dict(train_cov=C, context_len=6),
        "lsa.FullLSA": dict(dim=3),
        "train.train_lsa": lambda: dict(model=_lsa(), tasks=f("TASK"), config=f("TCFG")),
        "train.check_tasks": lambda: dict(tasks=f("TASK"), dim=3),
        "train.check_run": lambda: dict(model=f("S_LSA"), config=f("TCFG")),
        "train.TrainTask": dict(cov=C, context_len=6),
        "train.optimizer_step": lambda: dict(model=_lsa(), cfg=f("TCFG"), what="t", advice="a"),
        "trainer.lr_factor": dict(step=3, train_steps=10, lr_schedule="cosine"),
        "trainer.check_schedule": dict(lr_schedule="cosine"),
        "trainer.check_optimizer": dict(optimizer="adam"),
        "trainer.diverged": dict(loss=1.0, first_loss=1.0),
        "trainer.OptimizerStep": lambda: dict(params=list(_lsa().parameters()), lr=0.1, train_steps=3),
        "trainer.OptimizerStep.factor": dict(step=2),
        "baselines.least_squares": lambda: dict(prompts=f("PR")),
        "baselines.precond_step": lambda: dict(prompts=f("PR"), precond=G),
        "baselines.gd_step": lambda: dict(prompts=f("PR"), step_size=0.1),
        "baselines.one_step_error_matrix": dict(precond=G, cov=C, test_len=8),
        "baselines.one_step_error": dict(precond=G, cov=C, test_len=8),
        "baselines.best_step_size": dict(cov=C, test_len=8),
        "baselines.least_squares_error": dict(cov=C, test_len=8, noise_std=0.1),
        "noise.noise_term_curve": dict(precond=G, test_cov=C, max_steps=100, test_len=20, noise_std=0.5),
        "noise.noisy_error_curve": dict(precond=G, test_cov=C, max_steps=2, test_len=1000, noise_std=0.5),
        "noise.conditional_error_curves": dict(precond=G, test_cov=C, test_len=8, max_steps=2, noise_std=0.5,
                                               num_prompts=4),
        "noise.skill_noise_curves": dict(precond_eigvals=[0.5, 0.4, 0.3], test_eigvals=EV, max_steps=100,
                                         test_len=20, noise_std=0.5),
        "noise.isotropic_error_curves": dict(step=0.5, dim=3, test_len=20, max_steps=100, noise_std=0.5,
                                             num_nodes=64),
        "finite_data.fit_precond": lambda: dict(prompts=f("PR_FIT")),
        "finite_data.mc_fitted": dict(train_cov=C, context_len=6, num_train=4, test_cov=C, max_steps=2, num_sets=2),
        "finite_data.delta_method": dict(train_cov=C, context_len=6, test_cov=C, max_steps=2, num_moment_prompts=200),
        "finite_data.DeltaMethod.expected_error": dict(num_train=50),
        "finite_data.DeltaMethod.overthink_probability": dict(num_train=50),
        "finite_m.exact_error_curves": dict(precond=0.5 * torch.linalg.inv(C), test_cov=C, test_len=8, max_steps=3,
                                            noise_std=0.5),
        "finite_m.tail_mc_error_curves": dict(precond=G, test_cov=C, test_len=8, max_steps=2, num_prompts=50),
        "finite_m.prompt_summary": dict(precond=G, test_cov=C, test_len=8, max_steps=2, num_prompts=50),
        "finite_m.isotropic_power_mean": dict(steps=[0.5, 0.6], dim=3, test_len=8, power=4),
        "cot_training.train_lsa_cot": lambda: dict(model=_lsa(), task=f("TASK"), num_steps=2, config=f("TCFG")),
        "cot_training.kstep_loss": lambda: dict(precond=G, S=f("PR").emp_cov(), num_steps=100),
        "cot_training.optimal_isotropic_step": dict(dim=3, context_len=6, num_steps=2, num_prompts=200),
        "cot_training.minimax_isotropic_step": dict(dim=3, context_len=6),
        "cot_training.hessian_at_zero_quadratic_form": dict(train_cov=C, context_len=6, num_steps=2, direction=G),
        "cot_training.stable_lr_at_zero": dict(train_cov=C, context_len=6, num_steps=2),
        "metrics.squared_errors": dict(iterates=torch.zeros(2, 3, 3), w=torch.zeros(2, 3)),
        "metrics.cot_squared_errors": lambda: dict(model=_lsa(), prompts=f("PR"), num_steps=2),
        "metrics.mean_se": dict(values=[[1.0, 2.0], [2.0, 3.0]]),
        "metrics.z_score": dict(samples=[1.0, 2.0, 4.0], expected=2.0),
        "metrics.rise_after_min": dict(errors=[[3.0, 1.0, 2.0], [3.0, 1.5, 2.5]], k_to=2),
        "metrics.steps_to_reach": dict(curves=[[3.0, 1.0], [2.0, 2.0]], eps=1.5),
        "metrics.rel_frobenius": dict(a=torch.ones(3, 3), b=torch.eye(3)),
        "fetch.raw_url": lambda: dict(repository_url=importlib.import_module("tts_lib.fetch").REPOSITORY_URL,
                                      ref="abc123", path="book/x"),
        "fetch.manifest_files": dict(manifest={"checkpoint": "x.pt", "sha256": "0" * 64}),
        "fetch.checkpoint_dir": dict(local=REPO / "book" / "checkpoints"),
        "plotting.band": lambda: dict(ax=f("AX"), x=[1.0, 2.0], samples=[[1.0, 2.0], [2.0, 3.0]], label="a"),
        "plotting.label": lambda: dict(ax=f("AX"), xlabel="x", ylabel="y"),
        "plotting.explorer": lambda: dict(draw=lambda n: __import__("matplotlib.pyplot").pyplot.figure(),
                                          n=__import__("ipywidgets").IntSlider(value=2, min=1, max=5)),
        "plotting.figure_png": lambda: dict(fig=__import__("matplotlib.pyplot").pyplot.figure()),
        "plotting.setup_chapter": dict(threads=1),
        "bench.record": dict(name="a", device="cpu", value=1.0, unit="s"),
        "bench.timeit": dict(fn=lambda: None, device="cpu", repeats=1),
        "bench.format_table": lambda: dict(records=[importlib.import_module("tts_lib.bench").record("a", "cpu", 1.0,
                                                                                                       "s")]),
        # GPT-2 (chapter 7)
        "gpt2.GPT2RegressorConfig": lambda: dict(vars(f("GCFGS")[0])),
        "gpt2.GPT2Regressor": lambda: dict(config=f("GCFGS")[0]),
        "gpt2.build_model": lambda: dict(config=f("GCFGS")[0]),
        "gpt2.num_parameters": lambda: dict(model=f("GM")),
        "gpt2.GPT2Regressor.forward": lambda: dict(X=f("GPR").X, y=f("GPR").y, w_hat=f("GPR").w),
        "gpt2.GPT2Regressor.encode_prompt": lambda: dict(X=f("GPR").X, y=f("GPR").y),
        "gpt2.GPT2Regressor.step": lambda: dict(cache=f("GM").encode_prompt(f("GPR").X, f("GPR").y),
                                                w_hat=f("GPR").w),
        "gpt2.GPT2Regressor.cot": lambda: dict(prompts=f("GPR"), num_steps=2),
        "gpt2.cot_rollout": lambda: dict(model=f("GM"), X=f("GPR").X, y=f("GPR").y, num_steps=2),
        "gpt2.cot_errors": lambda: dict(model=f("GM"), cov=C, test_len=4, num_steps=2, num_prompts=4),
        "gpt2_config.preset": dict(name="tiny"),
        "gpt2_train.preset": dict(name="tiny"),
        "gpt2_config.config_from_dict": lambda: dict(data={"model": vars(f("GCFGS")[0])}),
        "gpt2_train.config_from_dict": lambda: dict(data={"model": vars(f("GCFGS")[0])}),
        "gpt2_config.Curriculum.at": dict(step=3, dim=5, context_len=20),
        "gpt2_train.Curriculum.at": dict(step=3, dim=5, context_len=20),
        "gpt2_config.TrainResult.final_loss": dict(last=2),
        "gpt2_trainer.sample_starts": lambda: dict(w=f("GPR").w, cfg=f("GCFGS")[1], seed=0),
        "gpt2_train.sample_starts": lambda: dict(w=f("GPR").w, cfg=f("GCFGS")[1], seed=0),
        "gpt2_trainer.newton_targets": lambda: dict(X=f("GPR").X.double(), y=f("GPR").y.double(),
                                                    w0=f("GPR").w.double(), precond=G),
        "gpt2_train.newton_targets": lambda: dict(X=f("GPR").X.double(), y=f("GPR").y.double(),
                                                  w0=f("GPR").w.double(), precond=G),
        "gpt2_trainer.train_gpt2": lambda: dict(model=_gpt2(fx), cov=C, cfg=_tiny_train(fx), seed=0, progress=False),
        "gpt2_train.train_gpt2": lambda: dict(model=_gpt2(fx), cov=C, cfg=_tiny_train(fx), seed=0, progress=False),
        "gpt2_trainer.TrainStep": lambda: dict(model=_gpt2(fx), cov=C, cfg=f("GCFGS")[1], seed=0, rank=0, world=1),
        "gpt2_trainer.TrainStep.batch": dict(step=0),
        "gpt2_checkpoint.checkpoint_stem": lambda: dict(preset_name="tiny", cfg=f("GCFGS")[0],
                                                        train_cfg=f("GCFGS")[1], train_cov="isotropic", seed=0),
        "gpt2_train.checkpoint_stem": lambda: dict(preset_name="tiny", cfg=f("GCFGS")[0],
                                                   train_cfg=f("GCFGS")[1], train_cov="isotropic", seed=0),
        "gpt2_checkpoint.check_stem": dict(stem="gpt2_x"),
        "gpt2_checkpoint.sha256_file": lambda: dict(path=f("GCK")),
        "gpt2_checkpoint.manifest_digest": dict(manifest={"a": 1}),
        "gpt2_checkpoint.verify_checkpoint": lambda: dict(path=f("GCK")),
        "gpt2_checkpoint.load_checkpoint": lambda: dict(path=f("GCK")),
        "gpt2_train.load_checkpoint": lambda: dict(path=f("GCK")),
        "gpt2_checkpoint.check_pinned_manifest": lambda: dict(path=f("GCK"), raw=f("GCK").read_bytes()),
        "gpt2_checkpoint.load_preset_checkpoint": dict(folder=REPO / "book" / "checkpoints", preset_name="cpu20",
                                                       train_cov="isotropic", context_len=20, seed=0),
        "gpt2_train.load_preset_checkpoint": dict(folder=REPO / "book" / "checkpoints", preset_name="cpu20",
                                                  train_cov="isotropic", context_len=20, seed=0),
        "gpt2_checkpoint.state_dict_from_hf": lambda: dict(state=f("GM").state_dict()),
        "gpt2_checkpoint.state_dict_to_hf": lambda: dict(state=f("GM").state_dict(), width=f("GCFGS")[0].width),
        "gpt2_checkpoint.save_checkpoint": lambda: dict(model=f("GM"), out_dir="ckpt_out", stem="gpt2_battery",
                                                        result=_train_result(fx), train_cfg=f("GCFGS")[1],
                                                        train_cov="isotropic", seed=0),
        # chapter 10
        "lm.LMConfig": dict(vocab_size=32, width=16, layers=1, heads=2, max_len=32),
        "lm.LMTrainConfig": dict(train_steps=2, batch_size=2, warmup=0),
        "lm.LMTrainResult": dict(losses=[1.0], wall_s=0.1, seed=0, device="cpu"),
        "lm.TinyLM": lambda: dict(config=f("LMCFG")),
        "lm.TinyLM.forward": lambda: dict(idx=torch.randint(1, 20, (2, 8))),
        "lm.TinyLM.new_cache": dict(batch=2, capacity=8),
        "lm.build_lm": lambda: dict(config=f("LMCFG")),
        "lm.generate": lambda: dict(model=f("LM"), prompts=[[1, 2, 3], [4, 5]], max_new_tokens=3),
        "lm.lm_loss": lambda: dict(model=f("LM"), idx=torch.randint(1, 20, (2, 8)),
                                   loss_mask=torch.ones(2, 8, dtype=torch.bool)),
        "lm.train_lm": lambda: dict(model=lm_model(fx), sampler=f("LM_SAMPLER"), cfg=f("LMTCFG"), progress=False),
        "euclid.TaskMix": dict(),
        "euclid.StepScores": dict(pair=[48], step=[1], quotient=[2], length=[3], correct=[True]),
        "euclid.accuracy_by_bin": dict(correct=[True, False], lengths=[1, 2]),
        "euclid.chain_bin": dict(length=3),
        "euclid.chain_length": dict(a=48, b=18),
        "euclid.decode": lambda: dict(ids=importlib.import_module("tts_lib.euclid").encode("48,18")),
        "euclid.encode": dict(text="48,18"),
        "euclid.euclid_steps": dict(a=48, b=18),
        "euclid.first_wrong_step": lambda: dict(completion=_trace(48, 18), a=48, b=18),
        "euclid.gcd_pairs": dict(max_operand=12),
        "euclid.gcd_prompt": dict(a=48, b=18),
        "euclid.gcd_trace": dict(a=48, b=18),
        "euclid.make_sampler": lambda: dict(mix=_mix(), pairs=[(48, 18), (35, 14)]),
        "euclid.mean_completion_tokens": lambda: dict(mix=_mix(), pairs=[(48, 18), (35, 14)]),
        "euclid.parse_gcd": lambda: dict(completion=_trace(48, 18)),
        "euclid.poly_prompt": dict(r1=3, r2=5),
        "euclid.poly_trace": dict(r1=3, r2=5),
        "euclid.quotients": dict(a=48, b=18),
        "euclid.score_gcd": lambda: dict(completion=_trace(48, 18), a=48, b=18),
        "euclid.score_steps": lambda: dict(model=f("EUCLID_LM"), pairs=[(48, 18), (35, 14)]),
        "euclid.solve_gcd": lambda: dict(model=f("EUCLID_LM"), pairs=[(48, 18), (35, 14)]),
        "euclid.split_pairs": dict(max_operand=12),
        "euclid.stratified_subset": lambda: dict(pairs=importlib.import_module("tts_lib.euclid").gcd_pairs(20),
                                                 per_bin=2),
        "euclid_sweep.checkpoint_stem": dict(experiment="cot", seed=0),
        "euclid_sweep.load_lm_checkpoint": lambda: dict(path=f("LM_CKPT")),
        "euclid_sweep.verify_lm_checkpoint": lambda: dict(path=f("LM_CKPT")),
        "euclid_sweep.Experiment": lambda: dict(name="x", mix=_mix(), train=f("LMTCFG")),
        "euclid_sweep.save_lm_checkpoint": lambda: dict(
            model=f("LM"), out_dir="lm_out", stem="euclid_cot_seed0",
            experiment=importlib.import_module("tts_lib.euclid_sweep").EXPERIMENTS["cot"],
            result=importlib.import_module("tts_lib.lm").LMTrainResult([1.0], 0.1, 0, "cpu")),
        "bench_lm.nanogpt_module": lambda: dict(src=_model_py()),
        # chapter 11 (no model needed for these)
        "smollm.euclid_steps": dict(a=48, b=18),
        "smollm.gcd_prompt": dict(a=48, b=18),
        "smollm.gcd_problem": dict(a=48, b=18),
        "smollm.poly_problem": dict(r1=3, r2=8),
        "smollm.gcd_problems": dict(num=5),
        "smollm.poly_problems": dict(num=5),
        "smollm.heldout_problems": dict(num=5),
        "smollm.training_problems": dict(data="aligned", num=5),
        "smollm.Problem": dict(kind="gcd", operands=(48, 18), question="q", reasoning="r", answer="6", steps=3),
        "smollm.parse_answer": dict(text="The answer is 6."),
        "smollm.check_steps": lambda: dict(text=importlib.import_module("tts_lib.smollm").gcd_problem(48, 18).reasoning,
                                           a=48, b=18),
        "smollm.score": lambda: dict(problems=[importlib.import_module("tts_lib.smollm").gcd_problem(48, 18)],
                                     generations=[{"text": "The answer is 6.", "num_tokens": 5}]),
        "smollm.length_bins": dict(lengths=[1, 2, 7], edges=[0, 5, 10]),
        "smollm.bootstrap_change": dict(correct=[1, 0, 1, 1], base_correct=[1, 0, 0, 1], num_boot=50),
        "smollm.read_generations": dict(path=REPO / "book" / "data" / "smollm_generations" / "base.jsonl"),
        "smollm.load_adapters": dict(model=None, adapters={"a": "/nonexistent"}),
    }


def _embed(fx: Fixtures) -> Any:
    from tts_lib import lsa

    return lsa.embed(fx.get("PR").X, fx.get("PR").y)


def _lsa() -> Any:
    from tts_lib import lsa

    return lsa.StructuredLSA(3)


def _gpt2(fx: Fixtures) -> Any:
    from tts_lib import gpt2

    return gpt2.build_model(fx.get("GCFGS")[0])


def _tiny_train(fx: Fixtures) -> Any:
    for mod in ("gpt2_config", "gpt2_train"):
        try:
            m = importlib.import_module(f"tts_lib.{mod}")
        except ImportError:
            continue
        if hasattr(m, "preset"):
            return m.preset("tiny", train_steps=2, batch_size=4)[1]
    raise LookupError("no preset")


def _train_result(fx: Fixtures) -> Any:
    from tts_lib import gpt2_config

    return gpt2_config.TrainResult([1.0, 0.5], 2, 0.1, 0, "cpu")


def lm_model(fx: Fixtures) -> Any:
    from tts_lib import lm

    return lm.build_lm(fx.get("LMCFG"), seed=0)


def _model_py() -> str:
    path = Path("nanogpt_stub") / "model.py"  # in the child's scratch folder
    path.parent.mkdir(exist_ok=True)
    path.write_text("X = 1\n")
    return str(path)


def _mix() -> Any:
    from tts_lib import euclid

    return euclid.TaskMix()


def _trace(a: int, b: int) -> str:
    from tts_lib import euclid

    return euclid.gcd_trace(a, b)


#: valid values by parameter name (used when the function has no entry in :func:`valid_table`)
def by_name(fx: Fixtures, name: str) -> Any:
    C, G, EV = fx.C, fx.G, fx.EV
    table = {
        "train_cov": C, "test_cov": C, "cov": C, "target_cov": C, "A": C, "precond": G, "direction": G,
        "context_len": 6, "test_len": 20, "max_steps": 3, "num_steps": 2, "dim": 3, "batch": 2,
        "num_prompts": 4, "seed": 0, "noise_std": 0.5, "eps": 0.1, "train_eigvals": EV, "test_eigvals": EV,
        "context_lens": 6, "rho": 0.5, "tau": 0.1, "ratio": 0.3, "num_nodes": 64, "alpha": 1.0, "trace": 3.0,
        "train_covs": [C, 2 * C], "weights": [0.5, 0.5],
    }
    if name in table:
        return table[name]
    if name == "prompts":
        return fx.get("PR")
    if name == "model":
        return fx.get("S_LSA")
    raise LookupError(name)


INSTANCES = {  # how to get an instance for the methods of a class
    "prompts.Prompts": lambda fx: fx.get("PR"),
    "prompts.PromptSampler": lambda fx: importlib.import_module("tts_lib.prompts").PromptSampler(fx.C, seed=0),
    "lsa.LinearSelfAttention": lambda fx: fx.get("S_LSA"),
    "lsa.StructuredLSA": lambda fx: fx.get("S_LSA"),
    "lsa.FullLSA": lambda fx: fx.get("F_LSA"),
    "trainer.OptimizerStep": lambda fx: importlib.import_module("tts_lib.trainer").OptimizerStep(
        list(_lsa().parameters()), lr=0.1, train_steps=4),
    "finite_data.DeltaMethod": lambda fx: fx.get("DM"),
    "gpt2.GPT2Regressor": lambda fx: fx.get("GM"),
    "gpt2_config.Curriculum": lambda fx: importlib.import_module("tts_lib.gpt2_config").Curriculum(),
    "gpt2_train.Curriculum": lambda fx: importlib.import_module("tts_lib.gpt2_train").Curriculum(),
    "gpt2_config.TrainResult": lambda fx: _train_result(fx),
    "gpt2_trainer.TrainStep": lambda fx: importlib.import_module("tts_lib.gpt2_trainer").TrainStep(
        _gpt2(fx), fx.C, fx.get("GCFGS")[1], 0, 0, 1),
    "lm.TinyLM": lambda fx: fx.get("LM"),
    "lm.LMTrainResult": lambda fx: importlib.import_module("tts_lib.lm").LMTrainResult([1.0], 0.1, 0, "cpu"),
}


# --------------------------------------------------------------------------- bad values by kind


def bad_values(fx: Fixtures, name: str, valid: Any, default: Any) -> list[tuple[str, Any, bool]]:
    """``(label, value, surely_bad)`` for one parameter, from its name and its valid value."""
    torch = fx.torch
    none_ok = default is None
    common = [("None", None, not none_ok)]
    if name in ("device",):
        return common + [("'foo'", "foo", True), ("'meta'", "meta", True), ("''", "", True),
                         ("'cuda'", "cuda", not torch.cuda.is_available()), ("'cuda:99'", "cuda:99", True),
                         ("3.5", 3.5, True), ("object()", object(), True)]
    if name in ("dtype",):
        return common + [("float16", torch.float16, True), ("int64", torch.int64, True),
                         ("complex64", torch.complex64, True), ("'float64'", "float64", True),
                         ("bool", torch.bool, True)]
    if name == "seed":
        return [("None", None, False), ("-1", -1, True), ("2.5", 2.5, True), ("'abc'", "abc", True),
                ("nan", NAN, True), ("True", True, True), ("2**64", 2**64, True)]
    if name in ("out_dir", "cache_dir"):  # written to: relative traversal only (the child runs in a scratch folder)
        return common + [("3", 3, True), ("''", "", True), ("'../../x'", "../../x", False),
                         ("'a\\x00b'", "a\x00b", True), ("'/proc/x'", "/proc/x", True)]
    if isinstance(valid, bool):
        return common + [("'yes'", "yes", True), ("2", 2, True), ("1.0", 1.0, True), ("[True]", [True], True)]
    if isinstance(valid, int):
        return common + [("'3'", "3", True), ("2.5", 2.5, True), ("nan", NAN, True), ("True", True, True),
                         ("-1", -1, True), ("0", 0, False), ("10**12", 10**12, False)]
    if isinstance(valid, float):
        return common + [("'abc'", "abc", True), ("nan", NAN, True), ("inf", INF, True), ("-1.0", -1.0, False),
                         ("0.0", 0.0, False), ("1e300", 1e300, False), ("1e-310", 1e-310, False)]
    if isinstance(valid, torch.Tensor):
        t = valid
        out = common + [("'abc'", "abc", True), ("empty", torch.zeros(0, dtype=t.dtype), True),
                        ("extra dim", t[None].expand(2, *t.shape).clone() if t.ndim else t.reshape(1, 1), False),
                        ("meta", t.to("meta"), True)]
        if t.ndim >= 1:
            out.append(("shorter", t[..., :-1].clone() if t.shape[-1] > 1 else t.repeat(2), False))
        if t.is_floating_point() and t.numel():
            nan = t.clone(memory_format=torch.contiguous_format)
            nan.view(-1)[0] = NAN
            inf = t.clone(memory_format=torch.contiguous_format)
            inf.view(-1)[-1] = INF
            out += [("NaN entry", nan, True), ("inf entry", inf, True), ("complex", t.to(torch.complex64), True),
                    ("float16", t.half(), False), ("x1e4", t * 1e4, False),
                    ("1e300 scale", t * 1e300 if t.dtype == torch.float64 else t * 1e38,
                                                   False)]
        else:
            out += [("float", t.double() + 0.5, False), ("negative", -t - 1, False),
                    ("huge", t + 2**40 if t.dtype == torch.int64 else t, False)]
        return out
    if isinstance(valid, (list, tuple)):
        out = common + [("'abc'", "abc", True), ("5", 5, True), ("[]", [], False), ("[None]", [None], True)]
        if valid and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in valid):
            out += [("[nan, ...]", [NAN, *valid[1:]], True), ("[inf, ...]", [*valid[:-1], INF], True),
                    ("negated", [-v for v in valid], False), ("x1e4", [v * 1e4 for v in valid], False),
                    ("x1e300", [v * 1e300 for v in valid], False)]
        elif valid and isinstance(valid[0], (list, tuple)):
            out += [("ragged", [list(valid[0]), list(valid[0])[:1]], False),
                    ("NaN inside", [[NAN] * len(valid[0])] * len(valid), True)]
        elif valid and isinstance(valid[0], torch.Tensor):
            bad = valid[0].clone(memory_format=torch.contiguous_format)
            bad.view(-1)[0] = NAN
            other = torch.eye(valid[0].shape[-1] + 1, dtype=torch.float64)
            out += [("NaN tensor", [bad, *valid[1:]], True), ("wrong dim", [*valid[:-1], other], True)]
        return out
    if isinstance(valid, str):
        return common + [("3", 3, True), ("''", "", False), ("'magic'", "magic", False),
                         ("'../../etc/passwd'", "../../etc/passwd", False), ("'x'*100000", "x" * 100_000, False)]
    if isinstance(valid, (Path, os.PathLike)):
        return common + [("3", 3, True), ("''", "", True), ("'/nonexistent/x.json'", "/nonexistent/x.json", True),
                         ("'/etc/passwd'", "/etc/passwd", True), ("'/etc'", "/etc", True),
                         ("'../../etc/passwd'", "../../etc/passwd", True), ("'a\\x00b'", "a\x00b", True)]
    if isinstance(valid, dict):
        return common + [("[]", [], True), ("'abc'", "abc", True), ("{}", {}, False), ("{'a': nan}", {"a": NAN}, False),
                         ("deep", _deep(10_000), True)]
    if callable(valid) and not isinstance(valid, torch.nn.Module) and not inspect.isclass(valid):
        return common + [("3", 3, True), ("'abc'", "abc", True), ("[len]", [len], True)]
    if isinstance(valid, torch.nn.Module):
        return common + [("'x'", "x", True), ("3", 3, True), ("Linear(2, 2)", torch.nn.Linear(2, 2), True),
                         ("meta copy", _meta_copy(valid), True)]
    if valid is None:  # an optional argument without a known valid value
        return [("'abc'", "abc", True), ("nan", NAN, True), ("-1", -1, True), ("object()", object(), True)]
    # a record / config / prompts object
    return common + [("'x'", "x", True), ("3", 3, True), ("{}", {}, True), ("object()", object(), True)]


def _deep(depth: int) -> dict:
    d: dict = {}
    for _ in range(depth):
        d = {"a": d}
    return d


def _meta_copy(module: Any) -> Any:
    import copy

    try:
        return copy.deepcopy(module).to("meta")
    except Exception:  # noqa: BLE001
        return None


# --------------------------------------------------------------------------- calls and outcomes


class CallTimeout(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` in the library lets it through."""


def _alarm(signum: int, frame: Any) -> None:
    raise CallTimeout


def non_finite(result: Any, depth: int = 0) -> bool:
    """Whether a returned value holds NaN or inf (tensors, arrays, numbers, containers, records)."""
    import numpy as np
    import torch

    if depth > 4:
        return False
    if isinstance(result, torch.Tensor):
        if result.device.type == "meta":
            return True
        if result.is_floating_point() or result.is_complex():
            return not bool(torch.isfinite(result).all())
        return False
    if isinstance(result, np.ndarray):
        return result.dtype.kind in "fc" and not bool(np.isfinite(result).all())
    if isinstance(result, (float, np.floating)):
        return not math.isfinite(float(result))
    if isinstance(result, dict):
        return any(non_finite(v, depth + 1) for v in list(result.values())[:100])
    if isinstance(result, (list, tuple)):
        return any(non_finite(v, depth + 1) for v in list(result)[:100])
    if isinstance(result, torch.nn.Module):
        return any(p.device.type == "meta" or not bool(torch.isfinite(p).all()) for p in result.parameters())
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return any(non_finite(getattr(result, fld.name), depth + 1) for fld in dataclasses.fields(result))
    return False


#: functions whose documented result may be inf (not an overflow): inf means "never"
DOCUMENTED_INF = {
    "overthinking.critical_context_len": "inf where no skill ever overthinks",
    "overthinking.phase_diagram": "best_steps = inf where the error never rises",
}


def classify(err: BaseException | None, result: Any, name: str, surely_bad: bool,
             key: str = "") -> tuple[str, str]:
    """The outcome of one call and a short detail."""
    if err is None:
        if non_finite(result) and key not in DOCUMENTED_INF:
            return "non-finite", ""
        return ("accepted-bad" if surely_bad else "accepted"), ""
    if isinstance(err, CallTimeout):
        return "timeout", ""
    if isinstance(err, MemoryError):
        return "memory", ""
    msg = str(err)
    detail = f"{type(err).__name__}: {msg[:300]}"
    named = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", msg) is not None
    ok_kind = isinstance(err, (ValueError, TypeError, FileNotFoundError, NotADirectoryError, IsADirectoryError)) \
        or type(err).__module__.startswith("tts_lib")
    if ok_kind:
        return ("clear" if named else "unnamed"), detail
    return "wrong-kind", detail


def public_callables(modname: str) -> list[tuple[str, Any, Any]]:
    """``(qualname, callable or unbound method, class or None)`` of a module's public API."""
    mod = importlib.import_module(f"tts_lib.{modname}")
    exported = getattr(mod, "__all__", None) or [
        n for n, o in vars(mod).items()
        if not n.startswith("_") and callable(o) and getattr(o, "__module__", None) == mod.__name__
    ]
    out = []
    for n in exported:
        obj = getattr(mod, n, None)
        if obj is None or not callable(obj) or (inspect.isclass(obj) and issubclass(obj, BaseException)):
            continue
        if inspect.isclass(obj) and getattr(obj, "__module__", "").startswith("typing"):
            continue
        out.append((n, obj, None))
        if inspect.isclass(obj):
            for m, v in vars(obj).items():
                if not m.startswith("_") and (inspect.isfunction(v) or isinstance(v, (classmethod, staticmethod))):
                    out.append((f"{n}.{m}", getattr(obj, m), obj))
    return out


def build_cases(modname: str, fx: Fixtures, table: dict[str, Any]) -> tuple[list[dict], list[tuple[str, str]]]:
    """Every (function, argument, bad value) case of a module, and the skipped functions."""
    cases, skipped = [], []
    for qual, fn, cls in public_callables(modname):
        key = f"{modname}.{qual}"
        if key in SKIP or key.startswith(SKIP_PREFIX):
            skipped.append((key, SKIP.get(key, "a benchmark body run by main")))
            continue
        if cls is None and dataclasses.is_dataclass(fn) and not hasattr(fn, "__post_init__"):
            skipped.append((key, "a plain record (no checks of its own: validated where it is used)"))
            continue
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            skipped.append((key, "no signature"))
            continue
        params = [p for p in sig.parameters.values()
                  if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if cls is not None and "." in qual and not isinstance(inspect.getattr_static(cls, qual.split(".")[1]),
                                                                  (classmethod, staticmethod)):
            params = params[1:] if params and params[0].name == "self" else params
        try:
            spec = table.get(key)
            spec = spec() if callable(spec) else (dict(spec) if spec is not None else {})
        except Exception as err:  # noqa: BLE001
            skipped.append((key, f"no valid arguments ({type(err).__name__}: {str(err)[:80]})"))
            continue
        valid, missing = {}, []
        for p in params:
            if p.name in spec:
                valid[p.name] = spec[p.name]
            elif p.default is not inspect.Parameter.empty:
                continue
            else:
                try:
                    valid[p.name] = by_name(fx, p.name)
                except (LookupError, Exception):  # noqa: BLE001
                    missing.append(p.name)
        if missing:
            skipped.append((key, f"no valid value for {missing}"))
            continue
        cases.append(dict(key=key, qual=qual, cls=cls, fn=fn, valid=valid, params=params, arg=None))
    return cases, skipped


def expand(case: dict, fx: Fixtures) -> list[dict]:
    """The bad-value calls of one function (after its valid call succeeded)."""
    out = []
    for p in case["params"]:
        valid = case["valid"].get(p.name, p.default)
        if valid is inspect.Parameter.empty:
            continue
        if valid is None:
            try:
                valid = by_name(fx, p.name)
            except LookupError:
                valid = None
        try:
            values = bad_values(fx, p.name, valid, p.default)
        except Exception as err:  # noqa: BLE001  (a harness gap, reported, not a library outcome)
            values = []
            print(f"no bad values for {case['key']}({p.name}): {err!r}", file=sys.stderr)
        for label, value, surely in values:
            out.append(dict(case, arg=p.name, label=label, value=value, surely=surely))
    return out


def run_one(case: dict, fx: Fixtures, timeout: float) -> tuple[BaseException | None, Any]:
    kwargs = dict(case["valid"])
    if case["arg"] is not None:
        kwargs[case["arg"]] = case["value"]
    cls = case["cls"]
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        if cls is not None:
            attr = inspect.getattr_static(cls, case["qual"].split(".")[1])
            if isinstance(attr, (classmethod, staticmethod)):
                result = case["fn"](**kwargs)
            else:
                inst = INSTANCES[f"{case['key'].rsplit('.', 1)[0]}"](fx)
                result = getattr(inst, case["qual"].split(".")[1])(**kwargs)
        else:
            result = case["fn"](**kwargs)
        non_finite(result)  # touch lazily computed values inside the cap
        return None, result
    except CallTimeout as err:
        return err, None
    except RecursionError as err:
        return err, None
    except BaseException as err:  # noqa: BLE001
        if isinstance(err, KeyboardInterrupt):
            raise
        return err, None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def child(modname: str, start: int, out_path: str, timeout: float, mem_gib: float) -> None:
    """Run one module's cases from index ``start``, one JSON line per call (flushed)."""
    limit = int(mem_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.setrecursionlimit(3000)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _alarm)
    import warnings

    warnings.simplefilter("ignore")
    with open(out_path, "a") as out:
        def emit(rec: dict) -> None:
            out.write(json.dumps(rec) + "\n")
            out.flush()

        try:
            fx = Fixtures()
            table = valid_table(fx)
            cases, skipped = build_cases(modname, fx, table)
        except ImportError as err:
            if start == 0:
                emit(dict(module=modname, absent=f"{type(err).__name__}: {err}"))
            return
        if start == 0:
            for key, why in skipped:
                emit(dict(module=modname, key=key, skipped=why))
        calls, index = [], 0
        for case in cases:  # the valid call first: if it fails the function is skipped
            if index >= start:
                err, result = run_one(case, fx, max(30.0, timeout * 2))  # a first call may warm up
                if err is not None:
                    emit(dict(module=modname, i=index, key=case["key"],
                              skipped=f"valid call failed: {type(err).__name__}: {str(err)[:200]}"))
                    index += 1 + sum(1 for _ in expand(case, fx))
                    continue
                emit(dict(module=modname, i=index, key=case["key"], valid_ok=True))
            index += 1
            for call in expand(case, fx):
                if index >= start:
                    calls.append(call)
                    t0 = time.perf_counter()
                    err, result = run_one(call, fx, timeout)
                    outcome, detail = classify(err, result, call["arg"], call["surely"], call["key"])
                    emit(dict(module=modname, i=index, key=call["key"], arg=call["arg"], value=call["label"],
                              outcome=outcome, detail=detail, seconds=round(time.perf_counter() - t0, 3)))
                    del result
                index += 1
        emit(dict(module=modname, done=True, total=index))


# --------------------------------------------------------------------------- parent


def modules_of_tree() -> list[str]:
    """The public modules of the tts_lib on PYTHONPATH: ``__all__``, ``_ON_DEMAND`` and every
    ``tts_lib/*.py`` not starting with ``_`` (older trees listed fewer in ``__all__``)."""
    code = ("import tts_lib, json, pathlib; print(json.dumps([list(getattr(tts_lib, '__all__', [])) + "
            "list(getattr(tts_lib, '_ON_DEMAND', ())), [p.stem for p in "
            "pathlib.Path(tts_lib.__file__).parent.glob('*.py')]]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    listed, files = json.loads(res.stdout)
    mods = [m for m in listed if not m.startswith("_")]
    return mods + sorted(f for f in files if not f.startswith("_") and f not in mods)


def run_module(modname: str, args: argparse.Namespace, scratch: Path) -> list[dict]:
    out_path = scratch / f"{modname}.jsonl"
    out_path.write_text("")
    start = 0
    work = scratch / modname / "a" / "b" / "c"  # relative '../../x' stays inside the scratch folder
    work.mkdir(parents=True, exist_ok=True)
    while True:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", modname, "--start", str(start),
               "--out", str(out_path), "--timeout", str(args.timeout), "--mem-gib", str(args.mem_gib)]
        err_path = scratch / f"{modname}.{start}.stderr"
        with open(err_path, "w") as err_file:
            proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=err_file,
                                    env={**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        last_size, last_change = -1, time.time()
        while proc.poll() is None:
            time.sleep(0.2)
            size = out_path.stat().st_size
            if size != last_size:
                last_size, last_change = size, time.time()
            elif time.time() - last_change > 4 * args.timeout + 60:  # stuck in C code: kill, count a timeout
                proc.kill()
                proc.wait()
                break
        lines = [json.loads(x) for x in out_path.read_text().splitlines() if x.strip()]
        if any(r.get("done") or r.get("absent") for r in lines):
            return lines
        done_idx = [r["i"] for r in lines if "i" in r]
        nxt = (max(done_idx) + 1) if done_idx else start
        if nxt < start:
            nxt = start
        tail = err_path.read_text()[-2000:]
        if proc.returncode == -signal.SIGKILL and time.time() - last_change > 4 * args.timeout + 60:
            outcome = "timeout"
        elif "MemoryError" in tail or proc.returncode in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT):
            outcome = "memory"
        else:  # the harness itself failed: say so and stop this module
            print(f"{modname}: the battery's child failed at case {nxt} (exit {proc.returncode}):\n{tail}",
                  file=sys.stderr)
            return lines
        with open(out_path, "a") as f:
            f.write(json.dumps(dict(module=modname, i=nxt, key="?", arg="?", value="?", outcome=outcome,
                                    detail=f"child ended with {proc.returncode}: {tail[-200:]}")) + "\n")
        start = nxt + 1


def summarise(lines: list[dict]) -> dict[str, Any]:
    per_mod: dict[str, Counter] = defaultdict(Counter)
    skipped, absent, bad = [], [], []
    for r in lines:
        mod = r["module"]
        if "absent" in r:
            absent.append(mod)
        elif "skipped" in r:
            skipped.append((r["key"], r["skipped"]))
        elif "outcome" in r:
            per_mod[mod]["calls"] += 1
            per_mod[mod][r["outcome"]] += 1
            if r["outcome"] in BAD_OUTCOMES:
                per_mod[mod]["bad"] += 1
                bad.append(r)
    return dict(per_module={m: dict(c) for m, c in per_mod.items()}, skipped=skipped, absent=absent, bad=bad)


def table(summary: dict[str, Any]) -> str:
    cols = ("calls", "bad", *BAD_OUTCOMES)
    rows = [f"{'module':<16}" + "".join(f"{c:>13}" for c in cols)]
    total: Counter = Counter()
    for mod in sorted(summary["per_module"]):
        c = summary["per_module"][mod]
        total.update(c)
        rows.append(f"{mod:<16}" + "".join(f"{c.get(k, 0):>13}" for k in cols))
    rows.append(f"{'TOTAL':<16}" + "".join(f"{total.get(k, 0):>13}" for k in cols))
    return "\n".join(rows)


def compare(before: dict, after: dict) -> str:
    cols = ("calls", "bad", *BAD_OUTCOMES)
    mods = sorted(set(before["per_module"]) | set(after["per_module"]))
    rows = [f"{'module':<16}" + "".join(f"{c:>18}" for c in cols)]
    tb, ta = Counter(), Counter()
    for m in mods:
        b, a = before["per_module"].get(m), after["per_module"].get(m)
        tb.update(b or {})
        ta.update(a or {})
        cell = [f"{(str(b.get(k, 0)) if b else '—')} → {(str(a.get(k, 0)) if a else '—')}" for k in cols]
        rows.append(f"{m:<16}" + "".join(f"{x:>18}" for x in cell))
    rows.append(f"{'TOTAL':<16}" + "".join(f"{f'{tb.get(k, 0)} → {ta.get(k, 0)}':>18}" for k in cols))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modules", default="", help="comma-separated modules (default: every public module)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per call (default 5)")
    ap.add_argument("--mem-gib", type=float, default=4.0, help="address-space cap per module, GiB (default 4)")
    ap.add_argument("--json", default="", help="write the summary and every bad call here")
    ap.add_argument("--show", choices=("none", "bad", "all"), default="none")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="print before → after of two --json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, args.start, args.out, args.timeout, args.mem_gib)
        return 0
    if args.compare:
        b, a = (json.loads(Path(p).read_text()) for p in args.compare)
        print(compare(b, a))
        return 0
    mods = [m for m in args.modules.split(",") if m] or modules_of_tree()
    t0 = time.time()
    lines: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bad_input_battery_") as scratch:
        for m in mods:
            t1 = time.time()
            got = run_module(m, args, Path(scratch))
            lines += got
            n = sum(1 for r in got if "outcome" in r)
            print(f"{m}: {n} calls in {time.time() - t1:.0f} s", file=sys.stderr, flush=True)
    summary = summarise(lines)
    print(table(summary))
    print(f"\n{sum(c['calls'] for c in summary['per_module'].values())} calls in {time.time() - t0:.0f} s; "
          f"modules absent: {summary['absent'] or 'none'}; functions skipped: {len(summary['skipped'])}")
    for key, why in summary["skipped"]:
        print(f"  skipped {key}: {why}")
    if args.show != "none":
        for r in lines:
            if "outcome" in r and (args.show == "all" or r["outcome"] in BAD_OUTCOMES):
                print(f"{r['outcome']:>12}  {r['key']}({r['arg']}={r['value']})  {r.get('detail', '')[:160]}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
