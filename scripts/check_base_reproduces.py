"""Re-run the first steps of configs/base-cpu.yaml and compare with the committed run's metrics.

The warm-up (schedule.warmup_steps) does not depend on train.max_steps, so a run cut to the warm-up
length follows the committed run's learning rates exactly; its logged training losses must match
the committed ones. Takes about a minute on one core (the BPE is retrained and the mix tokenized).

Usage: python scripts/check_base_reproduces.py [RUN_FOLDER]   (default experiments/base-cpu)
"""
import json
import sys
import tempfile
from pathlib import Path

from llm_zero.train import load_config, train

ROOT = Path(__file__).resolve().parents[1]


def main():
    committed = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "experiments" / "base-cpu"
    cfg = load_config(committed / "config.yaml")
    steps = cfg.schedule.warmup_steps
    cfg = load_config(committed / "config.yaml", [f"train.max_steps={steps}", "run.sample_tokens=0",
                                                  f"train.eval_interval={steps}"])
    with tempfile.TemporaryDirectory() as tmp:
        train(cfg, Path(tmp) / "rerun", progress=False)
        rerun = {r["step"]: r["train_loss"] for r in map(json.loads, open(Path(tmp) / "rerun" / "metrics.jsonl"))
                 if "train_loss" in r}
    ref = {r["step"]: r["train_loss"] for r in map(json.loads, open(committed / "metrics.jsonl"))
           if "train_loss" in r and r["step"] in rerun}
    worst = max(abs(rerun[s] - ref[s]) for s in ref)
    for s in sorted(ref): print(f"step {s:4}: committed {ref[s]:.6f}  re-run {rerun[s]:.6f}")
    print(f"largest difference over {len(ref)} logged steps: {worst:.2e}")
    return 0 if worst < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
