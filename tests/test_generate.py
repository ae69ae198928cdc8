"""Generation: greedy, cached, sliding-window and batched runs must return exactly the tokens of the plain
loop; sampling must match the book's `generate` and Hugging Face's nucleus filter."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_zero.model import GPT_CONFIG_124M, GPTModel, generate, generate_text_simple
from llm_zero.model.generation import KVCache, _nucleus, generate_stream, left_pad, sample_next_token
from llms_from_scratch import ch04 as book4
from llms_from_scratch import ch05 as book5

CFG = {**GPT_CONFIG_124M, "vocab_size": 211, "context_length": 20, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
       "drop_rate": 0.1}




def make_model(impl="reference", seed=0):
    torch.manual_seed(seed)
    return GPTModel({**CFG, "impl": impl}).eval()


MODELS = {impl: make_model(impl) for impl in ("reference", "fast")}


@settings(max_examples=30, deadline=None)
@given(prompt_len=st.integers(1, 26), max_new=st.integers(0, 30), context_size=st.integers(1, 20),
       batch=st.integers(1, 3), impl=st.sampled_from(["reference", "fast"]), seed=st.integers(0, 10**6))
def test_cached_greedy_equals_uncached(prompt_len, max_new, context_size, batch, impl, seed):
    model = MODELS[impl]
    idx = torch.randint(0, CFG["vocab_size"], (batch, prompt_len), generator=torch.Generator().manual_seed(seed))
    expected = generate_text_simple(model, idx, max_new, context_size)
    assert torch.equal(generate(model, idx, max_new, context_size), expected)
    assert torch.equal(generate(model, idx, max_new, context_size, use_cache=True), expected)


def test_sliding_window_far_beyond_context():
    model = MODELS["fast"]
    idx = torch.randint(0, CFG["vocab_size"], (2, 3))
    expected = generate_text_simple(model, idx, 60, 20)
    assert torch.equal(generate(model, idx, 60, 20, use_cache=True), expected)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 18), min_size=2, max_size=4), max_new=st.integers(1, 25),
       context_size=st.integers(4, 20), use_cache=st.booleans(), impl=st.sampled_from(["reference", "fast"]),
       seed=st.integers(0, 10**6))
def test_left_padded_batch_equals_prompt_by_prompt(lengths, max_new, context_size, use_cache, impl, seed):
    model = MODELS[impl]
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, CFG["vocab_size"], (n,), generator=g) for n in lengths]
    idx, mask = left_pad(prompts, pad_id=7)
    out = generate(model, idx, max_new, context_size, use_cache=use_cache, attention_mask=mask)
    for row, p in enumerate(prompts):
        alone = generate_text_simple(model, p[None], max_new, context_size)
        assert torch.equal(out[row, idx.shape[1]:], alone[0, len(p):]), row


def test_eos_stops_each_row_and_the_batch():
    model = MODELS["reference"]
    prompts = [torch.randint(0, CFG["vocab_size"], (n,)) for n in (4, 9, 2)]
    idx, mask = left_pad(prompts)
    free = generate(model, idx, 25, 20, attention_mask=mask)[:, idx.shape[1]:]
    eos = free[0, 6].item()
    out = generate(model, idx, 25, 20, eos_id=eos, attention_mask=mask, use_cache=True)[:, idx.shape[1]:]
    ends = [(row == eos).nonzero()[0].item() if (row == eos).any() else 25 for row in free]
    assert out.shape[1] == max(ends)  # stops at the step where the last row ends, or after 25
    for r, end in enumerate(ends):
        assert torch.equal(out[r, :end], free[r, :end])
        assert (out[r, end:] == eos).all()
    single = generate(model, prompts[0][None], 25, 20, eos_id=eos)
    assert torch.equal(single[0, len(prompts[0]):], free[0, :ends[0]])


def test_stream_yields_the_same_tokens_lazily():
    model = MODELS["fast"]
    idx = torch.randint(0, CFG["vocab_size"], (2, 4))
    stream = generate_stream(model, idx, 30, 20, use_cache=True)
    first = next(stream)
    assert first.shape == (2, 1)
    rest = list(stream)
    assert len(rest) == 29
    assert torch.equal(torch.cat([idx, first, *rest], dim=1), generate_text_simple(model, idx, 30, 20))


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (1.4, 5), (0.7, 50)])
def test_sampling_matches_book_generate(temperature, top_k):
    torch.manual_seed(3)
    book = book4.GPTModel(CFG).eval()
    ours = make_model(seed=3)
    idx = torch.randint(0, CFG["vocab_size"], (1, 5))
    torch.manual_seed(42)
    expected = book5.generate(book, idx, 30, 20, temperature=temperature, top_k=top_k)
    for model in (book, ours):
        torch.manual_seed(42)
        assert torch.equal(generate(model, idx, 30, 20, temperature=temperature, top_k=top_k), expected)


def test_generator_makes_sampling_reproducible_and_cache_agnostic():
    model = MODELS["reference"]
    idx = torch.randint(0, CFG["vocab_size"], (3, 4))
    runs = [generate(model, idx, 20, 20, temperature=0.9, top_p=0.8, use_cache=c,
                     generator=torch.Generator().manual_seed(5)) for c in (False, True)]
    assert torch.equal(runs[0], runs[1])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), vocab=st.integers(2, 300), top_p=st.floats(0.01, 0.99), scale=st.floats(0.1, 8))
def test_nucleus_matches_hugging_face(seed, vocab, top_p, scale):
    from transformers.generation.logits_process import TopPLogitsWarper
    logits = torch.randn(2, vocab, generator=torch.Generator().manual_seed(seed)) * scale
    ours = _nucleus(torch.softmax(logits, dim=-1), top_p) > 0
    hf = torch.isfinite(TopPLogitsWarper(top_p)(None, logits.clone()))
    diff = ours ^ hf
    if diff.any():
        # Only a token whose cumulative mass lands within float rounding of top_p may differ.
        probs = torch.softmax(logits.double(), dim=-1)
        for r, i in diff.nonzero().tolist():
            above = probs[r][probs[r] > probs[r, i]].sum()
            assert abs(above - top_p) < 1e-5
    assert ours.any(dim=-1).all()


def test_top_k_and_top_p_restrict_samples():
    logits = torch.tensor([[3.0, 2.9, 2.8, -5.0, -5.0, 1.0]])
    g = torch.Generator().manual_seed(0)
    draws = {sample_next_token(logits, 100.0, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {0, 1}
    draws = {sample_next_token(logits, 1.0, top_p=0.6, generator=g).item() for _ in range(200)}
    assert draws == {0, 1}


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -0.5}, "temperature must be"),
    ({"temperature": float("nan")}, "temperature must be"),
    ({"temperature": 1.0, "top_p": 0.0}, "top_p must be"),
    ({"temperature": 1.0, "top_p": 1.5}, "top_p must be"),
    ({"top_k": 0}, "top_k must be"),
    ({"top_k": 2.5}, "top_k must be"),
    ({"eos_id": 211}, "eos_id must be"),
    ({"context_size": 21}, "context_size must be"),
    ({"context_size": 0}, "context_size must be"),
    ({"max_new_tokens": -1}, "max_new_tokens must be"),
    ({"attention_mask": torch.tensor([[1, 1, 0]])}, "left padding"),
    ({"attention_mask": torch.ones(1, 2)}, "shape of idx"),
])
def test_bad_generation_arguments_are_explained(kwargs, message):
    args = {"max_new_tokens": 3, "context_size": 20, **kwargs}
    with pytest.raises(ValueError, match=message):
        generate(MODELS["reference"], torch.tensor([[1, 2, 3]]), **args)


def test_bad_prompts_are_explained():
    with pytest.raises(ValueError, match="(batch, num_tokens)".replace("(", r"\(").replace(")", r"\)")):
        generate(MODELS["reference"], torch.tensor([1, 2, 3]), 3, 20)
    with pytest.raises(ValueError, match="every prompt needs at least one token"):
        left_pad([[1, 2], []])


def test_kv_cache_reports_its_length():
    model = MODELS["reference"]
    cache = KVCache.for_model(model, max_len=10)
    assert len(cache) == 2 and cache.length == 0
    model(torch.tensor([[1, 2, 3]]), kv_cache=cache)
    model(torch.tensor([[4]]), kv_cache=cache)
    assert cache.length == 4 and cache[1].keys.shape == (1, 4, 10, 8)
