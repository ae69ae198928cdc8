"""Issue 25, fine-tuning runs: a finished run stays as it is under --resume, the counts say what was
seen, and SIGKILL during `finetune instruct` leaves a loadable checkpoint that --resume continues
bit for bit. (DPO's and the report's cases are in test_finetune_dpo.py and test_report.py.)"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llm_zero.train.checkpoint import CheckpointManager, load_language_model
from test_bad_input_finetune import cls_args, run, snapshot, train
from test_resume import _same_weights, _wait_for_step

LLM_ZERO = str(Path(sys.executable).with_name("llm-zero"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    "A tiny char base (10 steps) and a finished classifier fine-tuned from it (1 step)."
    d = tmp_path_factory.mktemp("faults")
    assert run(*train(d / "run", "train.max_steps=10", "run.checkpoint_interval=5"))[0] == 0
    assert run(*cls_args(d, d / "cls"))[0] == 0
    return d


def test_resume_of_a_finished_run_says_so_and_changes_nothing(runs):
    before = snapshot(runs / "cls")
    code, out, err = run(*cls_args(runs, runs / "cls", resume=True))
    assert code == 0, err
    assert f"{runs / 'cls'} is finished (step 1)" in out and "accuracy" in out
    assert snapshot(runs / "cls") == before


def test_examples_and_tokens_count_what_was_seen(runs, tmp_path):
    # data.limit=20 leaves 14 training messages: a batch of 16 holds all 14, so each step sees 14.
    assert run(*cls_args(runs, tmp_path / "c", "data.batch_size=16", "train.epochs=3"))[0] == 0
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert (m["step"], m["examples_seen"], m["tokens"]) == (3, 3 * 14, 3 * 14 * m["max_length"])


def _instruct(runs, out, resume=False):
    return [LLM_ZERO, "finetune", "instruct", "--quiet", "--out", str(out), *(["--resume"] if resume else []),
            f"model.base={runs / 'run'}", "data.limit=40", "data.batch_size=2", "train.epochs=2",
            "train.eval_freq=1000", "run.checkpoint_interval=4", "generate.test_limit=1",
            "generate.max_new_tokens=2", "train.threads=1"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def test_sigkill_during_instruct_then_resume_is_bit_identical(runs, tmp_path):
    ref = subprocess.run(_instruct(runs, tmp_path / "ref"), env=_env(), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    last = CheckpointManager(tmp_path / "ref" / "checkpoints").latest()
    scores = json.loads((tmp_path / "ref" / "scores.json").read_text())
    # 40 records: 34 train, 17 steps an epoch; every step sees 2 records, cut to the 32-token context.
    assert (scores["step"], scores["examples_seen"], scores["tokens"]) == (34, 68, 68 * 32)
    out = tmp_path / "killed"
    proc = subprocess.Popen(_instruct(runs, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_step(proc, out, 10)
    assert proc.poll() is None, f"the run finished before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = CheckpointManager(out / "checkpoints").latest()
    assert kept is not None and kept.name != last.name
    model, _, meta = load_language_model(out)  # the last good checkpoint loads
    assert meta["step"] >= 8 and isinstance(model, torch.nn.Module)
    resumed = subprocess.run(_instruct(runs, out, resume=True), env=_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    _same_weights(load_file(out / "checkpoints" / last.name / "model.safetensors"),
                  load_file(last / "model.safetensors"))


def test_disk_full_during_instruct_keeps_the_last_checkpoint_and_resume_is_bit_identical(
        runs, tmp_path, monkeypatch):
    "The disk fills up while the second checkpoint's state.pt is written (ENOSPC from the writer)."
    import errno
    ref = tmp_path / "ref"
    assert run(*_instruct(runs, ref)[1:])[0] == 0
    last = CheckpointManager(ref / "checkpoints").latest()
    out, writes, real = tmp_path / "full", [], Path.write_bytes
    def write_bytes(self, data):
        if self.name.startswith(".state.pt."):
            writes.append(self)
            if len(writes) == 2: raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)
    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", write_bytes)
        code, _, err = run(*_instruct(runs, out)[1:])
    assert code == 2 and "the disk is full" in err and len(err.strip().splitlines()) == 1, err
    kept = CheckpointManager(out / "checkpoints").latest()
    assert kept is not None and kept.name == "step-00000004", kept
    load_language_model(out)  # the last good checkpoint loads
    assert run(*_instruct(runs, out, resume=True)[1:])[0] == 0
    _same_weights(load_file(out / "checkpoints" / last.name / "model.safetensors"),
                  load_file(last / "model.safetensors"))
