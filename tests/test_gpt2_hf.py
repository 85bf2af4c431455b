"""The GPT-2 regressor against an independent reference: Hugging Face's ``GPT2Model`` (eager
attention) with the same weights, copied through the documented key map."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from tts_lib.gpt2 import GPT2Regressor, build_model, cot_rollout  # noqa: E402
from tts_lib.gpt2_checkpoint import state_dict_from_hf, state_dict_to_hf  # noqa: E402
from tts_lib.gpt2_train import preset  # noqa: E402
from tts_lib.prompts import sample_prompts  # noqa: E402
from tts_lib.tasks import isotropic_cov  # noqa: E402

TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def hf_copy(model: GPT2Regressor) -> torch.nn.Module:
    cfg = model.config
    hf_cfg = transformers.GPT2Config(
        vocab_size=1,
        n_positions=cfg.n_positions,
        n_embd=cfg.width,
        n_layer=cfg.layers,
        n_head=cfg.heads,
        activation_function=cfg.activation,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=1e-5,
        use_cache=False,
        bos_token_id=0,
        eos_token_id=0,
    )
    hf_cfg._attn_implementation = "eager"  # plain matmul-softmax attention, not torch's SDPA
    hf = transformers.GPT2Model(hf_cfg).to(model.read_in.weight.dtype)  # cast first, then copy
    hf.load_state_dict(state_dict_to_hf(model.state_dict(), cfg.width))
    return hf.eval()


def hf_hidden(model: GPT2Regressor, hf, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    b, t, _ = tokens.shape
    mask = torch.ones(b, t, dtype=torch.long)  # all-ones: non-consecutive position ids are not packing
    out = hf(inputs_embeds=model.read_in(tokens), position_ids=pos.expand(b, -1), attention_mask=mask)
    return out.last_hidden_state


def hf_rollout(model: GPT2Regressor, hf, X, y, k: int, keep_history: bool) -> torch.Tensor:
    """CoT by recomputation through the reference: prompt + query token(s) each step."""
    data = model.layout.data_tokens(X, y)
    its = [X.new_zeros(X.shape[0], model.config.dim)]
    for _ in range(k):
        w = torch.stack(its, 1) if keep_history else its[-1][:, None]
        tokens = torch.cat([data, model.query_tokens(w)], 1)
        pos = model.layout.positions(X.shape[1], w.shape[1], X.device)
        its.append(model.read_out(hf_hidden(model, hf, tokens, pos)[:, -1]))
    return torch.stack(its, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layout", ["compact", "interleaved"])
@pytest.mark.parametrize("activation", ["gelu", "gelu_new"])
@torch.no_grad()
def test_hidden_states_and_cot_match_hugging_face(dtype, layout, activation) -> None:
    cfg, _ = preset("tiny", layout=layout, activation=activation, layers=3)
    model = build_model(cfg, seed=4, dtype=dtype)
    with torch.no_grad():  # away from the initialisation's near-zero weights
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=dtype))
    hf = hf_copy(model)
    pr = sample_prompts(isotropic_cov(cfg.dim), 7, 5, seed=1, dtype=dtype)
    w = torch.randn(5, 3, cfg.dim, dtype=dtype, generator=torch.Generator().manual_seed(2))
    tokens = torch.cat([model.layout.data_tokens(pr.X, pr.y), model.query_tokens(w)], 1)
    pos = model.layout.positions(7, 3, tokens.device)
    ours = model.hidden_states(tokens, pos)
    ref = hf_hidden(model, hf, tokens, pos)
    assert ours.abs().max() > 0.1  # not a trivially small comparison
    torch.testing.assert_close(ours, ref, rtol=TOL[dtype], atol=TOL[dtype])
    for keep_history in (False, True):
        ref_it = hf_rollout(model, hf, pr.X, pr.y, 5, keep_history)
        for use_cache in (True, False):
            it = cot_rollout(model, pr.X, pr.y, 5, use_cache=use_cache, keep_history=keep_history)
            torch.testing.assert_close(it, ref_it, rtol=TOL[dtype], atol=TOL[dtype])


def test_key_map_round_trip() -> None:
    model = build_model(preset("tiny")[0], seed=0)
    hf_state = {f"backbone.{k}": v for k, v in state_dict_to_hf(model.state_dict(), 32).items()}
    hf_state.update({k: v for k, v in model.state_dict().items() if k.startswith(("read_in", "read_out"))})
    back = state_dict_from_hf(hf_state)
    assert set(back) == set(model.state_dict())
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_bench_cache_against_hugging_face_smoke() -> None:
    from tts_lib import bench

    records = {r["name"]: r for r in bench.bench_gpt2_hf_cache("cpu", quick=True)}
    assert set(records) == {
        "gpt2_cot_step_ms_compact_hf_cache",
        "gpt2_cot_step_ms_compact_ours_cache",
        "gpt2_cot_cache_speedup_vs_hf",
    }
    assert all(r["value"] > 0 for r in records.values())
