"""GGUF parity (chapter 10a): llama.cpp loads `llm-zero export --format gguf` files and agrees
with llm_zero on greedy tokens, tokenizer ids and logits.

Models: the committed base model `experiments/base-cpu` (qwen3, the project's BPE) and a tiny
synthetic llama3 with Llama 3 frequency scaling and untied output (the Llama RoPE reordering and
`rope_freqs` path; random weights with a wide spread so that greedy choices are not near-ties).
For each: ours is `llm-zero generate --temperature 0` (the CLI, in this process) and the
model's own `generate`; llama.cpp's side runs in a Python that has `llama-cpp-python`
(`--llama-python`, or $LLM_ZERO_LLAMA_CPP_PYTHON), through `benchmarks/llamacpp_side.py`.
Writes benchmarks/gguf_llamacpp.json, which chapter 10a shows.
"""
import argparse
import contextlib
import io
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from llm_zero.cli import main as cli
from llm_zero.data.english import english_mix_val
from llm_zero.export.gguf import export_gguf
from llm_zero.model.generation import generate
from llm_zero.model.llama import build_model, config_of
from llm_zero.train.checkpoint import save_checkpoint
from llm_zero.train.engine import load_model_from_checkpoint
from llm_zero.train.tokenizers import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).with_name("gguf_llamacpp.json")
SIDE = Path(__file__).with_name("llamacpp_side.py")
PROMPT = "The cat said "
TINY_LLAMA = {
    "arch": "llama3", "vocab_size": 4096, "context_length": 64, "emb_dim": 64, "n_heads": 4,
    "n_layers": 2, "hidden_dim": 128, "n_kv_groups": 2, "rope_base": 10000.0,
    "tie_embeddings": False,
    "rope_freq": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_context_length": 16},
}


def held_out_texts() -> list[str]:
    "Held-out text: the base model's validation text, the README, special and odd spacing."
    return [english_mix_val("brown")[:30_000], english_mix_val("python-docs")[:10_000],
            (ROOT / "README.md").read_text(encoding="utf-8")[:5_000],
            "a<|endoftext|>b  naïve 日本語 🙂\t\r\n  x  \n\n", "   trailing spaces   "]


def tiny_llama(folder: Path) -> Path:
    "A synthetic llama3 run with base-cpu's tokenizer, weights spread wide."
    torch.manual_seed(0)
    model = build_model(TINY_LLAMA)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.5 if "emb" in name or "out_head" in name else 0.25)
    meta = {"model": config_of(model), "step": 0}
    return save_checkpoint(folder, model, meta=meta, tokenizer=load_tokenizer(ROOT / "experiments" / "base-cpu"))


def ours_cli(run: Path, n_new: int) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["generate", "--checkpoint", str(run), "--prompt", PROMPT,
                    "--temperature", "0", "--max-tokens", str(n_new)])
    assert code == 0, err.getvalue()
    return out.getvalue().rstrip("\n")


def llama_side(python: str, job: dict) -> dict:
    r = subprocess.run([python, str(SIDE)], input=json.dumps(job), capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout)


def compare(name: str, run: Path, folder: Path, python: str) -> dict:
    model, tok, _ = load_model_from_checkpoint(run)
    path = export_gguf(run, folder / name)
    prompt = tok.encode(PROMPT)
    ctx = model.cfg["context_length"]
    n_new = min(100, ctx - len(prompt))
    texts = held_out_texts()
    t0 = time.perf_counter()
    theirs = llama_side(python, {"model": str(path), "n_ctx": ctx, "prompt": prompt,
                                 "n_new": n_new, "texts": texts})
    llama_s = time.perf_counter() - t0
    x = torch.tensor([prompt])
    with torch.no_grad():
        logits = model(x)[0]
    ours = generate(model, x, n_new, ctx, eos_id=tok.eos_id)[0, len(prompt):].tolist()
    text = ours_cli(run, n_new)
    same = next((i for i, (a, b) in enumerate(zip(ours, theirs["greedy"])) if a != b),
                min(len(ours), len(theirs["greedy"])))
    want_ids = [tok.encode(t) for t in texts]
    ids_equal = sum(sum(a == b for a, b in zip(w, g)) if len(w) == len(g) else 0
                    for w, g in zip(want_ids, theirs["ids"]))
    diff = (logits - torch.tensor(theirs["logits"])).abs().max().item()
    row = {"model": name, "arch": config_of(model)["arch"], "gguf_bytes": path.stat().st_size,
           "greedy_equal": same, "greedy_total": max(len(ours), len(theirs["greedy"])),
           "cli_text_equal": text == PROMPT + tok.decode(theirs["greedy"]),
           "ids_equal": ids_equal, "ids_total": sum(map(len, want_ids)),
           "max_logit_diff": diff, "llama_load_s": theirs["load_s"], "llama_run_s": llama_s,
           "greedy_text": tok.decode(theirs["greedy"])}
    print(json.dumps(row), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llama-python", default=os.environ.get("LLM_ZERO_LLAMA_CPP_PYTHON"),
                    help="a Python with llama-cpp-python installed")
    ap.add_argument("--build-minutes", type=float, required=True,
                    help="how long `pip install llama-cpp-python` took to build llama.cpp")
    args = ap.parse_args()
    torch.set_num_threads(1)
    version = subprocess.run([args.llama_python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rows = [compare("base-cpu", ROOT / "experiments" / "base-cpu", d, args.llama_python),
                compare("tiny-llama3", tiny_llama(d / "tiny-run"), d, args.llama_python)]
    OUT.write_text(json.dumps({
        "date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
        "llama_cpp_python": version, "build_minutes": args.build_minutes, "models": rows,
    }, indent=1) + "\n")


if __name__ == "__main__":
    main()
