"""FSDP2 on this CPU (issue 23): which collectives it asks of gloo, and what a step costs.

1. Collectives: one 2-process FSDP2 run of the engine under the PyTorch profiler; every c10d or gloo
   operator it dispatched (forward, backward, clipping, checkpoint gather, resume) with its count.
2. Time per step, interleaved rounds: one process, two processes with DDP, two with FSDP2, the same
   config and global batch; the median seconds per step from the run's own metrics (start-up excluded).

    python benchmarks/bench_fsdp.py [ROUNDS] [STEPS]
"""
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--worker" else 3
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[1] != "--worker" else 40

CONFIG = """
model: {context_length: 64, emb_dim: 64, n_heads: 4, n_layers: 2, drop_rate: 0.0}
data: {corpus: the-verdict, tokenizer: char}
schedule: {warmup_steps: 4}
train: {batch_size: 16, grad_accum: 2, eval_interval: 0, eval_batches: 2, threads: 1}
run: {log_interval: 1, sample_tokens: 0}
"""


def worker(config: str, out: str, resume: str, *overrides: str):
    "Under torchrun: train with the profiler on; rank 0 prints the collectives it saw as JSON."
    import torch
    from llm_zero.train.config import load_config
    from llm_zero.train.engine import train

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        cfg = load_config(config, list(overrides))
        train(cfg, out, resume=resume == "resume", progress=False, echo=lambda m: None)
    seen = collections.Counter()
    for e in prof.key_averages():
        if "c10d" in e.key or "gloo" in e.key:
            seen[e.key] += e.count
    if os.environ.get("RANK") == "0":
        print("COLLECTIVES " + json.dumps(dict(sorted(seen.items()))))


def launch(d: Path, out: Path, procs: int, *overrides: str, profile: str = "") -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if profile:
        cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(procs), __file__, "--worker",
               str(d / "c.yaml"), str(out), profile, *overrides]
    else:
        cmd = ([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(procs), "--no-python"] if procs > 1
               else []) + [str(BIN / "llm-zero"), "train", "--config", str(d / "c.yaml"), "--out", str(out),
                           "--quiet", *overrides]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    return r.stdout


def seconds_per_step(out: Path) -> float:
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = recs[0], recs[-1]  # from the end of step 1: start-up and the first step excluded
    return (last["elapsed_s"] - first["elapsed_s"]) / (last["step"] - first["step"])


def main():
    d = Path(tempfile.mkdtemp(prefix="bench_fsdp_"))
    (d / "c.yaml").write_text(CONFIG)
    print(f"uptime: {os.popen('uptime').read().strip()}")
    # A checkpoint at step 2, then a resume to 3: the gather and the re-sharding are profiled too.
    base = ["train.parallel=fsdp", "run.checkpoint_interval=2", "schedule.warmup_steps=1"]
    for what, steps in (("new", 2), ("resume", 3)):
        out = launch(d, d / "prof", 2, *base, f"train.max_steps={steps}", profile=what)
        print(f"{what} run to step {steps}:", out.strip().splitlines()[-1])
    kinds = {"1 process": (1, []), "2 processes, DDP": (2, ["train.parallel=ddp"]),
             "2 processes, FSDP2": (2, ["train.parallel=fsdp"])}
    times = collections.defaultdict(list)
    for r in range(ROUNDS):
        order = list(kinds) if r % 2 == 0 else list(kinds)[::-1]
        for k in order:
            procs, extra = kinds[k]
            out = d / f"{k.replace(' ', '_').replace(',', '')}-{r}"
            t = time.perf_counter()
            launch(d, out, procs, f"train.max_steps={STEPS}", f"run.checkpoint_interval={STEPS}", *extra)
            times[k].append((seconds_per_step(out), time.perf_counter() - t))
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(f"{ROUNDS} rounds, {STEPS} steps, medians (min-max):")
    for k, v in times.items():
        s = [x for x, _ in v]
        w = [y for _, y in v]
        print(f"  {k}: {statistics.median(s) * 1e3:.1f} ms/step ({min(s) * 1e3:.1f}-{max(s) * 1e3:.1f}); "
              f"whole command {statistics.median(w):.1f} s")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:])
    else:
        main()
