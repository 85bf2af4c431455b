"""Chapter 10's task library: traces, tokenizer, parsing, scoring, pools, checkpoints."""

import json
import math
import re

import pytest
import torch

from tts_lib import euclid as eu
from tts_lib.lm import LMConfig, LMTrainConfig, build_lm, train_lm

STEP = re.compile(r"(\d+)=(\d+)\*(\d+)\+(\d+)")


def test_every_gcd_trace_is_arithmetically_correct():
    for a, b in eu.gcd_pairs():
        text = eu.gcd_trace(a, b)
        steps = [tuple(map(int, m.groups())) for m in STEP.finditer(text)]
        assert len(steps) == eu.chain_length(a, b) >= 1
        prev = (a, b)
        for x, q, y, r in steps:
            assert (x, y) == prev and x == q * y + r and 0 <= r < y
            prev = (y, r)
        assert prev[1] == 0 and text.endswith(f"; so {math.gcd(a, b)}")
        assert eu.gcd_trace(a, b, cot=False) == f" so {math.gcd(a, b)}"


def test_every_poly_trace_is_arithmetically_correct():
    for r2 in range(1, eu.MAX_ROOT + 1):
        for r1 in range(1, r2 + 1):
            prompt, text = eu.poly_prompt(r1, r2), eu.poly_trace(r1, r2)
            s, p = map(int, re.fullmatch(r"roots\(x\^2-(\d+)x\+(\d+)\):", prompt).groups())
            assert (s, p) == (r1 + r2, r1 * r2)
            values = [tuple(map(int, m)) for m in re.findall(r"p\((\d+)\)=(-?\d+)", text)]
            assert [t for t, _ in values] == list(range(1, r2 + 1))
            assert all(v == t * t - s * t + p for t, v in values)
            assert [t for t, v in values if v == 0] == sorted({r1, r2})
            assert text.endswith(f"so {r1},{r2}")


def test_example_from_the_issue():
    assert eu.gcd_prompt(84, 36) + eu.gcd_trace(84, 36) == "gcd(84,36): 84=2*36+12; 36=3*12+0; so 12"


def test_tokenizer_round_trips_every_trace():
    for a, b in eu.gcd_pairs()[::7]:
        text = eu.gcd_prompt(a, b) + eu.gcd_trace(a, b)
        assert eu.decode(eu.encode(text)) == text
        assert eu.decode(eu.encode(text + eu.EOS + "so 1")) == text  # stops at the end token
    text = eu.poly_prompt(2, 3) + eu.poly_trace(2, 3)
    assert eu.decode(eu.encode(text)) == text


def test_parser_round_trips():
    for a, b in eu.gcd_pairs()[::3]:
        parsed = eu.parse_gcd(eu.gcd_trace(a, b))
        assert parsed.well_formed and parsed.steps == tuple(eu.euclid_steps(a, b))
        assert parsed.answer == math.gcd(a, b)
        assert eu.score_gcd(eu.gcd_trace(a, b), a, b)
        assert eu.score_gcd(eu.gcd_trace(a, b, cot=False), a, b)
        assert eu.first_wrong_step(eu.gcd_trace(a, b), a, b) is None


@pytest.mark.parametrize(
    "text",
    ["", " ", "so", " so ", " so x", " 84=2*36+12", " 84=2*36+12; 36=3*12+0; so", ";;;", "so 12 so 12",
     " 84=2*36+12; 36=3*12+0; so 12; so 12", " so 12; 84=2*36+12", " 84=2**36+12; so 12",
     "gcd(84,36): so 12 extra", " so 99999999999999999999", " ()^x-:=*+" * 20, " so -12", " so 012x"],
)
def test_malformed_output_is_scored_wrong_never_crashes(text):
    assert eu.score_gcd(text, 84, 36) is False
    eu.first_wrong_step(text, 84, 36)  # never raises
    eu.parse_gcd(text)


def test_wrong_answer_and_wrong_step_are_located():
    good = eu.gcd_trace(84, 36)
    assert not eu.score_gcd(good.replace("so 12", "so 6"), 84, 36)
    assert eu.first_wrong_step(good.replace("so 12", "so 6"), 84, 36) == 2
    assert eu.first_wrong_step(" 84=2*36+12; 36=2*12+12; so 12", 84, 36) == 1
    assert eu.first_wrong_step(" 84=2*36+12; so 12", 84, 36) == 1  # a missing step
    assert eu.score_gcd(" 84=2*36+12; so 12", 84, 36)  # right answer, cut chain: the answer is graded
    assert eu.score_gcd(eu.gcd_trace(84, 36), 84, 36)
    assert eu.score_gcd(123, 84, 36) is False  # not text at all


def test_split_is_disjoint_stratified_and_deterministic():
    train, test = eu.split_pairs()
    assert not set(train) & set(test) and len(train) + len(test) == len(eu.gcd_pairs())
    assert (train, test) == eu.split_pairs()
    assert eu.split_pairs(seed=1)[1] != test
    for label in eu.BINS:
        n_tr = sum(eu.chain_bin(eu.chain_length(*p)) == label for p in train)
        n_te = sum(eu.chain_bin(eu.chain_length(*p)) == label for p in test)
        assert n_te >= 1 and abs(n_te / (n_tr + n_te) - 0.25) < 0.02


def test_sampler_respects_the_mix():
    train, _ = eu.split_pairs()
    g = torch.Generator().manual_seed(0)
    mix = eu.TaskMix(bins=("1", "2", "3"), exclude_quotients=(3,))
    idx, mask = eu.make_sampler(mix, train)(64, g)
    assert idx.shape == mask.shape and idx.dtype == torch.long
    for row, m in zip(idx, mask, strict=True):
        text = eu.decode([i for i in row.tolist() if i])
        a, b = map(int, re.match(r"gcd\((\d+),(\d+)\):", text).groups())
        assert (a, b) in set(train) and eu.chain_length(a, b) <= 3 and 3 not in eu.quotients(a, b)
        assert eu.decode(row[m.bool()].tolist()) == eu.gcd_trace(a, b)  # the loss covers the completion
    idx, _ = eu.make_sampler(eu.TaskMix(gcd_weight=0, poly_weight=1), train)(8, g)
    assert all(eu.decode(r.tolist()).startswith("roots(") for r in idx)
    assert eu.mean_completion_tokens(eu.TaskMix(bins=("1",)), train) < eu.mean_completion_tokens(eu.TaskMix(), train)


def test_accuracy_by_bin():
    acc = eu.accuracy_by_bin([True, False, True, True], [1, 1, 7, 9])
    assert acc == {"1": 0.5, "6+": 1.0}


@pytest.mark.parametrize(
    ("call", "err"),
    [
        (lambda: eu.gcd_trace(3, 5), ValueError),
        (lambda: eu.gcd_trace(0, 0), ValueError),
        (lambda: eu.gcd_trace(5.0, 3), TypeError),
        (lambda: eu.gcd_trace(5, 3, cot="yes"), TypeError),
        (lambda: eu.euclid_steps(-1, 1), ValueError),
        (lambda: eu.gcd_prompt(True, 1), TypeError),
        (lambda: eu.poly_prompt(3, 2), ValueError),
        (lambda: eu.poly_trace(1, 10), ValueError),
        (lambda: eu.encode("GCD"), ValueError),
        (lambda: eu.encode(5), TypeError),
        (lambda: eu.decode("abc"), TypeError),
        (lambda: eu.decode([999]), ValueError),
        (lambda: eu.chain_bin(0), ValueError),
        (lambda: eu.gcd_pairs(1000), ValueError),
        (lambda: eu.split_pairs(test_frac=1.0), ValueError),
        (lambda: eu.split_pairs(test_frac=0), ValueError),
        (lambda: eu.TaskMix(bins=("7+",)), ValueError),
        (lambda: eu.TaskMix(bins="123"), ValueError),
        (lambda: eu.TaskMix(gcd_weight=0, poly_weight=0), ValueError),
        (lambda: eu.TaskMix(exclude_quotients=[3]), ValueError),
        (lambda: eu.make_sampler("cot", []), TypeError),
        (lambda: eu.make_sampler(eu.TaskMix(bins=("6+",)), [(2, 1)]), ValueError),
        (lambda: eu.accuracy_by_bin([True], [1, 2]), ValueError),
        (lambda: eu.parse_gcd(None), TypeError),
        (lambda: eu.solve_gcd("model", [(2, 1)]), TypeError),
    ],
)
def test_bad_inputs(call, err):
    with pytest.raises(err):
        call()


def test_solve_gcd_scores_an_untrained_model_without_crashing():
    model = build_lm(LMConfig(vocab_size=len(eu.VOCAB), width=32, layers=1, heads=2), seed=0)
    pairs = [(84, 36), (9, 3), (99, 98)]
    out = eu.solve_gcd(model, pairs)
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert [eu.score_gcd(t, a, b) for t, (a, b) in zip(out, pairs, strict=True)] == [False] * 3
    with pytest.raises(ValueError):
        eu.solve_gcd(model, [])


def test_checkpoint_round_trip_and_tamper_evidence(tmp_path):
    from tts_lib import euclid_sweep as sw

    model = build_lm(LMConfig(vocab_size=len(eu.VOCAB), width=32, layers=1, heads=2), seed=1)
    train, _ = eu.split_pairs()
    exp = sw.Experiment("cot", eu.TaskMix(), LMTrainConfig(train_steps=3, batch_size=4, warmup=1))
    result = train_lm(model, eu.make_sampler(exp.mix, train), exp.train, progress=False)
    path = sw.save_lm_checkpoint(model, tmp_path, "euclid_test_seed0", experiment=exp, result=result, command="x")
    loaded, manifest = sw.load_lm_checkpoint(path)
    assert manifest["command"] == "x" and manifest["config"]["mix"]["cot"] is True
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    data = json.loads(path.read_text())
    data["seed"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="digest"):
        sw.load_lm_checkpoint(path)
    data["seed"] = 0
    path.write_text(json.dumps(data))
    sw.load_lm_checkpoint(path)
    pt = path.with_suffix(".pt")
    pt.write_bytes(pt.read_bytes() + b"0")
    with pytest.raises(ValueError, match="sha256"):
        sw.load_lm_checkpoint(path)
    with pytest.raises(ValueError, match="no manifest"):
        sw.load_lm_checkpoint(tmp_path / "missing.json")


def test_sampler_stream_is_the_same_under_any_default_dtype():
    train, _ = eu.split_pairs()
    sample = eu.make_sampler(eu.TaskMix(gcd_weight=0.5, poly_weight=0.5), train)
    ref = sample(16, torch.Generator().manual_seed(3))[0]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        other = sample(16, torch.Generator().manual_seed(3))[0]
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(ref, other)


def test_stratified_subset():
    _, test = eu.split_pairs()
    sub = eu.stratified_subset(test, 10, seed=0)
    assert set(sub) <= set(test) and sub == eu.stratified_subset(test, 10, seed=0)
    counts = {b: sum(eu.chain_bin(eu.chain_length(*p)) == b for p in sub) for b in eu.BINS}
    assert all(1 <= c <= 10 for c in counts.values())
    with pytest.raises(ValueError):
        eu.stratified_subset(test, 0)


def test_score_steps_covers_every_step():
    model = build_lm(LMConfig(vocab_size=len(eu.VOCAB), width=32, layers=1, heads=2), seed=0)
    pairs = [(84, 36), (5, 5), (55, 34)]
    sc = eu.score_steps(model, pairs)
    n = sum(eu.chain_length(a, b) for a, b in pairs)
    assert len(sc.correct) == len(sc.quotient) == len(sc.step) == n
    assert sc.quotient[:2] == [2, 3] and sc.step[:2] == [0, 1] and sc.length[:2] == [2, 2]
    assert not any(sc.correct)  # an untrained model writes no step right
    with pytest.raises(TypeError):
        eu.score_steps("model", pairs)
    with pytest.raises(ValueError):
        eu.score_steps(model, [])


def test_an_edited_committed_manifest_is_refused_by_the_registry(tmp_path):
    """A committed checkpoint's manifest, edited and re-digested, loads only with registry=False."""
    import shutil
    from pathlib import Path

    from tts_lib import euclid_sweep as sw
    from tts_lib.gpt2_checkpoint import manifest_digest

    src = Path(__file__).resolve().parents[1] / "book" / "checkpoints"
    shutil.copy(src / "euclid_cot_seed0.pt", tmp_path)
    manifest = json.loads((src / "euclid_cot_seed0.json").read_text())
    sw.load_lm_checkpoint(src / "euclid_cot_seed0.json")  # the committed one loads
    manifest["seed"] = 7  # a relabelled seed, with a recomputed digest
    manifest["digest"] = manifest_digest(manifest)
    path = tmp_path / "euclid_cot_seed0.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    with pytest.raises(ValueError, match="pinned"):
        sw.load_lm_checkpoint(path)
    sw.load_lm_checkpoint(path, registry=False)  # checksummed, not signed


def _committed(name: str):
    from tts_lib.euclid_sweep import checkpoint_stem, load_lm_checkpoint
    from tts_lib.fetch import checkpoint_dir

    return load_lm_checkpoint(checkpoint_dir() / f"{checkpoint_stem(name, 0)}.json")[0]


def _decoded_step_verdicts(model, pairs):
    """score_steps' definition run literally: greedy-decode each correct prefix."""
    from tts_lib.lm import generate

    prompts, targets = [], []
    for a, b in pairs:
        written = [f"{x}={q}*{y}+{r}" for x, q, y, r in eu.euclid_steps(a, b)]
        for j, w in enumerate(written):
            prompts.append(eu.encode(eu.gcd_prompt(a, b) + " " + "".join(s + "; " for s in written[:j])))
            targets.append(w)
    out = generate(model, prompts, 16, stop_id=eu.encode(";")[0])
    return [eu.decode(ids).split(";")[0] == t for ids, t in zip(out, targets, strict=True)]


@pytest.mark.parametrize("name", ["base", "ft_poly"])  # both write right digits, then no ";"
def test_teacher_forced_step_scores_equal_decoding_each_prefix(name):
    model = _committed(name)
    _, test = eu.split_pairs()
    pairs = eu.stratified_subset(test, 25, seed=1)
    forced = eu.score_steps(model, pairs, batch_size=16).correct  # several batches
    decoded = _decoded_step_verdicts(model, pairs)
    assert forced == decoded
    assert 0 < sum(forced) < len(forced)  # right and wrong steps both occur


def test_one_mixed_batch_writes_what_each_prompt_alone_writes():
    model = _committed("cot")
    _, test = eu.split_pairs()
    pairs = eu.stratified_subset(test, 8, seed=2)  # prompts of 10-11 characters, chains of 1-9 steps
    together = eu.solve_gcd(model, pairs)
    alone = [eu.solve_gcd(model, [p])[0] for p in pairs]
    assert together == alone
    assert len({len(t) for t in together}) > 5  # sequences finished at many different steps
