"""Cost of GPTModel's input checks (shape, length, token-id range): one call timed alone, and a
training step of llm_zero's reference path against the book's GPTModel, whose math is identical
but which checks nothing. Not a test: run by hand, copy the output into benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_input_checks.py [--threads 2] [--rounds 5]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from llms_from_scratch.ch04 import GPTModel as BookGPTModel

from llm_zero.model import GPTModel, check_token_ids

CFG = dict(vocab_size=50257, context_length=256, emb_dim=384, n_heads=6, n_layers=6, drop_rate=0.0, qkv_bias=False)


def step_time(model, x, y):
    t0 = time.perf_counter()
    F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = GPTModel(CFG)
    book = BookGPTModel(CFG)
    book.load_state_dict(ours.state_dict())
    x, y = torch.randint(0, 50257, (2, 4, 256))
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        check_token_ids(x, CFG["context_length"], CFG["vocab_size"])
    check = (time.perf_counter() - t0) / n
    times = {"llm_zero": [], "book": []}
    for r in range(args.rounds + 1):
        for name, m in (("llm_zero", ours), ("book", book))[:: 1 if r % 2 else -1]:
            t = step_time(m, x, y)
            if r:  # round 0 warms up
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {args.threads} threads, batch 4 x 256 tokens, {args.rounds} rounds")
    print(f"input check alone: {check * 1e6:.1f} us per forward ({check / med['llm_zero'] * 100:.4f}% of a step)")
    print(f"forward+backward median: llm_zero {med['llm_zero'] * 1e3:.0f} ms, book {med['book'] * 1e3:.0f} ms, "
          f"ratio {med['llm_zero'] / med['book']:.3f}")


if __name__ == "__main__":
    main()
