"End-to-end checks of `finetune_dpo` (chapter 7c) on a small instruction-tuned run: outputs, measurement, resume."
import contextlib
import dataclasses
import io
import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from conftest import tiny_instruct_run
import torch
from safetensors.torch import load_file

from llm_zero.cli import main
from llm_zero.finetune import dpo
from llm_zero.eval.report import judge_score
from llm_zero.finetune.dpo import DPOConfig, PreferenceError, compare_models, finetune_dpo, make_preference_pairs
from llm_zero.train.checkpoint import CheckpointManager, RunExistsError, read_meta
from llm_zero.train.config import ConfigError, load_config

TEST_LIMIT = 3  # test answers per model
DPO_SMALL = ["data.limit=32", "data.batch_size=4", "train.epochs=2", "train.lr=1e-4", "train.eval_freq=3",
             "train.eval_iter=1", "data.max_new_tokens=12", "generate.max_new_tokens=12",
             f"generate.test_limit={TEST_LIMIT}", "run.checkpoint_interval=5",
             "run.keep_last=3"]  # 12 steps; the step-5 checkpoint is kept


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_instruct_run(tmp_path_factory.mktemp("sft"), 60, "train.eval_iter=1")


@pytest.fixture(scope="module")
def dpo_run(sft_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo")
    cfg = load_config(None, [f"model.sft={sft_run}", *DPO_SMALL], DPOConfig)
    return out, cfg, finetune_dpo(cfg, out, progress=False)


def test_outputs_and_measurement(dpo_run):
    out, _, scores = dpo_run
    for name in ("config.yaml", "pairs.json", "dpo.png", "scores.json", "test-answers.json", "metrics.json",
                 "metrics.jsonl", "loss.png"):
        assert (out / name).is_file(), name
    pairs = json.loads((out / "pairs.json").read_text())
    assert scores["pairs"] == {"train": len(pairs["train"]), "validation": len(pairs["validation"])}
    assert scores["pairs"]["train"] > 0
    answers = json.loads((out / "test-answers.json").read_text())
    assert len(answers["sft"]) == len(answers["dpo"]) == TEST_LIMIT
    # the stored verdict is the judge's verdict on the stored answers
    assert scores["preference_dpo_vs_sft"] == compare_models(answers["dpo"], answers["sft"])
    p = scores["preference_dpo_vs_sft"]
    assert p["wins"] + p["ties"] + p["losses"] == TEST_LIMIT
    history = json.loads((out / "metrics.json").read_text())
    assert history["step"] == sorted(history["step"]) and len(set(history["step"])) == len(history["step"])
    assert history["val_margin"] and len(history["val_margin"]) == len(history["step"])
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1 and abs(first["train_loss"] - 0.6931) < 0.05  # DPO starts at log 2
    meta = read_meta(CheckpointManager(out / "checkpoints").latest())
    assert meta["task"] == "dpo" and meta["step"] == scores["step"] > 0


def test_pairs_follow_the_rule(dpo_run):
    out, _, _ = dpo_run
    for p in json.loads((out / "pairs.json").read_text())["train"]:
        assert judge_score(p["rejected"], p["chosen"]) < judge_score(p["chosen"], p["chosen"])
    answered = [{"instruction": "i", "input": "", "output": "Paris.", "model_response": "Paris.", "stopped": True},
                {"instruction": "i", "input": "", "output": "Paris.", "model_response": "Paris.", "stopped": False}]
    assert [p["rejected"] for p in make_preference_pairs(answered)] == ["Paris."]  # only the one that never stopped


def _same_weights(a, b):
    a, b = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_refusals(dpo_run, tmp_path):
    out, cfg, _ = dpo_run
    with pytest.raises(RunExistsError, match="pass --resume"):
        finetune_dpo(cfg, out, progress=False)
    changed = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_pairs=5))
    with pytest.raises(ConfigError, match="Cannot resume"):
        finetune_dpo(changed, out, progress=False, resume=True)
    with pytest.raises(PreferenceError, match="model.sft is not set"):
        finetune_dpo(load_config(None, [], DPOConfig), tmp_path, progress=False)


def test_command_line_resumes_a_finished_run(dpo_run, tmp_path):
    "`llm-zero finetune dpo --resume` on a finished run (configs/finetune_dpo.yaml + the same overrides) re-measures it."
    out, cfg, scores = dpo_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    printed = io.StringIO()
    config = Path(__file__).resolve().parents[1] / "configs" / "finetune_dpo.yaml"
    with contextlib.redirect_stdout(printed):
        assert main(["finetune", "dpo", "--config", str(config), "--out", str(run), "--quiet", "--resume",
                     f"model.sft={cfg.model.sft}", *DPO_SMALL]) == 0
    p = scores["preference_dpo_vs_sft"]
    assert f"judge, DPO vs SFT: {p['wins']} wins, {p['ties']} ties, {p['losses']} losses" in printed.getvalue()
    assert "checkpoint" in printed.getvalue()


def _dpo_refused(sft, out, message, *extra):
    "`finetune dpo` into `out` exits 2 with one line naming `message`, and `out` is unchanged."
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(["finetune", "dpo", "--quiet", "--out", str(out), f"model.sft={sft}", *DPO_SMALL, *extra])
    assert code == 2 and message in err.getvalue(), err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1 and "Traceback" not in err.getvalue()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("text, message", [
    ('{"train": [{"instruction": "a", "inp', "pairs.json is not valid JSON"),
    ('[{"instruction": "a"}]', "must hold an object with 'train' and 'validation' lists, got a list"),
    ('{"train": []}', "pairs.json has no 'validation' list"),
    ('{"train": [{"instruction": "a"}], "validation": []}', "'train': Record 0 is missing key(s)"),
])
def test_damaged_pairs_file_is_one_line(dpo_run, tmp_path, text, message):
    _, cfg, _ = dpo_run
    (tmp_path / "pairs.json").write_text(text)
    _dpo_refused(cfg.model.sft, tmp_path, message)


def test_pairs_from_other_settings_are_not_reused(dpo_run, tmp_path):
    out, cfg, _ = dpo_run
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(out / "pairs.json", run / "pairs.json")
    _dpo_refused(cfg.model.sft, run, "was made with another data.limit", "data.limit=100")
    other = tmp_path / "other-sft"
    shutil.copytree(cfg.model.sft, other)
    from llm_zero.train.checkpoint import find_checkpoint
    ck = find_checkpoint(other)  # the checkpoint DPO starts from
    weights = load_file(ck / "model.safetensors")
    from safetensors.torch import save_file
    save_file({k: v + 1e-3 if v.is_floating_point() else v for k, v in weights.items()}, ck / "model.safetensors")
    (ck / "SHA256SUMS").unlink(missing_ok=True)
    _dpo_refused(other, run, "was made with another sft_weights_sha256")


def test_equal_pairs_are_dropped_and_none_left_is_refused(dpo_run, tmp_path):
    out, cfg, _ = dpo_run
    pairs = json.loads((out / "pairs.json").read_text())
    assert all(p["chosen"].strip() != p["rejected"].strip() for k in ("train", "validation") for p in pairs[k])
    n = len(pairs["train"])
    pairs["train"] = [{**p, "rejected": p["chosen"]} for p in pairs["train"]]
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), pytest.raises(PreferenceError, match="leaves 0 training"):
        finetune_dpo(cfg, tmp_path, progress=False)
    assert f"Dropped {n} of {n} train pairs whose chosen and rejected answers are the same." in printed.getvalue()
    assert dpo.drop_equal_pairs(pairs["train"][:1] + pairs["validation"][:1], "train") == pairs["validation"][:1]


def test_stopped_twice_then_resumed_reproduces_the_run(dpo_run, tmp_path, monkeypatch):
    """The clean run's folder cut back to its step-5 checkpoint (as if killed after it; the
    finished run's files stay), then resumed and stopped twice, so that a single continuation
    to the end checks both stops against the clean run. Ctrl-C in the middle of a step: the
    step finishes, is saved, the command exits 130. Then `--resume` in its own process,
    killed (SIGKILL) between two checkpoints: the last good checkpoint loads. A last
    `--resume` ends on the clean run's weights, metrics and verdict."""
    import subprocess
    import sys
    from test_resume import _wait_for_step
    from llm_zero.train.checkpoint import load_language_model
    out, cfg, scores = dpo_run
    run = tmp_path / "run"
    shutil.copytree(out, run)  # its pairs.json too: made for these very settings, not made again
    ckpts = CheckpointManager(run / "checkpoints")
    for ck in ckpts.steps():
        if read_meta(ck)["step"] > 5:
            shutil.rmtree(ck)
    assert read_meta(ckpts.latest())["step"] == 5
    args = ["finetune", "dpo", "--quiet", "--out", str(run), f"model.sft={cfg.model.sft}", *DPO_SMALL,
            "--resume"]
    loss_batch, calls = dpo.dpo_loss_batch, []
    def interrupting(batch, policy, reference, beta):
        if torch.is_grad_enabled():  # a training step, not an evaluation
            calls.append(1)
            if len(calls) == 3: os.kill(os.getpid(), signal.SIGINT)
        return loss_batch(batch, policy, reference, beta)
    monkeypatch.setattr(dpo, "dpo_loss_batch", interrupting)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 130
    assert read_meta(ckpts.latest())["step"] == 8
    assert "continue with --resume" in printed.getvalue()
    monkeypatch.setattr(dpo, "dpo_loss_batch", loss_batch)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("llm-zero")), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(proc, run, 11, timeout=600)  # step 10's checkpoint is written, 12's not yet
    assert proc.poll() is None, f"the run finished before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the last good checkpoint loads (not the run folder's: that is the best evaluation's)
    assert load_language_model(ckpts.latest())[2]["step"] == 10
    for name in ("scores.json", "metrics.json"):  # the clean run's: this resume must write its own
        (run / name).unlink()
    with contextlib.redirect_stdout(printed):
        assert main(args) == 0
    last = CheckpointManager(out / "checkpoints").latest()
    assert ckpts.latest().name == last.name
    assert _same_weights(last, ckpts.latest())
    assert json.loads((run / "metrics.json").read_text()) == json.loads((out / "metrics.json").read_text())
    resumed = json.loads((run / "scores.json").read_text())
    assert resumed["preference_dpo_vs_sft"] == scores["preference_dpo_vs_sft"]
