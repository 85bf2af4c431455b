"""Every public function and class of the library says which chapter introduces it (d2l's
"Defined in …"), so a reader of the API knows where to look it up in the book."""

from __future__ import annotations

import importlib
import inspect

import pytest

MODULES = ["tasks", "prompts", "lsa", "baselines", "theory", "train", "overthinking", "selection",
           "noise", "finite_data", "cot_training", "metrics", "plotting", "gpt2", "gpt2_train", "gpt2_trainer",
           "gpt2_checkpoint", "gpt2_config", "trainer", "fetch", "finite_m", "lm", "euclid",
           "euclid_sweep", "bench_lm", "smollm"]


@pytest.mark.parametrize("name", MODULES)
def test_public_docstrings_name_their_chapter(name: str) -> None:
    mod = importlib.import_module(f"tts_lib.{name}")
    public = [
        obj_name
        for obj_name, obj in vars(mod).items()
        if not obj_name.startswith("_")
        and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == mod.__name__
        and not (inspect.isclass(obj) and issubclass(obj, BaseException))
    ]
    missing = [n for n in public if "Defined in Chapter" not in (getattr(mod, n).__doc__ or "")]
    assert not missing, f"tts_lib.{name}: docstrings without 'Defined in Chapter N': {missing}"
