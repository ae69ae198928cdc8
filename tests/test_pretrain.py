"""Chapter 5 and appendix D: parity with the book's package (llms_from_scratch) and behaviour."""
import math

import matplotlib
matplotlib.use("Agg")
import pytest
import tiktoken
import torch
from hypothesis import given, settings, strategies as st
from llms_from_scratch import appendix_d as book_d, ch04 as book_ch04, ch05 as book_ch05

from llm_zero.data.corpora import load_text
from llm_zero.data.dataset import create_dataloader_v1
from llm_zero.model.gpt import GPT_CONFIG_124M, GPTModel
from llm_zero.train import lr_schedule
from llm_zero.train.pretrain import (calc_loss_batch, calc_loss_loader, evaluate_model, generate_and_print_sample,
                                     plot_losses, text_to_token_ids, token_ids_to_text, train_model_simple)
from llm_zero.train.schedule import train_model

TINY = {**GPT_CONFIG_124M, "context_length": 16, "emb_dim": 16, "n_heads": 2, "n_layers": 1, "drop_rate": 0.1}
PROMPT = "Every effort moves you"


@pytest.fixture(scope="module")
def tokenizer():
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def texts():
    text = load_text("the-verdict")[:3000]
    split = int(0.9 * len(text))
    return text[:split], text[split:]


def loaders(texts, shuffle=True):
    train, val = texts
    return (create_dataloader_v1(train, batch_size=4, max_length=16, stride=16, shuffle=shuffle),
            create_dataloader_v1(val, batch_size=4, max_length=16, stride=16, shuffle=False, drop_last=False))


def models(seed=123):
    "The same seeded model twice: llm_zero's and the book's (both initialise in the book's order)."
    torch.manual_seed(seed); ours = GPTModel(TINY)
    torch.manual_seed(seed); book = book_ch04.GPTModel(TINY)
    return ours, book


def test_seeded_models_are_identical():
    ours, book = models()
    for (name, a), (bname, b) in zip(ours.state_dict().items(), book.state_dict().items()):
        assert name == bname and torch.equal(a, b), name


def test_loss_parity_with_book(texts):
    ours, book = models()
    ours.eval(); book.eval()
    train_loader, val_loader = loaders(texts, shuffle=False)
    x, y = next(iter(train_loader))
    with torch.no_grad():
        assert calc_loss_batch(x, y, ours, "cpu").item() == book_ch05.calc_loss_batch(x, y, book, "cpu").item()
        for loader in (train_loader, val_loader):
            for n in (None, 1, 3, 1000):
                assert calc_loss_loader(loader, ours, "cpu", n) == book_ch05.calc_loss_loader(loader, book, "cpu", n)
    assert evaluate_model(ours, train_loader, val_loader, "cpu", 2) == \
        book_ch05.evaluate_model(book, train_loader, val_loader, "cpu", 2)


def run_loop(fn, model, texts, tokenizer, capsys, **kw):
    "Train `model` with the loop `fn` from a fixed RNG state; its results and printed output."
    train_loader, val_loader = loaders(texts)
    torch.manual_seed(7)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.1)
    result = fn(model, train_loader, val_loader, opt, "cpu", 2, 3, 2, PROMPT, tokenizer, **kw)
    return result, capsys.readouterr().out


def book_model():
    return models()[1]


def test_train_model_simple_parity_with_book(texts, tokenizer, capsys):
    "On the same seeded model and data: the book's losses, tokens seen and printed samples, to the bit."
    ours, printed = run_loop(train_model_simple, book_model(), texts, tokenizer, capsys)
    book, book_printed = run_loop(book_ch05.train_model_simple, book_model(), texts, tokenizer, capsys)
    assert ours == book and printed == book_printed
    train_losses, val_losses, tokens_seen = ours
    assert train_losses[-1] < train_losses[0]
    assert tokens_seen[0] == 4 * 16


def test_train_model_simple_full_stack_matches_book(texts, tokenizer, capsys):
    "llm_zero's model and loop against the book's model and loop: equal up to float rounding."
    ours_res, _ = run_loop(train_model_simple, models()[0], texts, tokenizer, capsys)
    book_res, _ = run_loop(book_ch05.train_model_simple, book_model(), texts, tokenizer, capsys)
    for a, b in zip(ours_res[:2], book_res[:2]):
        assert a == pytest.approx(b, abs=1e-4)
    assert ours_res[2] == book_res[2]


def test_train_model_parity_with_book(texts, tokenizer, capsys):
    "Appendix D's loop: the book's learning rates, losses and samples (clipping from step `warmup_steps` on)."
    kw = dict(warmup_steps=4, initial_lr=1e-4, min_lr=1e-5)
    ours, printed = run_loop(train_model, book_model(), texts, tokenizer, capsys, **kw)
    book, book_printed = run_loop(book_d.train_model, book_model(), texts, tokenizer, capsys, **kw)
    assert ours == book and printed == book_printed
    lrs = ours[3]
    assert lrs[0] == 1e-4 and lrs[4] == 5e-3 and max(lrs) == 5e-3


def test_uniform_model_loss_is_log_vocab():
    "A model whose logits are all equal spreads probability evenly: cross-entropy log V, perplexity V."
    class Uniform(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(*x.shape, 50257)
    x = torch.randint(0, 50257, (3, 5))
    loss = calc_loss_batch(x, x, Uniform(), "cpu")
    assert math.isclose(loss.item(), math.log(50257), rel_tol=1e-6)
    assert math.isclose(math.exp(loss.item()), 50257, rel_tol=1e-4)


def test_calc_loss_loader_empty_is_clear_error():
    with pytest.raises(ValueError, match="yields no batches"):
        calc_loss_loader([], torch.nn.Identity(), "cpu")


def test_evaluate_and_sample_restore_train_mode(texts, tokenizer, capsys):
    model, _ = models()
    train_loader, val_loader = loaders(texts, shuffle=False)
    model.train()
    evaluate_model(model, train_loader, val_loader, "cpu", 1)
    assert model.training
    generate_and_print_sample(model, tokenizer, "cpu", PROMPT)
    assert model.training
    out = capsys.readouterr().out
    assert out.startswith(PROMPT) and out.count("\n") == 1


def test_token_ids_to_text_rejects_batches(tokenizer):
    with pytest.raises(ValueError, match="decode each row separately"):
        token_ids_to_text(torch.zeros(2, 3, dtype=torch.long), tokenizer)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=60))
def test_text_round_trip(text):
    tokenizer = tiktoken.get_encoding("gpt2")
    ids = text_to_token_ids(text, tokenizer)
    assert ids.dim() == 2 and ids.shape[0] == 1
    assert token_ids_to_text(ids, tokenizer) == text


def test_plot_losses_has_tokens_axis():
    fig = plot_losses([0, 1, 2], [10, 20, 30], [3.0, 2.0, 1.0], [3.5, 3.0, 2.9])
    labels = {ax.get_xlabel() for ax in fig.axes}
    assert labels == {"Epochs", "Tokens seen"}


schedules = st.tuples(st.integers(1, 500), st.floats(0, 1), st.floats(1e-6, 1.0), st.floats(0, 1), st.floats(0, 1))


@settings(max_examples=200, deadline=None)
@given(schedules)
def test_lr_schedule_shape(params):
    "Bounded, rising during warm-up, falling after it, continuous at the join, ending at min_lr."
    total, wfrac, peak, mfrac, ifrac = params
    warmup, min_lr, initial = int(wfrac * total), mfrac * peak, ifrac * peak
    lrs = [lr_schedule(s, total, warmup, peak, min_lr, initial) for s in range(total + 3)]
    tol = 1e-12
    assert all(min(min_lr, initial) - tol <= lr <= peak + tol for lr in lrs)
    assert all(a <= b + tol for a, b in zip(lrs[:warmup], lrs[1:min(warmup + 1, total)]))
    assert all(a + tol >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))
    # min_lr + (peak - min_lr) rounds to within an ulp of peak, not always to peak itself.
    assert math.isclose(lrs[0], initial if warmup else peak, rel_tol=1e-12, abs_tol=1e-15)
    assert math.isclose(lrs[warmup], peak, rel_tol=1e-9) or warmup == total
    assert all(math.isclose(lr, min_lr, rel_tol=1e-9, abs_tol=1e-15) for lr in lrs[total:])


@pytest.mark.parametrize("args, msg", [((0, 10, 11, 1e-3), "warmup_steps"), ((0, 10, -1, 1e-3), "warmup_steps"),
                                       ((-1, 10, 1, 1e-3), "step"), ((0, 0, 0, 1e-3), "total_steps"),
                                       ((0, 10, 1, 1e-3, 2e-3), "min_lr"), ((0, 10, 1, 1e-3, 0, -1), "initial_lr")])
def test_lr_schedule_bad_input(args, msg):
    with pytest.raises(ValueError, match=msg):
        lr_schedule(*args)
