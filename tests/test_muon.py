"""Muon from scratch (nbs/05j_muon) against PyTorch's own `torch.optim.Muon`: parameters after several
steps over random shapes and settings, the Newton-Schulz iteration against its SVD definition, the
parameter split on `GPTModel`, and `MuonWithAdamW` against the two PyTorch optimisers and through a
checkpoint."""
import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from llm_zero.core import LLMZeroError
from llm_zero.model import GPTModel, Llama3Model, Qwen3Model
from llm_zero.train.checkpoint import load_training_state, save_checkpoint
from llm_zero.train.muon import (NS_COEFFICIENTS, Muon, MuonError, MuonWithAdamW, muon_lr_scale,
                                 muon_with_adamw, newton_schulz, ns_polynomial, split_muon_params)

TINY = {"vocab_size": 50, "context_length": 16, "emb_dim": 32, "n_heads": 4, "n_layers": 2,
        "drop_rate": 0.0, "qkv_bias": True}


def loss_of(params, targets):
    "A loss that is not quadratic, so each step's gradients depend on the weights the last step left."
    return sum(((p - t) ** 2 * (1 + p.abs())).sum() for p, t in zip(params, targets))


def run(opt_class, shapes, steps, seed, zero_grad_at=None, **kw):
    torch.manual_seed(seed)
    params = [nn.Parameter(torch.randn(s)) for s in shapes]
    targets = [torch.randn(s) for s in shapes]
    opt = opt_class(params, **kw)
    for step in range(steps):
        opt.zero_grad()
        loss_of(params, targets).backward()
        if step == zero_grad_at:
            params[0].grad.zero_()  # an all-zero gradient: the eps in the normalisation
        opt.step()
    return [p.detach() for p in params]


def assert_same(ours, theirs, atol=1e-6):
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() <= atol, (a - b).abs().max().item()


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 48), cols=st.integers(1, 48), steps=st.integers(1, 8),
       lr=st.sampled_from([1e-3, 0.02, 0.1]), momentum=st.floats(0.0, 0.99),
       weight_decay=st.sampled_from([0.0, 0.1, 0.5]), nesterov=st.booleans(),
       adjust_lr_fn=st.sampled_from([None, "original", "match_rms_adamw"]), ns_steps=st.integers(1, 7),
       seed=st.integers(0, 2**31 - 1))
def test_matches_torch_muon(rows, cols, steps, lr, momentum, weight_decay, nesterov, adjust_lr_fn,
                            ns_steps, seed):
    kw = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
              adjust_lr_fn=adjust_lr_fn, ns_steps=ns_steps)
    shapes = [(rows, cols), (cols, rows)]
    assert_same(run(Muon, shapes, steps, seed, **kw), run(torch.optim.Muon, shapes, steps, seed, **kw))


@pytest.mark.parametrize("shape", [(96, 24), (24, 96), (40, 40)], ids=["tall", "wide", "square"])
@pytest.mark.parametrize("kw", [{}, {"nesterov": False}, {"weight_decay": 0.0},
                                {"nesterov": False, "weight_decay": 0.0}, {"lr": 0.02, "weight_decay": 0.01}])
def test_matches_torch_muon_defaults(shape, kw):
    "PyTorch's defaults (lr 1e-3, weight decay 0.1, momentum 0.95, Nesterov) and variations, 25 steps."
    assert_same(run(Muon, [shape], 25, 0, **kw), run(torch.optim.Muon, [shape], 25, 0, **kw))


def test_matches_torch_muon_zero_gradient_and_custom_coefficients():
    kw = dict(lr=0.05, ns_coefficients=(2.0, -1.5, 0.5), eps=1e-5)
    shapes = [(20, 8), (8, 20)]
    assert_same(run(Muon, shapes, 6, 1, zero_grad_at=2, **kw),
                run(torch.optim.Muon, shapes, 6, 1, zero_grad_at=2, **kw))


def test_param_groups_and_missing_gradients():
    "Groups with their own settings; a parameter without a gradient is left alone, as in PyTorch."
    def groups(params):
        return [{"params": params[:1], "lr": 0.05, "nesterov": False},
                {"params": params[1:2], "adjust_lr_fn": "match_rms_adamw", "momentum": 0.5},
                {"params": params[2:], "lr": 0.01}]

    results = []
    for opt_class in (Muon, torch.optim.Muon):
        torch.manual_seed(2)
        params = [nn.Parameter(torch.randn(s)) for s in [(30, 10), (10, 30), (16, 16)]]
        frozen = params[2].detach().clone()
        opt = opt_class(groups(params), lr=0.02)
        for _ in range(4):
            opt.zero_grad()
            (params[0].sin().sum() + params[1].square().sum()).backward()
            opt.step()
        assert torch.equal(params[2].detach(), frozen)
        results.append([p.detach() for p in params])
    assert_same(*results)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), steps=st.integers(0, 8),
       seed=st.integers(0, 2**31 - 1))
def test_newton_schulz_is_the_polynomial_on_singular_values(rows, cols, steps, seed):
    "In float64 the matrix iteration equals U p^k(S / |G|_F) V^T computed from an SVD."
    g = torch.randn(rows, cols, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    U, S, Vh = torch.linalg.svd(g / g.norm(), full_matrices=False)
    for _ in range(steps):
        S = ns_polynomial(S)
    expected = U @ torch.diag(S) @ Vh
    ours = newton_schulz(g, steps, dtype=torch.float64)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)


def band(steps=5, smallest=3e-3):
    "Where `steps` applications of the quintic send every singular value in [smallest, 1]."
    s = torch.logspace(torch.log10(torch.tensor(smallest)).item(), 0, 100_001, dtype=torch.float64)
    for _ in range(steps):
        s = ns_polynomial(s)
    return s.min().item(), s.max().item()


@pytest.mark.parametrize("shape", [(256, 64), (64, 256), (300, 40), (128, 96)])
def test_orthogonalised_singular_values_in_band(shape):
    "bfloat16, five steps: every singular value of the output lies in the quintic's band (+-0.02)."
    lo, hi = band()
    assert 0.6 < lo < 0.7 and 1.15 < hi < 1.25  # the band Keller Jordan reports, about [0.7, 1.2]
    for seed in range(5):
        g = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        assert (torch.linalg.svdvals(g) / g.norm()).min() > 3e-3  # inside the band's premise
        out = newton_schulz(g)
        assert out.dtype == torch.bfloat16 and out.shape == g.shape
        sv = torch.linalg.svdvals(out.float())
        assert lo - 0.02 < sv.min() and sv.max() < hi + 0.02, (sv.min(), sv.max())


def test_polar_factor_with_many_steps_of_the_cubic():
    "With the classical cubic the same code converges to U V^T itself."
    g = torch.randn(30, 12, dtype=torch.float64)
    U, _, Vh = torch.linalg.svd(g, full_matrices=False)
    torch.testing.assert_close(newton_schulz(g, 40, (1.5, -0.5, 0.0), dtype=torch.float64), U @ Vh,
                               rtol=0, atol=1e-9)


def test_lr_scale():
    assert muon_lr_scale((128, 32)) == 2.0 and muon_lr_scale((32, 128)) == 1.0
    assert muon_lr_scale((32, 128), "match_rms_adamw") == pytest.approx(0.2 * 128 ** 0.5)
    assert NS_COEFFICIENTS == (3.4445, -4.7750, 2.0315)


@pytest.mark.parametrize("make", [
    lambda: Muon([nn.Parameter(torch.zeros(4))]),
    lambda: Muon([nn.Parameter(torch.zeros(2, 3, 4))]),
    lambda: Muon([nn.Parameter(torch.zeros(4, 4))], lr=-1.0),
    lambda: Muon([nn.Parameter(torch.zeros(4, 4))], momentum=float("nan")),
    lambda: Muon([nn.Parameter(torch.zeros(4, 4))], weight_decay=-0.1),
    lambda: Muon([nn.Parameter(torch.zeros(4, 4))], ns_steps=0),
    lambda: Muon([nn.Parameter(torch.zeros(4, 4))], ns_coefficients=(1.0, 2.0)),
    lambda: Muon([nn.Parameter(torch.zeros(4, 4))], adjust_lr_fn="adam"),
    lambda: newton_schulz(torch.zeros(2, 2, 2)),
    lambda: muon_with_adamw(nn.Sequential(nn.Embedding(5, 4), nn.LayerNorm(4))),
], ids=["vector", "3-d", "lr", "momentum", "weight_decay", "ns_steps", "coefficients", "rule", "ns-3d",
        "no-matrices"])
def test_bad_settings_are_named(make):
    with pytest.raises(MuonError) as info:
        make()
    assert isinstance(info.value, LLMZeroError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_split_on_gpt_model(impl):
    model = GPTModel({**TINY, "impl": impl})
    muon, adamw = split_muon_params(model)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for p in muon}
    blocks = [f"trf_blocks.{i}." for i in range(TINY["n_layers"])]
    layers = ("att.W_query", "att.W_key", "att.W_value", "att.out_proj", "ff.layers.0", "ff.layers.2")
    expected = {b + m + ".weight" for b in blocks for m in layers}
    assert muon_names == expected
    assert {names[id(p)] for p in adamw} == set(names.values()) - expected
    assert len(muon) + len(adamw) == len(list(model.parameters()))
    assert all(p.ndim == 2 for p in muon)


LLAMA = {"vocab_size": 64, "context_length": 32, "emb_dim": 32, "n_heads": 4, "n_layers": 2, "hidden_dim": 48,
         "n_kv_groups": 2, "rope_base": 500_000.0, "dtype": torch.float32}
QWEN = {**LLAMA, "head_dim": 16, "qk_norm": True, "rope_base": 1_000_000.0}


@pytest.mark.parametrize("make", [lambda tie: Llama3Model({**LLAMA, "tie_embeddings": tie}),
                                  lambda tie: Qwen3Model({**QWEN, "tie_embeddings": tie})], ids=["llama3", "qwen3"])
@pytest.mark.parametrize("tie", [False, True])
def test_split_on_llama_and_qwen(make, tie):
    "Attention and SwiGLU matrices to Muon; embeddings, head, RMSNorm and QK-norm gains to AdamW."
    model = make(tie)
    muon, adamw = split_muon_params(model)
    names = {id(p): n for n, p in model.named_parameters()}
    layers = ("att.W_query", "att.W_key", "att.W_value", "att.out_proj", "ff.fc1", "ff.fc2", "ff.fc3")
    expected = {f"trf_blocks.{i}.{m}.weight" for i in range(LLAMA["n_layers"]) for m in layers}
    assert {names[id(p)] for p in muon} == expected
    assert {names[id(p)] for p in adamw} == set(names.values()) - expected
    assert ("out_head.weight" in names.values()) == (not tie)


def test_split_tied_and_frozen():
    model = GPTModel(TINY)
    model.out_head.weight = model.tok_emb.weight
    model.pos_emb.weight.requires_grad_(False)
    muon, adamw = split_muon_params(model)
    ids_m, ids_a = {id(p) for p in muon}, {id(p) for p in adamw}
    assert id(model.tok_emb.weight) in ids_a and id(model.tok_emb.weight) not in ids_m
    assert id(model.pos_emb.weight) not in ids_m | ids_a
    assert len(ids_a) == len(adamw)  # the shared matrix is listed once


def batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (4, TINY["context_length"] + 1)
    return [torch.randint(0, TINY["vocab_size"], shape, generator=g) for _ in range(n)]


def train(model, opt, data):
    for b in data:
        opt.zero_grad()
        model(b[:, :-1], targets=b[:, 1:]).backward()
        opt.step()


def fresh(seed=0):
    torch.manual_seed(seed)
    return GPTModel({**TINY, "impl": "fast"})


def test_muon_with_adamw_equals_the_two_torch_optimizers():
    data = batches(6)
    ours = fresh()
    train(ours, muon_with_adamw(ours, lr=0.03, momentum=0.9, adamw_lr=2e-3, betas=(0.9, 0.99),
                                adamw_weight_decay=0.05), data)
    ref = fresh()
    mp, ap = split_muon_params(ref)
    muon = torch.optim.Muon(mp, lr=0.03, momentum=0.9, weight_decay=0.0)
    adamw = torch.optim.AdamW([{"params": [p for p in ap if p.ndim == 2], "weight_decay": 0.05},
                               {"params": [p for p in ap if p.ndim < 2], "weight_decay": 0.0}],
                              lr=2e-3, betas=(0.9, 0.99))
    for b in data:
        muon.zero_grad()
        adamw.zero_grad()
        ref(b[:, :-1], targets=b[:, 1:]).backward()
        muon.step()
        adamw.step()
    assert_same(list(ours.parameters()), list(ref.parameters()))


def test_fused_adamw_part():
    "The engine's AdamW is fused; with fused=True the AdamW half is PyTorch's fused AdamW."
    data = batches(3)
    a, b = fresh(), fresh()
    opt_a = muon_with_adamw(a, fused=True)
    assert opt_a.adamw.defaults["fused"] is True
    train(a, opt_a, data)
    mp, ap = split_muon_params(b)
    ref = MuonWithAdamW(torch.optim.Muon(mp, lr=0.02, weight_decay=0.0),
                        torch.optim.AdamW([{"params": [p for p in ap if p.ndim == 2], "weight_decay": 0.1},
                                           {"params": [p for p in ap if p.ndim < 2], "weight_decay": 0.0}],
                                          lr=1e-3, betas=(0.9, 0.95), fused=True))
    train(b, ref, data)
    assert_same(list(a.parameters()), list(b.parameters()))


def test_param_groups_are_the_live_groups():
    model = fresh()
    opt = muon_with_adamw(model, lr=0.02, adamw_lr=1e-3)
    assert [g["lr"] for g in opt.param_groups] == [0.02, 1e-3, 1e-3]
    for g in opt.param_groups:
        g["lr"] *= 0.5
    assert opt.muon.param_groups[0]["lr"] == 0.01 and opt.adamw.param_groups[0]["lr"] == 5e-4


def test_resume_through_a_checkpoint(tmp_path):
    "save_checkpoint / load_training_state (the engine's) round-trip both optimisers' state exactly."
    data = batches(8, seed=1)
    a = fresh()
    opt_a = muon_with_adamw(a)
    train(a, opt_a, data[:4])
    save_checkpoint(tmp_path / "ckpt", a, opt_a)
    weights = copy.deepcopy(a.state_dict())
    train(a, opt_a, data[4:])

    b = fresh(seed=9)
    b.load_state_dict(weights)
    opt_b = muon_with_adamw(b)
    load_training_state(tmp_path / "ckpt", opt_b)
    train(b, opt_b, data[4:])
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))


def test_refuses_an_adamw_state():
    model = fresh()
    with pytest.raises(MuonError, match="Muon with AdamW"):
        muon_with_adamw(model).load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())


def test_step_closure_and_zero_grad():
    model = fresh()
    opt = muon_with_adamw(model)
    b = batches(1)[0]
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = model(b[:, :-1], targets=b[:, 1:])
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert torch.isfinite(loss)
    assert all(not torch.equal(p0, p) for p0, p in zip(before, model.parameters()))
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert isinstance(opt, MuonWithAdamW)
