"""One run configuration (issue 19): every kind of run shares one loader and the `train` keys that
say where it computes, and every committed config still loads."""
from pathlib import Path

import pytest
import yaml

from llm_zero.finetune.cli import ClassifyConfig, FinetuneTrainConfig, InstructConfig
from llm_zero.finetune.dpo import DPOConfig
from llm_zero.finetune.zero_to_chat import instruct_config, job_settings, pretrain_config
from llm_zero.train.config import Config, ConfigError, DeviceConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
KINDS = [Config, ClassifyConfig, InstructConfig, DPOConfig]
# Not an llm_zero config: the record of the book's own chapter 5 arguments, written by its run.py.
NOT_RUN_CONFIGS = {"experiments/ch05-verdict-124m/config.yaml"}


def kind_of(d: dict) -> type:
    "The config class of a config file, from its sections."
    if "optimizer" in d: return Config
    if "lora" in d: return ClassifyConfig
    return DPOConfig if "sft" in (d.get("model") or {}) else InstructConfig


COMMITTED = sorted(str(p.relative_to(ROOT)) for p in
                   [*ROOT.glob("configs/**/*.yaml"), *ROOT.glob("experiments/**/config.yaml")]
                   if str(p.relative_to(ROOT)) not in NOT_RUN_CONFIGS)


def test_the_committed_configs_are_found():
    assert "configs/default.yaml" in COMMITTED and "experiments/dpo-tiny/config.yaml" in COMMITTED
    assert len(COMMITTED) >= 40


@pytest.mark.parametrize("path", COMMITTED)
def test_every_committed_config_loads(path):
    d = yaml.safe_load((ROOT / path).read_text(encoding="utf-8")) or {}
    if "pretrain" in d:  # a zero-to-chat job (configs/main.yaml): each stage's config, both sizes
        for quick in (False, True):
            job = job_settings(ROOT / path, quick=quick)
            assert isinstance(pretrain_config(job), Config)
            assert isinstance(instruct_config(job, "base"), InstructConfig)
        return
    cls = kind_of(d)
    assert isinstance(load_config(ROOT / path, cls=cls), cls)


@pytest.mark.parametrize("cls", KINDS)
def test_every_run_shares_the_device_section(cls):
    train = load_config(None, cls=cls).train
    assert isinstance(train, DeviceConfig)
    assert (train.device, train.bf16, train.threads) == ("auto", False, None)
    c = load_config(None, ["train.device=cpu", "train.bf16=true", "train.threads=2"], cls)
    assert (c.train.device, c.train.bf16, c.train.threads) == ("cpu", True, 2)


@pytest.mark.parametrize("cls", KINDS)
def test_one_rule_for_the_shared_keys(cls):
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.threads=0"], cls)
    assert str(e.value) == "train.threads must be at least 1, got 0."


def test_fine_tuning_keys_keep_their_order():
    "The shared keys come after each section's own, as before they were shared."
    import dataclasses
    assert [f.name for f in dataclasses.fields(FinetuneTrainConfig)] == [
        "epochs", "lr", "weight_decay", "eval_freq", "eval_iter", "seed", "device", "bf16", "threads"]


def finetune_base_runs() -> dict:
    "experiments/finetune-base/run.py's RUNS (its folder name is not an importable package)."
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "finetune_base_run", ROOT / "experiments/finetune-base/run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RUNS


@pytest.mark.parametrize("name", ["classify-last-block", "classify-all-blocks",
                                  "classify-lora-r8", "instruct", "instruct-masked"])
def test_the_committed_configs_give_the_reported_runs(name):
    """Issue 20: what `llm-zero finetune ... --config configs/finetune_*.yaml` runs is what the
    reported runs ran, so the README's commands reproduce the numbers in results.json."""
    _, cls, config, overrides = finetune_base_runs()[name]
    ran = load_config(ROOT / "experiments/finetune-base" / name / "config.yaml", cls=cls)
    assert load_config(ROOT / "configs" / config, overrides, cls) == ran


def test_the_gpu_config_computes_on_a_gpu_in_bfloat16_compiled():
    """configs/base-gpu.yaml (chapter 5n, issue 20): the one loader reads it, and it asks for the GPU,
    bfloat16 and torch.compile, with the base model's data and recipe."""
    c = load_config(ROOT / "configs/base-gpu.yaml")
    base = load_config(ROOT / "configs/base-cpu.yaml")
    assert (c.train.device, c.train.bf16, c.train.compile) == ("cuda", True, True)
    assert (c.model.arch, c.data, c.optimizer) == ("qwen3", base.data, base.optimizer)
    assert c.model.emb_dim > base.model.emb_dim  # a GPU-hour buys a larger model than the CPU's
