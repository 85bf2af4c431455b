"""Euclid's algorithm written out in characters: traces, a tokenizer, answer parsing (Chapter 10).

The aligned task: the greatest common divisor with every division step written out,

    gcd(84,36): 84=2*36+12; 36=3*12+0; so 12

The *chain length* is the number of division steps (here 2): the test-time compute the
problem needs. A step's quotient is the skill it uses. Operands are ``1 <= b <= a <= 63``
(our choice): chains of 1 to 8 steps, a trace of at most 97 characters.

The misaligned task: the integer roots of a monic quadratic with roots ``1 <= r1 <= r2
<= 9``, found by evaluating the polynomial at ``t = 1, 2, …, r2``:

    roots(x^2-5x+6): p(1)=2; p(2)=0; p(3)=0; so 2,3

Its steps use other skills (products and sums of small numbers, signs) and other
characters, and share only the digits and the separators with the GCD traces.

Every model answer is scored by :func:`score_gcd`: the text after the last ``"so "`` must
be exactly the greatest common divisor; anything malformed (no ``so``, not a number, a
cut-off chain) is wrong, never an exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._checks import InputTypeError, check_pos_int, check_real, check_sequence, make_generator

__all__ = [
    "BINS",
    "EOS",
    "MAX_OPERAND",
    "PAD",
    "VOCAB",
    "StepScores",
    "TaskMix",
    "accuracy_by_bin",
    "chain_bin",
    "chain_length",
    "decode",
    "encode",
    "euclid_steps",
    "first_wrong_step",
    "gcd_pairs",
    "gcd_prompt",
    "gcd_trace",
    "make_sampler",
    "mean_completion_tokens",
    "parse_gcd",
    "poly_prompt",
    "poly_trace",
    "quotients",
    "score_gcd",
    "score_steps",
    "solve_gcd",
    "split_pairs",
    "stratified_subset",
]

#: largest operand of the GCD problems (our choice: chains of 1–8 steps)
MAX_OPERAND = 63
MAX_ROOT = 9
#: the characters the model reads and writes; id 0 is padding, "\n" ends a trace
PAD, EOS = "_", "\n"
VOCAB = PAD + EOS + " (),:;=*+-^0123456789cdgoprstx"
_ID = {c: i for i, c in enumerate(VOCAB)}
#: chain-length bins: 1, 2, …, 5 and "6+" (6 to 8 steps)
BINS: tuple[str, ...] = ("1", "2", "3", "4", "5", "6+")


# --------------------------------------------------------------------------- tokenizer


def encode(text: str) -> list[int]:
    """Character ids of ``text`` (every character must be in :data:`VOCAB`).

    Defined in Chapter 10.
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str, got {type(text).__name__}")
    bad = sorted({c for c in text if c not in _ID})
    if bad:
        raise ValueError(f"`text` holds characters outside the vocabulary: {bad!r}; allowed: {VOCAB!r}")
    return [_ID[c] for c in text]


def decode(ids: Iterable[int]) -> str:
    """Text of token ids; padding is dropped, and the text stops after the first ``"\\n"``
    (which is dropped too). Unknown ids are an error.

    Defined in Chapter 10.
    """
    if isinstance(ids, torch.Tensor):
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)):
        raise TypeError("`ids` must be token ids, not text")
    try:
        ids = list(ids)
    except TypeError as err:
        raise InputTypeError(f"`ids` must be a list of token ids, got {type(ids).__name__}") from err
    out = []
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < len(VOCAB):
            raise ValueError(f"`ids` holds {v!r}, not a token id in [0, {len(VOCAB)})")
        c = VOCAB[v]
        if c == EOS:
            break
        if c != PAD:
            out.append(c)
    return "".join(out)


# --------------------------------------------------------------------------- GCD traces


def _check_pair(a: Any, b: Any, names: tuple[str, str] = ("a", "b")) -> tuple[int, int]:
    a = check_pos_int(a, names[0])
    b = check_pos_int(b, names[1])
    if b > a:
        raise ValueError(f"`{names[1]}` must be <= `{names[0]}` (write gcd(a, b) with a >= b), got a={a}, b={b}")
    return a, b


def _check_pairs(pairs: Any, name: str = "pairs") -> list[tuple[int, int]]:
    """A list of (a, b) pairs, each checked by :func:`_check_pair` (errors name ``pairs[i]``)."""
    items = check_sequence(pairs, name)
    out = []
    for i, p in enumerate(items):
        if isinstance(p, (torch.Tensor, np.ndarray)):
            p = p.tolist()
        if isinstance(p, (str, bytes)) or not isinstance(p, (tuple, list)) or len(p) != 2:
            raise InputTypeError(f"`{name}[{i}]` must be an (a, b) pair of integers, got {p!r}")
        out.append(_check_pair(*p, names=(f"{name}[{i}][0]", f"{name}[{i}][1]")))
    if not out:
        raise ValueError(f"`{name}` must hold at least one (a, b) pair")
    return out


def euclid_steps(a: int, b: int) -> list[tuple[int, int, int, int]]:
    """Euclid's division steps ``(a, q, b, r)`` with ``a = q·b + r``, down to ``r = 0``.

    Defined in Chapter 10.
    """
    a, b = _check_pair(a, b)
    steps = []
    while b:
        q, r = divmod(a, b)
        steps.append((a, q, b, r))
        a, b = b, r
    return steps


def chain_length(a: int, b: int) -> int:
    """Number of division steps of ``gcd(a, b)``.

    Defined in Chapter 10.
    """
    return len(euclid_steps(a, b))


def quotients(a: int, b: int) -> list[int]:
    """The quotient of every step: the skills the chain needs.

    Defined in Chapter 10.
    """
    return [q for _, q, _, _ in euclid_steps(a, b)]


def chain_bin(length: int) -> str:
    """The bin label of a chain length (``"1"`` … ``"5"``, ``"6+"``).

    Defined in Chapter 10.
    """
    length = check_pos_int(length, "length")
    return BINS[min(length, len(BINS)) - 1]


def gcd_prompt(a: int, b: int) -> str:
    """The problem statement ``"gcd(a,b):"`` (what the model is given).

    Defined in Chapter 10.
    """
    a, b = _check_pair(a, b)
    return f"gcd({a},{b}):"


def _step_text(a: int, q: int, b: int, r: int) -> str:
    """One division step as the traces write it: ``"a=q*b+r"``."""
    return f"{a}={q}*{b}+{r}"


def gcd_trace(a: int, b: int, *, cot: bool = True) -> str:
    """The completion after :func:`gcd_prompt`: the written-out steps and the answer
    (``cot=True``, e.g. ``" 84=2*36+12; 36=3*12+0; so 12"``) or the answer only
    (``" so 12"``). Without the end-of-sequence character.

    Defined in Chapter 10.
    """
    if not isinstance(cot, bool):
        raise TypeError(f"`cot` must be True or False, got {cot!r}")
    steps = euclid_steps(a, b)
    answer = steps[-1][2]
    if not cot:
        return f" so {answer}"
    body = "; ".join(_step_text(*step) for step in steps)
    return f" {body}; so {answer}"


_STEP = re.compile(r"(\d{1,6})=(\d{1,6})\*(\d{1,6})\+(\d{1,6})")
_ANSWER = re.compile(r"so (\d{1,6})")


@dataclass(frozen=True)
class ParsedGCD:
    """A completion read back: its steps ``(a, q, b, r)`` and its answer (None where the
    text has none); ``well_formed`` when the whole text follows the trace grammar.

    Defined in Chapter 10.
    """

    steps: tuple[tuple[int, int, int, int], ...]
    answer: int | None
    well_formed: bool


def parse_gcd(completion: str) -> ParsedGCD:
    """Read a completion (the text after ``"gcd(a,b):"``); never raises on model output.

    Defined in Chapter 10.
    """
    if not isinstance(completion, str):
        raise TypeError(f"`completion` must be a str, got {type(completion).__name__}")
    text = completion.strip()
    parts = [p.strip() for p in text.split(";")]
    steps: list[tuple[int, int, int, int]] = []
    answer = None
    ok = bool(parts)
    for j, part in enumerate(parts):
        m_step = _STEP.fullmatch(part)
        m_ans = _ANSWER.fullmatch(part)
        if m_step and j < len(parts) - 1:
            steps.append(tuple(int(g) for g in m_step.groups()))  # type: ignore[arg-type]
        elif m_ans and j == len(parts) - 1:
            answer = int(m_ans.group(1))
        else:
            ok = False
    if answer is None:
        ok = False
        m = re.search(r"so (\d{1,6})\s*$", text)  # a bare trailing answer still counts as read
        answer = int(m.group(1)) if m else None
    return ParsedGCD(tuple(steps), answer, ok)


def score_gcd(completion: str, a: int, b: int) -> bool:
    """True iff the completion is well formed and its answer is ``gcd(a, b)`` (the steps
    are not graded here; :func:`first_wrong_step` does that).

    Defined in Chapter 10.
    """
    a, b = _check_pair(a, b)
    if not isinstance(completion, str):
        return False  # not text at all: a wrong answer, not a bad argument
    parsed = parse_gcd(completion)
    return parsed.well_formed and parsed.answer == math.gcd(a, b)


def first_wrong_step(completion: str, a: int, b: int) -> int | None:
    """Index of the first written step that differs from Euclid's (a missing step, an extra
    one, or a wrong answer counts at its position); None when the whole chain is right.

    Defined in Chapter 10.
    """
    truth = euclid_steps(a, b)
    parsed = parse_gcd(completion)  # checks `completion`
    for j, step in enumerate(truth):
        if j >= len(parsed.steps) or parsed.steps[j] != step:
            return j
    if len(parsed.steps) > len(truth) or not parsed.well_formed or parsed.answer != math.gcd(a, b):
        return len(truth)
    return None


# --------------------------------------------------------------------------- polynomial roots


def _check_roots(r1: Any, r2: Any) -> tuple[int, int]:
    r1 = check_pos_int(r1, "r1", maximum=MAX_ROOT)
    r2 = check_pos_int(r2, "r2", maximum=MAX_ROOT)
    if r1 > r2:
        raise ValueError(f"`r1` must be <= `r2`, got r1={r1}, r2={r2}")
    return r1, r2


def poly_prompt(r1: int, r2: int) -> str:
    """``"roots(x^2-5x+6):"`` for the polynomial ``(x - r1)(x - r2)``.

    Defined in Chapter 10.
    """
    r1, r2 = _check_roots(r1, r2)
    return f"roots(x^2-{r1 + r2}x+{r1 * r2}):"


def poly_trace(r1: int, r2: int) -> str:
    """The completion: ``p(t)`` for ``t = 1 … r2``, then the roots, e.g.
    ``" p(1)=2; p(2)=0; p(3)=0; so 2,3"``.

    Defined in Chapter 10.
    """
    r1, r2 = _check_roots(r1, r2)
    s, p = r1 + r2, r1 * r2
    body = "; ".join(f"p({t})={t * t - s * t + p}" for t in range(1, r2 + 1))
    return f" {body}; so {r1},{r2}"


# --------------------------------------------------------------------------- problem pools


def gcd_pairs(max_operand: int = MAX_OPERAND) -> list[tuple[int, int]]:
    """Every pair ``1 <= b <= a <= max_operand``.

    Defined in Chapter 10.
    """
    max_operand = check_pos_int(max_operand, "max_operand", maximum=MAX_OPERAND)
    return [(a, b) for a in range(1, max_operand + 1) for b in range(1, a + 1)]


def split_pairs(
    *, test_frac: float = 0.25, seed: int = 0, max_operand: int = MAX_OPERAND
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """A train/test split of :func:`gcd_pairs`, stratified by chain-length bin (the same
    fraction of every bin is held out). Returns ``(train, test)``.

    Defined in Chapter 10.
    """
    test_frac = check_real(test_frac, "test_frac", minimum=0.0, maximum=1.0, open_min=True)
    if test_frac >= 1.0:
        raise ValueError("`test_frac` must be < 1 (something must be left to train on)")
    g = make_generator(seed)
    by_bin: dict[str, list[tuple[int, int]]] = {}
    for pair in gcd_pairs(max_operand):
        by_bin.setdefault(chain_bin(chain_length(*pair)), []).append(pair)
    train, test = [], []
    for label in BINS:
        pool = by_bin.get(label, [])
        perm = torch.randperm(len(pool), generator=g).tolist()
        k = round(test_frac * len(pool))
        test += [pool[i] for i in perm[:k]]
        train += [pool[i] for i in perm[k:]]
    return sorted(train), sorted(test)


def stratified_subset(
    pairs: Sequence[tuple[int, int]], per_bin: int, *, seed: int = 0
) -> list[tuple[int, int]]:
    """At most ``per_bin`` pairs of every chain-length bin of ``pairs`` (all of a smaller bin),
    drawn without replacement with ``seed``; sorted.

    Defined in Chapter 10.
    """
    per_bin = check_pos_int(per_bin, "per_bin")
    g = make_generator(seed)
    by_bin: dict[str, list[tuple[int, int]]] = {}
    for pair in _check_pairs(pairs):
        by_bin.setdefault(chain_bin(chain_length(*pair)), []).append(pair)
    out = []
    for label in BINS:
        pool = by_bin.get(label, [])
        perm = torch.randperm(len(pool), generator=g).tolist()[:per_bin]
        out += [pool[i] for i in perm]
    return sorted(out)


# --------------------------------------------------------------------------- training data


@dataclass(frozen=True)
class TaskMix:
    """A training distribution over the two tasks.

    Attributes:
        gcd_weight, poly_weight: task probabilities (normalised; one may be 0).
        bins: the chain-length bins GCD problems are drawn from, each equally often (a
            bin first, then a pair of that bin uniformly): e.g. ``("1", "2", "3")`` for
            short chains only.
        exclude_quotients: drop every training pair whose chain has a step with one of
            these quotients (a skill removed from the data).
        cot: GCD completions with the written steps (True) or the answer only (False).

    Defined in Chapter 10.
    """

    gcd_weight: float = 1.0
    poly_weight: float = 0.0
    bins: tuple[str, ...] = BINS
    exclude_quotients: tuple[int, ...] = ()
    cot: bool = True

    def __post_init__(self) -> None:
        for name in ("gcd_weight", "poly_weight"):
            check_real(getattr(self, name), name, minimum=0.0, maximum=1e6)
        if self.gcd_weight + self.poly_weight <= 0:
            raise ValueError("`gcd_weight` + `poly_weight` must be > 0")
        if isinstance(self.bins, str) or not isinstance(self.bins, tuple) or not self.bins:
            raise ValueError(f"`bins` must be a non-empty tuple of labels from {BINS}, got {self.bins!r}")
        unknown = [b for b in self.bins if b not in BINS]
        if unknown:
            raise ValueError(f"`bins` holds unknown labels {unknown}; use labels from {BINS}")
        if not isinstance(self.exclude_quotients, tuple):
            raise ValueError(f"`exclude_quotients` must be a tuple of ints, got {self.exclude_quotients!r}")
        for q in self.exclude_quotients:
            check_pos_int(q, "exclude_quotients[i]")
        if not isinstance(self.cot, bool):
            raise TypeError(f"`cot` must be True or False, got {self.cot!r}")


def _gcd_pools(mix: TaskMix, pairs: Sequence[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    excl = set(mix.exclude_quotients)
    pools: dict[str, list[tuple[int, int]]] = {b: [] for b in mix.bins}
    for a, b in pairs:
        label = chain_bin(chain_length(a, b))
        if label in pools and not excl.intersection(quotients(a, b)):
            pools[label].append((a, b))
    empty = [label for label, pool in pools.items() if not pool]
    if empty and mix.gcd_weight > 0:
        raise ValueError(f"no training pair left in bin(s) {empty} (check `bins` and `exclude_quotients`)")
    return [pools[b] for b in mix.bins]


_POLYS = [(r1, r2) for r2 in range(1, MAX_ROOT + 1) for r1 in range(1, r2 + 1)]


def _example(mix: TaskMix, pool: list[tuple[int, int]], g: torch.Generator) -> tuple[str, str]:
    u = float(torch.rand((), generator=g, dtype=torch.float32))  # same stream under any default dtype
    if u * (mix.gcd_weight + mix.poly_weight) < mix.gcd_weight:
        a, b = pool[int(torch.randint(len(pool), (), generator=g))]
        return gcd_prompt(a, b), gcd_trace(a, b, cot=mix.cot)
    r1, r2 = _POLYS[int(torch.randint(len(_POLYS), (), generator=g))]
    return poly_prompt(r1, r2), poly_trace(r1, r2)


def make_sampler(mix: TaskMix, pairs: Sequence[tuple[int, int]]):
    """A batch sampler for :func:`tts_lib.lm.train_lm`: ``(batch, g) -> (idx, loss_mask)``,
    (batch, t) each; sequences are ``prompt + completion + "\\n"`` padded with id 0, and
    the loss covers the completion and the end-of-sequence token only. The GCD problems of
    one batch share one chain-length bin (drawn per batch, each bin equally often): similar
    lengths, so little padding, about 1.7× less work per step than mixed batches.

    Args:
        mix: the :class:`TaskMix`.
        pairs: the GCD pairs training may use (e.g. the train half of :func:`split_pairs`).

    Defined in Chapter 10.
    """
    if not isinstance(mix, TaskMix):
        raise TypeError(f"`mix` must be a TaskMix, got {type(mix).__name__}")
    pools = _gcd_pools(mix, _check_pairs(pairs))

    def sample(batch: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        pool = pools[int(torch.randint(len(pools), (), generator=g))]  # one bin per batch
        rows = [_example(mix, pool, g) for _ in range(batch)]
        seqs = [(encode(p), encode(c + EOS)) for p, c in rows]
        t = max(len(p) + len(c) for p, c in seqs)
        idx = torch.zeros(batch, t, dtype=torch.long)
        mask = torch.zeros(batch, t)
        for i, (p, c) in enumerate(seqs):
            idx[i, : len(p) + len(c)] = torch.tensor(p + c)
            mask[i, len(p) : len(p) + len(c)] = 1.0
        return idx, mask

    return sample


def mean_completion_tokens(mix: TaskMix, pairs: Sequence[tuple[int, int]]) -> float:
    """Expected number of loss tokens (completion + end token) of one example of ``mix``
    (exact, averaged over its pools).

    Defined in Chapter 10.
    """
    if not isinstance(mix, TaskMix):
        raise InputTypeError(f"`mix` must be a TaskMix, got {type(mix).__name__}")
    pools = _gcd_pools(mix, _check_pairs(pairs))
    total = mix.gcd_weight + mix.poly_weight
    gcd = sum(sum(len(gcd_trace(a, b, cot=mix.cot)) + 1 for a, b in pool) / len(pool) for pool in pools) / len(pools)
    poly = sum(len(poly_trace(*r)) + 1 for r in _POLYS) / len(_POLYS)
    return (mix.gcd_weight * gcd + mix.poly_weight * poly) / total


# --------------------------------------------------------------------------- evaluation


def accuracy_by_bin(correct: Sequence[bool], lengths: Sequence[int]) -> dict[str, float]:
    """Fraction correct per chain-length bin (bins with no problem are left out).

    Defined in Chapter 10.
    """
    correct, lengths = check_sequence(correct, "correct"), check_sequence(lengths, "lengths")
    if len(correct) != len(lengths):
        raise ValueError(f"`correct` and `lengths` must have the same length, got {len(correct)} and {len(lengths)}")
    hits: dict[str, list[bool]] = {}
    for i, (c, n) in enumerate(zip(correct, lengths, strict=True)):
        if not _is_flag(c):
            raise InputTypeError(f"`correct[{i}]` must be True/False (or 1/0), got {c!r}")
        hits.setdefault(chain_bin(check_pos_int(n, f"lengths[{i}]")), []).append(bool(c))
    return {b: sum(hits[b]) / len(hits[b]) for b in BINS if b in hits}


def _is_flag(c: Any) -> bool:
    """True/False, 1/0 (Python, numpy or a one-element tensor)."""
    if isinstance(c, torch.Tensor):
        return c.numel() == 1 and not c.is_complex() and float(c) in (0.0, 1.0)
    return isinstance(c, (bool, int, float, np.bool_, np.number)) and not isinstance(c, complex) and c in (0, 1)


@torch.no_grad()
def _check_model_and_pairs(model: Any, pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The boundary of :func:`solve_gcd` and :func:`score_steps`: a TinyLM and ≥ 1 checked pair."""
    from .lm import TinyLM

    if not isinstance(model, TinyLM):
        raise TypeError(f"`model` must be a TinyLM, got {type(model).__name__}")
    if any(t.device.type not in ("cpu", "cuda", "mps") for t in model.parameters()):
        raise ValueError("`model` has weights on the meta device (no data); build or load it on 'cpu' or 'cuda'")
    return _check_pairs(pairs)


def solve_gcd(model: Any, pairs: Sequence[tuple[int, int]], *, use_cache: bool = True) -> list[str]:
    """The model's greedy completions of ``"gcd(a,b):"`` for every pair (text after the
    colon, up to the end token or 112 new characters).

    Defined in Chapter 10.
    """
    from .lm import generate

    pairs = _check_model_and_pairs(model, pairs)
    prompts = [encode(gcd_prompt(a, b)) for a, b in pairs]
    out = generate(model, prompts, MAX_COMPLETION, stop_id=_ID[EOS], use_cache=use_cache)
    return [decode(ids) for ids in out]


#: most characters a completion may have (the longest trace has 86 + the end token)
MAX_COMPLETION = 112


@dataclass(frozen=True)
class StepScores:
    """Teacher-forced step scores of one model: one entry per (problem, step).

    Attributes:
        pair: index of the problem in the ``pairs`` given; step: 0-based step index;
        quotient: the step's true quotient (its skill); length: the problem's chain length;
        correct: the model wrote exactly Euclid's step after the correct prefix.

    Defined in Chapter 10.
    """

    pair: list[int]
    step: list[int]
    quotient: list[int]
    length: list[int]
    correct: list[bool]


@torch.no_grad()
def score_steps(model: Any, pairs: Sequence[tuple[int, int]], *, batch_size: int = 256) -> StepScores:
    """Every division step of every problem, written by the model after the **correct**
    prefix (``"gcd(a,b): "`` and Euclid's earlier steps): one skill at a time, without the
    errors of earlier steps compounding. A step counts as correct when the text greedy
    decoding writes up to the next ``";"`` (at most 16 characters) is exactly Euclid's
    ``"a=q*b+r"``.

    Teacher forcing: the correct prefix of step j is the start of the whole correct trace,
    so one forward pass over each problem's trace gives every step's greedy check (each
    character of the step is the argmax after the correct characters before it, and then
    ``";"``), the same verdict as decoding each prefix with :func:`~tts_lib.lm.generate`
    (``tests/test_euclid.py``).

    Defined in Chapter 10.
    """
    pairs = _check_model_and_pairs(model, pairs)
    batch_size = check_pos_int(batch_size, "batch_size", maximum=1 << 16)
    max_len, most = model.config.max_len, 16  # the characters a step may take
    dev = model.wte.weight.device
    from .lm import eval_mode

    texts = [gcd_prompt(a, b) + gcd_trace(a, b) for a, b in pairs]
    order = sorted(range(len(pairs)), key=lambda i: len(texts[i]))  # little padding
    verdicts: list[list[tuple[int, int, int, int, bool]]] = [[] for _ in pairs]
    with eval_mode(model):
        for s in range(0, len(order), batch_size):
            chunk = order[s : s + batch_size]
            width = min(max(len(texts[i]) for i in chunk), max_len)
            x = torch.zeros(len(chunk), width, dtype=torch.long, device=dev)
            for r, i in enumerate(chunk):
                ids = encode(texts[i])[:width]
                x[r, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            # greedy[r][c]: the model's next character after the first c + 1 of row r
            greedy, given = model(x).argmax(-1).tolist(), x.tolist()
            for r, i in enumerate(chunk):
                a, b = pairs[i]
                steps = euclid_steps(a, b)
                start = len(gcd_prompt(a, b)) + 1  # the first step's first character
                row, want = greedy[r], given[r]
                for j, step in enumerate(steps):
                    q, n = step[1], len(_step_text(*step))
                    room = min(most, max_len - start)  # the characters decoding may write
                    ok = n <= room and row[start - 1 : start - 1 + n] == want[start : start + n]
                    if ok and n < room:  # then it must close the step
                        ok = row[start - 1 + n] == _ID[";"]
                    verdicts[i].append((i, j, q, len(steps), bool(ok)))
                    start += n + 2  # the step, then "; "
    meta = [v[:4] for vs in verdicts for v in vs]
    correct = [v[4] for vs in verdicts for v in vs]
    pair, step, quotient, length = (list(col) for col in zip(*meta, strict=True))
    return StepScores(pair, step, quotient, length, correct)
