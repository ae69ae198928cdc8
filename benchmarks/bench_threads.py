"""Thread count for running a model (issue 26): tokens/s of `generate` on the committed base model
(experiments/base-cpu, 100 new tokens, sampled at temperature 0.8 with the KV cache, as `llm-zero
generate` runs it) with 1 and 2 PyTorch threads, on the machine as it is and with every core kept
busy by extra busy-loop processes. Rounds are interleaved (each round runs both thread counts under
both loads, a different thread count first each round); medians are printed, with `uptime`'s load.

The policy's default (`llm_zero.train.engine.DEFAULT_THREADS`) is the setting whose worst case over
the two loads is best; issue 26's goal is that with both cores busy it is within 1.5x of the best.

Usage: python benchmarks/bench_threads.py [--rounds 5] [--tokens 100] [--busy 2]
"""

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from llm_zero.model.generation import generate
from llm_zero.train.engine import load_model_from_checkpoint

ROOT = Path(__file__).resolve().parents[1]
THREADS = (1, 2)


@contextlib.contextmanager
def busy_cores(n: int):
    "`n` processes spinning a core each, stopped on exit (by their ids)."
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let the scheduler spread them
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def tokens_per_second(model, ids, tokens: int, threads: int) -> float:
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    generate(model, ids, tokens, model.cfg["context_length"], temperature=0.8, use_cache=True,
             generator=gen)
    return tokens / (time.perf_counter() - start)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--busy", type=int, default=os.cpu_count(), help="busy loops for 'busy'")
    args = ap.parse_args()
    model, tok, _ = load_model_from_checkpoint(ROOT / "experiments" / "base-cpu", "cpu")
    ids = torch.tensor([tok.encode("The history of the")])
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; {args.tokens} tokens from experiments/base-cpu")
    print(f"before: {load()}")
    for threads in THREADS:
        tokens_per_second(model, ids, 10, threads)  # warm-up
    results = {(lo, t): [] for lo in ("as found", "busy") for t in THREADS}
    for r in range(args.rounds):
        order = THREADS if r % 2 == 0 else THREADS[::-1]
        for lo in ("as found", "busy"):
            with busy_cores(args.busy) if lo == "busy" else contextlib.nullcontext():
                for t in order:
                    results[lo, t].append(tokens_per_second(model, ids, args.tokens, t))
        print(f"round {r + 1}: " + ", ".join(f"{lo} {t}t {v[-1]:.1f}"
                                             for (lo, t), v in results.items()), flush=True)
    print(f"after: {load()}")
    print("\n| load | threads | tokens/s (median) | min-max | seconds per 100 tokens |")
    print("|---|---|---|---|---|")
    for (lo, t), v in results.items():
        med = statistics.median(v)
        print(f"| {lo} | {t} | {med:.1f} | {min(v):.1f}-{max(v):.1f} | {100 / med:.1f} |")
    for lo in ("as found", "busy"):
        best = max(statistics.median(results[lo, t]) for t in THREADS)
        print(f"{lo}: " + ", ".join(f"{t} thread(s) {best / statistics.median(results[lo, t]):.2f}x "
                                    "the best time" for t in THREADS))


if __name__ == "__main__":
    main()
