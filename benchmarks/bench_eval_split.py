"""What `llm-zero eval --max-tokens 20000` spends before the model runs, on english-mix with the
committed base model's tokenizer: the old path (tokenize all 16 MB, keep the first tokens, which
are training text) against the new one (the run's validation split, its ids read back from the
cache that the first call fills). Rounds are interleaved; medians are reported. The model's
forward pass over the 20,000 tokens is the same in both and is timed once, apart.
Not a test: run by hand, copy the output into benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_eval_split.py [--rounds 3]
"""
import argparse
import os
import platform
import statistics
import time

import torch

from llm_zero.data import load_text
from llm_zero.train.data import encode_corpus
from llm_zero.train.engine import load_model_from_checkpoint
from llm_zero.train.evaluate import evaluate_text, split_ids

MAX_TOKENS = 20_000


def old_path(tok):
    return encode_corpus(tok, load_text("english-mix"))[:MAX_TOKENS + 1]


def new_path(tok):
    return split_ids(tok, load_text("english-mix"), "val", 0.1)[:MAX_TOKENS + 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load {os.getloadavg()}")
    model, tok, _ = load_model_from_checkpoint("experiments/base-cpu")
    t0 = time.perf_counter()
    new_path(tok)  # fills the cache if it is empty
    print(f"first call of the new path (fills the token cache if empty): {time.perf_counter() - t0:.1f} s")
    times = {"old: tokenize all, first tokens": [], "new: val split from the cache": []}
    for _ in range(args.rounds):
        for runs, fn in zip(times.values(), (old_path, new_path)):
            t0 = time.perf_counter()
            fn(tok)
            runs.append(time.perf_counter() - t0)
    for name, runs in times.items():
        print(f"{name}: median {statistics.median(runs):.2f} s ({', '.join(f'{r:.2f}' for r in runs)})")
    for name, fn in (("old (training text)", old_path), ("new (validation split)", new_path)):
        ids = fn(tok)
        t0 = time.perf_counter()
        r = evaluate_text(model, tok, ids=ids, max_tokens=MAX_TOKENS)
        print(f"{name}: {r['bits_per_byte']:.4f} bits per byte over {r['tokens']:,} tokens; "
              f"forward pass {time.perf_counter() - t0:.1f} s")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
