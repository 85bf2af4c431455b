"""tts_lib: the library of the course *Training data and test-time scaling*.

Modules (one per concept):

* :mod:`tts_lib.tasks` — feature covariances, skills, hardness ``tr(Λ)/λ_min(Λ)``.
* :mod:`tts_lib.prompts` — sampling in-context weight-prediction prompts.
* :mod:`tts_lib.theory` — closed forms: Γ, CoT error curves, scaling and overthinking.
* :mod:`tts_lib.lsa` — the linear self-attention layer (structured and full) and CoT.
* :mod:`tts_lib.train` — training the LSA on fresh prompts.
* :mod:`tts_lib.baselines` — least squares and one-step estimators, exact one-step errors.
* :mod:`tts_lib.overthinking` — per-skill overthinking condition, phase diagrams.
* :mod:`tts_lib.plotting` — the course's figure style.
"""

from . import baselines, lsa, overthinking, plotting, prompts, tasks, theory, train

__all__ = ["baselines", "lsa", "overthinking", "plotting", "prompts", "tasks", "theory", "train"]
__version__ = "0.1.0"
