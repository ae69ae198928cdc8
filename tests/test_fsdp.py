"""FSDP2 (`train.parallel: fsdp`) through torchrun on CPU with gloo: two processes with sharded weights log
the losses of one process and save the same checkpoint, within float tolerance; a run resumed from a
checkpoint of the sharded run ends bit for bit where the uninterrupted sharded run did."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm_zero.train.config import ConfigError, config_from_dict, load_config
from llm_zero.train.engine import train

BIN = Path(sys.executable).parent
STEPS = 12

# No dropout: each process draws its own masks, so they would differ from the single run's.
CONFIG = f"""
model: {{context_length: 24, emb_dim: 32, n_heads: 2, n_layers: 2, drop_rate: 0.0}}
data: {{corpus: the-verdict, tokenizer: char}}
optimizer: {{lr: 3.0e-3, grad_clip: 1.0}}
schedule: {{warmup_steps: 3, min_lr: 3.0e-4}}
train: {{max_steps: {STEPS}, batch_size: 8, grad_accum: 2, eval_interval: 6, eval_batches: 2, parallel: fsdp}}
run: {{log_interval: 1, checkpoint_interval: 6, keep_last: 2, sample_tokens: 8}}
"""


def _torchrun(d, out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python",
                        str(BIN / "llm-zero"), "train", "--config", str(d / "tiny.yaml"), "--out", str(out),
                        "--quiet", *extra], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _records(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def _ckpt(run, step=STEPS):
    folder = run / "checkpoints" / f"step-{step:08d}"
    state = torch.load(folder / "state.pt", weights_only=True)["optimizer"]
    return load_file(folder / "model.safetensors"), state


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("fsdp")
    (d / "tiny.yaml").write_text(CONFIG)
    torch.set_num_threads(1)
    # One process: train.parallel does nothing without torchrun.
    train(load_config(d / "tiny.yaml"), d / "single", progress=False)
    r = _torchrun(d, d / "fsdp")
    return d, r


def test_two_sharded_processes_match_one(runs):
    d, r = runs
    single, fsdp = _records(d / "single"), _records(d / "fsdp")
    # Rank 0 alone logs: exactly as many records as the single process.
    assert [x["step"] for x in fsdp] == [x["step"] for x in single]
    for key in ("train_loss", "val_loss", "grad_norm"):
        a = [x[key] for x in single if key in x]
        b = [x[key] for x in fsdp if key in x]
        assert len(a) == len(b) > 0
        worst = max(abs(p - q) for p, q in zip(a, b))
        assert worst < 1e-5, f"{key} differs by {worst}: {a} vs {b}"
        print(f"{key}: largest difference over {len(a)} records {worst:.2e}")
    losses = [x["train_loss"] for x in single if "train_loss" in x]
    assert losses[-1] < losses[0] - 0.3, losses  # the loss moved: equal curves are not an accident
    # The sharded run's checkpoint is gathered into the single process's format: same tensors, same
    # names, same optimiser layout, equal within float tolerance.
    (w1, o1), (w2, o2) = _ckpt(d / "single"), _ckpt(d / "fsdp")
    assert sorted(w1) == sorted(w2)
    worst = max((w1[k] - w2[k]).abs().max().item() for k in w1)
    print(f"weights: largest difference {worst:.2e}")
    assert worst < 1e-5
    assert o1["param_groups"] == o2["param_groups"] and sorted(o1["state"]) == sorted(o2["state"])
    for i, s in o1["state"].items():
        for k, v in s.items():
            assert v.shape == o2["state"][i][k].shape
            torch.testing.assert_close(v, o2["state"][i][k], rtol=1e-4, atol=1e-6)
    assert r.stdout.count("Finished at step") == 1
    assert (d / "fsdp" / "samples.txt").read_text().count("=== step") == 3  # steps 0, 6, 12, once each


def test_sharded_checkpoint_resumes_bit_exact(runs):
    d, _ = runs
    # The sharded run as if killed after its step-6 checkpoint: resume it, sharded, to the end.
    shutil.copytree(d / "fsdp", d / "again")
    shutil.rmtree(d / "again" / "checkpoints" / f"step-{STEPS:08d}")
    shutil.rmtree(d / "again" / "checkpoints" / "best", ignore_errors=True)
    r = _torchrun(d, d / "again", "--resume")
    assert "Resuming" in r.stdout and "step 6" in r.stdout
    (w1, o1), (w2, o2) = _ckpt(d / "fsdp"), _ckpt(d / "again")
    assert sorted(w1) == sorted(w2)
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k
    for i, s in o1["state"].items():
        for k, v in s.items():
            assert torch.equal(v, o2["state"][i][k]), (i, k)
    assert _records(d / "again") == [
        {**x, "elapsed_s": y["elapsed_s"], "tokens_per_s": y.get("tokens_per_s")} if "tokens_per_s" in x
        else {**x, "elapsed_s": y["elapsed_s"]}
        for x, y in zip(_records(d / "fsdp"), _records(d / "again"))
    ]


# Qwen3 with tied embeddings: one tensor under two names, RMSNorm gains and QK-norm in the shards.
QWEN = """
model: {arch: qwen3, context_length: 16, emb_dim: 32, n_heads: 2, n_layers: 2, hidden_dim: 64, n_kv_groups: 1,
        rope_base: 10000.0, tie_embeddings: true}
data: {corpus: the-verdict, tokenizer: char}
schedule: {warmup_steps: 1}
train: {max_steps: 4, batch_size: 4, eval_interval: 0, eval_batches: 1, parallel: fsdp}
run: {log_interval: 1, checkpoint_interval: 4, sample_tokens: 0}
"""


def test_tied_qwen3_matches_one(tmp_path):
    (tmp_path / "tiny.yaml").write_text(QWEN)
    train(load_config(tmp_path / "tiny.yaml"), tmp_path / "single", progress=False)
    _torchrun(tmp_path, tmp_path / "fsdp")
    (w1, o1), (w2, o2) = _ckpt(tmp_path / "single", 4), _ckpt(tmp_path / "fsdp", 4)
    assert sorted(w1) == sorted(w2) and "out_head.weight" not in w1  # the tied head is stored once
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5)
    assert o1["param_groups"] == o2["param_groups"]


def test_gpu_config_loads():
    "The documented GPU config (untested on a GPU here) at least passes the config checks."
    c = load_config(Path(__file__).resolve().parents[1] / "configs" / "gpu_fsdp.yaml")
    assert (c.train.parallel, c.train.device, c.train.bf16) == ("fsdp", "cuda", True)


def test_parallel_is_checked():
    assert config_from_dict({"train": {"parallel": "fsdp"}}).train.parallel == "fsdp"
    with pytest.raises(ConfigError, match="train.parallel must be one of 'ddp', 'fsdp', got 'zero3'"):
        config_from_dict({"train": {"parallel": "zero3"}})
    with pytest.raises(ConfigError, match="use train.parallel=ddp or optimizer.name=adamw"):
        config_from_dict({"train": {"parallel": "fsdp"}, "optimizer": {"name": "muon"}})
