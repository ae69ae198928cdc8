"""The shared training loop (TrainingLoop, issue 10) against the engine loop it replaced.

Runs `llm-zero train` on configs/default.yaml for a few hundred steps with the code of this checkout and of
a baseline revision (default: the last commit before the consolidation, a3d0cd0), interleaved, and reports
each side's wall time per step and final validation loss. Each side reads its own configs/default.yaml (the
model key was renamed since); the losses differ slightly because the character vocabulary now has two more
ids (<|endoftext|> and <|unk|>), which changes the initial weights.

    python benchmarks/bench_engine_loop.py [ROUNDS] [STEPS] [BASELINE_REV]
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
BASELINE = sys.argv[3] if len(sys.argv) > 3 else "a3d0cd0"
OVERRIDES = [f"train.max_steps={STEPS}", "train.eval_interval=0", "run.sample_tokens=0", "train.threads=1",
             f"run.checkpoint_interval={STEPS}"]


def run(src: Path, out: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    code = ("import sys, time; from llm_zero.train.config import load_config; from llm_zero.train.engine import train; "
            "c = load_config(sys.argv[1], sys.argv[3:]); t = time.perf_counter(); "
            "s = train(c, sys.argv[2], progress=False, echo=lambda m: None); "
            "print(time.perf_counter() - t, s['val_loss'])")
    r = subprocess.run([sys.executable, "-c", code, str(src / "configs" / "default.yaml"), str(out), *OVERRIDES],
                       env=env, capture_output=True, text=True, check=True, cwd=src)
    wall, val = r.stdout.split()[-2:]
    return float(wall), float(val)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "baseline"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", BASELINE], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        results = {"shared loop (this checkout)": [], f"old engine loop ({BASELINE})": []}
        for i in range(ROUNDS):
            for (name, times), src in zip(results.items(), (ROOT, base)):
                times.append(run(src, Path(d) / f"{name[:3]}-{i}"))
        print(f"{time.strftime('%Y-%m-%d')}, load average {os.getloadavg()[0]:.1f}, {ROUNDS} interleaved rounds, "
              f"{STEPS} steps of configs/default.yaml (one thread):")
        for name, rs in results.items():
            med = statistics.median(w for w, _ in rs)
            print(f"  {name}: median {med:.2f} s ({1000 * med / STEPS:.1f} ms/step), runs "
                  f"{', '.join(f'{w:.2f}' for w, _ in rs)}; final val loss {rs[0][1]:.6f}")
        print(json.dumps({k: v for k, v in results.items()}))
