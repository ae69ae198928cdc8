"""Quality against a known result: nanoGPT's CPU run on character-level Tiny Shakespeare.

nanoGPT documents this command for CPUs:
    python train.py config/train_shakespeare_char.py --device=cpu --compile=False --eval_iters=20
        --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128
        --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0
and on this machine it reached a validation loss of 1.886 in about 122 s of wall time (issue 5, a
loaded day). This script runs the same configuration (configs/shakespeare_char.yaml) with llm_zero's
engine and prints its figures beside those fixed reference numbers. To measure nanoGPT's own script
side by side with llm_zero on the same machine (interleaved rounds, a ratio rather than two absolute
times), use benchmarks/bench_speedrun.py, the CPU speedrun of chapter 5k.

Goal: validation loss <= 1.88 after 2,000 iterations, in no more than 122 s of wall time.

Usage: python benchmarks/bench_nanogpt_char.py [--out DIR] [KEY=VALUE ...]
       (e.g. train.compile=true, model.impl=reference, train.bf16=true)
"""
import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from llm_zero.train import evaluate_batches, load_config, load_model_from_checkpoint, load_run_data, sample_text, train

NANOGPT_VAL_LOSS, NANOGPT_WALL_S, GOAL_VAL_LOSS = 1.886, 122.0, 1.88
ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="run folder (default: a temporary folder)")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = ap.parse_args()
    # Samples are not part of nanoGPT's run; one is generated after the timed part.
    cfg = load_config(ROOT / "configs" / "shakespeare_char.yaml", ["run.sample_tokens=0", *args.overrides])
    out = Path(args.out or tempfile.mkdtemp(prefix="bench_nanogpt_char_"))
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.split(":")[-1].strip()
    print(f"{time.strftime('%Y-%m-%d')}, {cpu or platform.processor()}, {cfg.train.threads or torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; run folder {out}")

    t0 = time.perf_counter()
    summary = train(cfg, out, progress=True)
    wall = time.perf_counter() - t0

    # The engine's own estimate (eval_batches=20 batches of 12, like nanoGPT's eval_iters=20), and the
    # loss over the whole validation split, every non-overlapping window.
    model, tok, meta = load_model_from_checkpoint(out)
    data = load_run_data(cfg, out)
    total, n = evaluate_batches(model, data.val.eval_batches(64))
    full_val = total / n
    print("\nSample (ROMEO:, temperature 0.8, top-k 40):")
    print(sample_text(model, tok, "ROMEO:", 300, 0.8, 40, seed=cfg.run.seed))
    print(f"\n{'':28}{'nanoGPT (issue 5)':>20}{'llm_zero':>12}")
    print(f"{'val loss after 2,000 iters':28}{NANOGPT_VAL_LOSS:>20.3f}{summary['val_loss']:>12.3f}   (20 batches, as nanoGPT)")
    print(f"{'val loss, whole split':28}{'':>20}{full_val:>12.3f}   ({n:,} tokens)")
    print(f"{'wall time, s':28}{NANOGPT_WALL_S:>20.0f}{wall:>12.1f}   (ratio {wall / NANOGPT_WALL_S:.2f})")
    print(f"{'tokens per s':28}{2000 * 12 * 64 / NANOGPT_WALL_S:>20,.0f}{2000 * 12 * 64 / wall:>12,.0f}")
    print(f"goal val loss <= {GOAL_VAL_LOSS}: {'met' if summary['val_loss'] <= GOAL_VAL_LOSS else 'NOT met'}; "
          f"goal wall <= {NANOGPT_WALL_S:.0f} s: {'met' if wall <= NANOGPT_WALL_S else 'NOT met'}")


if __name__ == "__main__":
    main()
