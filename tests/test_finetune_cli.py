"""`llm-zero finetune classify|instruct` (llm_zero.finetune.cli) and `llm-zero chat` (llm_zero.serve.chat), run on tiny
settings."""
import argparse
import io
import json

import pytest

from llm_zero.cli import build_parser
from llm_zero.finetune.classify import classify_review
from llm_zero.finetune.cli import ClassifyConfig, InstructConfig, add_finetune_commands
from llm_zero.model.lora import LinearWithLoRA
from llm_zero.train.checkpoint import CheckpointError, load_classifier, load_language_model
from llm_zero.train.config import ConfigError, load_config




@pytest.fixture(scope="module")
def parser():
    p = argparse.ArgumentParser(prog="llm-zero")
    add_finetune_commands(p.add_subparsers(dest="command", required=True))
    return p


def run(parser, *argv):
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def runs(parser, tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    assert run(parser, "finetune", "classify", "--config", "configs/finetune_classify.yaml", "--out", str(d / "cls"),
               "--quiet", "model.base=tiny-gpt", "data.limit=80", "train.epochs=1", "train.lr=1e-3", "lora.rank=2", "train.eval_freq=3") == 0
    assert run(parser, "finetune", "instruct", "--config", "configs/finetune_instruct.yaml", "--out", str(d / "ins"),
               "--quiet", "model.base=tiny-gpt", "data.limit=30", "train.epochs=1", "train.lr=1e-3", "generate.max_new_tokens=4",
               "generate.test_limit=2", "data.mask_instruction=true") == 0
    return d


def test_help_lists_the_config_keys(parser, capsys):
    with pytest.raises(SystemExit) as e: parser.parse_args(["finetune", "classify", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "lora: rank, alpha" in out and "KEY=VALUE" in out


def test_classify_run_folder_and_lora(runs, capsys):
    cls = runs / "cls"
    assert {"config.yaml", "metrics.json", "accuracy.png", "checkpoints"} <= {p.name for p in cls.iterdir()}
    m = json.loads((cls / "metrics.json").read_text())
    assert set(m["accuracy"]) == {"train", "validation", "test"} and 0 <= m["accuracy"]["test"] <= 1
    # rank 2 on the tiny GPT (2 blocks, width 64): 4 attention projections, 2 feed-forward layers, the 2-class head
    per_block = 4 * 2 * (64 + 64) + 2 * 2 * (64 + 256)
    assert m["trainable_parameters"] == 2 * per_block + 2 * (64 + 2)
    model, tok, meta = load_classifier(cls)
    assert meta["task"] == "classify" and meta["labels"] == ["ham", "spam"]
    assert not any(isinstance(x, LinearWithLoRA) for x in model.modules())  # merged before saving
    assert classify_review("WIN cash now", model, tok, "cpu", max_length=meta["max_length"]) in ("spam", "not spam")


def test_instruct_run_scores_and_chat(runs, parser, capsys, monkeypatch):
    ins = runs / "ins"
    assert {"config.yaml", "scores.json", "test-responses.json", "loss.png", "checkpoints"} <= {p.name for p in ins.iterdir()}
    responses = json.loads((ins / "test-responses.json").read_text())
    assert len(responses) == 2 and all("model_response" in r for r in responses)
    scores = json.loads((ins / "scores.json").read_text())
    assert scores["n"] == 2 and 0 <= scores["rouge_l"] <= 1
    capsys.readouterr()
    assert run(build_parser(), "chat", "--checkpoint", str(ins), "--prompt", "Name a colour.", "--max-tokens", "3") == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("First question\n\nSecond question\n"))
    assert run(build_parser(), "chat", "--checkpoint", str(ins), "--max-tokens", "3") == 0
    assert len(capsys.readouterr().out.splitlines()) >= 1


def test_checkpoints_of_the_wrong_kind_are_refused(runs, parser):
    with pytest.raises(CheckpointError, match="is a classifier checkpoint.*cannot generate text"):
        run(build_parser(), "chat", "--checkpoint", str(runs / "cls"), "--prompt", "hi")
    with pytest.raises(CheckpointError, match="is a classifier checkpoint"): load_language_model(runs / "cls")
    with pytest.raises(CheckpointError, match="is a language model checkpoint.*not a classifier"):
        load_classifier(runs / "ins")
    with pytest.raises(CheckpointError, match="is a classifier checkpoint"):
        run(parser, "finetune", "instruct", "--out", str(runs / "x"), "--quiet", f"model.base={runs / 'cls'}")


def test_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="Unknown key lora.rnak; valid keys of 'lora': rank, alpha"):
        load_config(None, ["lora.rnak=4"], ClassifyConfig)
    with pytest.raises(ConfigError, match="Unknown config section 'generate'"):
        load_config(None, ["generate.max_new_tokens=3"], ClassifyConfig)
    with pytest.raises(ConfigError, match="lora.rank must be a positive integer"):
        load_config(None, ["lora.rank=-1"], ClassifyConfig)
    with pytest.raises(ConfigError, match="does not exist"): load_config(tmp_path / "nope.yaml", (), ClassifyConfig)
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"): load_config(tmp_path / "bad.yaml", (), ClassifyConfig)
    assert load_config("configs/finetune_instruct.yaml", ["train.lr=2e-4"], InstructConfig).train.lr == 2e-4


def test_finetune_configs_round_trip():
    from llm_zero.train.config import config_from_dict, config_to_dict
    for name, cls in [("classify", ClassifyConfig), ("instruct", InstructConfig)]:
        c = load_config(f"configs/finetune_{name}.yaml", (), cls)
        assert config_from_dict(config_to_dict(c), cls) == c and c.train.device == "auto"


def test_generator_refuses_a_classifier_checkpoint(runs):
    # One run loader (issue 19): the engine's name gives load_language_model's error.
    from llm_zero.train.engine import load_model_from_checkpoint
    with pytest.raises(CheckpointError, match="is a classifier checkpoint.*cannot generate text"):
        load_model_from_checkpoint(runs / "cls")
