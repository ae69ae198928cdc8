"""Appendix E (llm_zero.model.lora): parameter counts, merging, parity with llms_from_scratch.appendix_e."""
import copy

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings, strategies as st
from llms_from_scratch import appendix_e as bookE
from llms_from_scratch.ch04 import GPTModel as BookGPT

from llm_zero.model.lora import (LinearWithLoRA, LoRALayer, count_trainable, merge_lora, replace_linear_with_lora,
                                 to_lora_classifier)
from llm_zero.model.gpt import GPT_CONFIG_124M, GPTModel




def small_cfg(emb=32, heads=4, layers=2, vocab=200):
    return {**GPT_CONFIG_124M, "vocab_size": vocab, "context_length": 16, "emb_dim": emb, "n_heads": heads,
            "n_layers": layers, "drop_rate": 0.0}


def test_gpt2_small_lora_classifier_has_the_books_parameter_count():
    torch.manual_seed(123)
    model = to_lora_classifier(GPTModel(GPT_CONFIG_124M), rank=16, alpha=16)  # real weights: a few seconds
    assert count_trainable(model) == 2_666_528
    assert all(("lora." in n) == p.requires_grad for n, p in model.named_parameters())
    # the book's recipe on the book's model, counted without allocating (meta device)
    with torch.device("meta"):
        book = BookGPT(GPT_CONFIG_124M)
        for p in book.parameters(): p.requires_grad = False
        book.out_head = nn.Linear(768, 2)
        for p in book.parameters(): p.requires_grad = False
        bookE.replace_linear_with_lora(book, rank=16, alpha=16)
    assert sum(p.numel() for p in book.parameters() if p.requires_grad) == 2_666_528


def test_lora_layer_init_and_scaling():
    torch.manual_seed(0)
    layer = LoRALayer(64, 10, rank=4, alpha=8)
    assert torch.count_nonzero(layer.B) == 0 and layer.scaling == 2.0
    assert layer.A.abs().max() <= 0.5 and layer.A.std() > 0.1  # uniform in +-1/sqrt(rank)
    with torch.no_grad(): layer.B.normal_()
    x = torch.randn(3, 64)
    assert torch.allclose(layer(x), 2.0 * x @ layer.A @ layer.B)
    assert torch.allclose(x @ layer.delta_weight().T, layer(x), atol=1e-5)


def test_wrapping_leaves_the_function_unchanged_at_init():
    torch.manual_seed(0)
    model = GPTModel(small_cfg()).eval()
    ids = torch.randint(0, 200, (2, 9))
    with torch.no_grad(): before = model(ids)
    replace_linear_with_lora(model, rank=2, alpha=4)
    with torch.no_grad(): after = model(ids)
    assert torch.equal(before, after)
    assert sum(isinstance(m, LinearWithLoRA) for m in model.modules()) == 2 * 6 + 1


@settings(max_examples=6, deadline=None)
@given(st.integers(1, 16), st.floats(0.5, 32), st.sampled_from([(32, 4, 1), (48, 6, 2), (16, 2, 3)]), st.integers(0, 1000))
def test_merged_equals_unmerged(rank, alpha, shape, seed):
    emb, heads, layers = shape
    torch.manual_seed(seed)
    model = replace_linear_with_lora(GPTModel(small_cfg(emb, heads, layers)), rank, alpha).eval()
    with torch.no_grad():
        for m in model.modules():
            # adapters of the size training produces: the update is small next to the weights
            if isinstance(m, LoRALayer): m.B.normal_(0, 0.01)
    ids = torch.randint(0, 200, (2, 12))
    with torch.no_grad(): unmerged = model(ids)
    merge_lora(model)
    assert not any(isinstance(m, (LinearWithLoRA, LoRALayer)) for m in model.modules())
    with torch.no_grad(): merged = model(ids)
    assert (merged - unmerged).abs().max() <= 1e-5
    # the merged model is a plain GPTModel again: its state dict loads into a fresh one
    GPTModel(small_cfg(emb, heads, layers)).load_state_dict(model.state_dict())


def test_same_outputs_as_the_book_with_alpha_times_rank():
    rank, book_alpha = 4, 2.0
    torch.manual_seed(5)
    base = GPTModel(small_cfg()).eval()
    theirs = copy.deepcopy(base)
    torch.manual_seed(9); replace_linear_with_lora(base, rank, book_alpha * rank)
    torch.manual_seed(9); bookE.replace_linear_with_lora(theirs, rank, book_alpha)
    assert base.state_dict().keys() == theirs.state_dict().keys()  # same names: linear.weight, lora.A, lora.B
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for (n, p), (n2, q) in zip(base.named_parameters(), theirs.named_parameters()):
            assert n == n2 and torch.equal(p, q)
            if n.endswith("lora.B"):
                b = torch.randn(p.shape, generator=g) * 0.1
                p.copy_(b); q.copy_(b)
    ids = torch.randint(0, 200, (2, 10))
    with torch.no_grad():
        assert torch.allclose(base(ids), theirs(ids), atol=1e-5)


def test_only_adapters_get_gradients():
    torch.manual_seed(0)
    model = to_lora_classifier(GPTModel(small_cfg()), rank=2, alpha=2)
    model(torch.randint(0, 200, (2, 8)))[:, -1].sum().backward()
    for n, p in model.named_parameters():
        assert (p.grad is not None) == ("lora." in n), n


@pytest.mark.parametrize("rank", [0, -3, 1.5, True, None])
def test_bad_rank_is_a_clear_error(rank):
    with pytest.raises(ValueError, match="LoRA rank must be a positive integer"): LoRALayer(4, 4, rank, 1)
    with pytest.raises(ValueError, match="LoRA rank must be a positive integer"):
        replace_linear_with_lora(nn.Sequential(nn.Linear(3, 3)), rank, 1)
    with pytest.raises(ValueError, match="LoRA rank must be a positive integer"):
        to_lora_classifier(GPTModel(small_cfg()), rank, 1)
