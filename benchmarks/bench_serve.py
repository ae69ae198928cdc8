"""Serving speed: time to first token and tokens/s through `llm-zero serve` (a separate process, as
a user runs it), beside direct `generate_stream` calls in this process (the baseline: the same
model, prompt, greedy decoding and KV cache, with no HTTP, JSON or text decoding).

Models (each is built here unless a run folder is given):
  main      the main job's model as committed in experiments/python-docs-char (configs/default.yaml:
            char tokens, 4 layers, width 128, context 64), or trained briefly when it is absent;
  ch7       chapter 7's instruction-tuned tiny GPT (GPT-2 tokens, 2 layers, width 64, context 128);
  gpt2-124m the book's GPT-2 small architecture (124M parameters, context 1,024), random weights.
Served requests are streamed completions read two ways: the official `openai` client, and a bare
SSE reader (httpx and json) that shows how much of the cost is the client's. Server and baseline
each use one torch thread. After one warm-up call each, rounds are interleaved (the contenders
take turns, a different one first each round); medians are printed.

Usage: python benchmarks/bench_serve.py [--rounds 5] [--tokens 48] [--main-run DIR] [--ch7-run DIR]
"""

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import torch
from openai import OpenAI

from llm_zero.model.generation import generate_stream
from llm_zero.model.gpt import GPT_CONFIG_124M, GPTModel
from llm_zero.serve import load_served

ROOT = Path(__file__).resolve().parents[1]
LLM_ZERO = str(Path(sys.executable).with_name("llm-zero"))
PROMPT = "The for statement"
COMMITTED_MAIN = "experiments/python-docs-char"


def build_models(work: Path, main_run, ch7_run) -> dict:
    "Run folder of each model, made in `work` when not given."
    from llm_zero.finetune.cli import InstructConfig, finetune_instruct
    from llm_zero.train.checkpoint import CheckpointManager
    from llm_zero.train.config import load_config
    from llm_zero.train.engine import train
    from llm_zero.train.tokenizers import GPT2Tokenizer
    if main_run is None and (ROOT / COMMITTED_MAIN / "model.safetensors").is_file():
        main_run = ROOT / COMMITTED_MAIN
    if main_run is None:
        main_run = work / "main"
        overrides = ["train.max_steps=20", "schedule.warmup_steps=2", "run.sample_tokens=0"]
        train(load_config(ROOT / "configs" / "default.yaml", overrides), main_run, progress=False,
              echo=lambda msg: None)
    if ch7_run is None:
        ch7_run = work / "ch7"
        overrides = ["model.base=tiny-gpt", "data.limit=40", "train.epochs=1", "train.lr=1e-3", "generate.test_limit=1",
                     "generate.max_new_tokens=2"]
        finetune_instruct(load_config(None, overrides, InstructConfig), ch7_run, progress=False)
    big = work / "gpt2-124m"
    cfg = {**GPT_CONFIG_124M, "drop_rate": 0.0}
    torch.manual_seed(0)
    CheckpointManager(big / "checkpoints").save(0, GPTModel(cfg), tokenizer=GPT2Tokenizer(),
                                                meta={"task": "pretrain", "model": cfg})
    return {"main": Path(main_run), "ch7": Path(ch7_run), "gpt2-124m": big}


def direct(model, tok, n: int) -> tuple[float, int, float]:
    "(seconds to the first token, tokens, total seconds) of greedy `generate_stream` with the KV cache."
    ids, ctx = torch.tensor([tok.encode(PROMPT)]), model.pos_emb.num_embeddings
    t0, first, k = time.perf_counter(), None, 0
    for _ in generate_stream(model, ids, n, ctx, 0.0, eos_id=tok.eos_id, use_cache=True):
        k += 1
        first = first or time.perf_counter() - t0
    return first, k, time.perf_counter() - t0


def served(client: OpenAI, name: str, n: int) -> tuple[float, int, float]:
    "The same through the server: streamed completion, first non-empty text chunk, usage."
    t0, first, k = time.perf_counter(), None, 0
    for c in client.completions.create(model=name, prompt=PROMPT, max_tokens=n, temperature=0,
                                       stream=True, stream_options={"include_usage": True}):
        if c.choices and c.choices[0].text and first is None: first = time.perf_counter() - t0
        if c.usage: k = c.usage.completion_tokens
    return first, k, time.perf_counter() - t0


def served_raw(http: httpx.Client, name: str, n: int) -> tuple[float, int, float]:
    "The same with a bare SSE reader (httpx and json), to tell the client's cost from the server's."
    body = {"model": name, "prompt": PROMPT, "max_tokens": n, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    t0, first, k = time.perf_counter(), None, 0
    with http.stream("POST", "/v1/completions", json=body) as r:
        for line in r.iter_lines():
            if not line.startswith("data: {"): continue
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["text"] and first is None:
                first = time.perf_counter() - t0
            if chunk.get("usage"): k = chunk["usage"]["completion_tokens"]
    return first, k, time.perf_counter() - t0


@contextlib.contextmanager
def llm_zero_serve(run: Path):
    "`llm-zero serve --checkpoint RUN --port 0` in its own process; yields its base URL."
    proc = subprocess.Popen([LLM_ZERO, "serve", "--checkpoint", str(run), "--port", "0"], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for line in proc.stdout:
            if m := re.search(r"Uvicorn running on (http://[\d.]+:\d+)", line): break
        else: raise RuntimeError(f"llm-zero serve exited with status {proc.wait()}")
        yield m.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=48, help="tokens per request (default 48)")
    ap.add_argument("--main-run", help=f"run folder of the main job (default: {COMMITTED_MAIN})")
    ap.add_argument("--ch7-run", help="run folder of a chapter-7 model (default: fine-tune one)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {cpu.stdout.split(':')[-1].strip() or platform.processor()}, "
          f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()[0]:.1f}")
    runs = build_models(Path(tempfile.mkdtemp(prefix="bench_serve_")), args.main_run, args.ch7_run)
    print("| model | params | tokens | contender | time to first token | tokens/s | vs direct |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for label, run in runs.items():
        model, tok, name, _ = load_served(run)
        n = min(args.tokens, model.pos_emb.num_embeddings - len(tok.encode(PROMPT)))
        with llm_zero_serve(run) as url, httpx.Client(base_url=url, timeout=600) as http:
            client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            contenders = {"direct generate_stream": lambda: direct(model, tok, n),
                          "llm-zero serve, openai client": lambda: served(client, name, n),
                          "llm-zero serve, bare SSE reader": lambda: served_raw(http, name, n)}
            got = {who: [] for who in contenders}
            for run_one in contenders.values(): run_one()  # warm-up
            for r in range(args.rounds):
                names = list(contenders)
                for who in names[r % 3:] + names[:r % 3]:  # a different contender first each round
                    got[who].append(contenders[who]())
        counts = {who: {x[1] for x in v} for who, v in got.items()}
        assert len(set.union(*counts.values())) == 1, f"token counts differ: {counts}"
        params = sum(p.numel() for p in model.parameters()) / 1e6
        base = statistics.median(x[1] / x[2] for x in got["direct generate_stream"])
        for who, v in got.items():
            tps = statistics.median(x[1] / x[2] for x in v)
            ttft = statistics.median(x[0] for x in v) * 1000
            print(f"| {label} | {params:.1f}M | {v[0][1]} | {who} | {ttft:.1f} ms | {tps:.1f} "
                  f"| {tps / base:.2f} |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
