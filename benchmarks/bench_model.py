"""Model benchmarks: llm_zero's GPTModel against the book's (llms_from_scratch) and Hugging Face's GPT2LMHeadModel.

Not a test: run it by hand and copy the printed table into benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_model.py              # everything (about 15 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_model.py --only train # or: generate, memory, train-memory, bf16
    .venv/bin/python benchmarks/bench_model.py --threads 1  # on a machine other jobs load (see RESULTS.md)
    .venv/bin/python benchmarks/bench_model.py --only train --optimizer fused  # or own (see OPTIMIZER_MODES)

All models get the same weights (copied from one llm_zero GPTModel), the same batches of real text
(Python's pydoc topics, GPT-2 BPE), the same thread count, and are timed in interleaved rounds in one
process (memory: in fresh child processes); the tables report medians and ratios.
"""
import argparse
import functools
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tiktoken
import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.utils import logging as hf_logging

from llm_zero.data.corpora import load_text
from llm_zero.model import GPTModel, gpt_from_hf
from llm_zero.model.generation import generate
from llm_zero.model.hf import _ours_to_hf

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

BENCH_CFG = dict(vocab_size=50257, context_length=256, emb_dim=384, n_heads=6, n_layers=6, drop_rate=0.0, qkv_bias=False)
BATCH = 4


def hf_config(c) -> GPT2Config:
    "Hugging Face's GPT-2 config for the llm_zero config `c`, with an untied head like `GPTModel`'s."
    return GPT2Config(vocab_size=c["vocab_size"], n_positions=c["context_length"], n_embd=c["emb_dim"],
                      n_layer=c["n_layers"], n_head=c["n_heads"], resid_pdrop=c["drop_rate"],
                      embd_pdrop=c["drop_rate"], attn_pdrop=c["drop_rate"], tie_word_embeddings=False)


def hf_twin(model: GPTModel) -> GPT2LMHeadModel:
    "A GPT2LMHeadModel holding exactly `model`'s weights (untied head, zero q/k/v biases), in train mode."
    c = model.cfg
    hf = GPT2LMHeadModel(hf_config(c))
    sd = _ours_to_hf(dict(model.named_parameters()), c["n_layers"])
    sd = {k if k == "lm_head.weight" else "transformer." + k: v.detach().clone() for k, v in sd.items()}
    hf.load_state_dict(sd, strict=True)
    return hf


def book_twin(model: GPTModel):
    "The book's own GPTModel (llms_from_scratch.ch04) with `model`'s weights: the names are the same."
    from llms_from_scratch.ch04 import GPTModel as BookGPTModel
    book = BookGPTModel({k: v for k, v in model.cfg.items() if k != "impl"})
    book.load_state_dict(model.state_dict())
    return book


def batches(n, seq_len, batch_size, seed=0):
    "`n` (inputs, targets) pairs of random windows of real text."
    ids = torch.tensor(tiktoken.get_encoding("gpt2").encode(load_text()))
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=g)
        w = torch.stack([ids[s:s + seq_len + 1] for s in starts])
        out.append((w[:, :-1], w[:, 1:]))
    return out


def logits_of(model, idx):
    out = model(idx)
    return out.logits if hasattr(out, "logits") else out


def train_step(model, opt, x, y, autocast=False, fused_head=False):
    "One AdamW step; `fused_head`: ask llm_zero's model for the loss (`model(x, targets=y)`) instead of the logits."
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        if fused_head:
            loss = model(x, targets=y)
        else:
            loss = F.cross_entropy(logits_of(model, x).flatten(0, 1).float(), y.flatten())
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


# The contenders' names, used as keys throughout.
FAST, TWO_STEP = "llm_zero sdpa, fused head", "llm_zero sdpa, logits + F.cross_entropy"
BOOK, HF = "book (llms_from_scratch)", "HF GPT2LMHeadModel"


# Which AdamW implementation each model trains with. "default" and "fused": the same for every model
# (PyTorch's default, a loop over the parameters, as in the book's chapter 5; or its fused kernel).
# "own": what each project's training code uses: the book's chapter 5 the default, Hugging Face's
# Trainer the fused one (its default since torch 2.8), llm_zero's engine the fused one.
OPTIMIZER_MODES = ("default", "fused", "own")


def bench_train(rounds, steps, optimizer):
    torch.manual_seed(123)
    base = GPTModel(BENCH_CFG)
    contenders = {
        FAST: GPTModel({**BENCH_CFG, "impl": "fast"}),
        TWO_STEP: GPTModel({**BENCH_CFG, "impl": "fast"}),
        "llm_zero reference": GPTModel(BENCH_CFG),
        BOOK: book_twin(base),
        HF: hf_twin(base),
    }
    for k in list(contenders)[:3]:
        contenders[k].load_state_dict(base.state_dict())
    fused = {k: optimizer == "fused" or (optimizer == "own" and k != BOOK) for k in contenders}
    opts = {k: torch.optim.AdamW(m.parameters(), lr=3e-4, weight_decay=0.1, fused=fused[k]) for k, m in contenders.items()}
    print("AdamW:", ", ".join(f"{k} {'fused' if f else 'default'}" for k, f in fused.items()))
    step = {k: functools.partial(train_step, fused_head=k == FAST) for k in contenders}
    for m in contenders.values():
        m.train()
    data = batches(1 + rounds * steps + 1, BENCH_CFG["context_length"], BATCH)
    # Same weights and data: the first losses must agree, or the comparison is not like for like.
    first = {k: step[k](m, opts[k], *data[0]) for k, m in contenders.items()}
    print("first-step losses (same weights, same batch):", {k: round(v, 5) for k, v in first.items()})
    assert max(first.values()) - min(first.values()) < 1e-3, first
    for k, m in contenders.items():  # warm-up: allocator, AdamW state
        step[k](m, opts[k], *data[-1])
    # Wall-clock tokens/s, and tokens per CPU-second of this process: on a machine other jobs are loading, the
    # CPU time is far less disturbed by being descheduled than the wall clock.
    tok_s, tok_cpu_s = {k: [] for k in contenders}, {k: [] for k in contenders}
    order = list(contenders)
    tokens = steps * BATCH * BENCH_CFG["context_length"]
    for r in range(rounds):
        for k in order[r % len(order):] + order[:r % len(order)]:  # rotate who goes first
            m, opt = contenders[k], opts[k]
            t0, c0 = time.perf_counter(), time.process_time()
            for s in range(steps):
                step[k](m, opt, *data[1 + r * steps + s])
            tok_s[k].append(tokens / (time.perf_counter() - t0))
            tok_cpu_s[k].append(tokens / (time.process_time() - c0))
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.0f} ({tok_cpu_s[k][-1]:.0f}/CPU-s)"
                                                       for k, v in tok_s.items()), flush=True)

    def ratio(series, k, other):  # paired by round, so a slow spell of the machine cancels out
        return statistics.median(a / b for a, b in zip(series[k], series[other]))

    print("\n| model | tokens/s (median) | vs book | vs HF | tokens per CPU-second (median) | vs book | vs HF |"
          "\n|---|---:|---:|---:|---:|---:|---:|")
    for k in contenders:
        print(f"| {k} | {statistics.median(tok_s[k]):,.0f} | {ratio(tok_s, k, BOOK):.2f}x | {ratio(tok_s, k, HF):.2f}x "
              f"| {statistics.median(tok_cpu_s[k]):,.0f} | {ratio(tok_cpu_s, k, BOOK):.2f}x | {ratio(tok_cpu_s, k, HF):.2f}x |")
    print("(ratios: median over rounds of the per-round ratio)")


def bench_generate(rounds, new_tokens, prompt_len=16):
    cfg = {**BENCH_CFG, "context_length": prompt_len + new_tokens, "impl": "fast"}
    torch.manual_seed(7)
    ours = GPTModel(cfg).eval()
    hf = hf_twin(ours).eval()
    prompt = batches(1, prompt_len, 1, seed=3)[0][0]
    ctx = cfg["context_length"]

    def run(kind):
        with torch.no_grad():
            if kind == "llm_zero cached":
                return generate(ours, prompt, new_tokens, ctx, use_cache=True)
            if kind == "llm_zero uncached":
                return generate(ours, prompt, new_tokens, ctx, use_cache=False)
            return hf.generate(prompt, max_new_tokens=new_tokens, do_sample=False, use_cache=True,
                               pad_token_id=0, min_new_tokens=new_tokens)

    outs = {k: run(k) for k in ("llm_zero cached", "llm_zero uncached", "HF generate (cache)")}  # also warm-up
    assert torch.equal(outs["llm_zero cached"], outs["llm_zero uncached"]), "cached and uncached tokens differ"
    assert torch.equal(outs["llm_zero cached"], outs["HF generate (cache)"]), "llm_zero and HF tokens differ"
    print(f"greedy tokens identical: llm_zero cached == uncached == HF ({new_tokens} new tokens)")
    times = {k: [] for k in outs}
    for r in range(rounds):
        for k in times:
            if k == "llm_zero uncached" and r >= max(2, rounds // 2):  # the slow one: fewer rounds suffice
                continue
            t0 = time.perf_counter()
            run(k)
            times[k].append(time.perf_counter() - t0)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n| generation, batch 1, prompt {prompt_len}, {new_tokens} new tokens | time (median) | tokens/s |\n|---|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} s | {new_tokens / v:.0f} |")
    print(f"cached speed-up over uncached: {med['llm_zero uncached'] / med['llm_zero cached']:.1f}x; "
          f"llm_zero cached vs HF generate: {med['HF generate (cache)'] / med['llm_zero cached']:.2f}x")
    return med


def _status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_child(kind, folder):
    "Run in a fresh process: RSS of loading GPT-2 124M from `folder` and of one full-context forward pass."
    torch.set_num_threads(2)
    idx = batches(1, 1024, 1, seed=5)[0][0]
    gc.collect()
    base = _status_kb("VmRSS")
    if kind == "HF":
        model = GPT2LMHeadModel.from_pretrained(folder).eval()
    else:
        model = gpt_from_hf(folder, impl="fast")
        if kind == "llm_zero tied":
            model.out_head.weight = model.tok_emb.weight  # GPT-2's own tying: one matrix instead of two
    gc.collect()
    loaded, load_peak = _status_kb("VmRSS"), _status_kb("VmHWM")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) so the next one is inference only
    with torch.no_grad():
        logits_of(model, idx)
    infer_peak = _status_kb("VmHWM")
    n_params = sum(p.numel() for p in model.parameters())
    print(json.dumps(dict(kind=kind, params=n_params, resident_mb=(loaded - base) / 1024,
                          load_peak_mb=(load_peak - base) / 1024, infer_peak_mb=(infer_peak - base) / 1024)))


TRAIN_MEMORY_KINDS = (FAST, TWO_STEP, BOOK, HF)


def train_memory_child(kind):
    "Run in a fresh process: peak RSS of one training step at BENCH_CFG, after a warm-up step (AdamW state exists)."
    torch.set_num_threads(2)
    torch.manual_seed(123)
    if kind == BOOK:
        from llms_from_scratch.ch04 import GPTModel as BookGPTModel
        model = BookGPTModel(BENCH_CFG)
    elif kind == HF:
        model = GPT2LMHeadModel(hf_config(BENCH_CFG))
    else:
        model = GPTModel({**BENCH_CFG, "impl": "fast"})
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1, fused=True)
    data = batches(2, BENCH_CFG["context_length"], BATCH)
    train_step(model.train(), opt, *data[0], fused_head=kind == FAST)
    gc.collect()
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    train_step(model, opt, *data[1], fused_head=kind == FAST)
    print(json.dumps(dict(kind=kind, between_steps_mb=before / 1024, step_peak_mb=_status_kb("VmHWM") / 1024)))


def bench_train_memory():
    rows = []
    for kind in TRAIN_MEMORY_KINDS * 2:  # twice, interleaved
        out = subprocess.run([sys.executable, __file__, "--train-memory-child", kind], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nOne training step at {BENCH_CFG}, batch {BATCH}, fused AdamW, after a warm-up step; whole-process RSS "
          "(VmRSS, VmHWM) in MB, median of 2 fresh processes each:")
    print("| model | resident between steps | peak during the step | step's extra memory |\n|---|---:|---:|---:|")
    for kind in TRAIN_MEMORY_KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        between, peak = (statistics.median(r[k] for r in rs) for k in ("between_steps_mb", "step_peak_mb"))
        print(f"| {kind} | {between:,.0f} | {peak:,.0f} | {peak - between:,.0f} |")


def bench_memory():
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(d)  # GPT-2 124M shapes, random weights
        rows = []
        for kind in ("HF", "llm_zero", "llm_zero tied", "HF", "llm_zero", "llm_zero tied"):  # twice, interleaved
            out = subprocess.run([sys.executable, __file__, "--memory-child", kind, d], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("\nGPT-2 124M, one forward pass over 1,024 tokens (batch 1, float32); RSS from /proc/self/status, in MB above "
          "the process after imports, median of 2 fresh processes each:")
    print("| model | parameters | resident after loading | peak while loading | peak during the forward pass |\n|---|---:|---:|---:|---:|")
    for kind in ("HF", "llm_zero", "llm_zero tied"):
        rs = [r for r in rows if r["kind"] == kind]
        m = lambda key: statistics.median(r[key] for r in rs)
        print(f"| {kind} | {rs[0]['params']:,} | {m('resident_mb'):.0f} | {m('load_peak_mb'):.0f} | {m('infer_peak_mb'):.0f} |")


def bench_bf16(steps, tolerance):
    torch.manual_seed(11)
    fp32 = GPTModel({**BENCH_CFG, "impl": "fast"}).train()
    bf16 = GPTModel({**BENCH_CFG, "impl": "fast"}).train()
    bf16.load_state_dict(fp32.state_dict())
    opts = {m: torch.optim.AdamW(m.parameters(), lr=3e-4, weight_decay=0.1, fused=True) for m in (fp32, bf16)}
    data = batches(steps, BENCH_CFG["context_length"], BATCH, seed=1)
    losses, times = {"float32": [], "bf16 autocast": []}, {"float32": [], "bf16 autocast": []}
    for x, y in data:  # interleaved step by step
        for name, m, ac in (("float32", fp32, False), ("bf16 autocast", bf16, True)):
            t0 = time.perf_counter()
            losses[name].append(train_step(m, opts[m], x, y, autocast=ac, fused_head=True))
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[1:]) for k, v in times.items()}  # step 0 is warm-up
    rel = [abs(a - b) / a for a, b in zip(losses["float32"], losses["bf16 autocast"])]
    tokens = BATCH * BENCH_CFG["context_length"]
    print(f"\n| llm_zero sdpa training step (fused head, fused AdamW) | time (median of {steps - 1}) | tokens/s |\n|---|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.2f} s | {tokens / v:,.0f} |")
    print(f"bf16 autocast speed-up: {med['float32'] / med['bf16 autocast']:.2f}x")
    print("losses float32:", [round(v, 4) for v in losses["float32"]])
    print("losses bf16:   ", [round(v, 4) for v in losses["bf16 autocast"]])
    print(f"max relative loss difference over {steps} steps: {max(rel):.4%} (tolerance {tolerance:.0%}): "
          + ("OK" if max(rel) <= tolerance else "EXCEEDED"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["train", "generate", "memory", "train-memory", "bf16"], nargs="*")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="training steps per model per round")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--optimizer", choices=OPTIMIZER_MODES, default="default",
                    help="AdamW implementation: the same for all (default, fused) or each project's own")
    ap.add_argument("--bf16-steps", type=int, default=12)
    ap.add_argument("--bf16-tolerance", type=float, default=0.01, help="max relative loss difference bf16 vs float32")
    ap.add_argument("--memory-child", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    ap.add_argument("--train-memory-child", metavar="KIND", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(*args.memory_child)
    if args.train_memory_child:
        return train_memory_child(args.train_memory_child)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; config {BENCH_CFG}, batch {BATCH}, AdamW")
    only = set(args.only or ["train", "generate", "memory", "train-memory", "bf16"])
    if "train" in only:
        bench_train(args.rounds, args.steps, args.optimizer)
    if "generate" in only:
        bench_generate(args.rounds, args.new_tokens)
    if "memory" in only:
        bench_memory()
    if "train-memory" in only:
        bench_train_memory()
    if "bf16" in only:
        bench_bf16(args.bf16_steps, args.bf16_tolerance)


if __name__ == "__main__":
    main()
