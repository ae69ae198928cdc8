"""Exact resumption: a run killed with SIGKILL (or stopped with SIGINT) and resumed ends with the
same weights, bit for bit on CPU, as the same run without interruption."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm_zero.train.config import load_config
from llm_zero.train.engine import train

ROOT = Path(__file__).resolve().parents[1]
LLM_ZERO = str(Path(sys.executable).with_name("llm-zero"))
STEPS = 24

# Dropout, gradient accumulation and sliding windows all on: each depends on state that the
# checkpoint must carry (the RNG, the AdamW moments) or derive from the step (the batch, the lr).
CONFIG = f"""
model: {{context_length: 24, emb_dim: 32, n_heads: 2, n_layers: 2, drop_rate: 0.1}}
data: {{corpus: the-verdict, tokenizer: char, sampling: sliding, stride: 12}}
optimizer: {{lr: 3.0e-3}}
schedule: {{warmup_steps: 5, min_lr: 3.0e-4}}
train: {{max_steps: {STEPS}, batch_size: 8, grad_accum: 2, eval_interval: 12, eval_batches: 2}}
run: {{log_interval: 1, checkpoint_interval: 4, keep_last: 2, sample_tokens: 16}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    (d / "tiny.yaml").write_text(CONFIG)
    torch.set_num_threads(1)  # the subprocesses run with OMP_NUM_THREADS=1 too: same kernels, same bits
    train(load_config(d / "tiny.yaml"), d / "reference", progress=False)
    return d, load_file(d / "reference" / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors")


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _start(d, out):
    return subprocess.Popen([LLM_ZERO, "train", "--config", str(d / "tiny.yaml"), "--out", str(out), "--quiet"],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_step(proc, out, step, timeout=120):
    "Block until the run has logged `step` (or finished); returns the last logged step."
    t0, last = time.time(), 0
    while time.time() - t0 < timeout:
        f = out / "metrics.jsonl"
        if f.exists():
            lines = [l for l in f.read_text().splitlines() if l.endswith("}")]
            if lines: last = max(last, int(lines[-1].split(",")[0].split(":")[1]))
        if last >= step or proc.poll() is not None: return last
        time.sleep(0.02)
    proc.kill()
    raise TimeoutError(f"the run did not reach step {step}")


def _same_weights(a, b):
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"tensors differ after resuming: {diff[:5]}"


@pytest.mark.parametrize("kill_at", [2, 14])  # before the first checkpoint, and between two
def test_sigkill_then_resume_is_bit_identical(setup, kill_at):
    d, reference = setup
    out = d / f"killed-{kill_at}"
    proc = _start(d, out)
    reached = _wait_for_step(proc, out, kill_at)
    assert proc.poll() is None, f"the run finished before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("step-*")) if (out / "checkpoints").exists() else []
    assert f"step-{STEPS:08d}" not in ckpts, (reached, ckpts)
    if kill_at > 4: assert ckpts, "the resumed run must start from a checkpoint"
    train(load_config(d / "tiny.yaml"), out, resume=True, progress=False)
    _same_weights(load_file(out / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors"), reference)
    # The metrics were rewound to the checkpoint and continued: one training record per step.
    steps = [int(l.split(",")[0].split(":")[1]) for l in (out / "metrics.jsonl").read_text().splitlines()
             if '"train_loss"' in l]
    assert steps == list(range(1, STEPS + 1))


def test_sigint_saves_and_resume_is_bit_identical(setup):
    d, reference = setup
    out = d / "interrupted"
    proc = _start(d, out)
    _wait_for_step(proc, out, 10)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr  # 128 + SIGINT: saved, but not finished
    assert "Interrupted: saved a checkpoint at step" in stderr + stdout
    stopped = int((stderr + stdout).split("saved a checkpoint at step ")[1].split()[0])
    assert 10 <= stopped < STEPS
    assert (out / "checkpoints" / f"step-{stopped:08d}" / "model.safetensors").is_file()
    code = subprocess.run([LLM_ZERO, "train", "--config", str(d / "tiny.yaml"), "--out", str(out), "--resume",
                           "--quiet"], env=_env(), capture_output=True, text=True)
    assert code.returncode == 0, code.stderr
    assert f"Resuming {out} from step-{stopped:08d}" in code.stdout + code.stderr
    _same_weights(load_file(out / "checkpoints" / f"step-{STEPS:08d}" / "model.safetensors"), reference)
