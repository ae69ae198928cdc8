"""Model FLOPs utilisation of a pretraining run (issue 20): the share of this machine's measured
matrix-multiplication peak that a run's training steps used.

- The run's work per step is counted, not estimated: one forward and backward pass of the run's
  model on one batch of its shape, under `torch.utils.flop_counter.FlopCounterMode`. The usual
  estimate (6 x weights that multiply + the causal attention term) is printed beside it.
- The run's speed is read from its `metrics.jsonl` (tokens and elapsed seconds between the first
  logged step and the last, so evaluations and checkpoints count against it), and, for the bare
  step, the median of its logged `tokens_per_s`.
- The peak is measured here: float32 `torch.mm` of square matrices of several sizes with 1 and 2
  threads, rounds interleaved, median per size; the peak is the best median.

Usage: python benchmarks/bench_mfu.py RUN_FOLDER [--rounds 5]
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from llm_zero.train.config import load_config
from llm_zero.train.engine import build_model, lm_loss

SIZES = (256, 512, 1024, 2048)


def matmul_flops_per_s(n: int, threads: int) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: first touch of the buffers and the kernel choice
    reps = max(3, int(2e9 // (2 * n**3)))
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def peak(rounds: int) -> dict:
    "Median float32 matmul rate per (threads, size), rounds interleaved."
    got = {(t, n): [] for t in (1, 2) for n in SIZES}
    for r in range(rounds):
        for key in (list(got) if r % 2 == 0 else list(reversed(got))):
            got[key].append(matmul_flops_per_s(key[1], key[0]))
    return {key: statistics.median(v) for key, v in got.items()}


def step_flops(cfg) -> tuple[int, float]:
    "FLOPs of one training step (forward and backward) counted by torch, and the 6N estimate."
    torch.manual_seed(0)
    model = build_model(dataclasses.asdict(cfg.model))
    T, B = cfg.model.context_length, cfg.train.batch_size
    x = torch.randint(0, cfg.model.vocab_size, (B, T))
    with FlopCounterMode(display=False) as counter:
        lm_loss(model, x, x).backward()
    m = cfg.model
    emb = model.tok_emb.weight.numel()
    matmul_weights = sum(p.numel() for p in model.parameters() if p.dim() == 2) - emb
    if model.out_head.weight is model.tok_emb.weight:
        matmul_weights += emb  # tied: the table is also the output head
    estimate = (6 * matmul_weights + 6 * m.n_layers * T * m.emb_dim) * B * T
    return counter.get_total_flops(), estimate


def run_speed(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r.get("elapsed_s") is not None and r.get("tokens")]
    first, last = rows[0], rows[-1]
    overall = (last["tokens"] - first["tokens"]) / (last["elapsed_s"] - first["elapsed_s"])
    logged = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    return {"tokens_per_s_overall": overall, "tokens_per_s_median_logged": statistics.median(logged),
            "tokens": last["tokens"], "elapsed_s": last["elapsed_s"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config(args.run / "config.yaml")
    counted, estimate = step_flops(cfg)
    tokens_per_step = cfg.train.batch_size * cfg.model.context_length
    speed = run_speed(args.run)
    rates = peak(args.rounds)
    threads = cfg.train.threads or 1
    best = max(rates[(threads, n)] for n in SIZES)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, load {os.getloadavg()[0]:.2f}")
    for t in (1, 2):
        print(f"float32 matmul, {t} thread(s): "
              + ", ".join(f"{n}: {rates[(t, n)] / 1e9:.0f}" for n in SIZES) + " GFLOP/s")
    print(f"run {args.run.name}: {threads} thread(s), {speed['tokens']:,} tokens "
          f"in {speed['elapsed_s'] / 60:.1f} min")
    print(f"FLOPs per token: counted {counted / tokens_per_step / 1e6:.2f}M, "
          f"6N estimate {estimate / tokens_per_step / 1e6:.2f}M")
    for name in ("tokens_per_s_overall", "tokens_per_s_median_logged"):
        rate = speed[name] * counted / tokens_per_step
        print(f"{name}: {speed[name]:,.0f} tokens/s = {rate / 1e9:.1f} GFLOP/s, "
              f"MFU {rate / best:.1%} of the {threads}-thread peak ({best / 1e9:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
