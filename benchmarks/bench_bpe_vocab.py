"""BPE vocabulary size on english-mix: training time and compression at several sizes.

Trains llm_zero's own byte-level BPE (`BPETokenizer.train`, pure Python, one thread) on the first
`--train-mb` MB of the english-mix training split at each vocabulary size, then encodes a held-out
sample of each source's validation text and reports bytes per token ("all": the sources weighted
by their share of the mix's held-out bytes). GPT-2's 50,257-token vocabulary (tiktoken) on the
same held-out text is the baseline, measured in the same run.
Writes benchmarks/bpe_vocab.json, which chapter 05i plots.
"""
import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import tiktoken

from llm_zero.data.english import MIX_SOURCES, english_mix, english_mix_stats, english_mix_val
from llm_zero.tokenizer import BPETokenizer

OUT = Path(__file__).with_name("bpe_vocab.json")


def mix_bytes_per_token(per_source: dict) -> float:
    "Bytes per token of the whole mix: each source weighted by its share of the held-out bytes."
    share = {s: v["val_bytes"] for s, v in english_mix_stats()["sources"].items()}
    return sum(share.values()) / sum(share[s] / per_source[s] for s in share)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2048, 4096, 8192, 16384, 32768])
    ap.add_argument("--train-mb", type=float, default=4.0)
    ap.add_argument("--val-kb", type=int, default=300, help="held-out sample per source")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved training rounds; times are medians")
    args = ap.parse_args()
    train = english_mix("train")[: int(args.train_mb * 1e6)]
    val = {s: english_mix_val(s)[: args.val_kb * 1000] for s in MIX_SOURCES}
    gpt2 = tiktoken.get_encoding("gpt2")
    def bpt(encode): return {s: len(t.encode()) / len(encode(t)) for s, t in val.items()}
    rows = [{"vocab_size": 50257, "tokenizer": "gpt2 (tiktoken)", "train_seconds": None,
             "bytes_per_token": bpt(gpt2.encode_ordinary)}]
    times, toks = {v: [] for v in args.sizes}, {}
    for _ in range(args.rounds):
        for v in args.sizes:
            t = time.perf_counter()
            toks[v] = BPETokenizer.train(train, v)
            times[v].append(time.perf_counter() - t)
    for v in args.sizes:
        rows.append({"vocab_size": v, "tokenizer": "llm_zero BPE", "train_seconds": statistics.median(times[v]),
                     "train_seconds_all": times[v], "bytes_per_token": bpt(toks[v].encode_ordinary)})
        print(json.dumps(rows[-1]), flush=True)
    total = {s: len(t.encode()) for s, t in val.items()}
    for r in rows:
        r["bytes_per_token"]["all"] = mix_bytes_per_token(r["bytes_per_token"])
    OUT.write_text(json.dumps({"train_bytes": len(train.encode()), "val_bytes": total,
                               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
                               "load_average": os.getloadavg(), "rows": rows}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
