"""Step cost of the main job's pretraining (issue 21) for candidate shapes, interleaved; and,
with --budget, what each shape learns in the same time.

Usage: python benchmarks/bench_zero_to_chat_step.py [--threads N] [--rounds R] [--profile]
           [--budget SECONDS] [--only NAME ...] [--save-costs FILE | --costs FILE]
           [--train-threads N]
Each shape is `configs/main.yaml`'s pretraining with a few overrides; one round times
`--steps` optimiser steps of every shape in turn (forward, backward, clipping, Muon, AdamW
on random tokens), and the medians over rounds are printed beside the load (`uptime`), with
each shape's time relative to the first. `--profile` prints where the first shape's step
goes: its phases, then torch.profiler's self time per operator (`--rounds 0`: only that).
`--budget` then pretrains every shape for as many steps as its median step cost fits in
SECONDS (the schedule ending there) under experiments/local/z2c-sweep/, and scores it as
the job's report card does: bits per byte on the held-out tokens beside the strongest
n-gram. Loss per step is deterministic, so the ranking does not depend on the load; the
step costs do, so measure them on a quiet machine (`--save-costs`), then run the budgets
from that file (`--costs`, `--train-threads 1`, several processes side by side, `--only`
to split the shapes). Numbers go to benchmarks/RESULTS.md; issue 21's sweep to
experiments/zero-to-chat/sweep.json.
"""
import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import torch

from llm_zero.finetune.zero_to_chat import (
    cached_bpe,
    job_settings,
    pretrain_config,
    validation_scores,
)
from llm_zero.train.checkpoint import load_language_model
from llm_zero.train.engine import build_model, configure_optimizer, train
from llm_zero.train.tokenizers import load_tokenizer, save_tokenizer

MODEL = "pretrain.model."


def shape(d, heads, kv, layers, ffn, ctx=256, batch=16, *extra) -> list[str]:
    "Overrides of configs/main.yaml's pretraining for one model shape."
    keys = dict(emb_dim=d, n_heads=heads, n_kv_groups=kv, n_layers=layers, hidden_dim=ffn,
                context_length=ctx)
    return [f"{MODEL}{k}={v}" for k, v in keys.items()] + [
        f"pretrain.train.batch_size={batch}", *extra]


# Every shape spelled out, so the names hold whatever configs/main.yaml says; the first is
# the main job's before issue 21's sweep, and "128d 4L ffn352" its shape after.
SHAPES = {
    "192d 6L ffn512": shape(192, 6, 3, 6, 512),
    "192d 6L ffn512 ctx128 b32": shape(192, 6, 3, 6, 512, 128, 32),
    "192d 6L ffn384": shape(192, 6, 3, 6, 384),
    "192d 4L ffn384": shape(192, 6, 3, 4, 384),
    "160d 5h 5L ffn320": shape(160, 5, 5, 5, 320),
    "192d 6L ffn512 ns4": shape(192, 6, 3, 6, 512, 256, 16,
                                "pretrain.optimizer.muon_ns_steps=4"),
    # the two-core base's shape (chapter 5l.9) and its neighbours
    "128d 4L ffn352": shape(128, 4, 2, 4, 352),
    "128d 4L ffn352 ctx128 b32": shape(128, 4, 2, 4, 352, 128, 32),
    "128d 6L ffn352": shape(128, 4, 2, 6, 352),
    "160d 4L ffn448": shape(160, 5, 5, 4, 448),
    "96d 4L ffn256": shape(96, 3, 1, 4, 256),
    "128d 4L ffn352 b8": shape(128, 4, 2, 4, 352, 256, 8),
}


def setup(overrides):
    job = job_settings("configs/main.yaml", overrides=overrides)
    cfg = pretrain_config(job)
    m = dataclasses.asdict(cfg.model) | {"vocab_size": job["tokenizer"]["vocab_size"]}
    torch.manual_seed(0)
    model = build_model(m)
    opt = configure_optimizer(model, cfg.optimizer)
    shape = (cfg.train.batch_size, cfg.model.context_length)
    x, y = (torch.randint(0, m["vocab_size"], shape) for _ in range(2))
    return model, opt, x, y


def one_step(model, opt, x, y) -> dict:
    "One optimiser step; the seconds of each of its phases."
    t = [time.perf_counter()]
    loss = model(x, targets=y)
    t.append(time.perf_counter())
    loss.backward()
    t.append(time.perf_counter())
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.muon.step()  # Newton-Schulz on the hidden matrices
    t.append(time.perf_counter())
    opt.adamw.step()
    opt.zero_grad()
    t.append(time.perf_counter())
    phases = ("forward", "backward", "clip+muon", "adamw")
    return dict(zip(phases, map(float.__sub__, t[1:], t[:-1])))


def pretrain_for(name: str, overrides: list, steps: int, threads: int) -> dict:
    "Pretrain one shape for `steps` steps as the job does; its held-out scores."
    over = overrides + [f"pretrain.train.max_steps={steps}", "pretrain.run.sample_tokens=0",
                        f"pretrain.train.threads={threads}"]
    job = job_settings("configs/main.yaml", overrides=over)
    out = Path("experiments/local/z2c-sweep") / name.replace(" ", "-")
    shutil.rmtree(out, ignore_errors=True)  # a sweep point starts fresh, never resumes
    out.mkdir(parents=True)
    t = job["tokenizer"]
    save_tokenizer(load_tokenizer(cached_bpe(t["corpus"], t["vocab_size"])[0]), out)
    t0 = time.perf_counter()
    train(pretrain_config(job), out, progress=False)
    wall = time.perf_counter() - t0
    model, tok, _ = load_language_model(out)
    v = validation_scores(job, out, model, tok)[0]
    return {"steps": steps, "wall_s": round(wall), "bpb": v["model"]["bits_per_byte"],
            "ngram_bpb": v["ngram"]["bits_per_byte"], "ngram_order": v["ngram"]["order"]}


def time_shapes(shapes: dict, a) -> dict:
    "Median seconds per step of each shape, timed in interleaved rounds."
    print("before:", subprocess.run(["uptime"], capture_output=True, text=True).stdout)
    runs = {name: setup(o) for name, o in shapes.items()}
    for r in runs.values():
        one_step(*r)  # warm-up
    times = {name: [] for name in runs}
    for _ in range(a.rounds):
        for name, r in runs.items():
            t0 = time.perf_counter()
            for _ in range(a.steps):
                one_step(*r)
            times[name].append((time.perf_counter() - t0) / a.steps)
    print("after: ", subprocess.run(["uptime"], capture_output=True, text=True).stdout)
    med = {name: statistics.median(ts) for name, ts in times.items() if ts}
    for name, m in med.items():
        print(f"{name:34s} {m:6.2f} s/step  x{m / next(iter(med.values())):.2f}")
    return med


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--budget", type=float, help="seconds of pretraining per shape")
    p.add_argument("--only", nargs="*", help="shape names to keep (default: all)")
    p.add_argument("--costs", help="a JSON file of seconds per step by shape, measured by an "
                   "earlier run (--save-costs) on a quiet machine: skips the timing, so the "
                   "budget runs may share the machine (their losses do not depend on it)")
    p.add_argument("--save-costs", help="write the measured seconds per step here")
    p.add_argument("--train-threads", type=int, help="threads of the budget runs "
                   "(default: --threads)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    shapes = {k: v for k, v in SHAPES.items() if not a.only or k in a.only}
    if not a.rounds:
        shapes = dict([next(iter(shapes.items()))])
    if a.costs:
        med = {k: v for k, v in json.loads(Path(a.costs).read_text()).items() if k in shapes}
    else:
        med = time_shapes(shapes, a)
    if a.save_costs:
        Path(a.save_costs).write_text(json.dumps(med, indent=1))
    if a.profile:
        from torch.profiler import profile

        first = setup(next(iter(shapes.values())))
        phases = [one_step(*first) for _ in range(3)]
        print({k: round(statistics.median(p[k] for p in phases), 3) for k in phases[0]})
        with profile() as prof:
            one_step(*first)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    for name, m in med.items() if a.budget else ():
        res = pretrain_for(name, shapes[name], int(a.budget / m),
                           a.train_threads or a.threads)
        print(json.dumps({"shape": name, "s_per_step": round(m, 3), **res}), flush=True)


if __name__ == "__main__":
    main()
