"""Serving under load (issue 25): a server on loopback, 16 concurrent clients, 200 requests mixing
streamed and whole completions and chat answers, and clients that hang up early (half of them
after the first event of a stream, half while waiting for a whole reply).

Checked, every round: every answer is valid (status 200; a whole reply has its choices and usage;
a stream is JSON events ending in `data: [DONE]`); no work is left queued afterwards (the model's
worker drains to 0 jobs, which also shows that the hung-up requests were dropped); and memory stays
flat (median RSS of the process over the first 50 requests against the last 50). Measured: p50 and
p99 latency of the complete requests under load, and as the baseline, in the same round, the same
kinds of requests sent one at a time by one client. Rounds alternate baseline and load; medians
over rounds are printed. The server runs in this process (uvicorn in a thread) so that its worker
can be inspected; clients are threads with their own httpx connections. One torch thread.

Model: the main job's committed `experiments/python-docs-char` (char tokens, 4 x 128, context 64).

Usage: python benchmarks/bench_serve_load.py [--rounds 2] [--requests 200] [--clients 16]
"""

import argparse
import json
import os
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

from llm_zero.serve import create_app, load_served, running_server

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "experiments" / "python-docs-char"
KINDS = ("stream", "whole", "chat-stream", "chat-whole", "hang-up-stream", "hang-up-whole")
MAX_TOKENS = 24


def rss_mb() -> float:
    "Resident memory of this process in MB (Linux's /proc)."
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return float("nan")


def body(kind: str, i: int) -> tuple[str, dict]:
    "Endpoint and request body of request `i` of `kind`."
    sampling = {"model": "python-docs-char", "max_tokens": MAX_TOKENS, "temperature": 0.8,
                "seed": i, "stream": "stream" in kind}
    if kind.startswith("chat"):
        return "chat/completions", {**sampling, "messages": [{"role": "user",
                                                              "content": f"Question {i}?"}]}
    return "completions", {**sampling, "prompt": f"def f{i}(x):"}


def check_stream(text: str):
    events = text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""], text[-200:]
    for e in events[:-2]:
        chunk = json.loads(e.removeprefix("data: "))
        assert "error" not in chunk, chunk


def check_whole(r: httpx.Response):
    reply = r.json()
    assert reply["choices"] and reply["usage"]["completion_tokens"] >= 1, reply


def one(http: httpx.Client, kind: str, i: int) -> float:
    "Send request `i` of `kind`, check its answer; its latency in seconds."
    path, b = body(kind, i)
    start = time.perf_counter()
    if kind == "hang-up-stream":
        with http.stream("POST", f"/v1/{path}", json=b) as r:
            assert r.status_code == 200
            next(r.iter_lines())  # the first event, then hang up
    elif kind == "hang-up-whole":
        try: http.post(f"/v1/{path}", json={**b, "max_tokens": 60},
                       timeout=httpx.Timeout(60, read=0.01))
        except httpx.ReadTimeout: pass  # gave up: the server must drop the job
    elif b["stream"]:
        with http.stream("POST", f"/v1/{path}", json=b) as r:
            assert r.status_code == 200, r.read()
            check_stream(r.read().decode())
    else:
        r = http.post(f"/v1/{path}", json=b)
        assert r.status_code == 200, r.text
        check_whole(r)
    return time.perf_counter() - start


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]


def load_round(url, n, clients, worker) -> dict:
    "n requests from `clients` threads at once; latency of the complete ones, RSS, drain time."
    https = [httpx.Client(base_url=url, timeout=300) for _ in range(clients)]
    rss, lat = [], {k: [] for k in KINDS}

    def run(i):
        kind = KINDS[i % len(KINDS)]
        t = one(https[i % clients], kind, i)
        rss.append(rss_mb())
        lat[kind].append(t)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool: list(pool.map(run, range(n)))
    wall = time.perf_counter() - start
    drained = time.perf_counter()
    while worker.pending and time.perf_counter() - drained < 60: time.sleep(0.01)
    drain = time.perf_counter() - drained
    for h in https: h.close()
    done = [t for k in ("stream", "whole", "chat-stream", "chat-whole") for t in lat[k]]
    return {"wall_s": wall, "p50_ms": 1000 * percentile(done, 50), "p99_ms": 1000 * percentile(done, 99),
            "left_queued": worker.pending, "drain_ms": 1000 * drain,
            "rss_first50_mb": statistics.median(rss[:50]), "rss_last50_mb": statistics.median(rss[-50:])}


def baseline_round(url, n) -> dict:
    "The complete kinds of request, one at a time from one client."
    with httpx.Client(base_url=url, timeout=300) as http:
        lat = [one(http, KINDS[i % 4], i) for i in range(n)]
    return {"p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--baseline", type=int, default=24, help="requests in each baseline round")
    args = p.parse_args()
    torch.set_num_threads(1)
    app = create_app(*load_served(RUN), max_queue=args.requests)
    with running_server(app) as url:
        worker = app.state.worker
        baseline_round(url, 4)  # warm-up
        rounds = []
        for r in range(args.rounds):
            base = baseline_round(url, args.baseline)
            load = load_round(url, args.requests, args.clients, worker)
            assert load["left_queued"] == 0, load
            rounds.append({"baseline": base, "load": load})
            print(f"round {r + 1}: baseline p50 {base['p50_ms']:.0f} ms p99 {base['p99_ms']:.0f} ms; "
                  f"load {json.dumps({k: round(v, 1) for k, v in load.items()})}", flush=True)
    med = {part: {k: statistics.median(r[part][k] for r in rounds) for k in rounds[0][part]}
           for part in ("baseline", "load")}
    print(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "machine": f"{platform.processor() or platform.machine()}, "
                                 f"{os.cpu_count()} cores",
                      "load_average": os.getloadavg(), "rounds": args.rounds,
                      "requests": args.requests, "clients": args.clients, "median": med}, indent=1))


if __name__ == "__main__":
    main()
