"""KV cache of grouped-query attention against multi-head attention: bytes held and cached-generation
speed of two Llama3Models that differ only in n_kv_groups. Not a test: run by hand, copy the output
into benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_gqa.py [--threads 1] [--rounds 5]
"""
import argparse
import os
import statistics
import time

import torch

from llm_zero.model import KVCache, Llama3Model, generate, kv_cache_bytes

CFG = {"vocab_size": 8192, "context_length": 1024, "emb_dim": 512, "n_heads": 8, "n_layers": 8, "hidden_dim": 1536,
       "rope_base": 500_000.0, "dtype": torch.float32, "impl": "fast"}
GROUPS = {"MHA (8 kv heads)": 8, "GQA (2 kv groups)": 2}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--new", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    models = {}
    for name, groups in GROUPS.items():
        torch.manual_seed(0)
        models[name] = Llama3Model({**CFG, "n_kv_groups": groups}).eval()
    idx = torch.randint(0, CFG["vocab_size"], (args.batch, args.prompt))
    total = args.prompt + args.new
    for name, m in models.items():  # the bytes a full cache holds, measured on a real cache
        cache = KVCache.for_model(m, total)
        with torch.no_grad():
            m(idx, kv_cache=cache)
        held = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
        assert held == kv_cache_bytes(CFG["n_layers"], GROUPS[name], 64, total, args.batch)
        print(f"{name}: KV cache for {args.batch} x {total} tokens: {held / 2**20:.1f} MiB")
    times = {name: [] for name in models}
    for r in range(args.rounds + 1):
        for name in list(models)[:: 1 if r % 2 else -1]:
            t0 = time.perf_counter()
            generate(models[name], idx, args.new, context_size=total, use_cache=True)
            if r:  # round 0 warms up
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {args.threads} threads, load {os.getloadavg()[0]:.1f}, batch {args.batch}, "
          f"prompt {args.prompt}, {args.new} new tokens (greedy, cached), {args.rounds} rounds, medians")
    for name, t in med.items():
        print(f"{name}: {t:.2f} s, {args.batch * args.new / t:.0f} new tokens/s "
              f"(rounds {min(times[name]):.2f}-{max(times[name]):.2f} s)")
    gqa, mha = med["GQA (2 kv groups)"], med["MHA (8 kv heads)"]
    print(f"GQA / MHA speed: {mha / gqa:.2f}x")


if __name__ == "__main__":
    main()
