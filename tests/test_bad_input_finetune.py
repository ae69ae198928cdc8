"""Issue 10 §3, the engine and fine-tuning loops: each bad input or fault gets a one-line message,
the right exit status, and loses nothing that was there before."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_cli

torch.set_num_threads(1)

TINY = ["data.corpus=the-verdict", "model.context_length=32",
        "model.emb_dim=32", "model.n_heads=2", "model.n_layers=1", "train.batch_size=4", "train.eval_batches=1",
        "schedule.warmup_steps=1", "run.sample_tokens=0", "train.threads=1"]


def train(out, *extra, resume=False):
    "Arguments of `llm-zero train` for a tiny run in `out` (options first, then the overrides)."
    return ["train", "--config", "configs/default.yaml", "--quiet", "--out", out, *(["--resume"] if resume else []),
            *TINY, *extra]


run = run_cli


def snapshot(folder: Path) -> dict:
    "Every file under `folder` with its SHA-256: what must survive a failed command unchanged."
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "A finished engine run (10 steps, checkpoints at 5 and 10) and a classifier fine-tuned from it."
    d = tmp_path_factory.mktemp("bad")
    assert run(*train(d / "run", "train.max_steps=10", "run.checkpoint_interval=5"))[0] == 0
    assert run("finetune", "classify", "--out", d / "cls", "--quiet", f"model.base={d / 'run'}", "data.limit=20",
               "data.max_length=32", "train.epochs=1", "train.lr=1e-3", "train.eval_iter=1")[0] == 0
    (d / "five.json").write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "hi"}] * 5))
    return d


def refused(args, message, keep, code=2):
    "Run `args`, expect exit `code` and `message` on one stderr line, and every file of `keep` unchanged."
    before = {k: snapshot(k) for k in keep}
    status, out, err = run(*args)
    assert status == code, (status, err)
    assert message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for k, files in before.items(): assert snapshot(k) == files, k
    return err


def cls_args(runs, out, *extra, resume=False):
    return ["finetune", "classify", "--quiet", "--out", out, *(["--resume"] if resume else []),
            f"model.base={runs / 'run'}", "data.limit=20", "data.max_length=32", "train.epochs=1", "train.eval_iter=1",
            *extra]


def test_finetune_over_an_existing_run_is_refused(runs):
    refused(cls_args(runs, runs / "cls"), "already has checkpoints (newest step-00000001); pass --resume",
            [runs / "cls", runs / "run"])


def test_train_over_an_existing_run_is_refused(runs):
    refused(train(runs / "run", "train.max_steps=10"), "pass --resume to continue", [runs / "run"])


def test_train_resume_of_a_folder_without_a_run(runs, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    refused(train(tmp_path, resume=True), "holds no checkpoint to resume from; drop --resume",
            [tmp_path])
    assert not (tmp_path / "checkpoints").exists()


def test_finetune_resume_of_a_folder_without_a_run(runs, tmp_path):
    refused(cls_args(runs, tmp_path / "new", resume=True), "holds no checkpoint to resume from",
            [runs / "run"])
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("override, message", [
    ("data.limit=-5", "data.limit must be at least 10"),
    ("data.limit=3", "data.limit must be at least 10 (each part of the split needs a record)"),
    ("train.lr=.nan", "train.lr must be a finite number"),
    ("train.lr=-1e-3", "train.lr must be positive"),
    ("lora.rank=0", "lora.rank must be a positive integer or null"),
    ("train.epochs=0", "train.epochs must be at least 1"),
    ("data.batch_size=0", "data.batch_size must be at least 1"),
    ("model.trainable_blocks=0", "model.trainable_blocks must be at least 1, or -1 for all"),
    ("model.readout=first", "model.readout must be one of last, last_token, mean; got 'first'"),
    ("train.device=cuda", "CUDA is not available"),
    ("train.device=gpu", "train.device='gpu' is not a device"),
])
def test_bad_classify_settings(runs, tmp_path, override, message):
    if override == "train.device=cuda" and torch.cuda.is_available(): pytest.skip("this machine has CUDA")
    refused(cls_args(runs, tmp_path / "x", override), message, [runs / "run"])
    assert not (tmp_path / "x" / "checkpoints").exists()


@pytest.mark.parametrize("override, message", [
    ("optimizer.lr=.inf", "optimizer.lr must be a finite number"),
    ("data.val_fraction=1.0", "data.val_fraction must be in (0, 1)"),
    ("train.batch_size=0", "train.batch_size must be at least 1"),
    ("model.n_heads=3", "must be divisible by 'n_heads' (3)"),
    ("train.max_steps=-1", "train.max_steps must be at least 1"),
])
def test_bad_train_settings(runs, tmp_path, override, message):
    refused(train(tmp_path / "x", override), message, [runs / "run"])
    assert not (tmp_path / "x").exists()


def test_instruction_data_too_small_for_the_split(runs, tmp_path):
    refused(["finetune", "instruct", "--out", tmp_path / "x", "--quiet", f"model.base={runs / 'run'}",
             f"data.path={runs / 'five.json'}"], "has 5 records; the 85/5/10 train/validation/test split needs at least 10",
            [runs / "run"])
    assert not (tmp_path / "x" / "checkpoints").exists()


@pytest.mark.parametrize("override, message", [
    ("generate.max_new_tokens=0", "generate.max_new_tokens must be at least 1"),
    ("generate.test_limit=0", "generate.test_limit must be at least 1 or null"),
    ("data.max_length=0", "data.max_length must be at least 1 or null"),
])
def test_bad_instruct_settings(runs, tmp_path, override, message):
    refused(["finetune", "instruct", "--out", tmp_path / "x", "--quiet", f"model.base={runs / 'run'}", override],
            message, [runs / "run"])


def test_instruction_file_that_is_not_records(runs, tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps([{"instruction": "x", "output": 3, "input": ""}] * 12))
    refused(["finetune", "instruct", "--out", tmp_path / "x", "--quiet", f"model.base={runs / 'run'}",
             f"data.path={tmp_path / 'bad.json'}"], f"{tmp_path / 'bad.json'}: Record 0: ['output'] must be strings",
            [runs / "run"])


def test_divergence_keeps_the_good_checkpoint_and_the_advice_works(runs, tmp_path):
    import shutil
    out = tmp_path / "run"
    shutil.copytree(runs / "run", out)
    shutil.rmtree(out / "checkpoints" / "step-00000010")   # as if it had stopped at step 5
    good = snapshot(out / "checkpoints" / "step-00000005")
    err = refused(train(out, "train.max_steps=10", "optimizer.lr=1e30", "optimizer.grad_clip=null",
                         "schedule.min_lr=0", "run.checkpoint_interval=1", resume=True),
                  "at step 6", [out / "checkpoints"], code=1)
    assert "step-00000005, is kept" in err and "then continue it with --resume" in err
    assert snapshot(out / "checkpoints" / "step-00000005") == good
    # The advice: lower the rate (here, back to the config's) and resume. Training continues to the end.
    code, _, err = run(*train(out, "train.max_steps=10", "run.checkpoint_interval=5", resume=True))
    assert code == 0, err
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*")) == ["step-00000005", "step-00000010"]


def test_divergence_before_any_checkpoint_says_to_start_again(tmp_path):
    err = refused(train(tmp_path / "run", "train.max_steps=5", "optimizer.lr=1e30", "optimizer.grad_clip=null",
                         "schedule.min_lr=0", "schedule.warmup_steps=0", "run.checkpoint_interval=1"),
                  "No checkpoint was saved yet", [], code=1)
    assert "start the run again" in err
    assert not list((tmp_path / "run" / "checkpoints").glob("step-*"))
    assert run(*train(tmp_path / "run", "train.max_steps=5"))[0] == 0  # and it can


def _wait_for(path: Path, proc, timeout=120):
    t0 = time.time()
    while not path.is_file() or not path.read_text().strip():
        assert proc.poll() is None and time.time() - t0 < timeout, proc.communicate()
        time.sleep(0.2)


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_save_then_exit_128_plus_the_signal(tmp_path, sig, status):
    exe = Path(sys.executable).with_name("llm-zero")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([exe, "finetune", "instruct", "--out", tmp_path / "ins", "--quiet",
                             f"model.base={_base(tmp_path)}", "data.limit=200", "data.batch_size=2", "train.epochs=50",
                             "train.eval_freq=1000", "train.threads=1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "ins" / "metrics.jsonl", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Stopped at step" in out and "continue with --resume" in out
    steps = list((tmp_path / "ins" / "checkpoints").glob("step-*"))
    assert len(steps) == 1 and (steps[0] / "model.safetensors").is_file()


def _base(tmp_path):
    "A 2-step char base for the signal tests."
    assert run(*train(tmp_path / "base", "train.max_steps=2"))[0] == 0
    return tmp_path / "base"
