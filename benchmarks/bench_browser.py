"""Chapter 9's generation widget: tokens per second in headless Chromium (onnxruntime-web, WebAssembly,
one thread) against the same greedy generation in Python with onnxruntime (native) and PyTorch, in one
process with interleaved rounds; prints medians, the renderer's CPU time and the load average.

Needs the built site (`_build/html`, with chapter 9) and Debian's chromium and chromium-driver.

    .venv/bin/python benchmarks/bench_browser.py [--rounds 3] [--tokens 200]
"""
import argparse
import functools
import http.server
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from llm_zero.model.generation import generate  # noqa: E402
from llm_zero.train.engine import load_model_from_checkpoint  # noqa: E402
from llm_zero.export.onnx import OnnxLM  # noqa: E402
from tests.browser.conftest import SITE, start_chromium  # noqa: E402

PROMPT = "The for statement"
PAGE_RUN = """
const [n, done] = arguments;
(async () => {
  const m = await llmZero.loadModel("python-docs-char");
  const ids = m.tok.encode(PROMPT_JSON), rand = llmZero.mulberry32(0), out = [];
  const t = performance.now();
  for (let i = 0; i < n; i++) {
    const w = ids.slice(-m.config.context_length);
    const x = new m.ort.Tensor("int64", BigInt64Array.from(w, BigInt), [1, w.length]);
    const { logits } = await m.session.run({ input_ids: x });
    const next = llmZero.sample(logits.data.subarray((w.length - 1) * m.config.vocab_size), 0, 0, rand);
    ids.push(next); out.push(next);
  }
  done({ seconds: (performance.now() - t) / 1000, ids: out });
})().catch((e) => done({ error: String(e) }));
""".replace("PROMPT_JSON", json.dumps(PROMPT))  # the JS braces rule out str.format


def renderer_cpu_seconds() -> float:
    "User + system CPU time of every Chromium renderer process."
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"--type=renderer" not in Path(f"/proc/{pid}/cmdline").read_bytes(): continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, tok, _ = load_model_from_checkpoint(ROOT / "experiments" / "python-docs-char")
    ids = tok.encode(PROMPT)
    lm = OnnxLM(SITE / "web" / "python-docs-char" / "model.onnx", 64)
    expected = generate(model, torch.tensor([ids]), args.tokens, 64)[0, len(ids):].tolist()

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    browser = start_chromium()
    browser.set_script_timeout(300)
    browser.get(f"http://127.0.0.1:{server.server_port}/nbs/09_in_the_browser.html")
    browser.execute_async_script("llmZero.loadModel('python-docs-char').then(() => arguments[0]())")

    rates = {"browser (onnxruntime-web, wasm)": [], "onnxruntime native": [], "PyTorch": []}
    cpu_rates = []
    for _ in range(args.rounds):
        c0 = renderer_cpu_seconds()
        r = browser.execute_async_script(PAGE_RUN, args.tokens)
        cpu = renderer_cpu_seconds() - c0
        assert "error" not in r, r["error"]
        assert r["ids"] == expected, "the page's greedy tokens differ from PyTorch's"
        rates["browser (onnxruntime-web, wasm)"].append(args.tokens / r["seconds"])
        cpu_rates.append(args.tokens / cpu)
        t = time.perf_counter(); lm.generate_greedy(ids, args.tokens)
        rates["onnxruntime native"].append(args.tokens / (time.perf_counter() - t))
        t = time.perf_counter(); generate(model, torch.tensor([ids]), args.tokens, 64)
        rates["PyTorch"].append(args.tokens / (time.perf_counter() - t))
    browser.quit()
    server.shutdown()
    print(f"{args.tokens} greedy tokens from {PROMPT!r}, full recomputation of the last 64 ids per token; "
          f"medians of {args.rounds} interleaved rounds; load average {os.getloadavg()}")
    for name, xs in rates.items():
        print(f"  {name:34} {statistics.median(xs):7.1f} tokens/s  (rounds: {', '.join(f'{x:.1f}' for x in xs)})")
    print(f"  browser per second of renderer CPU  {statistics.median(cpu_rates):7.1f} tokens/s")


if __name__ == "__main__":
    main()
