"""The CPU speedrun (chapter 5k): nanoGPT's own script against llm_zero's ladder, interleaved.

Every run is a whole process, timed from its start to its exit, so start-up, data loading,
evaluations and checkpoints count for both sides. Validation losses are read from each program's
own printed evaluations (the mean of 20 batches, in nats per character) and stamped with the
seconds since the process started, which gives the curves of chapter 5k's figure.

nanoGPT is not part of this project. To run it beside the ladder, bring a checkout of
karpathy/nanoGPT (outside this repository) and give it Tiny Shakespeare without the network:
    cp <cache>/tinyshakespeare.txt <nanoGPT>/data/shakespeare_char/input.txt
    python <nanoGPT>/data/shakespeare_char/prepare.py
Its command is the one nanoGPT documents for CPUs (NANOGPT_ARGS below).

Usage: python benchmarks/bench_speedrun.py --nanogpt PATH [--rounds 3] [--rungs 00-... ...]
Writes experiments/speedrun/<rung>/ (the run folders) and experiments/speedrun/ladder.json.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "speedrun"
NANOGPT_ARGS = ["config/train_shakespeare_char.py", "--device=cpu", "--compile=False", "--eval_iters=20",
                "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
                "--n_embd=128", "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]
# nanoGPT prints "step 250: train loss 2.4293, val loss 2.4447"; llm_zero "step 60: train loss
# 2.1, val loss 2.0519 (perplexity 7.78)".
VAL_LINE = re.compile(r"step (\d+): train loss [\d.]+, val loss ([\d.]+)")


def timed_run(cmd: list[str], cwd: Path) -> dict:
    "Run `cmd`; return its wall time and its (seconds, step, val loss) evaluations as printed."
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    curve, lines = [], []
    for line in proc.stdout:
        lines.append(line)
        if m := VAL_LINE.search(line):
            curve.append([round(time.perf_counter() - t0, 2), int(m[1]), float(m[2])])
    wall = time.perf_counter() - t0
    if proc.wait():
        sys.exit(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{''.join(lines[-20:])}")
    return {"wall_s": round(wall, 2), "val_loss": curve[-1][2], "curve": curve}


def run_nanogpt(path: Path) -> dict:
    return timed_run([sys.executable, "train.py", *NANOGPT_ARGS], path)


def run_rung(name: str, out: Path) -> dict:
    cfg = CONFIGS / f"{name}.yaml"
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)  # a re-measurement replaces the rung's run folder
    res = timed_run([str(Path(sys.executable).with_name("llm-zero")), "train", "--config", str(cfg), "--out", str(folder),
                     "--quiet"], ROOT)
    return {**res, "why": cfg.read_text().splitlines()[0].split(": ", 1)[1].rstrip(".")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanogpt", type=Path, required=True, help="a prepared nanoGPT checkout")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of nanoGPT and best (default 3)")
    ap.add_argument("--rungs", nargs="*", help="ladder rungs to run (default: every config but best)")
    ap.add_argument("--out", type=Path, default=ROOT / "experiments" / "speedrun")
    args = ap.parse_args()
    rungs = args.rungs if args.rungs is not None else sorted(
        p.stem for p in CONFIGS.glob("*.yaml") if p.stem != "best")
    chunks = [rungs[i::args.rounds] for i in range(args.rounds)]  # the ladder spread over the rounds
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True,
                         text=True).stdout.split(":")[-1].strip()
    import torch
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{cpu or platform.processor()}, "
              f"{os.cpu_count()} cores, torch {torch.__version__}", "load_before": os.getloadavg()[0],
              "nanogpt": [], "best": [], "rungs": {}}
    for r in range(args.rounds):
        for what in ["nanogpt", "best", *chunks[r]]:
            if what == "nanogpt": res = run_nanogpt(args.nanogpt)
            elif what == "best": res = run_rung("best", args.out)
            else: res = run_rung(what, args.out)
            (result[what].append(res) if what in ("nanogpt", "best") else result["rungs"].__setitem__(what, res))
            print(f"round {r + 1}  {what:20} {res['wall_s']:7.1f} s   val loss {res['val_loss']:.4f}", flush=True)
    result["load_after"] = os.getloadavg()[0]
    nano = statistics.median(x["wall_s"] for x in result["nanogpt"])
    best = statistics.median(x["wall_s"] for x in result["best"])
    result["median_wall_s"] = {"nanogpt": nano, "best": best}
    result["ratio"] = round(best / nano, 3)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ladder.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{'rung':22}{'wall s':>8}{'val loss':>10}   change")
    for name, res in result["rungs"].items():
        print(f"{name:22}{res['wall_s']:8.1f}{res['val_loss']:10.4f}   {res['why']}")
    print(f"\nnanoGPT: median {nano:.1f} s of {[x['wall_s'] for x in result['nanogpt']]}, val loss "
          f"{[x['val_loss'] for x in result['nanogpt']]}")
    print(f"best:    median {best:.1f} s of {[x['wall_s'] for x in result['best']]}, val loss "
          f"{[x['val_loss'] for x in result['best']]}")
    print(f"ratio best / nanoGPT: {result['ratio']:.3f} (goal <= 0.333 with val loss <= 1.88); "
          f"load average {result['load_before']:.2f} before, {result['load_after']:.2f} after")


if __name__ == "__main__":
    main()
