"""Llama3Model and Qwen3Model proven three ways: against Hugging Face transformers (logits, greedy and
left-padded generation, weights both ways), against the book's package (logits, parameter counts),
and the KV cache against uncached generation for every model."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llms_from_scratch import llama3 as book_llama3
from llms_from_scratch import qwen3 as book_qwen3
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from llm_zero.model import (LLAMA32_CONFIG_1B, QWEN3_CONFIG_0_6B, GPTModel, Llama3Model, Qwen3Model, generate,
                            left_pad, llama_from_hf, llama_to_hf)

torch.set_num_threads(1)

LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16}
COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=48)
HF_CONFIGS = {
    "llama-gqa-tied-llama3-rope": (LlamaForCausalLM, LlamaConfig(
        **COMMON, num_key_value_heads=2, rope_theta=500_000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_scaling=LLAMA3_SCALING)),
    "llama-mqa-untied": (LlamaForCausalLM, LlamaConfig(
        **COMMON, num_key_value_heads=1, rope_theta=10_000.0, rms_norm_eps=1e-6, tie_word_embeddings=False)),
    "qwen3-wide-heads-tied": (Qwen3ForCausalLM, Qwen3Config(
        **COMMON, num_key_value_heads=2, head_dim=16, rope_theta=1_000_000.0, tie_word_embeddings=True)),
    "qwen3-mha-untied": (Qwen3ForCausalLM, Qwen3Config(
        **COMMON, num_key_value_heads=4, rope_theta=1_000_000.0, tie_word_embeddings=False)),
}


def hf_model(name, seed=0):
    cls, cfg = HF_CONFIGS[name]
    torch.manual_seed(seed)
    model = cls(cfg).eval()
    with torch.no_grad():  # random norm gains, so that a swapped or missing gain cannot hide
        for n, p in model.named_parameters():
            if n.endswith("norm.weight") or "layernorm" in n:
                p.uniform_(0.5, 1.5)
    return model


# ---- against Hugging Face -------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["reference", "fast"])
@pytest.mark.parametrize("name", HF_CONFIGS)
def test_logits_match_transformers(name, impl):
    theirs = hf_model(name)
    ours = llama_from_hf(theirs, impl=impl)
    assert isinstance(ours, Qwen3Model) == name.startswith("qwen3")
    assert (ours.out_head.weight is ours.tok_emb.weight) == ("-tied" in name)
    ids = torch.randint(0, 97, (3, 40))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids).logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", HF_CONFIGS)
def test_greedy_generation_matches_transformers_also_left_padded(name):
    theirs, = [hf_model(name, seed=1)]
    ours = llama_from_hf(theirs)
    prompts = [[3, 14, 15, 92, 65, 35], [8, 9], [27, 18, 28]]
    ids, mask = left_pad(prompts)
    with torch.no_grad():
        expected = theirs.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, pad_token_id=0)
    for use_cache in (False, True):
        got = generate(ours, ids, 12, context_size=48, attention_mask=mask, use_cache=use_cache)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", HF_CONFIGS)
def test_weights_round_trip_through_transformers(name, tmp_path):
    cls, _ = HF_CONFIGS[name]
    ours = llama_from_hf(hf_model(name, seed=2))
    folder = llama_to_hf(ours, tmp_path / "ckpt")
    reloaded = cls.from_pretrained(folder).eval()
    assert reloaded.config.tie_word_embeddings == ours.cfg["tie_embeddings"]
    ids = torch.randint(0, 97, (2, 30))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, ours(ids), rtol=0, atol=1e-5)
    back = llama_from_hf(folder)
    assert back.cfg == ours.cfg
    for k, v in ours.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k


def test_from_hf_reads_saved_folders_and_keeps_bfloat16(tmp_path):
    theirs = hf_model("qwen3-wide-heads-tied").to(torch.bfloat16)
    theirs.save_pretrained(tmp_path / "hf")
    ours = llama_from_hf(tmp_path / "hf")
    assert ours.tok_emb.weight.dtype == torch.bfloat16 and ours.cfg["dtype"] == torch.bfloat16
    ids = torch.randint(0, 97, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).float(), theirs(ids).logits.float(), rtol=0, atol=0.1)


def test_from_hf_refuses_what_it_cannot_compute(tmp_path):
    cls, cfg = HF_CONFIGS["llama-mqa-untied"]
    biased = cls(LlamaConfig(**{**cfg.to_dict(), "attention_bias": True}))
    with pytest.raises(ValueError, match="attention_bias=True"):
        llama_from_hf(biased)
    with pytest.raises(ValueError, match="needs its config.json"):
        llama_from_hf(hf_model("llama-mqa-untied").state_dict())
    with pytest.raises(FileNotFoundError, match="no such file"):
        llama_from_hf(str(tmp_path / "missing.safetensors"))


# ---- against the book's package -------------------------------------------------------------------

TINY_LLAMA = {"vocab_size": 97, "context_length": 40, "emb_dim": 48, "n_heads": 6, "n_layers": 2, "hidden_dim": 64,
              "n_kv_groups": 3, "rope_base": 500_000.0, "dtype": torch.float32,
              "rope_freq": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_context_length": 16}}
TINY_QWEN = {"vocab_size": 97, "context_length": 40, "emb_dim": 48, "n_heads": 4, "n_layers": 2, "hidden_dim": 64,
             "head_dim": 32, "qk_norm": True, "n_kv_groups": 2, "rope_base": 1_000_000.0, "dtype": torch.float32}


def randomized(model, seed):
    "`model` with every parameter (norm gains included) drawn at random."
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1 if p.ndim == 1 else 0))
    return model.eval()


@pytest.mark.parametrize("seed", range(3))
def test_llama_matches_the_books_llama3(seed):
    ours = randomized(Llama3Model(TINY_LLAMA), seed)
    book = book_llama3.Llama3Model(TINY_LLAMA).eval()
    book.load_state_dict({k.replace(".scale", ".weight"): v for k, v in ours.state_dict().items()})
    ids = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), book(ids), rtol=0, atol=1e-4)


@pytest.mark.parametrize("seed", range(3))
def test_qwen_matches_the_books_qwen3(seed):
    ours = randomized(Qwen3Model(TINY_QWEN), seed)
    book = book_qwen3.Qwen3Model(TINY_QWEN).eval()
    book.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 97, (2, 40))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), book(ids), rtol=0, atol=1e-4)


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("ours_cls, book_cls, cfg", [
    (Llama3Model, book_llama3.Llama3Model, book_llama3.LLAMA32_CONFIG_1B),
    (Llama3Model, book_llama3.Llama3Model, book_llama3.LLAMA32_CONFIG_3B),
    (Qwen3Model, book_qwen3.Qwen3Model, book_qwen3.QWEN_CONFIG_06_B),
    (Qwen3Model, book_qwen3.Qwen3Model, book_qwen3.QWEN3_CONFIG_1_7B),
])
def test_published_configs_give_the_books_parameter_counts(ours_cls, book_cls, cfg):
    with torch.device("meta"):
        ours, book = ours_cls(cfg), book_cls(cfg)
    assert count(ours) == count(book)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k.replace("norm1.weight", "norm1.scale").replace("norm2.weight", "norm2.scale")
         .replace("final_norm.weight", "final_norm.scale"): v.shape for k, v in book.state_dict().items()}


def test_the_books_printed_counts_with_and_without_tying():
    with torch.device("meta"):
        assert count(Llama3Model(book_llama3.LLAMA32_CONFIG_1B)) == 1_498_482_688
        assert count(Llama3Model(LLAMA32_CONFIG_1B)) == 1_235_814_400
        assert count(Qwen3Model(book_qwen3.QWEN_CONFIG_06_B)) == 751_632_384
        assert count(Qwen3Model(QWEN3_CONFIG_0_6B)) == 596_049_920


# ---- the KV cache, for every model ----------------------------------------------------------------

GPT_TINY = {"vocab_size": 97, "context_length": 40, "emb_dim": 32, "n_heads": 4, "n_layers": 2, "drop_rate": 0.0,
            "qkv_bias": True}
MODELS = {
    "gpt2-reference": lambda: GPTModel(GPT_TINY),
    "gpt2-fast": lambda: GPTModel({**GPT_TINY, "impl": "fast"}),
    "llama-gqa": lambda: randomized(Llama3Model(TINY_LLAMA), 5),
    "llama-mqa-tied": lambda: randomized(Llama3Model({**TINY_LLAMA, "n_kv_groups": 1, "tie_embeddings": True}), 6),
    "qwen3-gqa": lambda: randomized(Qwen3Model(TINY_QWEN), 7),
    "llama-gqa-fast": lambda: randomized(Llama3Model({**TINY_LLAMA, "impl": "fast"}), 5),
    "qwen3-gqa-fast": lambda: randomized(Qwen3Model({**TINY_QWEN, "impl": "fast"}), 7),
}
BUILT = {}


def model(name):
    if name not in BUILT:
        torch.manual_seed(0)
        BUILT[name] = MODELS[name]().eval()
    return BUILT[name]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(MODELS)), lengths=st.lists(st.integers(1, 12), min_size=1, max_size=3),
       new=st.integers(1, 12), context=st.integers(8, 40), sample=st.booleans(), seed=st.integers(0, 2**16))
def test_cached_generation_equals_uncached(name, lengths, new, context, sample, seed):
    m = model(name)
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, 97, (n,), generator=g).tolist() for n in lengths]
    ids, mask = left_pad(prompts)
    kw = dict(temperature=0.8, top_k=20, top_p=0.95) if sample else {}
    runs = [generate(m, ids, new, context_size=context, attention_mask=mask if len(prompts) > 1 else None,
                     use_cache=c, generator=torch.Generator().manual_seed(seed), **kw) for c in (False, True)]
    assert torch.equal(runs[0], runs[1])


@pytest.mark.parametrize("name", ["llama-gqa", "qwen3-gqa", "llama-mqa-tied", "llama-gqa-fast", "qwen3-gqa-fast"])
def test_left_padded_rows_generate_as_if_alone(name):
    m = model(name)
    prompts = [[1, 2, 3, 4, 5, 6, 7], [9, 8], [40, 41, 42]]
    ids, mask = left_pad(prompts)
    batch = generate(m, ids, 10, context_size=40, attention_mask=mask, use_cache=True)
    for row, p in zip(batch, prompts):
        alone = generate(m, torch.tensor([p]), 10, context_size=40)
        assert torch.equal(row[-10:], alone[0, -10:])


@pytest.mark.parametrize("name", ["llama-gqa", "qwen3-gqa"])
def test_fast_path_equals_reference_path_forward_loss_and_gradients(name):
    ref = MODELS[name]().train()
    fast = MODELS[name]().train()
    fast.set_impl("fast")
    assert fast.cfg["impl"] == "fast" and all(b.att.attn_impl == "sdpa" for b in fast.trf_blocks)
    ids = torch.randint(0, 97, (3, 33))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0
    # SDPA sums in another order than the reference: on the 2026-12 CI machines one logit in 9,603
    # of the GQA model differs by 1.06e-5 (old and new code alike), float32 rounding, not a bug.
    torch.testing.assert_close(fast(ids, attention_mask=mask), ref(ids, attention_mask=mask), rtol=1e-5, atol=2e-5)
    losses = [m(ids[:, :-1], targets=ids[:, 1:]) for m in (ref, fast)]
    torch.testing.assert_close(losses[1], losses[0], rtol=0, atol=1e-5)
    for loss in losses:
        loss.backward()
    for (n, p), q in zip(ref.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=n)


# ---- training and bad input -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["llama-gqa", "llama-mqa-tied", "qwen3-gqa"])
def test_loss_is_cross_entropy_and_tied_weights_get_both_gradients(name):
    m = MODELS[name]().train()
    ids = torch.randint(0, 97, (2, 16))
    loss = m(ids[:, :-1], targets=ids[:, 1:])
    torch.testing.assert_close(loss, F.cross_entropy(m(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten()))
    loss.backward()
    if m.cfg["tie_embeddings"]:
        emb_only = torch.zeros_like(m.tok_emb.weight)
        emb_only[ids[:, :-1].unique()] = 1
        # rows of tokens never seen in the input still get a gradient, through the output head
        assert m.tok_emb.weight.grad[emb_only[:, 0] == 0].abs().sum() > 0


@pytest.mark.parametrize("cls, cfg, change, message", [
    (Llama3Model, TINY_LLAMA, {"n_kv_groups": 4}, "divisible by 'n_kv_groups'"),
    (Llama3Model, TINY_LLAMA, {"emb_dim": 50}, "'emb_dim' (50) must be divisible"),
    (Llama3Model, TINY_LLAMA, {"n_head": 6}, "Did you mean 'n_heads'"),
    (Llama3Model, TINY_LLAMA, {"dtype": "bf16"}, "floating-point torch dtype"),
    (Llama3Model, TINY_LLAMA, {"rope_base": -1.0}, "'rope_base' must be a positive number"),
    (Llama3Model, TINY_LLAMA, {"tie_embeddings": "yes"}, "'tie_embeddings' must be True or False"),
    (Qwen3Model, TINY_QWEN, {"head_dim": 15}, "RoPE needs an even number"),
    (Qwen3Model, TINY_QWEN, {"rope_freq": None}, "Unknown Qwen3Model config key 'rope_freq'"),
    (Qwen3Model, TINY_QWEN, {"impl": "sdpa"}, "'impl' must be one of"),
])
def test_bad_configs_are_named(cls, cfg, change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls({**cfg, **change})


def test_missing_key_and_bad_ids_are_named():
    with pytest.raises(ValueError, match="missing key 'hidden_dim'.*LLAMA32_CONFIG_1B"):
        Llama3Model({k: v for k, v in TINY_LLAMA.items() if k != "hidden_dim"})
    m = model("qwen3-gqa")
    with pytest.raises(ValueError, match="got a torch.float32 tensor"):
        m(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="longer than context_length=40"):
        m(torch.zeros(1, 41, dtype=torch.long))
    with pytest.raises(ValueError, match="Token id 97 is outside"):
        m(torch.tensor([[97]]))


def test_dtype_may_be_named_as_a_string():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = Llama3Model({**TINY_LLAMA, "dtype": "bfloat16"})
    assert m.tok_emb.weight.dtype == torch.bfloat16 and m.cfg["dtype"] == torch.bfloat16
    assert m(torch.tensor([[1, 2, 3]])).dtype == torch.bfloat16
