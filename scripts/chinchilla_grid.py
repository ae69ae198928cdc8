"""The Chinchilla grid behind chapter 5n: several model sizes, each trained for several token budgets.

Every run is the base model's recipe (configs/base-cpu.yaml: Qwen3 blocks, Muon, the 4,096-token
BPE of experiments/base-cpu) on english-mix version 2, with its own number of steps (its
learning-rate schedule ends there, as a run planned for that budget would). A run's loss does not
depend on wall time, so the grid can run at low priority on a shared machine, one thread per run.

After training, each run is scored as `llm-zero eval --corpus english-mix --max-tokens 20000`
scores a checkpoint: bits per byte on the first 20,000 tokens of the held-out documents.

Usage: python scripts/chinchilla_grid.py [--runs NAME ...] [--work /tmp/chinchilla-grid]
Run names are <size>-s<steps>, e.g. d64-L2-s150. Finished runs (a result.json in
experiments/chinchilla-grid/<name>) are skipped; an interrupted one resumes from its checkpoint.
Writes experiments/chinchilla-grid/<name>/{config.yaml,metrics.csv,result.json} and the tokenized
corpus's meta.json as prepared-meta.json; the weights stay in the work folder.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from llm_zero.train import load_config, train
from llm_zero.train.engine import build_model

ROOT = Path(__file__).resolve().parents[1]
SIZES = {  # name: model overrides (SwiGLU about 8/3 of the width, 2 query heads per KV head)
    "d64-L2": {"emb_dim": 64, "n_layers": 2, "n_heads": 2, "n_kv_groups": 1, "hidden_dim": 176},
    "d96-L3": {"emb_dim": 96, "n_layers": 3, "n_heads": 4, "n_kv_groups": 2, "hidden_dim": 256},
    "d128-L4": {"emb_dim": 128, "n_layers": 4, "n_heads": 4, "n_kv_groups": 2, "hidden_dim": 352},
    "d192-L6": {"emb_dim": 192, "n_layers": 6, "n_heads": 6, "n_kv_groups": 3, "hidden_dim": 512},
}
# The runs of experiments/chinchilla-grid, as steps of 16 x 256 tokens (english-mix has 5.0M):
# 150 steps (0.6M tokens) for every size, 400 (1.6M) for the three smallest, 1,000 (4.1M) for the
# smallest; what two low-priority runs at a time finished in about an hour of a shared machine.
RUNS = ["d64-L2-s150", "d96-L3-s150", "d128-L4-s150", "d192-L6-s150",
        "d64-L2-s400", "d96-L3-s400", "d128-L4-s400", "d64-L2-s1000"]
OUT = ROOT / "experiments" / "chinchilla-grid"
CLI = str(Path(sys.executable).parent / "llm-zero")


def param_counts(model_overrides: dict, vocab: int = 4096) -> tuple[int, int]:
    "(all parameters, non-embedding parameters: without the token embedding and output head)."
    m = build_model({**vars(load_config(ROOT / "configs" / "base-cpu.yaml").model),
                     **model_overrides, "vocab_size": vocab})
    total = sum(p.numel() for p in m.parameters())
    emb = m.tok_emb.weight.numel() + (0 if m.out_head.weight is m.tok_emb.weight
                                      else m.out_head.weight.numel())
    return total, total - emb


def run(name: str, prepared: Path, work: Path):
    size, steps = name.rsplit("-s", 1)
    steps = int(steps)
    over = [f"model.{k}={v}" for k, v in SIZES[size].items()] + [
        f"data.prepared={prepared}", f"train.max_steps={steps}", f"train.eval_interval={steps}",
        f"run.name=chinchilla-{name}", "run.sample_tokens=0", "run.checkpoint_interval=100",
        f"schedule.warmup_steps={min(50, steps // 10)}"]
    cfg = load_config(ROOT / "configs" / "base-cpu.yaml", over)
    out = work / name
    t0 = time.perf_counter()
    summary = train(cfg, out, resume=out.is_dir(), progress=False)
    wall = time.perf_counter() - t0
    if summary["step"] != steps:  # stopped early (the engine checkpoints and returns on SIGTERM)
        raise SystemExit(f"{name} stopped at step {summary['step']} of {steps}; run it again "
                         "to resume it.")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ev = subprocess.run([CLI, "eval", "--checkpoint", str(out),
                         "--corpus", "english-mix", "--max-tokens", "20000", "--json"],
                        capture_output=True, text=True, check=True, env=env)
    ev = json.loads(ev.stdout.strip().splitlines()[-1])
    total, non_emb = param_counts(SIZES[size])
    dest = OUT / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("config.yaml", "metrics.csv"):
        shutil.copy(out / f, dest / f)
    result = {"name": name, "size": size, "model": SIZES[size], "params": total,
              "non_embedding_params": non_emb, "steps": steps, "tokens": summary["tokens"],
              "val_loss": summary["val_loss"], "bits_per_byte": ev["bits_per_byte"],
              "eval": ev, "wall_s": round(wall, 1), "load_avg": os.getloadavg()[0],
              "date": time.strftime("%Y-%m-%d %H:%M")}
    (dest / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{name}: {non_emb:,} non-embedding parameters, {summary['tokens']:,} tokens, "
          f"{ev['bits_per_byte']:.4f} bits per byte ({wall:.0f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="*", default=RUNS, help="run names (default: the grid)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/chinchilla-grid"),
                    help="folder for the runs' checkpoints and the tokenized corpus")
    args = ap.parse_args()
    prepared = args.work / "prepared"
    if not (prepared / "meta.json").is_file():  # the base model's tokenizer, english-mix's own split
        subprocess.run([CLI, "prepare", "--corpus", "english-mix",
                        "--tokenizer-from", str(ROOT / "experiments" / "base-cpu"),
                        "--out", str(prepared)], check=True)
    OUT.mkdir(parents=True, exist_ok=True)  # the chapter needs the unique training tokens
    shutil.copy(prepared / "meta.json", OUT / "prepared-meta.json")
    for name in args.runs:
        if not (OUT / name / "result.json").is_file():
            run(name, prepared, args.work)


if __name__ == "__main__":
    main()
