"""The fused output head and loss (nbs/05a_fused_loss) against PyTorch's two-step loss: random
shapes and ignore masks, the GPT model at GPT-2's vocabulary, and the model-level plumbing
(workspace, copies, pickling, bfloat16)."""
import copy
import io
import pickle

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_zero.model import GPT_CONFIG_124M, GPTModel, LogitsWorkspace, linear_cross_entropy


def loss_and_grads(loss_fn, hidden, weight, *args, **kwargs):
    hidden, weight = hidden.detach().requires_grad_(), weight.detach().requires_grad_()
    loss = loss_fn(hidden, weight, *args, **kwargs)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


def two_step(hidden, weight, targets, ignore_index=-100):
    return F.cross_entropy(F.linear(hidden, weight).flatten(0, -2), targets.flatten(), ignore_index=ignore_index)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 70), dim=st.integers(1, 24), vocab=st.integers(2, 3000), seed=st.integers(0, 2**31 - 1),
       ignored=st.floats(0.0, 0.9), scale=st.sampled_from([0.01, 1.0, 30.0]), use_workspace=st.booleans())
def test_matches_two_step_loss(rows, dim, vocab, seed, ignored, scale, use_workspace):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=g)
    weight = torch.randn(vocab, dim, generator=g) * scale
    targets = torch.randint(0, vocab, (rows,), generator=g)
    targets[torch.rand(rows, generator=g) < ignored] = -100
    targets[0] = min(vocab - 1, 1)  # at least one counted row: all-ignored is NaN in both (tested in the notebook)
    ws = LogitsWorkspace() if use_workspace else None
    ours = loss_and_grads(linear_cross_entropy, hidden, weight, targets, workspace=ws)
    ref = loss_and_grads(two_step, hidden, weight, targets)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-5 * max(1.0, scale), rtol=1e-5)


def test_gpt_fast_path_loss_and_gradients_equal_reference_at_gpt2_vocabulary():
    cfg = {**GPT_CONFIG_124M, "context_length": 32, "emb_dim": 64, "n_heads": 4, "n_layers": 2, "drop_rate": 0.0}
    torch.manual_seed(3)
    ref = GPTModel(cfg)
    fast = GPTModel({**cfg, "impl": "fast"})
    fast.load_state_dict(ref.state_dict())
    x, y = torch.randint(0, 50257, (3, 32)), torch.randint(0, 50257, (3, 32))
    ref_loss = F.cross_entropy(ref(x).flatten(0, 1), y.flatten())  # chapter 5's calc_loss_batch
    ref_loss.backward()
    for step in range(2):  # the second step reuses the workspace's buffer
        fast.zero_grad(set_to_none=True)
        fast_loss = fast(x, targets=y)
        fast_loss.backward()
        torch.testing.assert_close(fast_loss, ref_loss, atol=1e-5, rtol=0)
        for (name, p), q in zip(ref.named_parameters(), fast.parameters()):
            torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=f"step {step}: {name}")
    assert fast._logits_workspace._free is not None


def test_reference_path_with_targets_is_chapter5_loss_and_checks_ids():
    cfg = {**GPT_CONFIG_124M, "vocab_size": 50, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 1}
    torch.manual_seed(0)
    model = GPTModel(cfg).eval()
    x, y = torch.randint(0, 50, (2, 8)), torch.randint(0, 50, (2, 8))
    assert torch.equal(model(x, targets=y), F.cross_entropy(model(x).flatten(0, 1), y.flatten()))
    for impl in ("reference", "fast"):
        model.set_impl(impl)
        bad = y.clone()
        bad[1, 3] = 50
        try:
            model(x, targets=bad)
        except ValueError as e:
            assert "Target id 50 at position (1, 3)" in str(e) and "[0, 50)" in str(e), e
        else:
            raise AssertionError(f"{impl}: an out-of-vocabulary target was accepted")


def test_copies_and_pickles_leave_the_workspace_behind():
    cfg = {**GPT_CONFIG_124M, "vocab_size": 300, "context_length": 8, "emb_dim": 16, "n_heads": 2, "n_layers": 1,
           "impl": "fast"}
    model = GPTModel(cfg)
    x = torch.randint(0, 300, (2, 8))
    model(x, targets=x).backward()
    assert model._logits_workspace._free is not None
    assert copy.deepcopy(model)._logits_workspace._free is None
    buf = io.BytesIO()
    torch.save(model, buf)
    assert len(buf.getvalue()) < 200_000, "the scratch buffer must not be saved with the model"
    restored = pickle.loads(pickle.dumps(model)).eval()
    model.eval()  # no dropout: both compute the same function
    torch.testing.assert_close(restored(x, targets=x), model(x, targets=x))


def test_bf16_autocast_fused_head_close_to_two_step():
    torch.manual_seed(5)
    hidden, weight = torch.randn(64, 32), torch.randn(2000, 32) * 0.1
    targets = torch.randint(0, 2000, (64,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = loss_and_grads(linear_cross_entropy, hidden, weight, targets, workspace=LogitsWorkspace())
        ref = loss_and_grads(lambda h, w, t: F.cross_entropy(F.linear(h, w).float(), t), hidden, weight, targets)
    assert ours[1].dtype == torch.float32 and ours[2].dtype == torch.float32
    torch.testing.assert_close(ours[0], ref[0], atol=1e-2, rtol=1e-2)
    for a, b in zip(ours[1:], ref[1:]):
        assert (a - b).abs().max() < 0.02 * b.abs().max()
