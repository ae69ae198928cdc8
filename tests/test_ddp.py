"""DistributedDataParallel through torchrun: two CPU processes (gloo) follow the same loss trajectory
as one process with the same global batch, and only rank 0 writes the run folder."""
import json
import os
import subprocess
import sys
from pathlib import Path


from llm_zero.train.config import load_config
from llm_zero.train.engine import train

BIN = Path(sys.executable).parent
STEPS = 12

# No dropout: each process has its own random generator, so masks would differ from the single run.
CONFIG = f"""
model: {{context_length: 24, emb_dim: 32, n_heads: 2, n_layers: 2, drop_rate: 0.0}}
data: {{corpus: the-verdict, tokenizer: char}}
optimizer: {{lr: 3.0e-3}}
schedule: {{warmup_steps: 3, min_lr: 3.0e-4}}
train: {{max_steps: {STEPS}, batch_size: 8, grad_accum: 2, eval_interval: 6, eval_batches: 2}}
run: {{log_interval: 1, checkpoint_interval: 6, sample_tokens: 8}}
"""


def _records(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tmp_path):
    import torch
    (tmp_path / "tiny.yaml").write_text(CONFIG)
    torch.set_num_threads(1)
    train(load_config(tmp_path / "tiny.yaml"), tmp_path / "single", progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python",
                        str(BIN / "llm-zero"), "train", "--config", str(tmp_path / "tiny.yaml"),
                        "--out", str(tmp_path / "ddp"), "--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    single, ddp = _records(tmp_path / "single"), _records(tmp_path / "ddp")
    # Rank 0 alone logs: exactly as many records as the single process, not twice as many.
    assert [x["step"] for x in ddp] == [x["step"] for x in single]
    for key in ("train_loss", "val_loss"):
        a = [x[key] for x in single if key in x]
        b = [x[key] for x in ddp if key in x]
        assert len(a) == len(b) > 0
        worst = max(abs(p - q) for p, q in zip(a, b))
        assert worst < 1e-5, f"{key} differs by {worst}: {a} vs {b}"
        print(f"{key}: largest difference over {len(a)} records {worst:.2e}")
    # The loss actually moved, so equal trajectories are not equal by accident.
    losses = [x["train_loss"] for x in single if "train_loss" in x]
    assert losses[-1] < losses[0] - 0.3, losses
    assert r.stdout.count("Finished at step") == 1 and r.stdout.count("Sample before training") <= 1
