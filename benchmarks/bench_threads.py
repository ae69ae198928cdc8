"""Thread count for running a model (issue 26): tokens/s of `generate` on the committed base model
(experiments/base-cpu, 100 new tokens, sampled at temperature 0.8 with the KV cache, as `llm-zero
generate` runs it) and of one `POST /v1/completions` to `llm-zero serve --threads T` on the same
model (a server per thread count, started once), with 1 and 2 PyTorch threads, on the machine as it
is and with every core kept busy by extra busy-loop processes. Rounds are interleaved (each round runs both thread counts under
both loads, a different thread count first each round); medians are printed, with `uptime`'s load.

The policy's default (`llm_zero.train.engine.DEFAULT_THREADS`) is the setting whose worst case over
the two loads is best; issue 26's goal is that with both cores busy it is within 1.5x of the best.

Usage: python benchmarks/bench_threads.py [--rounds 5] [--tokens 100] [--busy 2]
"""

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

from llm_zero.model.generation import generate
from llm_zero.train.engine import load_model_from_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "experiments" / "base-cpu"
THREADS = (1, 2)
PROMPT = "The history of the"


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


@contextlib.contextmanager
def servers(port: int):
    "`llm-zero serve` on the base, one per thread count on ports `port`, `port + 1`, ...: urls."
    llm_zero = Path(sys.executable).with_name("llm-zero")
    procs = [subprocess.Popen([llm_zero, "serve", "--checkpoint", BASE, "--port", str(port + i),
                               "--threads", str(t)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for i, t in enumerate(THREADS)]
    urls = {t: f"http://127.0.0.1:{port + i}" for i, t in enumerate(THREADS)}
    try:
        deadline = time.monotonic() + 180
        for url in urls.values():  # ready when it lists its model
            while True:
                try:
                    urllib.request.urlopen(url + "/v1/models", timeout=5).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"no server answered on {url} within 180 s") from None
                    time.sleep(0.5)
        yield urls
    finally:
        for p in procs:
            p.terminate()
            p.wait()


def served_tokens_per_second(url: str, tokens: int) -> float:
    "One completion request's new tokens over its wall time, as a client sees it."
    body = {"model": BASE.name, "prompt": PROMPT, "max_tokens": tokens, "temperature": 0.8}
    req = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        usage = json.load(r)["usage"]
    return usage["completion_tokens"] / (time.perf_counter() - start)


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--busy", type=int, default=os.cpu_count(), help="busy loops for 'busy'")
    ap.add_argument("--port", type=int, default=8731, help="first of the servers' ports")
    args = ap.parse_args()
    model, tok, _ = load_model_from_checkpoint(BASE, "cpu")
    ids = torch.tensor([tok.encode(PROMPT)])
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; {args.tokens} tokens from experiments/base-cpu")
    print(f"before: {load()}")
    with servers(args.port) as urls:
        for threads in THREADS:  # warm-up
            tokens_per_second(model, ids, 10, threads)
            served_tokens_per_second(urls[threads], 10)
        results = {(how, lo, t): [] for how in ("generate", "serve") for lo in ("as found", "busy")
                   for t in THREADS}
        for r in range(args.rounds):
            order = THREADS if r % 2 == 0 else THREADS[::-1]
            for lo in ("as found", "busy"):
                with busy_cores(args.busy) if lo == "busy" else contextlib.nullcontext():
                    for t in order:
                        results["generate", lo, t].append(
                            tokens_per_second(model, ids, args.tokens, t))
                        results["serve", lo, t].append(
                            served_tokens_per_second(urls[t], args.tokens))
            print(f"round {r + 1}: " + ", ".join(f"{how} {lo} {t}t {v[-1]:.1f}"
                                                 for (how, lo, t), v in results.items()),
                  flush=True)
    print(f"after: {load()}")
    print("\n| command | load | threads | tokens/s (median) | min-max | seconds per 100 tokens |")
    print("|---|---|---|---|---|---|")
    for (how, lo, t), v in results.items():
        med = statistics.median(v)
        print(f"| {how} | {lo} | {t} | {med:.1f} | {min(v):.1f}-{max(v):.1f} | {100 / med:.1f} |")
    for how in ("generate", "serve"):
        for lo in ("as found", "busy"):
            meds = {t: statistics.median(results[how, lo, t]) for t in THREADS}
            best = max(meds.values())
            print(f"{how}, {lo}: " + ", ".join(f"{t} thread(s) {best / m:.2f}x the best time"
                                              for t, m in meds.items()))


if __name__ == "__main__":
    main()
