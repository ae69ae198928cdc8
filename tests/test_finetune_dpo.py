"End-to-end checks of `finetune_dpo` (chapter 7c) on a small instruction-tuned run: outputs, measurement, resume."
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from llm_zero.finetune.cli import InstructConfig, finetune_instruct
from llm_zero.finetune.dpo import (PreferenceError, compare_models, finetune_dpo, judge_score, load_dpo_config,
                                   make_preference_pairs)
from llm_zero.train.config import load_config
from llm_zero.train.checkpoint import CheckpointManager

DPO_SMALL = ["data.limit=120", "train.epochs=2", "train.lr=1e-4", "train.eval_freq=3", "train.eval_iter=1",
             "data.max_new_tokens=12", "generate.max_new_tokens=12", "generate.test_limit=6"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sft")
    cfg = load_config(None, ["data.limit=60", "train.epochs=1", "train.lr=1e-3", "generate.test_limit=1",
                             "generate.max_new_tokens=4"], InstructConfig)
    finetune_instruct(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def dpo_run(sft_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo")
    cfg = load_dpo_config(None, [f"model.sft={sft_run}", *DPO_SMALL])
    return out, cfg, finetune_dpo(cfg, out, progress=False)


def test_outputs_and_measurement(dpo_run):
    out, _, scores = dpo_run
    for name in ("config.yaml", "pairs.json", "dpo.png", "scores.json", "test-answers.json", "metrics.json"):
        assert (out / name).is_file(), name
    pairs = json.loads((out / "pairs.json").read_text())
    assert scores["pairs"] == {"train": len(pairs["train"]), "validation": len(pairs["validation"])}
    assert scores["pairs"]["train"] > 0
    answers = json.loads((out / "test-answers.json").read_text())
    assert len(answers["sft"]) == len(answers["dpo"]) == 6
    # the stored verdict is the judge's verdict on the stored answers
    assert scores["preference_dpo_vs_sft"] == compare_models(answers["dpo"], answers["sft"])
    p = scores["preference_dpo_vs_sft"]
    assert p["wins"] + p["ties"] + p["losses"] == 6
    history = json.loads((out / "metrics.json").read_text())
    assert history["step"] == sorted(history["step"]) and len(set(history["step"])) == len(history["step"])
    assert abs(history["train_loss"][0] - 0.6931) < 0.05  # DPO starts at log 2


def test_pairs_follow_the_rule(dpo_run):
    out, _, _ = dpo_run
    for p in json.loads((out / "pairs.json").read_text())["train"]:
        assert judge_score(p["rejected"], p["chosen"]) < judge_score(p["chosen"], p["chosen"])
    answered = [{"instruction": "i", "input": "", "output": "Paris.", "model_response": "Paris.", "stopped": True},
                {"instruction": "i", "input": "", "output": "Paris.", "model_response": "Paris.", "stopped": False}]
    assert [p["rejected"] for p in make_preference_pairs(answered)] == ["Paris."]  # only the one that never stopped


def test_resume_reproduces_the_run(dpo_run, tmp_path):
    out, cfg, scores = dpo_run
    run = tmp_path / "resumed"
    shutil.copytree(out, run)
    ckpts = CheckpointManager(run / "checkpoints")
    last = ckpts.latest()
    shutil.rmtree(last)  # as if the run had been killed during its last epoch
    shutil.rmtree(run / "checkpoints" / "best", ignore_errors=True)
    resumed = finetune_dpo(cfg, run, progress=False, resume=True)
    a, b = load_file(last / "model.safetensors"), load_file(ckpts.latest() / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["preference_dpo_vs_sft"] == scores["preference_dpo_vs_sft"]
    assert json.loads((run / "metrics.json").read_text()) == json.loads((out / "metrics.json").read_text())


def test_refusals(dpo_run, tmp_path):
    out, cfg, _ = dpo_run
    with pytest.raises(PreferenceError, match="pass --resume"):
        finetune_dpo(cfg, out, progress=False)
    changed = {**cfg, "train": {**cfg["train"], "beta": 0.5}}
    with pytest.raises(PreferenceError, match="config differs"):
        finetune_dpo(changed, out, progress=False, resume=True)
    with pytest.raises(PreferenceError, match="model.sft is not set"):
        finetune_dpo(load_dpo_config(), tmp_path, progress=False)


def test_command_line_resumes_a_finished_run(dpo_run, tmp_path):
    "`llm-zero finetune dpo --resume` on a finished run (configs/finetune_dpo.yaml + the same overrides) re-measures it."
    import contextlib
    import io
    from pathlib import Path
    from llm_zero.cli import main
    out, cfg, scores = dpo_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    printed = io.StringIO()
    config = Path(__file__).resolve().parents[1] / "configs" / "finetune_dpo.yaml"
    with contextlib.redirect_stdout(printed):
        assert main(["finetune", "dpo", "--config", str(config), "--out", str(run), "--quiet", "--resume",
                     f"model.sft={cfg['model']['sft']}", *DPO_SMALL]) == 0
    p = scores["preference_dpo_vs_sft"]
    assert f"judge, DPO vs SFT: {p['wins']} wins, {p['ties']} ties, {p['losses']} losses" in printed.getvalue()
    assert "checkpoint" in printed.getvalue()
