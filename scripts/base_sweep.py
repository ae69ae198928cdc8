"""The size sweep behind configs/base-cpu.yaml (chapter 5l): several model sizes, the same wall time.

Each size trains on english-mix with the base model's settings (configs/base-cpu.yaml) for the
same number of wall-clock seconds: a probe of a few steps measures its seconds per step, and the
run gets as many steps as fit in the budget (its learning-rate schedule ends there). The data are
tokenized once, with the base model's 4,096-token BPE, by `llm-zero prepare`.

Each run uses one thread (train.threads in the config), so two sizes can run side by side on a
2-core machine, one per core.

Usage: python scripts/base_sweep.py [--minutes 6] [--sizes NAME ...] [--out experiments/base-cpu-sweep]
Writes <out>/<size>/ (run folders, with result.json: size, parameters, steps, wall time, losses).
"""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from llm_zero.data import load_text
from llm_zero.train import load_config, train
from llm_zero.train.tokenizers import build_tokenizer
from llm_zero.train.data import prepare_corpus
from llm_zero.train.engine import build_model, configure_optimizer

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # name: model overrides (Qwen3 blocks, SwiGLU about 8/3 of the width, 2 query heads per KV head)
    "d128-L4": {"emb_dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_groups": 2, "hidden_dim": 352},
    "d192-L6": {"emb_dim": 192, "n_layers": 6, "n_heads": 6, "n_kv_groups": 3, "hidden_dim": 512},
    "d256-L6": {"emb_dim": 256, "n_layers": 6, "n_heads": 8, "n_kv_groups": 4, "hidden_dim": 704},
    "d384-L6": {"emb_dim": 384, "n_layers": 6, "n_heads": 6, "n_kv_groups": 3, "hidden_dim": 1024},
}


def probe(cfg, steps: int = 6) -> tuple[float, int]:
    "(mean seconds of `steps` training steps after two warm-up steps, parameters) of `cfg`'s model."
    torch.manual_seed(0)
    vocab = cfg.data.bpe_vocab_size
    m = build_model({**dataclasses.asdict(cfg.model), "vocab_size": vocab})
    opt = configure_optimizer(m, cfg.optimizer)
    x = torch.randint(0, vocab, (cfg.train.batch_size, cfg.model.context_length))
    for i in range(steps + 2):
        if i == 2: t0 = time.perf_counter()
        m(x, targets=x).backward()
        opt.step(); opt.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / steps, sum(p.numel() for p in m.parameters())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "base-cpu-sweep")
    ap.add_argument("--sizes", nargs="*", default=list(SIZES))
    args = ap.parse_args()
    base = ROOT / "configs" / "base-cpu.yaml"
    prepared = ROOT / ".cache" / "base-cpu-prepared"
    if not (prepared / "meta.json").is_file():
        cfg = load_config(base)
        text = load_text(cfg.data.corpus)
        tok = build_tokenizer(cfg.data.tokenizer, text, cfg.data.bpe_vocab_size)
        prepare_corpus(text, tok, prepared, cfg.data.val_fraction, source=cfg.data.corpus)
    budget = args.minutes * 60
    for name in args.sizes:
        over = [f"model.{k}={v}" for k, v in SIZES[name].items()] + [f"data.prepared={prepared}"]
        cfg = load_config(base, over)
        torch.set_num_threads(cfg.train.threads or torch.get_num_threads())
        sps, n_params = probe(cfg)
        steps = int(budget * 0.88 / sps)  # three evaluations and start-up take the rest of the budget
        eval_every = max(1, steps // 3)
        cfg = load_config(base, over + [f"train.max_steps={steps}", f"train.eval_interval={eval_every}",
                                        f"run.name=base-cpu-sweep-{name}", "run.sample_tokens=0",
                                        f"schedule.warmup_steps={min(50, steps // 10)}"])
        out = args.out / name
        t0 = time.perf_counter()
        summary = train(cfg, out, progress=False)
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in open(out / "metrics.jsonl")]
        result = {"model": SIZES[name], "params": n_params, "seconds_per_step": sps, "steps": steps,
                  "tokens": summary["tokens"], "wall_s": round(wall, 1), "val_loss": summary["val_loss"],
                  "curve": [[r["elapsed_s"], r["step"], r["val_loss"]] for r in rows if "val_loss" in r]}
        print(f"{name}: {n_params:,} parameters, {steps} steps in {wall:.0f} s, val loss {summary['val_loss']:.4f}",
              flush=True)
        (out / "result.json").write_text(json.dumps(
            {"name": name, "minutes": args.minutes, "date": time.strftime("%Y-%m-%d %H:%M"), **result}, indent=1) + "\n")


if __name__ == "__main__":
    main()
