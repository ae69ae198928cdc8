"""Chapters 3 and 4 against the book's own package, the fused attention path against the reference
one, and the model's input and config checks."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import llm_zero.model
from llm_zero.model import (GPT_CONFIG_124M, GPT_CONFIGS, FeedForward, GELU, GPTModel,
                            LayerNorm, MultiHeadAttention, MultiHeadAttentionWrapper,
                            TransformerBlock, generate_text_simple, validate_config)
from llm_zero.model.generation import KVCache
from llms_from_scratch import ch03 as book3
from llms_from_scratch import ch04 as book4

SMALL = {**GPT_CONFIG_124M, "vocab_size": 97, "context_length": 24, "emb_dim": 32, "n_heads": 4, "n_layers": 2}




def seeded(factory, seed=123):
    torch.manual_seed(seed)
    return factory()


def assert_same_parameters(ours, book):
    sa, sb = ours.state_dict(), book.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ---- chapter 3 --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, args", [
    ("SelfAttention_v1", (3, 2)),
    ("SelfAttention_v2", (3, 2)),
    ("CausalAttention", (3, 2, 6, 0.0)),
    ("MultiHeadAttentionWrapper", (3, 2, 6, 0.0, 2)),
    ("MultiHeadAttention", (3, 4, 6, 0.0, 2)),
])
def test_chapter3_classes_match_book(name, args):
    ours = seeded(lambda: getattr(llm_zero.model, name)(*args))
    book = seeded(lambda: getattr(book3, name)(*args))
    assert_same_parameters(ours, book)
    x = torch.rand(6, 3) if name.startswith("SelfAttention") else torch.rand(2, 6, 3)
    assert torch.equal(ours(x), book(x))


def test_multihead_wrapper_and_combined_agree():
    torch.manual_seed(0)
    wrapper = MultiHeadAttentionWrapper(5, 3, context_length=8, dropout=0.0, num_heads=4)
    mha = MultiHeadAttention(5, 12, context_length=8, dropout=0.0, num_heads=4)
    with torch.no_grad():
        for name in ("W_query", "W_key", "W_value"):
            getattr(mha, name).weight.copy_(torch.cat([getattr(h, name).weight for h in wrapper.heads]))
        mha.out_proj.weight.copy_(torch.eye(12))
        mha.out_proj.bias.zero_()
    x = torch.randn(3, 8, 5)
    torch.testing.assert_close(mha(x), wrapper(x))


def test_causal_mask_hides_the_future():
    torch.manual_seed(0)
    mha = MultiHeadAttention(8, 8, context_length=10, dropout=0.0, num_heads=2)
    x = torch.randn(1, 10, 8)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 8)
    torch.testing.assert_close(mha(x)[:, :6], mha(y)[:, :6])


# ---- chapter 4 --------------------------------------------------------------------------------

def test_chapter4_modules_match_book():
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(LayerNorm(32)(x), book4.LayerNorm(32)(x), rtol=0, atol=0)
    torch.testing.assert_close(GELU()(x), book4.GELU()(x), rtol=0, atol=0)
    cfg = validate_config(SMALL)
    for ours_cls, book_cls in [(FeedForward, book4.FeedForward), (TransformerBlock, book4.TransformerBlock)]:
        ours, book = seeded(lambda: ours_cls(cfg).eval()), seeded(lambda: book_cls(cfg).eval())
        assert_same_parameters(ours, book)
        assert torch.equal(ours(x), book(x))


@pytest.mark.parametrize("cfg", [SMALL, {**SMALL, "qkv_bias": True, "n_layers": 3, "n_heads": 8}])
def test_gpt_model_matches_book(cfg):
    ours, book = seeded(lambda: GPTModel(cfg).eval()), seeded(lambda: book4.GPTModel(cfg).eval())
    assert_same_parameters(ours, book)
    idx = torch.randint(0, cfg["vocab_size"], (3, cfg["context_length"]))
    assert torch.equal(ours(idx), book(idx))
    assert torch.equal(generate_text_simple(ours, idx[:, :3], 30, 24), book4.generate_text_simple(book, idx[:, :3], 30, 24))


def test_gpt2_124m_numbers_and_hello_continuation():
    import tiktoken
    ours = seeded(lambda: GPTModel(GPT_CONFIG_124M).eval())
    total = sum(p.numel() for p in ours.parameters())
    assert total == 163_009_536
    assert total - ours.out_head.weight.numel() == 124_412_160
    assert f"{total * 4 / 1024**2:.2f}" == "621.83"
    book = seeded(lambda: book4.GPTModel(GPT_CONFIG_124M).eval())
    assert_same_parameters(ours, book)
    tok = tiktoken.get_encoding("gpt2")
    idx = torch.tensor([tok.encode("Hello, I am")])
    out = generate_text_simple(ours, idx, 6, 1024)
    assert torch.equal(out, book4.generate_text_simple(book, idx, 6, 1024))
    assert tok.decode(out[0].tolist()) == "Hello, I am Featureiman Byeswickattribute argue"


def test_larger_configs_have_gpt2_shapes():
    expected = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16), "gpt2-large": (1280, 36, 20),
                "gpt2-xl": (1600, 48, 25)}
    for name, cfg in GPT_CONFIGS.items():
        assert (cfg["emb_dim"], cfg["n_layers"], cfg["n_heads"]) == expected[name]
        assert set(cfg) == set(GPT_CONFIG_124M)
        validate_config(cfg)


# ---- the fused attention path -----------------------------------------------------------------

def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@settings(max_examples=20, deadline=None)
@given(batch=st.integers(1, 3), n_tokens=st.integers(1, 24), n_heads=st.sampled_from([1, 2, 4]),
       head_dim=st.sampled_from([4, 8]), qkv_bias=st.booleans(), seed=st.integers(0, 10**6))
def test_sdpa_equals_reference_forward_and_backward(batch, n_tokens, n_heads, head_dim, qkv_bias, seed):
    cfg = {**SMALL, "emb_dim": n_heads * head_dim, "n_heads": n_heads, "qkv_bias": qkv_bias, "drop_rate": 0.0}
    ref = seeded(lambda: GPTModel(cfg), seed)
    fast = GPTModel({**cfg, "impl": "fast"})
    fast.load_state_dict(ref.state_dict())
    idx = torch.randint(0, cfg["vocab_size"], (batch, n_tokens))
    target = torch.randn(batch, n_tokens, cfg["vocab_size"])
    out_ref, out_fast = ref(idx), fast(idx)
    torch.testing.assert_close(out_fast, out_ref, rtol=0, atol=1e-5)
    ((out_ref - target) ** 2).mean().backward()
    ((out_fast - target) ** 2).mean().backward()
    g_ref, g_fast = grads(ref), grads(fast)
    for name in g_ref:
        torch.testing.assert_close(g_fast[name], g_ref[name], rtol=0, atol=1e-5, msg=name)


def test_sdpa_equals_reference_with_padding_mask_and_cache():
    ref = seeded(lambda: GPTModel({**SMALL, "drop_rate": 0.0}).eval(), 7)
    fast = GPTModel({**SMALL, "drop_rate": 0.0, "impl": "fast"}).eval()
    fast.load_state_dict(ref.state_dict())
    idx = torch.randint(0, 97, (3, 12))
    mask = torch.ones(3, 12, dtype=torch.long)
    mask[1, :5] = 0
    mask[2, :11] = 0
    torch.testing.assert_close(fast(idx, attention_mask=mask), ref(idx, attention_mask=mask), rtol=0, atol=1e-5)
    outs = []
    for model in (ref, fast):
        cache = KVCache.for_model(model)
        outs.append(torch.cat([model(idx[:, :5], kv_cache=cache, attention_mask=mask[:, :5]),
                               model(idx[:, 5:9], kv_cache=cache, attention_mask=mask[:, :9]),
                               model(idx[:, 9:], kv_cache=cache, attention_mask=mask)], dim=1))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(outs[0], ref(idx, attention_mask=mask), rtol=0, atol=1e-5)


def test_sdpa_uses_dropout_in_training():
    model = seeded(lambda: GPTModel({**SMALL, "drop_rate": 0.5, "impl": "fast"}))
    idx = torch.randint(0, 97, (2, 10))
    assert not torch.equal(model(idx), model(idx))
    model.eval()
    assert torch.equal(model(idx), model(idx))


def test_state_dicts_interchange_and_switch():
    book = seeded(lambda: book4.GPTModel(SMALL).eval())
    ours = GPTModel({**SMALL, "impl": "fast"}).eval()
    ours.load_state_dict(book.state_dict())
    idx = torch.randint(0, 97, (2, 16))
    torch.testing.assert_close(ours(idx), book(idx), rtol=0, atol=1e-5)
    ours.set_impl("reference")
    assert ours.cfg["impl"] == "reference"
    assert torch.equal(ours(idx), book(idx))
    with pytest.raises(ValueError, match="'impl' must be one of"):
        ours.set_impl("sdpa")


@pytest.mark.parametrize("old, new", [("sdpa", "fast"), ("reference", "reference")])
def test_old_attn_impl_key_still_loads_with_a_deprecation_warning(old, new):
    with pytest.warns(DeprecationWarning, match=f"write impl: '{new}' instead"):
        model = GPTModel({**SMALL, "attn_impl": old})
    assert model.cfg["impl"] == new and "attn_impl" not in model.cfg
    assert all(m.fused == (new == "fast") for m in model.modules() if isinstance(m, (LayerNorm, GELU)))


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("change, key", [
    ({"n_head": 4}, "n_head"),
    ({"vocab_size": None}, "vocab_size"),
    ({"context_length": 0}, "context_length"),
    ({"emb_dim": -32}, "emb_dim"),
    ({"n_layers": 2.0}, "n_layers"),
    ({"n_heads": True}, "n_heads"),
    ({"emb_dim": 30}, "emb_dim"),
    ({"drop_rate": 1.0}, "drop_rate"),
    ({"drop_rate": -0.1}, "drop_rate"),
    ({"qkv_bias": "yes"}, "qkv_bias"),
    ({"impl": "flash"}, "impl"),
])
def test_bad_config_names_the_key(change, key):
    with pytest.raises(ValueError, match=f"'{key}'"):
        GPTModel({**SMALL, **change})


@pytest.mark.parametrize("key", list(GPT_CONFIG_124M))
def test_missing_config_key_is_named(key):
    with pytest.raises(ValueError, match=f"missing key '{key}'"):
        GPTModel({k: v for k, v in SMALL.items() if k != key})


def test_config_is_not_mutated_and_is_kept():
    cfg = dict(SMALL)
    model = GPTModel(cfg)
    assert cfg == SMALL and model.cfg == {**SMALL, "impl": "reference"}


@pytest.mark.parametrize("idx, message", [
    (torch.tensor([[97]]), "Token id 97 is outside the vocabulary"),
    (torch.tensor([[3, -1]]), "Token id -1 is outside the vocabulary"),
    (torch.zeros(1, 25, dtype=torch.long), "longer than context_length=24"),
    (torch.tensor([1, 2]), "shape (batch, num_tokens)"),
    (torch.zeros(1, 3), "integer token ids"),
    (torch.tensor([[1.0, 2.0]]), "got a torch.float32 tensor; convert with idx.long()"),
    (torch.tensor([[True]]), "got a torch.bool tensor"),
])
def test_bad_input_is_explained(idx, message):
    model = seeded(lambda: GPTModel(SMALL))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model(idx)


def test_cache_overflow_and_bad_mask_are_explained():
    model = seeded(lambda: GPTModel(SMALL).eval())
    cache = KVCache.for_model(model)
    model(torch.zeros(1, 20, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="longer than context_length=24"):
        model(torch.zeros(1, 5, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="attention_mask must have shape"):
        model(torch.zeros(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4))
    small_cache = KVCache.for_model(model, max_len=4)
    with pytest.raises(ValueError, match="KV cache holds 4 positions"):
        model(torch.zeros(1, 5, dtype=torch.long), kv_cache=small_cache)


def test_fast_path_switches_every_fused_module():
    model = GPTModel({**SMALL, "impl": "fast"})
    fusable = [m for m in model.modules() if isinstance(m, (LayerNorm, GELU))]
    assert len(fusable) == 3 * SMALL["n_layers"] + 1 and all(m.fused for m in fusable)
    model.set_impl("reference")
    assert not any(m.fused for m in fusable)
    assert all(b.att.attn_impl == "reference" for b in model.trf_blocks)
